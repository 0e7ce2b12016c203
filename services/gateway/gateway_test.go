package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/gateway"
)

type env struct {
	srv *httptest.Server
	bus *bus.Bus
	cat *catalog.Catalog
	got chan *bus.Message
}

func newEnv(t *testing.T, token string) *env {
	t.Helper()
	n := topologytest.Start(t, bus.Config{})
	b, cat := n.Bus, n.Catalog
	gw, err := gateway.New(b, cat, gateway.Config{MasterKey: bytes.Repeat([]byte{7}, 32), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{srv: httptest.NewServer(gw.Handler()), bus: b, cat: cat, got: make(chan *bus.Message, 16)}
	t.Cleanup(e.srv.Close)
	sub, err := b.Consume(t.Context(), bus.ConsumerSpec{Stream: cofferv1.StreamEvents, Durable: "observer"},
		func(ctx context.Context, m *bus.Message) error { e.got <- m; return nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Stop)
	return e
}

// next waits up to 10 s for the next event the gateway publishes.
func (e *env) next(t *testing.T, what string) *bus.Message {
	t.Helper()
	select {
	case m := <-e.got:
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("no event: want %s", what)
		return nil
	}
}

func (e *env) do(t *testing.T, method, path, body, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestValidation(t *testing.T) {
	e := newEnv(t, "")
	cases := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"instance with a slash", "POST", "/api/v1/instances", `{"name":"a/b","dsn":"sqlserver://sa:x@h"}`, 400, "must not contain '/'"},
		{"instance without a name", "POST", "/api/v1/instances", `{"dsn":"sqlserver://sa:x@h"}`, 400, "empty"},
		{"instance without a dsn", "POST", "/api/v1/instances", `{"name":"sql1"}`, 400, "dsn is empty"},
		{"unknown field", "POST", "/api/v1/instances", `{"name":"sql1","dsn":"x","password":"p"}`, 400, "unknown field"},
		{"unknown backup type", "POST", "/api/v1/backups", `{"instance":"sql1","database":"d","type":"weekly"}`, 400, "unknown backup type"},
		{"backup of an unknown database", "POST", "/api/v1/backups", `{"instance":"sql1","database":"nope","type":"full"}`, 404, "no database"},
		{"restore without a target", "POST", "/api/v1/restores", `{"instance":"sql1","database":"d","latest":true}`, 400, "target_database"},
		{"restore with point and latest", "POST", "/api/v1/restores", `{"instance":"sql1","database":"d","latest":true,"point":"x","target_database":"c"}`, 400, "exactly one"},
		{"restore as files to a mark with a line break", "POST", "/api/v1/restores", `{"instance":"sql1","database":"d","mark":"m\nGO","to_directory":"/restore"}`, 400, "restore it to an instance"},
		{"restore with nothing to restore", "POST", "/api/v1/restores", `{"instance":"sql1","database":"d","latest":true,"target_database":"c"}`, 422, "no full backup"},
		{"discover an unknown instance", "POST", "/api/v1/instances/nope/discover", ``, 404, "not registered"},
		{"unknown job", "GET", "/api/v1/jobs/j1", ``, 404, "no job"},
		{"delete of no recovery point", "POST", "/api/v1/recovery-points/delete", `{"recovery_points":[]}`, 400, "at least one"},
		{"delete of an unknown recovery point", "POST", "/api/v1/recovery-points/delete", `{"recovery_points":["rp-nope"]}`, 404, `no recovery point \"rp-nope\"`},
		{"DELETE of an unknown recovery point", "DELETE", "/api/v1/recovery-points/rp-nope", ``, 404, "no recovery point"},
		{"DELETE with a bad flag", "DELETE", "/api/v1/recovery-points/rp-nope?with_dependents=maybe", ``, 400, "want true or false"},
		{"undelete with dependents", "POST", "/api/v1/recovery-points/undelete", `{"recovery_points":["x"],"with_dependents":true}`, 400, "is for a delete"},
		{"undelete of an unknown recovery point", "POST", "/api/v1/recovery-points/undelete", `{"recovery_points":["rp-nope"]}`, 404, "gone for good"},
		{"listing with a bad deleted", "GET", "/api/v1/recovery-points?deleted=yes", ``, 400, "want true or false"},
		{"protect deleting data", "POST", "/api/v1/protect", `{"instance":"sql1","database":"d","delete_data":true}`, 400, "for unprotect"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := e.do(t, c.method, c.path, c.body, "")
			if status != c.status || !strings.Contains(body, c.want) {
				t.Errorf("got %d %s, want %d containing %q", status, body, c.status, c.want)
			}
		})
	}
	// empty lists are [], not null
	for _, p := range []string{"/api/v1/instances", "/api/v1/databases", "/api/v1/jobs", "/api/v1/recovery-points"} {
		if status, body := e.do(t, "GET", p, "", ""); status != 200 || strings.TrimSpace(body) != "[]" {
			t.Errorf("GET %s: %d %s, want 200 []", p, status, body)
		}
	}
}

// TestCredentialsStaySealed: the connection string travels sealed and no
// answer of the API contains it.
func TestCredentialsStaySealed(t *testing.T) {
	e := newEnv(t, "")
	const dsn = "sqlserver://sa:S3cret-Pa55@127.0.0.1:1433?encrypt=disable"
	status, body := e.do(t, "POST", "/api/v1/instances", `{"name":"sql1","dsn":"`+dsn+`"}`, "")
	if status != 202 || strings.Contains(body, "S3cret") {
		t.Fatalf("add: %d %s", status, body)
	}
	m := e.next(t, "a registration event")
	var ev cofferv1.InstanceAddRequested
	if err := m.Decode(&ev); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(m.Data, []byte("S3cret")) || len(ev.GetSealedDsn()) == 0 {
		t.Fatal("the registration event carries the password in the clear")
	}
	// as discovery would record it
	if _, err := e.cat.Bucket(cofferv1.BucketInstances).Put(t.Context(), catalog.Key("sql1"),
		&cofferv1.Instance{Name: "sql1", SealedDsn: ev.GetSealedDsn(), Healthy: true}); err != nil {
		t.Fatal(err)
	}
	status, body = e.do(t, "GET", "/api/v1/instances", "", "")
	var list []map[string]any
	if err := json.Unmarshal([]byte(body), &list); err != nil || status != 200 || len(list) != 1 {
		t.Fatalf("list: %d %s", status, body)
	}
	for k := range list[0] {
		if strings.Contains(strings.ToLower(k), "dsn") {
			t.Errorf("the instance list has a field %q", k)
		}
	}
}

func TestToken(t *testing.T) {
	e := newEnv(t, "t0ken")
	if status, _ := e.do(t, "GET", "/api/v1/jobs", "", ""); status != 401 {
		t.Errorf("no token: %d, want 401", status)
	}
	if status, _ := e.do(t, "GET", "/api/v1/jobs", "", "wrong"); status != 401 {
		t.Errorf("wrong token: %d, want 401", status)
	}
	if status, _ := e.do(t, "GET", "/api/v1/jobs", "", "t0ken"); status != 200 {
		t.Errorf("right token: %d, want 200", status)
	}
	if status, _ := e.do(t, "GET", "/healthz", "", ""); status != 200 {
		t.Errorf("healthz: %d, want 200 without a token", status)
	}
}

// TestPolicies: an invalid policy is refused naming every problem; a valid
// one is accepted; a policy in use cannot be deleted.
func TestPolicies(t *testing.T) {
	e := newEnv(t, "")
	status, body := e.do(t, "PUT", "/api/v1/policies/bad", `{"full":{"frequency":"weekly","hour":30},"log":{"every":"30s"},"retention":{"full":"3d"}}`, "")
	if status != 400 {
		t.Fatalf("invalid policy: %d %s", status, body)
	}
	for _, want := range []string{"full.days", "full.hour", "log.every", "retention.full: 3d is shorter", "retention.log"} {
		if !strings.Contains(body, want) {
			t.Errorf("the refusal does not name %q: %s", want, body)
		}
	}
	status, body = e.do(t, "PUT", "/api/v1/policies/gold", `{"full":{"frequency":"daily","hour":1},"log":{"every":"5m"},"retention":{"full":"14d","log":"14d"},"compression":true}`, "")
	if status != 202 {
		t.Fatalf("valid policy: %d %s", status, body)
	}
	// "compression" as policies said it before it named one
	if !strings.Contains(body, `"compression": "zstd"`) {
		t.Errorf("a policy with compression true: %s; want it stored as zstd", body)
	}
	if status, body := e.do(t, "PUT", "/api/v1/policies/fast", `{"full":{"frequency":"daily","hour":1},"retention":{"full":"14d"},"compression":"s2"}`, ""); status != 202 || !strings.Contains(body, `"compression": "s2"`) {
		t.Errorf("a policy with s2: %d %s", status, body)
	}
	if status, body := e.do(t, "PUT", "/api/v1/policies/odd", `{"full":{"frequency":"daily","hour":1},"retention":{"full":"14d"},"compression":"lz4"}`, ""); status != 400 || !strings.Contains(body, `compression: \"lz4\"`) {
		t.Errorf("a policy with lz4: %d %s; want 400 naming the compression", status, body)
	}
	if status, body := e.do(t, "GET", "/api/v1/policies/default", "", ""); status != 200 || !strings.Contains(body, `"every": "15m0s"`) {
		t.Errorf("default policy: %d %s", status, body)
	}
	if status, _ := e.do(t, "DELETE", "/api/v1/policies/default", "", ""); status != 400 {
		t.Errorf("delete default: %d, want 400", status)
	}
	// in use
	e.cat.Bucket(cofferv1.BucketProtected).Put(t.Context(), catalog.Key("sql1", "Sales"), &cofferv1.ProtectedItem{
		Database: &cofferv1.DatabaseRef{Instance: "sql1", Database: "Sales"}, Policy: "gold", State: cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED})
	if status, body := e.do(t, "DELETE", "/api/v1/policies/gold", "", ""); status != 409 || !strings.Contains(body, "sql1/Sales") {
		t.Errorf("delete in use: %d %s, want 409 naming sql1/Sales", status, body)
	}
}
