"""Small helpers for the words in messages (shared by the core and the UI)."""

from __future__ import annotations


def plural(n: int, word: str, words: str | None = None) -> str:
    """``"1 row"``, ``"1,234 rows"``; ``words`` is the plural when it is not ``word + "s"``."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"
