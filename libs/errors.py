"""The error vocabulary shared by every worker and the API.

Activities raise `ApplicationError`s whose `type` is one of `ErrorType`; the
workflow decides on the type (never on message text) and the API maps the
type to a gRPC status. Messages must never contain a secret.
"""

from __future__ import annotations

from enum import StrEnum

from temporalio.exceptions import ApplicationError


class ErrorType(StrEnum):
    # Retrying cannot help: the input is wrong.
    INVALID_ARGUMENT = "InvalidArgument"
    # The resource exists and belongs to someone else.
    CONFLICT = "Conflict"
    # Something needed is missing and will not appear by retrying.
    NOT_FOUND = "NotFound"
    # A provider is down or answered 5xx: retry with backoff.
    PROVIDER_UNAVAILABLE = "ProviderUnavailable"


NON_RETRYABLE_TYPES = [ErrorType.INVALID_ARGUMENT, ErrorType.CONFLICT, ErrorType.NOT_FOUND]


def permanent(error_type: ErrorType, message: str) -> ApplicationError:
    """An error that no retry can fix; the workflow compensates."""
    return ApplicationError(message, type=str(error_type), non_retryable=True)


def transient(message: str) -> ApplicationError:
    """A provider fault that a retry may fix."""
    return ApplicationError(message, type=str(ErrorType.PROVIDER_UNAVAILABLE))
