"""The error vocabulary shared by every worker and the API.

Activities raise `ApplicationError`s whose `type` is one of `ErrorType`; the
workflow decides on the type (never on message text) and the API maps the
type to a gRPC status. Messages must never contain a secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import ClassVar

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
    # An attempt ran out of time (start-to-close, heartbeat, schedule-to-close).
    TIMEOUT = "Timeout"
    # The activity or the run was cancelled.
    CANCELLED = "Cancelled"

    # How a lifecycle run ends when it fails (the workflow's ApplicationError
    # type, and the tenant's last_operation.failure_type for refusals).
    # The tenant is not in a state the run can start from.
    TENANT_STATE = "TenantState"
    # Another run has the tenant (a deletion racing a suspend, say).
    OPERATION_IN_PROGRESS = "OperationInProgress"
    PROVISION_FAILED = "ProvisionFailed"
    DEPROVISION_FAILED = "DeprovisionFailed"
    SUSPEND_FAILED = "SuspendFailed"
    RESUME_FAILED = "ResumeFailed"
    UNDELETE_FAILED = "UndeleteFailed"


NON_RETRYABLE_TYPES = [ErrorType.INVALID_ARGUMENT, ErrorType.CONFLICT, ErrorType.NOT_FOUND]


def permanent(error_type: ErrorType, message: str) -> ApplicationError:
    """An error that no retry can fix; the workflow compensates."""
    return ApplicationError(message, type=str(error_type), non_retryable=True)


def transient(message: str) -> ApplicationError:
    """A provider fault that a retry may fix."""
    return ApplicationError(message, type=str(ErrorType.PROVIDER_UNAVAILABLE))


# What provider adapters raise; the activities turn it into the vocabulary
# above with `provider_errors()`. Anything else propagates and Temporal retries.


class ProviderError(Exception):
    """A provider's answer that no retry can change; raise a subclass."""

    error_type: ClassVar[ErrorType]


class NotFound(ProviderError):
    """What the call needs does not exist."""

    error_type = ErrorType.NOT_FOUND


class Conflict(ProviderError):
    """The thing exists but belongs to someone else, or does not match."""

    error_type = ErrorType.CONFLICT


class Rejected(ProviderError):
    """The provider refused the request for good (a recipient that does not exist, say)."""

    error_type = ErrorType.INVALID_ARGUMENT


class Unavailable(Exception):
    """The provider is throttling, failing or unreachable; a retry may help."""


@contextmanager
def provider_errors() -> Iterator[None]:
    """Turns a provider's errors into ApplicationErrors: permanent ones non-retryable."""
    try:
        yield
    except ProviderError as err:
        raise permanent(err.error_type, str(err)) from None
    except Unavailable as err:
        raise transient(str(err)) from None
