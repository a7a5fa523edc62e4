"""One tokenizer per model setting, shared by the Dataset tab's background jobs (counts, preview).

Loading a tokenizer (and, the first time, resolving or converting the model) takes seconds, so it is done
once on a worker thread and kept. A Rust tokenizer must not be used by two threads at once, so every
use goes through :meth:`TokenizerCache.use`, which holds the shared copy's lock for the duration.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from loradesk.core.config import ModelSettings

Progress = Callable[[str, "float | None"], None]


class TokenizerCache:
    """Thread-safe: ``with cache.use(settings, progress) as tokenizer: ...`` on any worker thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: str | None = None
        self._tokenizer: Any = None
        self._use_lock = threading.Lock()

    @staticmethod
    def key(settings: ModelSettings) -> str:
        """What the tokenizer depends on: the model settings."""
        return repr(sorted(settings.to_dict().items()))

    @contextlib.contextmanager
    def use(self, settings: ModelSettings, progress: Progress | None = None) -> Iterator[Any]:
        """The tokenizer for ``settings`` (loaded on first use), held exclusively while in the block.

        It is the process's shared copy (:func:`loradesk.core.models.shared_tokenizer`): a training run of
        the same model uses the same one, under the same lock, instead of loading its own.
        """
        with self._lock:
            key = self.key(settings)
            if self._key != key or self._tokenizer is None:
                from loradesk.core.ml_stack import import_stack

                import_stack()  # a row picked in the first seconds: wait for the start-up import
                from loradesk.core import models

                model_dir = models.resolve_model(settings, progress=progress)
                if progress is not None:
                    progress("Loading the tokenizer…", None)
                self._tokenizer, self._use_lock = models.shared_tokenizer(model_dir, settings.trust_remote_code)
                self._key = key
            with self._use_lock:
                yield self._tokenizer
