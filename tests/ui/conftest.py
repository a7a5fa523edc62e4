"""Qt test setup: every UI test has a QApplication, and any Qt warning it logs fails it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from loradesk.core.project import Project
from loradesk.ui import errors
from loradesk.ui.errors import ErrorReport

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Qt warnings (and model tester complaints) fail UI tests; the offscreen plugin's notices do not."""
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            if item.get_closest_marker("qt_log_level_fail") is None:
                item.add_marker(pytest.mark.qt_log_level_fail("WARNING"))
            item.add_marker(pytest.mark.qt_log_ignore("does not support propagateSizeHints",
                                                      "This plugin does not support raise"))


@pytest.fixture(autouse=True)
def _qapp(qapp: QApplication) -> QApplication:
    """Models and pixmaps need a QApplication even in tests that show no widget."""
    return qapp


@pytest.fixture
def project() -> Project:
    """A fresh project with the shipped sample dataset."""
    return Project.new_default()


@pytest.fixture
def shown_errors() -> Iterator[list[ErrorReport]]:
    """Every error the app shows during the test (``loradesk.ui.errors``), in order; dialogs closed after."""
    seen: list[ErrorReport] = []
    errors.reporter.reported.connect(seen.append)
    yield seen
    errors.reporter.reported.disconnect(seen.append)
    errors.close_all()


@pytest.fixture(autouse=True, scope="session")
def _worker_process() -> Iterator[None]:
    """The app's worker process (``ui/jobs.py``) ends with the test session, as it ends when the app quits."""
    yield
    from loradesk.ui.jobs import shutdown_process_pool

    shutdown_process_pool()
