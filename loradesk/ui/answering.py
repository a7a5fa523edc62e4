"""The Compare tab's background work: one loaded model kept across requests, and the two jobs run on it.

:func:`ask` and :func:`compare` are plain functions started with :class:`loradesk.ui.jobs.Jobs`
(``state=True``): they hand the core's typed events (:class:`~loradesk.core.generation.AnswerPiece`,
:class:`~loradesk.core.generation.SideAnswered`, :class:`~loradesk.core.generation.ScoredRow`) to
``state.emit`` and report loading and batches through ``state.progress``. Heavy modules (torch,
transformers, ``core.generation``) are imported on the worker thread, so the window appears first.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loradesk.core.config import ModelSettings

if TYPE_CHECKING:
    from loradesk.core.generation import BothAnswers, CompareSummary, GenerationSettings
    from loradesk.ui.jobs import TaskState


@dataclass(frozen=True)
class GenerationRequest:
    """What to answer with: a run folder (its base model + adapter), or a base model alone."""

    run_dir: Path | None = None
    model: ModelSettings | None = None  # used when there is no run: the base model only
    use_chat_template: bool = True  # likewise (a run brings its own setting)
    settings: GenerationSettings | None = None  # None: the defaults


class AnswererCache:
    """Keeps one loaded ``Answerer``, keyed on ``(model_dir, adapter_dir)``, across requests.

    Only worker threads use it; a lock makes sure one request at a time holds the model.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, ...] | None = None
        self._answerer: Any = None
        self.loads = 0  # how many times a model was actually loaded

    @property
    def key(self) -> tuple[str, ...] | None:
        return self._key

    @contextlib.contextmanager
    def get(self, request: GenerationRequest, status: Callable[[str], None] | None = None) -> Iterator[Any]:
        """Yield the ``Answerer`` for the request, loading a model only when the key changed."""
        def report(text: str, fraction: float | None = None) -> None:
            if status is not None:
                status(text if fraction is None else f"{text} {fraction:.0%}")

        with self._lock:
            key, load = self._plan(request, report)
            if key != self._key or self._answerer is None:
                self._answerer, self._key = None, None  # free the old model before loading the next
                report("Loading model…")
                self._answerer = load()
                self._key = key
                self.loads += 1
            yield self._answerer

    @staticmethod
    def _plan(request: GenerationRequest,
              report: Callable[[str, float | None], None]) -> tuple[tuple[str, ...], Callable[[], Any]]:
        """The cache key for ``request`` and a function that loads its Answerer."""
        from loradesk.core.ml_stack import import_stack

        import_stack()
        from loradesk.core.generation import Answerer

        if request.run_dir is not None:
            from loradesk.core.runs import read_run

            run_dir = Path(request.run_dir)
            info = read_run(run_dir)
            adapter = run_dir / "adapter_model.safetensors"
            stamp = str(adapter.stat().st_mtime_ns) if adapter.is_file() else ""
            key = (str(Path(info.base_model_dir).resolve()), str(run_dir.resolve()), stamp)  # resume rewrites it
            return key, functools.partial(Answerer.from_run, run_dir)
        from loradesk.core.models import resolve_model

        model = request.model or ModelSettings()
        model_dir = Path(resolve_model(model, report))
        key = (str(model_dir.resolve()), "", str(request.use_chat_template))
        return key, functools.partial(Answerer, model_dir, None, use_chat_template=request.use_chat_template,
                                      trust_remote_code=model.trust_remote_code)

    def clear(self) -> None:
        with self._lock:
            self._answerer, self._key = None, None


def _status(state: TaskState) -> Callable[[str], None]:
    """Status texts as progress without a fraction; none once a stop was asked (the job is winding down)."""
    def status(text: str) -> None:
        if not state.stop_requested:
            state.progress(text)

    return status


def ask(cache: AnswererCache, request: GenerationRequest, prompt: str, *, state: TaskState) -> BothAnswers:
    """Answer ``prompt`` with the base model, then the tuned one, streaming the text as events."""
    from loradesk.core.generation import answer_both

    status = _status(state)
    with cache.get(request, status) as answerer:
        status("Answering…")
        return answer_both(answerer, prompt, request.settings, on_event=state.emit, stop=state.stop)


def compare(cache: AnswererCache, request: GenerationRequest, questions: Sequence[tuple[Any, str]] | Path,
            *, state: TaskState) -> CompareSummary:
    """Score held-out questions (the pairs, or a held-out file to read) on both models, a row event each."""
    from loradesk.core.generation import compare_all

    if isinstance(questions, Path):
        from loradesk.core.formats import read_heldout

        questions = read_heldout(questions)  # errors name the file and the row
    status = _status(state)
    with cache.get(request, status) as answerer:
        def batch(text: str, fraction: float) -> None:
            if not state.stop_requested:
                state.progress(text, fraction)

        return compare_all(answerer, questions, request.settings, on_row=state.emit, stop=state.stop,
                           on_status=batch)
