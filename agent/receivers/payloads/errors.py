"""The one error a payload that cannot be read raises."""

from __future__ import annotations


class PayloadError(ValueError):
    """A payload that cannot be read: `reason` (a short word, counted) and `field` (where in the JSON)."""

    def __init__(self, reason: str, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.reason = reason
        self.field = field
