"""JSON from files we did not write: too deep or too big is a :class:`JSONLimitError`, never a crash.

Python's ``json`` parser recurses once per nesting level, so ``[[[[...]]]]`` 100,000 deep raises
``RecursionError`` (and a file larger than memory ``MemoryError``); callers turn a
:class:`JSONLimitError` into their own one-line error naming the file, like a syntax error.
"""

from __future__ import annotations

import json
from typing import Any


class JSONLimitError(ValueError):
    """The JSON could not be parsed within Python's limits (nesting depth or memory)."""


#: Part of the message for a file nested deeper than the parser can follow.
TOO_DEEP = "nested too deeply (lists or objects inside each other hundreds of levels deep)"
#: Part of the message for a file too big to hold in memory.
TOO_BIG = "too big to load into memory"
#: Part of the message for a number longer than Python converts (``sys.get_int_max_str_digits``).
TOO_LONG_NUMBER = "holding a number with thousands of digits"


def syntax_error(exc: json.JSONDecodeError) -> str:
    """The parser's message made to read on its own after the caller's "line L, column C": Python ends two
    of them with "at", expecting its own position text after it ("Unterminated string starting at")."""
    if exc.msg.endswith(" starting at"):
        return exc.msg.removesuffix(" starting at") + " (it starts there)"
    return exc.msg.removesuffix(" at")


def loads(text: str | bytes) -> Any:
    """``json.loads(text)``; raises :class:`json.JSONDecodeError` as it does, :class:`JSONLimitError` for
    a document nested too deeply, too big for memory or with an integer too long to convert."""
    try:
        return json.loads(text)
    except RecursionError:
        raise JSONLimitError(TOO_DEEP) from None
    except MemoryError:
        raise JSONLimitError(TOO_BIG) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # int("1" * 5000): Python's limit on the digits of an integer
        raise JSONLimitError(TOO_LONG_NUMBER) from None
