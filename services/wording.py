"""Small pieces of wording shared by pages and emails."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """ "1 minute", "5 minutes": the count with its noun in the right number."""
    return f"{count} {word if count == 1 else (many or word + 's')}"
