"""The current row token by token: tokenized in the background, the latest request wins."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Slot

from loradesk.core.config import ModelSettings, TrainingSettings
from loradesk.core.dataset import Example
from loradesk.core.project import Project
from loradesk.core.tokenize import Explained
from loradesk.ui.jobs import Jobs, TaskState

if TYPE_CHECKING:  # the panel module brings pyqtgraph: imported when the panel is built
    from loradesk.ui.token_view import TokenPreview

SELECT_A_ROW = ("Select a row to see exactly what the model is trained on: the text after the chat template, "
                "token by token.")
COUNT_FIRST = "Click “Count tokens” to load the model's tokenizer and see this row token by token."


def explain_current(settings: ModelSettings, training: TrainingSettings, example: Example, *,
                    state: TaskState) -> Explained:
    """:func:`~loradesk.ui.token_view.explain_row` as a background job (progress and stop through ``state``)."""
    from loradesk.ui.token_view import explain_row

    return explain_row(settings, training.use_chat_template, training.completion_only_loss, training.max_length,
                       example, state.progress, training.assistant_turns, training.tools_as_text)


class RowPreview(QObject):
    """Keeps ``panel`` showing row ``current_row()`` as the model is trained on it.

    Nothing is tokenized until ``wanted()`` holds (the user asked for token statistics). :meth:`request`
    waits for the row selection to settle (arrowing through the table tokenizes only the row you stop on).
    """

    #: How long the current row has to stay put before it is tokenized.
    SETTLE_MS = 120

    def __init__(self, project: Project, panel: TokenPreview,
                 current_row: Callable[[], int | None], wanted: Callable[[], bool],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self.panel = panel
        self._current_row = current_row
        self._wanted = wanted
        self.jobs = Jobs(self)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.SETTLE_MS)
        self._timer.timeout.connect(self.refresh)

    @Slot()
    def request(self) -> None:
        """Show the current row once the selection has settled."""
        self._timer.start()

    @Slot()
    def refresh(self) -> None:
        """Show the current row now (tokenized in the background; an older request still running is dropped)."""
        self._timer.stop()
        self.jobs.drop("preview")
        row = self._current_row()
        dataset = self.project.dataset
        if row is None or row >= len(dataset):
            self.panel.show_message(SELECT_A_ROW)
            return
        if not self._wanted():
            self.panel.show_message(COUNT_FIRST)
            return
        config = self.project.config
        training = config.training
        settings = ModelSettings.from_dict(config.model.to_dict())
        # A newer request does not interrupt this one, only drops its answer: it may be loading the tokenizer
        # (or converting the model) that the newer one is about to use. A failure (no tokenizer for this
        # model) is shown in the panel in place of the tokens: "Count tokens" reports the same failure as an
        # error, so the preview does not open a dialog per row.
        self.jobs.start(explain_current, settings, TrainingSettings.from_dict(training.to_dict()), dataset[row],
                        key="preview", state=True,
                        interrupt=False,
                        on_result=lambda explained: self.panel.show_explained(explained, row),
                        on_error=self._on_failed, on_progress=self._on_progress)

    def _on_failed(self, message: str, _details: str) -> None:
        self.panel.show_message(f"Cannot show the tokens: {message}")

    def _on_progress(self, text: str, _fraction: float | None) -> None:
        self.panel.set_busy(text)

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Stop a running preview and wait for it (on close)."""
        self._timer.stop()
        self.jobs.shutdown(timeout_ms)
