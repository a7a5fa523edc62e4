"""Import the training stack (torch, transformers, peft, datasets) on one thread at a time.

Two threads importing transformers for the first time at once can meet its lazy module half set up:
CPython's import deadlock detection hands one of them the partly initialised module, and it fails with
``ImportError: cannot import name 'AutoModel' from 'transformers'``. The window imports the stack on a
worker thread just after start-up; a run or an answer started in those seconds imported it too, and one
of the two failed. Every thread that may be first calls :func:`import_stack` before its own imports.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_imported = False


def import_stack() -> None:
    """Import torch, transformers (with its Trainer), peft and datasets once; other callers wait until done."""
    global _imported
    if _imported:
        return
    with _lock:
        if _imported:
            return
        import datasets  # noqa: F401
        import peft  # noqa: F401
        import torch  # noqa: F401
        from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer  # noqa: F401

        _imported = True
