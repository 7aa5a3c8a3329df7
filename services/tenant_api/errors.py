"""gRPC errors as google.rpc.Status with one ErrorInfo and, for bad input,
BadRequest field violations (AIP-193)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from tenantry.tenant.v1 import tenant_pb2

DOMAIN = "tenantry.dev"
# How soon a caller may repeat a call that a dependency outage refused.
RETRY_DELAY = timedelta(seconds=1)


class ApiError(Exception):
    """Raised by handlers; the interceptor turns it into a gRPC status."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str,
        *,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[tuple[str, str]] = (),
        retry_delay: timedelta | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.violations = list(violations)
        self.retry_delay = retry_delay

    def to_status(self) -> grpc.Status:
        details = [
            _pack(error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata))
        ]
        if self.violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in self.violations
                ]
            )
            details.append(_pack(bad))
        if self.retry_delay is not None:
            retry = error_details_pb2.RetryInfo()
            retry.retry_delay.FromTimedelta(self.retry_delay)
            details.append(_pack(retry))
        status = status_pb2.Status(code=_CODES[self.code], message=self.message, details=details)
        return rpc_status.to_status(status)


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


_CODES = {code: getattr(code_pb2, code.name) for code in grpc.StatusCode}


def invalid(violations: Sequence[tuple[str, str]]) -> ApiError:
    fields = ", ".join(sorted({f for f, _ in violations}))
    return ApiError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"invalid request: check {fields}",
        "INVALID_ARGUMENT",
        violations=violations,
    )


def malformed_request(message_type: str) -> ApiError:
    """A request body that does not parse as the rpc's message."""
    return ApiError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"invalid request: the body is not a {message_type}",
        "MALFORMED_REQUEST",
        metadata={"message_type": message_type},
        violations=[("request", f"must be a serialized {message_type}")],
    )


def not_found(tenant_id: str) -> ApiError:
    return ApiError(
        grpc.StatusCode.NOT_FOUND,
        f"tenant {tenant_id!r} does not exist",
        "TENANT_NOT_FOUND",
        metadata={"tenant_id": tenant_id},
    )


def already_exists(tenant_id: str, differs: Sequence[str] = ()) -> ApiError:
    """A live tenant has the id, with other settings: `differs` names the
    fields (API paths), never their values (the admin's are personal data)."""
    if not differs:
        return ApiError(
            grpc.StatusCode.ALREADY_EXISTS,
            f"tenant {tenant_id!r} already exists with different settings",
            "TENANT_ALREADY_EXISTS",
            metadata={"tenant_id": tenant_id},
        )
    return ApiError(
        grpc.StatusCode.ALREADY_EXISTS,
        f"tenant {tenant_id!r} already exists with other settings: {', '.join(differs)}"
        " differ from the existing tenant's (the same request again returns it;"
        " a new tenant needs another id)",
        "TENANT_ALREADY_EXISTS",
        metadata={"tenant_id": tenant_id, "differs": ",".join(differs)},
        violations=[(field, "differs from the existing tenant's") for field in differs],
    )


def tenant_deleted(tenant_id: str, delete_time: datetime | None) -> ApiError:
    """The id belongs to a deleted (DEPROVISIONED) tenant: never reused, since
    its audit log and backups stay that tenant's."""
    when = f" on {delete_time:%Y-%m-%d %H:%M:%S} UTC" if delete_time else ""
    return ApiError(
        grpc.StatusCode.ALREADY_EXISTS,
        f"tenant {tenant_id!r} was deleted{when}; the id of a deleted tenant cannot be reused"
        " (its audit log and backups stay its own): choose another tenant id",
        "TENANT_DELETED",
        metadata={
            "tenant_id": tenant_id,
            "delete_time": delete_time.isoformat(timespec="seconds").replace("+00:00", "Z")
            if delete_time
            else "",
        },
        violations=[("tenant_id", "belongs to a deleted tenant and cannot be reused; choose another id")],
    )


def domains_in_use(tenant_id: str, domains: Sequence[str], positions: Sequence[int]) -> ApiError:
    return ApiError(
        grpc.StatusCode.ALREADY_EXISTS,
        # The violations say which; the message may be logged, a domain is personal data.
        "a domain of the tenant is already used by another tenant",
        "DOMAIN_IN_USE",
        metadata={"tenant_id": tenant_id, "domains": ",".join(domains)},
        violations=[(f"tenant.domains[{i}]", "already used by another tenant") for i in positions],
    )


def failed_precondition(tenant_id: str, message: str, state: str) -> ApiError:
    return ApiError(
        grpc.StatusCode.FAILED_PRECONDITION,
        message,
        "TENANT_STATE",
        metadata={"tenant_id": tenant_id, "state": state},
    )


def run_in_progress(tenant_id: str, message: str, workflow_id: str) -> ApiError:
    """Another operation on the tenant is under way; the caller may retry once it ends."""
    return ApiError(
        grpc.StatusCode.ABORTED,
        message,
        "OPERATION_IN_PROGRESS",
        metadata={"tenant_id": tenant_id, "workflow_id": workflow_id},
    )


