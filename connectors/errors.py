"""Error taxonomy shared by every connector.

A connector raises one of these; the activity layer turns it into a Temporal ``ApplicationError``
whose ``non_retryable`` flag and ``next_retry_delay`` come from here, so the decision "retry or
give up" is made once, by the connector that understands the platform's error codes.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError


class ConnectorError(Exception):
    """Base class. ``retryable`` says whether the same call may succeed later."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        platform: str | None = None,
        retry_after: float | None = None,
        details: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.platform = platform
        self.retry_after = retry_after
        self.details = details or {}

    @property
    def type_name(self) -> str:
        return type(self).__name__

    def __str__(self) -> str:
        where = f"{self.platform} " if self.platform else ""
        code = f"[{self.code}] " if self.code else ""
        return f"{where}{code}{self.message}"

    def to_application_error(self) -> ApplicationError:
        return ApplicationError(
            str(self),
            {"code": self.code, "platform": self.platform, **self.details},
            type=self.type_name,
            non_retryable=not self.retryable,
            next_retry_delay=timedelta(seconds=self.retry_after) if self.retry_after else None,
        )


class TransientError(ConnectorError):
    """Network trouble, timeouts, 5xx, platform 'service busy' codes: retry with backoff."""

    retryable = True


class ThrottledError(TransientError):
    """The platform asked us to slow down (429, Retry-After, platform limit codes)."""


class SessionExpiredError(TransientError):
    """The login session lapsed; the client logs in again and the call is retried."""


class PermanentError(ConnectorError):
    """The request is wrong and will stay wrong: do not retry."""


class AuthError(PermanentError):
    """Bad credentials or signature: retrying with the same secrets cannot help."""


class InvalidRequestError(PermanentError):
    """The platform rejected the payload (missing field, unknown SKU, bad state)."""


class NotFoundError(PermanentError):
    """The referenced record does not exist on the platform."""


class ConfigurationError(PermanentError):
    """The connector's registration is incomplete or inconsistent."""


NON_RETRYABLE_ERROR_TYPES = [c.__name__ for c in (PermanentError, AuthError, InvalidRequestError,
                                                  NotFoundError, ConfigurationError)]
