"""How an error names a long list (parameters, weights, pieces): the first few, and how many more."""

from __future__ import annotations

NAMED = 5  # items named before the rest are counted


def first_few(items: list[str], shown: int = NAMED) -> str:
    """The first `shown` items, comma-separated, and how many more there are."""
    more = len(items) - shown
    return ", ".join(items[:shown]) + (f" and {more} more" if more > 0 else "")
