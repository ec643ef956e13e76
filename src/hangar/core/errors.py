"""Domain errors. Faces map each kind to their own status codes and error shapes."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the core raises on purpose; `code` is a stable machine name."""

    code = "error"

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        # Seconds after which the same request may succeed (faces send it as `Retry-After`).
        self.retry_after = retry_after
        if code is not None:
            self.code = code


class InvalidInput(DomainError):
    """The request is malformed or breaks a validation rule."""

    code = "invalid_request"


class Unauthenticated(DomainError):
    """No valid credentials were presented."""

    code = "unauthorized"


class Forbidden(DomainError):
    """The caller is known but may not do this."""

    code = "forbidden"


class NotFound(DomainError):
    """The resource does not exist, or is not visible to the caller."""

    code = "not_found"


class Conflict(DomainError):
    """The request clashes with the current state."""

    code = "conflict"


class Unavailable(DomainError):
    """A dependency (provider, host, capacity) cannot serve the request now."""

    code = "unavailable"


class UpstreamError(DomainError):
    """A third party (OAuth provider, webhook receiver) answered with an error."""

    code = "upstream_error"


class InvalidState(Conflict):
    """The resource exists but its state forbids the operation (e.g. exec while paused)."""

    code = "invalid_state"


class TooLarge(DomainError):
    """A payload exceeds a configured limit."""

    code = "too_large"


class IllegalTransition(Conflict):
    """A lifecycle change its kind's transition table does not allow."""

    code = "illegal_transition"


class Gone(NotFound):
    """The resource existed but is used up or expired (a face without a 410 shows a 404)."""

    code = "gone"