def unavailable(dependency: str) -> ApiError:
    """A dependency (registry, temporal) cannot answer now; the call may be
    repeated, after RetryInfo's delay at the soonest."""
    return ApiError(
        grpc.StatusCode.UNAVAILABLE,
        f"{dependency} is unavailable; retry with backoff",
        "DEPENDENCY_UNAVAILABLE",
        metadata={"dependency": dependency},
        retry_delay=RETRY_DELAY,
    )


def shutting_down() -> ApiError:
    """This server is stopping: open streams end so that callers go on with another replica."""
    return ApiError(
        grpc.StatusCode.UNAVAILABLE,
        "the server is shutting down; reconnect",
        "SHUTTING_DOWN",
        retry_delay=RETRY_DELAY,
    )


# The gRPC code of a failed run, by its failure type (libs.errors.ErrorType).
_RUN_FAILURE_CODES = {
    "OperationInProgress": (grpc.StatusCode.ABORTED, "OPERATION_IN_PROGRESS"),
    "TenantState": (grpc.StatusCode.FAILED_PRECONDITION, "TENANT_STATE"),
    "NotFound": (grpc.StatusCode.FAILED_PRECONDITION, "OPERATION_FAILED"),
    # A step that ran out of time or of retries against a provider that is down.
    "Timeout": (grpc.StatusCode.UNAVAILABLE, "OPERATION_FAILED"),
    "ProviderUnavailable": (grpc.StatusCode.UNAVAILABLE, "OPERATION_FAILED"),
}


def operation_failed(
    tenant_id: str, operation: str, failed_step: str, failure_type: str, message: str
) -> ApiError:
    """A run of the operation failed (or could not take the tenant over): what
    happened, at which step, of which type."""
    code, reason = _RUN_FAILURE_CODES.get(
        failure_type, (grpc.StatusCode.FAILED_PRECONDITION, "OPERATION_FAILED")
    )
    return ApiError(
        code,
        message or f"{operation} of tenant {tenant_id!r} failed",
        reason,
        metadata=_run_metadata(tenant_id, operation, failed_step, failure_type),
    )


# Operation.Kind -> the `operation` of operation_failed's metadata.
_OPERATION_NAMES = {
    tenant_pb2.Operation.KIND_PROVISION: "provision",
    tenant_pb2.Operation.KIND_DEPROVISION: "delete",
    tenant_pb2.Operation.KIND_SUSPEND: "suspend",
    tenant_pb2.Operation.KIND_RESUME: "resume",
    tenant_pb2.Operation.KIND_UNDELETE: "undelete",
    tenant_pb2.Operation.KIND_CLEAN_UP: "clean_up",
}


def set_operation_error(tenant_id: str, operation: tenant_pb2.Operation) -> None:
    """Operation.error of a failed or cancelled run: the ErrorInfo an rpc that
    waited for the run would have had (none for a run that did not fail)."""
    operation.ClearField("error")
    outcome = operation.outcome
    if outcome not in (tenant_pb2.Operation.OUTCOME_FAILED, tenant_pb2.Operation.OUTCOME_CANCELLED):
        return
    failure_type = (
        "Cancelled" if outcome == tenant_pb2.Operation.OUTCOME_CANCELLED else operation.failure_type
    )
    name = _OPERATION_NAMES.get(operation.kind, "")
    operation.error.CopyFrom(
        error_details_pb2.ErrorInfo(
            reason="OPERATION_FAILED",
            domain=DOMAIN,
            metadata=_run_metadata(tenant_id, name, operation.failed_step, failure_type),
        )
    )


def _run_metadata(tenant_id: str, operation: str, failed_step: str, failure_type: str) -> dict[str, str]:
    return {
        "tenant_id": tenant_id,
        "operation": operation,
        "failed_step": failed_step,
        "failure_type": failure_type,
    }


def unauthenticated(reason: str, message: str) -> ApiError:
    """The caller's credentials are missing or not valid (`reason` says which check failed)."""
    return ApiError(grpc.StatusCode.UNAUTHENTICATED, message, reason)


def permission_denied(permission: str) -> ApiError:
    return ApiError(
        grpc.StatusCode.PERMISSION_DENIED,
        f"the caller does not have {permission} for this call",
        "PERMISSION_DENIED",
        metadata={"permission": permission},
    )


def rate_limited(wait: timedelta) -> ApiError:
    return ApiError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "too many changes from this caller; retry later",
        "RATE_LIMITED",
        retry_delay=max(wait, timedelta(milliseconds=100)),
    )


def too_many_streams(limit: int) -> ApiError:
    return ApiError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"this caller already has {limit} WatchTenant streams open",
        "TOO_MANY_STREAMS",
        metadata={"limit": str(limit)},
        retry_delay=RETRY_DELAY,
    )


def stream_too_long(limit: timedelta) -> ApiError:
    return ApiError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        f"the stream reached its longest duration ({int(limit.total_seconds())} s); open a new one",
        "STREAM_DURATION_LIMIT",
        metadata={"max_seconds": str(int(limit.total_seconds()))},
    )
