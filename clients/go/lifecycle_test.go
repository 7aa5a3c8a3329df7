package tenantry_test

// The client against the live e2e stack: tests/e2e/test_client_go.py runs
// `go test` with the environment of the client_env fixture
// (tests/e2e/conftest.py). Without it these tests fail; they never skip.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	tenantry "github.com/tenantry/tenantry/clients/go"
	tenantv1 "github.com/tenantry/tenantry/clients/go/tenantry/tenant/v1"
)

var liveEnv = []string{
	"TENANTRY_ADDRESS", "TENANTRY_CA_FILE", "TENANTRY_CLIENT_CERT_FILE", "TENANTRY_CLIENT_KEY_FILE",
	"TENANTRY_BEARER_TOKEN", "TENANTRY_CERT_ACTOR", "TENANTRY_TOKEN_ACTOR",
}

const (
	// A unary call; Suspend and Resume answer once their run has ended (within 15 s).
	callTimeout = 30 * time.Second
	// Watching one run to its end (a hard deletion backs up first).
	runTimeout = 3 * time.Minute
)

type state = tenantv1.Tenant_State

// requireLive fails the test unless the e2e stack's environment is set.
func requireLive(t *testing.T) {
	t.Helper()
	var missing []string
	for _, name := range liveEnv {
		if os.Getenv(name) == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("these tests call the live e2e stack: run them with tests/e2e/test_client_go.py "+
			"(or set %v); for the unit tests alone: go test -run 'Details|Token|NewClient'", missing)
	}
}

// dial connects with the client certificate and, if withToken, the bearer token on top.
func dial(t *testing.T, withToken bool) *tenantry.Client {
	t.Helper()
	cfg := tenantry.Config{
		Address:  os.Getenv("TENANTRY_ADDRESS"),
		CAFile:   os.Getenv("TENANTRY_CA_FILE"),
		CertFile: os.Getenv("TENANTRY_CLIENT_CERT_FILE"),
		KeyFile:  os.Getenv("TENANTRY_CLIENT_KEY_FILE"),
	}
	if withToken {
		cfg.BearerToken = os.Getenv("TENANTRY_BEARER_TOKEN")
	}
	client, err := tenantry.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// newID is a tenant id of its own for each run of the suite.
func newID(t *testing.T) string {
	t.Helper()
	random := make([]byte, 5)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	return "go-" + hex.EncodeToString(random)
}

func spec(id string) *tenantv1.Tenant {
	return &tenantv1.Tenant{
		DisplayName: "Acme Corp",
		PlanTier:    tenantv1.PlanTier_PLAN_TIER_POOLED,
		Domains:     []string{id + ".example.com"},
		Admin:       &tenantv1.AdminContact{Email: "ada@acme.example.com", GivenName: "Ada"},
	}
}

func call(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// settle follows WatchTenant until the stream ends (no run is under way) and
// returns the tenant's last state.
func settle(t *testing.T, client *tenantry.Client, name string) *tenantv1.Tenant {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	stream, err := client.WatchTenant(ctx, &tenantv1.WatchTenantRequest{Name: name})
	if err != nil {
		t.Fatalf("WatchTenant %s: %v", name, err)
	}
	var last *tenantv1.Tenant
	for {
		update, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("WatchTenant %s: %v", name, err)
		}
		last = update.GetTenant()
	}
	if last == nil {
		t.Fatalf("WatchTenant %s ended without an update", name)
	}
	return last
}

func expectState(t *testing.T, what string, tenant *tenantv1.Tenant, want state) {
	t.Helper()
	if tenant.GetState() != want {
		t.Fatalf("%s: %s is %v (failed step %q: %s), want %v", what, tenant.GetName(), tenant.GetState(),
			tenant.GetFailedStep(), tenant.GetFailureReason(), want)
	}
}

func expectOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %s %v", what, tenantry.Reason(err), err)
	}
}

// requests are the operations of the tenant's audit log with who asked for each.
func requests(t *testing.T, client *tenantry.Client, name string) [][2]string {
	t.Helper()
	var found [][2]string
	token := ""
	for {
		reply, err := client.ListTenantEvents(call(t), &tenantv1.ListTenantEventsRequest{
			Parent: name, PageSize: 10, PageToken: token,
		})
		expectOK(t, "ListTenantEvents", err)
		for _, event := range reply.GetEvents() {
			if event.GetKind() == tenantv1.TenantEvent_KIND_REQUESTED {
				found = append(found, [2]string{event.GetStep(), event.GetActor()})
			}
		}
		if token = reply.GetNextPageToken(); token == "" {
			return found
		}
	}
}

