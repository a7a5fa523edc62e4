"""Whether a config and a dataset can train, and why not: the one place that decides it.

The settings form, the main window's Train action, the Train tab and :func:`loradesk.core.training.run`
all ask :func:`can_train`, so the reason a user sees beside a disabled button is the reason a headless
run refuses with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loradesk.core.config import ConfigError, RunConfig
from loradesk.core.dataset import Example
from loradesk.core.wording import plural

#: How many bad row numbers a message names before it says "…".
SHOWN_ROWS = 10


@dataclass(frozen=True)
class Readiness:
    """The answer of :func:`can_train`: ``settings`` are ``(field path, message)`` pairs, ``data`` one line."""

    settings: tuple[tuple[str, str], ...] = ()
    data: str = ""

    @property
    def ok(self) -> bool:
        return not self.settings and not self.data

    def __bool__(self) -> bool:
        return self.ok

    def reason(self) -> str:
        """One line: the first thing to fix ("" when training can start)."""
        if self.settings:
            return "; ".join(f"{path}: {message}" for path, message in self.settings)
        return self.data

    def raise_for_problems(self) -> None:
        """Raise :class:`ConfigError` for bad settings, else :class:`DataNotReady` for the rows; or nothing."""
        if self.settings:
            raise ConfigError(list(self.settings))
        if self.data:
            raise DataNotReady(self.data)


class DataNotReady(ValueError):
    """The rows cannot be trained on; the message names the rows to fix."""


def data_problem(rows: Sequence[Example]) -> str:
    """Why these rows cannot be trained on ("" when they can): empty, or rows missing a prompt or completion."""
    if not rows:
        return "The dataset is empty: add some prompt/completion rows first"
    bad = [i + 1 for i, r in enumerate(rows) if not r.prompt.strip() or not r.completion.strip()]
    if bad:
        shown = ", ".join(map(str, bad[:SHOWN_ROWS])) + (" …" if len(bad) > SHOWN_ROWS else "")
        return (f"{plural(len(bad), 'row has', 'rows have')} an empty prompt or completion (row {shown}): "
                f"fill them in or delete them before training")
    return ""


def can_train(config: RunConfig, rows: Sequence[Example] | None) -> Readiness:
    """Whether ``config`` can train on ``rows`` (``None``: judge the settings alone), and why not."""
    return Readiness(tuple(config.problems()), data_problem(rows) if rows is not None else "")
