"""Where the first trained token of the long rows lies, for the Checks panel's "nothing left to train" check.

Only a row longer than the max length can have every trained token cut, so only those rows are asked about.
They are tokenized in the worker process (where the token counts already loaded the tokenizer), a chunk at a
time, and each answer is kept per row until a setting it depends on changes: the check after the next edit
asks only about rows it has not seen.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from typing import Any

from loradesk.core.config import ModelSettings, RunConfig
from loradesk.core.dataset import Example
from loradesk.ui.jobs import Cancelled, TaskState
from loradesk.ui.row_lengths import token_key

#: Rows tokenized per call into the worker process (a cancellation point in between).
CHUNK = 500


class AnswerStarts:
    """Known answer starts (:func:`loradesk.core.tokenize.answer_start`) of rows, under one set of settings."""

    def __init__(self) -> None:
        self._setup: str | None = None
        self._known: dict[Hashable, int] = {}

    def of_rows(self, rows: Sequence[Example], indexes: Sequence[int], config: RunConfig, *,
                state: TaskState) -> dict[int, int]:
        """``{index: answer start}`` of ``rows[index]`` for each of ``indexes`` (runs on a job's thread)."""
        t = config.training
        settings: dict[str, Any] = {"completion_only": t.completion_only_loss, "use_chat_template": t.use_chat_template,
                                    "assistant_turns": t.assistant_turns, "tools_as_text": t.tools_as_text}
        setup = json.dumps([config.model.to_dict(), settings], sort_keys=True)
        if setup != self._setup:
            self._known, self._setup = {}, setup
        known = self._known
        missing = list({key: rows[i] for i in indexes if (key := token_key(rows[i])) not in known}.items())
        if missing:
            from loradesk.core import models
            from loradesk.core.tokenize import answer_starts_records

            model = ModelSettings.from_dict(config.model.to_dict())
            folder = models.local_model_folder(model)  # nothing is downloaded or converted for a check
            if folder is None:
                return {}
            for start in range(0, len(missing), CHUNK):
                state.check()
                part = missing[start:start + CHUNK]
                try:
                    found = state.in_process(answer_starts_records, str(folder), model.trust_remote_code,
                                             [row for _, row in part], **settings)
                except Cancelled:
                    raise
                except Exception:  # no tokenizer for this folder: "Count tokens" says why; this check waits
                    return {}
                known.update(zip((key for key, _ in part), found, strict=True))
        return {i: known[key] for i in indexes if (key := token_key(rows[i])) in known}
