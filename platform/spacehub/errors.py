"""One error hierarchy for the whole platform.

Every error maps, in one place (`spacehub.httperrors`), to `{"error": message}` with its HTTP status and an
`X-Error-Code` header; the Hub's codes are used where the Hub has one so its clients raise their own types.
"""

from __future__ import annotations


class SpacehubError(Exception):
    status: int = 400
    code: str = "BadRequest"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class InvalidInput(SpacehubError):
    status = 400
    code = "InvalidInput"


class InvalidName(InvalidInput):
    code = "InvalidName"


class UnsafeUpload(InvalidInput):
    """An archive or file set breaks an upload rule (traversal, link, device file, `.git/`, caps)."""

    code = "UnsafeUpload"


class PayloadTooLarge(UnsafeUpload):
    status = 413
    code = "PayloadTooLarge"


class Unauthorized(SpacehubError):
    status = 401
    code = "Unauthorized"


class Forbidden(SpacehubError):
    status = 403
    code = "Forbidden"


class NotFound(SpacehubError):
    status = 404
    code = "NotFound"


class RepoNotFound(NotFound):
    code = "RepoNotFound"


class RevisionNotFound(NotFound):
    code = "RevisionNotFound"


class EntryNotFound(NotFound):
    code = "EntryNotFound"


class Conflict(SpacehubError):
    status = 409
    code = "Conflict"


class SpaceConfigError(SpacehubError):
    """The README front matter (or the tree) does not describe a runnable space."""

    status = 422
    code = "ConfigError"


class NoAppFile(SpaceConfigError):
    code = "NoAppFile"


class BuildFailed(SpacehubError):
    status = 500
    code = "BuildError"


class StartFailed(SpacehubError):
    status = 500
    code = "RuntimeError"


class Superseded(SpacehubError):
    """A newer push replaced the revision this work was for."""

    status = 409
    code = "Superseded"


class ServiceUnavailable(SpacehubError):
    """A dependency (Redis, the database) is down: the client should try again after `retry_after_s`."""

    status = 503
    code = "ServiceUnavailable"

    def __init__(self, message: str, *, retry_after_s: int = 5, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class InsufficientStorage(SpacehubError):
    """The disk under the data dir is full: nothing can be written until space is freed."""

    status = 507
    code = "InsufficientStorage"
