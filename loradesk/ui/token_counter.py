"""Token statistics for the Dataset tab: counts the tokens of every row in the worker process.

The model is resolved (converted or downloaded the first time) on a background thread; the rows then go to
the worker process a chunk at a time (the frozen rows themselves), and come back as one count per row. The process
keeps the tokenizer loaded (one per model folder), so a recount after an edit starts at once, and
tokenizing (chat templates are rendered in Python) never competes with the GUI thread for the interpreter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject

from loradesk.core.config import ModelSettings
from loradesk.core.dataset import Example, compact_row
from loradesk.ui.dataset_model import TokenKey, token_key
from loradesk.ui.jobs import Jobs, TaskState, show_fraction

if TYPE_CHECKING:
    from loradesk.ui.dataset_tab import DatasetTab

#: Rows counted per call into the worker process (progress is reported, and the row preview gets its turn
#: in the process, in between).
COUNT_CHUNK = 500


def count_tokens(settings: ModelSettings, use_chat_template: bool, rows: Sequence[Example],
                 known: Callable[[Example], int | None] | None = None, in_order: np.ndarray | None = None,
                 tools_as_text: bool = False, *, state: TaskState) -> dict[TokenKey, int]:
    """Token counts of ``rows`` as the model will see them, each distinct row once, leaving out those whose
    count is known: ``in_order[i]`` for row ``i`` when given (-1: unknown), else ``known(row)`` (a job; the
    counting runs in the worker process)."""
    from loradesk.core import models
    from loradesk.core.tokenize import count_records

    if in_order is not None:  # the rows without a count, found in C: a recount after an edit reads only those
        missing = {token_key(row): row for row in map(rows.__getitem__, np.flatnonzero(in_order < 0).tolist())}
        rows = list(missing.values())
    elif known is not None:  # here, not on the GUI thread: a pass over 100,000 rows
        missing: dict[TokenKey, Example] = {}
        for start in range(0, len(rows), COUNT_CHUNK * 10):
            state.check()
            missing.update((token_key(r), r) for r in rows[start:start + COUNT_CHUNK * 10] if known(r) is None)
        rows = list(missing.values())
    if not rows:
        return {}
    model_dir = models.resolve_model(settings, progress=state.progress)  # the first time: a conversion
    state.progress("Loading the tokenizer…", None)
    out: dict[TokenKey, int] = {}
    for start in range(0, len(rows), COUNT_CHUNK):
        part = rows[start:start + COUNT_CHUNK]
        counts = state.in_process(count_records, str(model_dir), settings.trust_remote_code, use_chat_template,
                                  [compact_row(r) for r in part], tools_as_text)  # a pair as 3 strings: cheap to send
        out.update(zip(map(token_key, part), counts, strict=True))
        done = start + len(part)
        state.progress(f"Counting tokens… {done:,} of {len(rows):,}", done / len(rows))
    return out


class TokenCounter(QObject):
    """Runs :func:`count_tokens` for a Dataset tab and shows its progress in the tab's token bar and label."""

    JOB = "count-tokens"

    def __init__(self, tab: DatasetTab) -> None:
        super().__init__(tab)
        self._tab = tab
        self._jobs = Jobs(self)

    def busy(self) -> bool:
        """True while a count is running."""
        return self._jobs.busy(self.JOB)

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop a count and wait for it (on close)."""
        return self._jobs.shutdown(timeout_ms)

    def start(self) -> None:
        """Count the tokens of rows whose count is unknown (nothing while a count runs)."""
        tab = self._tab
        if not tab._tokens_wanted:
            tab._tokens_wanted = True
            tab._request_preview()
        if self.busy():
            return
        setup = tab._token_setup_key()
        if setup != tab._token_setup:
            tab.model.clear_token_counts()
            tab._token_setup = setup
        tab._rows_changed_since_count = False
        config = tab.project.config
        settings = ModelSettings.from_dict(config.model.to_dict())
        tab.count_button.setEnabled(False)
        tab.token_progress.setRange(0, 0)
        tab.token_progress.show()
        tab.token_label.setText("Preparing…")
        rows = tab.project.dataset.rows  # the rows without a count are picked out in the background
        in_order = tab.model.counts_in_row_order()
        self._jobs.start(count_tokens, settings, config.training.use_chat_template, rows, tab.model.token_count,
                         in_order.copy() if in_order is not None else None, config.training.tools_as_text,
                         key=self.JOB, state=True,
                         on_result=self._on_counts, on_error=self._on_failed, on_progress=self._on_progress)

    def _on_counts(self, counts: dict[TokenKey, int]) -> None:
        tab = self._tab
        tab.token_progress.hide()
        tab.count_button.setEnabled(True)
        if counts:  # the histogram and the footer follow once every row's count is read (lengths_changed)
            tab.model.set_token_counts(counts)
        tab._update_token_label()
        if tab._rows_changed_since_count:
            tab._recount_timer.start()

    def _on_failed(self, message: str, _details: str) -> None:
        tab = self._tab
        tab._token_setup = None
        tab.token_progress.hide()
        tab.count_button.setEnabled(True)
        tab.token_label.setText(f"Cannot count tokens: {message}")
        tab.token_label.setToolTip(message)

    def _on_progress(self, text: str, fraction: float | None) -> None:
        tab = self._tab
        tab.token_label.setText(text)
        show_fraction(tab.token_progress, fraction)
