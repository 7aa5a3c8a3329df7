package tenantry

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of the API's errors.
const Domain = "tenantry.dev"

// Details reads the API's error details from err (a status from any call,
// also wrapped with %w): its ErrorInfo, nil if it has none (a status that
// did not come from the API, such as a connection failure), and the field
// violations of its BadRequest details, in order. Branch on
// ErrorInfo.Reason, never on the message.
func Details(err error) (*errdetails.ErrorInfo, []*errdetails.BadRequest_FieldViolation) {
	st, ok := status.FromError(err)
	if !ok || st == nil {
		return nil, nil
	}
	var (
		info   *errdetails.ErrorInfo
		fields []*errdetails.BadRequest_FieldViolation
	)
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			if info == nil {
				info = d
			}
		case *errdetails.BadRequest:
			fields = append(fields, d.GetFieldViolations()...)
		}
	}
	return info, fields
}

// Reason is the ErrorInfo reason of err (e.g. "TENANT_NOT_FOUND"), empty if
// it has none.
func Reason(err error) string {
	info, _ := Details(err)
	return info.GetReason()
}

// RetryDelay is how long the API asks the caller to wait before trying
// again (its RetryInfo: a rate limit, a dependency that is down); ok is
// false when it did not say.
func RetryDelay(err error) (delay time.Duration, ok bool) {
	st, isStatus := status.FromError(err)
	if !isStatus || st == nil {
		return 0, false
	}
	for _, detail := range st.Details() {
		if d, isRetry := detail.(*errdetails.RetryInfo); isRetry {
			return d.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}