// One tenant's whole life, each operation asked for with one of the two
// credentials, and the audit log naming the right caller for each.
func TestLifecycle(t *testing.T) {
	requireLive(t)
	t.Parallel()
	id := newID(t)
	name := "tenants/" + id

	// README: begin
	client, err := tenantry.NewClient(tenantry.Config{
		Address:  os.Getenv("TENANTRY_ADDRESS"),
		CAFile:   os.Getenv("TENANTRY_CA_FILE"),
		CertFile: os.Getenv("TENANTRY_CLIENT_CERT_FILE"), // mTLS; or a BearerToken on top
		KeyFile:  os.Getenv("TENANTRY_CLIENT_KEY_FILE"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, err = client.CreateTenant(ctx, &tenantv1.CreateTenantRequest{TenantId: id, Tenant: &tenantv1.Tenant{
		DisplayName: "Acme Corp",
		PlanTier:    tenantv1.PlanTier_PLAN_TIER_POOLED,
		Admin:       &tenantv1.AdminContact{Email: "ada@acme.example.com"},
	}})
	if err != nil {
		t.Fatalf("%s: %v", tenantry.Reason(err), err) // e.g. INVALID_ARGUMENT, TENANT_ALREADY_EXISTS
	}
	stream, err := client.WatchTenant(ctx, &tenantv1.WatchTenantRequest{Name: "tenants/" + id})
	if err != nil {
		t.Fatal(err)
	}
	var tenant *tenantv1.Tenant
	for update, err := stream.Recv(); !errors.Is(err, io.EOF); update, err = stream.Recv() {
		if err != nil {
			t.Fatal(err)
		}
		tenant = update.GetTenant() // at each step; the stream ends with the run
	}
	// README: end
	expectState(t, "created", tenant, tenantv1.Tenant_STATE_ACTIVE)

	got, err := client.GetTenant(call(t), &tenantv1.GetTenantRequest{Name: name})
	expectOK(t, "GetTenant", err)
	if got.GetTenant().GetTenantId() != id || got.GetTenant().GetDisplayName() != "Acme Corp" ||
		got.GetTenant().GetPlanTier() != tenantv1.PlanTier_PLAN_TIER_POOLED || len(got.GetTenant().GetResources()) == 0 {
		t.Fatalf("GetTenant = %v", got.GetTenant())
	}
	expectState(t, "GetTenant", got.GetTenant(), tenantv1.Tenant_STATE_ACTIVE)

	withToken := dial(t, true)
	suspended, err := withToken.SuspendTenant(call(t), &tenantv1.SuspendTenantRequest{Name: name})
	expectOK(t, "SuspendTenant", err)
	expectState(t, "SuspendTenant", suspended.GetTenant(), tenantv1.Tenant_STATE_SUSPENDED)
	expectState(t, "suspended", settle(t, client, name), tenantv1.Tenant_STATE_SUSPENDED)

	resumed, err := withToken.ResumeTenant(call(t), &tenantv1.ResumeTenantRequest{Name: name})
	expectOK(t, "ResumeTenant", err)
	expectState(t, "ResumeTenant", resumed.GetTenant(), tenantv1.Tenant_STATE_ACTIVE)
	expectState(t, "resumed", settle(t, client, name), tenantv1.Tenant_STATE_ACTIVE)

	deleting, err := client.DeleteTenant(call(t), &tenantv1.DeleteTenantRequest{
		Name: name, GracePeriod: durationpb.New(time.Hour),
	})
	expectOK(t, "DeleteTenant with a grace period", err)
	expectState(t, "DeleteTenant", deleting.GetTenant(), tenantv1.Tenant_STATE_DEPROVISIONING)
	purge := deleting.GetTenant().GetPurgeTime().AsTime()
	if until := time.Until(purge); until < 50*time.Minute || until > 61*time.Minute {
		t.Fatalf("purge time %v is not an hour away", purge)
	}

	// The token for this one call only, on the certificate's connection.
	undeleted, err := client.UndeleteTenant(call(t), &tenantv1.UndeleteTenantRequest{Name: name},
		grpc.PerRPCCredentials(tenantry.Token(os.Getenv("TENANTRY_BEARER_TOKEN"))))
	expectOK(t, "UndeleteTenant", err)
	expectState(t, "UndeleteTenant", undeleted.GetTenant(), tenantv1.Tenant_STATE_ACTIVE)
	restored := settle(t, client, name)
	expectState(t, "undeleted", restored, tenantv1.Tenant_STATE_ACTIVE)
	if restored.GetPurgeTime() != nil {
		t.Fatalf("an undeleted tenant keeps its purge time %v", restored.GetPurgeTime().AsTime())
	}

	_, err = client.DeleteTenant(call(t), &tenantv1.DeleteTenantRequest{Name: name, HardDelete: true})
	expectOK(t, "DeleteTenant hard", err)
	gone := settle(t, withToken, name)
	expectState(t, "hard deleted", gone, tenantv1.Tenant_STATE_DEPROVISIONED)
	if len(gone.GetBackups()) == 0 {
		t.Fatal("a hard delete without skip_backup took no backup")
	}

	cert, token := os.Getenv("TENANTRY_CERT_ACTOR"), os.Getenv("TENANTRY_TOKEN_ACTOR")
	if cert == token {
		t.Fatalf("both credentials have the actor %q: the test could not tell them apart", cert)
	}
	want := [][2]string{
		{"provision", cert}, {"suspend", token}, {"resume", token},
		{"deprovision", cert}, {"undelete", token}, {"deprovision", cert},
	}
	if got := requests(t, withToken, name); !slices.Equal(got, want) {
		t.Fatalf("requests in the audit log = %q, want %q", got, want)
	}
}

// ListTenants pages by next_page_token, in tenant id order, every tenant once.
func TestListTenantsPages(t *testing.T) {
	requireLive(t)
	t.Parallel()
	client := dial(t, true)
	// Only the tenants created from here on, so the pages stay few however
	// many the rest of the suite made (seconds are the filter's precision).
	since := time.Now().UTC().Add(-time.Second).Format(time.RFC3339)
	prefix := newID(t)
	ids := []string{prefix + "-a", prefix + "-b", prefix + "-c"}
	for _, id := range ids {
		_, err := client.CreateTenant(call(t), &tenantv1.CreateTenantRequest{TenantId: id, Tenant: spec(id)})
		expectOK(t, "CreateTenant "+id, err)
	}
	for _, id := range ids {
		expectState(t, "created", settle(t, client, "tenants/"+id), tenantv1.Tenant_STATE_ACTIVE)
	}

	var seen []string
	token, pages := "", 0
	for {
		reply, err := client.ListTenants(call(t), &tenantv1.ListTenantsRequest{
			PageSize: 2, PageToken: token, Filter: `create_time >= "` + since + `"`,
		})
		expectOK(t, "ListTenants", err)
		if len(reply.GetTenants()) > 2 {
			t.Fatalf("page %d has %d tenants, more than its size", pages, len(reply.GetTenants()))
		}
		for _, tenant := range reply.GetTenants() {
			seen = append(seen, tenant.GetTenantId())
		}
		pages++
		if token = reply.GetNextPageToken(); token == "" {
			break
		}
	}
	if pages < 2 {
		t.Fatalf("%d page(s) for %d tenants of page size 2", pages, len(seen))
	}
	if !slices.IsSorted(seen) || len(slices.Compact(slices.Clone(seen))) != len(seen) {
		t.Fatalf("not in tenant id order, each once: %v", seen)
	}
	for _, id := range ids {
		if !slices.Contains(seen, id) {
			t.Fatalf("%s is on no page: %v", id, seen)
		}
	}
}

// Bad input is INVALID_ARGUMENT with a field violation for each wrong field.
func TestBadRequestNamesEveryWrongField(t *testing.T) {
	requireLive(t)
	t.Parallel()
	client := dial(t, false)
	tenant := spec("bad")
	tenant.Admin.Email = ""
	_, err := client.CreateTenant(call(t), &tenantv1.CreateTenantRequest{TenantId: "Not_A_Label", Tenant: tenant})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("CreateTenant = %v, want INVALID_ARGUMENT", err)
	}
	info, violations := tenantry.Details(err)
	if info.GetReason() != "INVALID_ARGUMENT" || info.GetDomain() != tenantry.Domain {
		t.Fatalf("ErrorInfo = %v", info)
	}
	var fields []string
	for _, v := range violations {
		if v.GetDescription() == "" {
			t.Errorf("violation of %s says nothing", v.GetField())
		}
		fields = append(fields, v.GetField())
	}
	slices.Sort(fields)
	if want := []string{"tenant.admin.email", "tenant_id"}; !slices.Equal(fields, want) {
		t.Fatalf("field violations on %v, want %v", fields, want)
	}

	_, err = client.ListTenants(call(t), &tenantv1.ListTenantsRequest{PageToken: "garbage!"})
	if _, violations := tenantry.Details(err); status.Code(err) != codes.InvalidArgument ||
		len(violations) != 1 || violations[0].GetField() != "page_token" {
		t.Fatalf("ListTenants with a bad page token = %v", err)
	}

	_, err = client.GetTenant(call(t), &tenantv1.GetTenantRequest{Name: "tenants/nobody-here"})
	if info, _ := tenantry.Details(err); status.Code(err) != codes.NotFound ||
		info.GetReason() != "TENANT_NOT_FOUND" || info.GetMetadata()["tenant_id"] != "nobody-here" {
		t.Fatalf("GetTenant of no tenant = %v (%v)", err, info)
	}
}

// A token, when a call has one, names the caller even on an mTLS
// connection: a bad one is refused although the certificate is good.
func TestTokenTakesPrecedenceOverTheCertificate(t *testing.T) {
	requireLive(t)
	t.Parallel()
	client := dial(t, false)
	_, err := client.ListTenants(call(t), &tenantv1.ListTenantsRequest{PageSize: 1},
		grpc.PerRPCCredentials(tenantry.Token("not-a-jwt")))
	if status.Code(err) != codes.Unauthenticated || tenantry.Reason(err) != "TOKEN_MALFORMED" {
		t.Fatalf("a malformed token = %v, want UNAUTHENTICATED TOKEN_MALFORMED", err)
	}
	_, err = client.ListTenants(call(t), &tenantv1.ListTenantsRequest{PageSize: 1})
	expectOK(t, "the certificate alone", err)
}
