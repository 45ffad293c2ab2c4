"""Option values the benchmark commands share, parsed with a clear error for bad input."""

from __future__ import annotations


def positive_ints(text: str) -> tuple[int, ...]:
    """'512,768' -> (512, 768); ValueError naming the text when it is anything else."""
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise ValueError(f"expected positive comma-separated integers, not {text!r}")
    return values
