"""Errors a consumer raises to refuse data, and how receivers answer them.

    ConsumerError
    ├── RefusedError      retryable: the sender should try again later
    │                     (a full queue, the memory limiter); gRPC UNAVAILABLE, HTTP 503
    └── InvalidDataError  permanent: the data itself is bad; gRPC INVALID_ARGUMENT, HTTP 400

Any other exception from a consumer is a bug in Vigil; receivers log it and
answer as if the data were refused, so the sender keeps it and retries.
"""


class ConsumerError(Exception):
    """Base of the errors a pipeline consumer raises to refuse a batch."""


class RefusedError(ConsumerError):
    """Data refused for now (load, a full queue); the sender should retry."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidDataError(ConsumerError):
    """Data that can never be accepted; the sender must not retry it."""
