package tenantry_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	tenantry "github.com/tenantry/tenantry/clients/go"
)

// onTheWire is err as a client receives it: the google.rpc.Status the server
// put into grpc-status-details-bin, decoded again.
func onTheWire(t *testing.T, err error) error {
	t.Helper()
	raw, marshalErr := proto.Marshal(status.Convert(err).Proto())
	if marshalErr != nil {
		t.Fatal(marshalErr)
	}
	decoded := &spb.Status{}
	if unmarshalErr := proto.Unmarshal(raw, decoded); unmarshalErr != nil {
		t.Fatal(unmarshalErr)
	}
	return status.FromProto(decoded).Err()
}

func badRequest(t *testing.T) error {
	t.Helper()
	st, err := status.New(codes.InvalidArgument, "invalid request: check tenant_id, tenant.admin.email").WithDetails(
		&errdetails.ErrorInfo{Reason: "INVALID_ARGUMENT", Domain: tenantry.Domain},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "tenant_id", Description: "must be a DNS label"},
		}},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "tenant.admin.email", Description: "required"},
		}},
	)
	if err != nil {
		t.Fatal(err)
	}
	return onTheWire(t, st.Err())
}

func TestDetailsReadsErrorInfoAndEveryFieldViolation(t *testing.T) {
	for name, err := range map[string]error{
		"status":  badRequest(t),
		"wrapped": fmt.Errorf("creating acme: %w", badRequest(t)),
	} {
		t.Run(name, func(t *testing.T) {
			info, fields := tenantry.Details(err)
			if info.GetReason() != "INVALID_ARGUMENT" || info.GetDomain() != tenantry.Domain {
				t.Fatalf("ErrorInfo = %v", info)
			}
			var got []string
			for _, f := range fields {
				got = append(got, f.GetField()+": "+f.GetDescription())
			}
			want := []string{"tenant_id: must be a DNS label", "tenant.admin.email: required"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("field violations = %q, want %q", got, want)
			}
			if tenantry.Reason(err) != "INVALID_ARGUMENT" {
				t.Fatalf("Reason = %q", tenantry.Reason(err))
			}
		})
	}
}

func TestDetailsReadsMetadataAndRetryInfo(t *testing.T) {
	st, err := status.New(codes.ResourceExhausted, "slow down").WithDetails(
		&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)},
		&errdetails.ErrorInfo{Reason: "RATE_LIMITED", Domain: tenantry.Domain, Metadata: map[string]string{"limit": "600"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	rateLimited := onTheWire(t, st.Err())
	info, fields := tenantry.Details(rateLimited)
	if info.GetReason() != "RATE_LIMITED" || info.GetMetadata()["limit"] != "600" || len(fields) != 0 {
		t.Fatalf("Details = %v, %v", info, fields)
	}
	if delay, ok := tenantry.RetryDelay(rateLimited); !ok || delay != 1500*time.Millisecond {
		t.Fatalf("RetryDelay = %v, %v", delay, ok)
	}
}

func TestDetailsOfErrorsWithoutThem(t *testing.T) {
	for name, err := range map[string]error{
		"nil":               nil,
		"not a status":      errors.New("boom"),
		"a bare status":     status.Error(codes.Unavailable, "connection refused"),
		"a context timeout": context.DeadlineExceeded,
	} {
		info, fields := tenantry.Details(err)
		if info != nil || fields != nil || tenantry.Reason(err) != "" {
			t.Errorf("%s: Details = %v, %v", name, info, fields)
		}
		if _, ok := tenantry.RetryDelay(err); ok {
			t.Errorf("%s: RetryDelay says retry", name)
		}
	}
}

func TestTokenIsABearerHeaderOnlyOverTLS(t *testing.T) {
	token := tenantry.Token("abc.def.ghi")
	md, err := token.GetRequestMetadata(context.Background())
	if err != nil || md["authorization"] != "Bearer abc.def.ghi" || len(md) != 1 {
		t.Fatalf("metadata = %v, %v", md, err)
	}
	if !token.RequireTransportSecurity() {
		t.Fatal("a token must never go over a connection without TLS")
	}
}

func TestNewClientRefusesIncompleteConfig(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]tenantry.Config{
		"no address":      {CAFile: notPEM},
		"missing CA file": {Address: "127.0.0.1:1", CAFile: filepath.Join(dir, "absent.pem")},
		"CA file not PEM": {Address: "127.0.0.1:1", CAFile: notPEM},
		"cert, no key":    {Address: "127.0.0.1:1", CertFile: notPEM},
		"bad key pair":    {Address: "127.0.0.1:1", CertFile: notPEM, KeyFile: notPEM},
	} {
		if client, err := tenantry.NewClient(cfg); err == nil {
			_ = client.Close()
			t.Errorf("%s: NewClient accepted %+v", name, cfg)
		}
	}
}
