package gateway_test

import (
	"encoding/json"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/gateway"
)

// TestAddInstanceTest: an instance added with test is connected to and
// reported, healthy or with its problem and fix, and nothing is
// registered: the first registration the bus carries is the one made
// after the tests, without test.
func TestAddInstanceTest(t *testing.T) {
	e := newEnv(t, "")
	sim := mssqlsim.New(mssqlsim.Config{SAPassword: "Sim-Pa55!"})
	addr, err := sim.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	sim.AddLogin("reader", "Reader-Pa55!", false)
	dsn := func(user, password, host string) string {
		return (&url.URL{Scheme: "sqlserver", User: url.UserPassword(user, password), Host: host, RawQuery: "encrypt=disable"}).String()
	}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name, dsn, reason, fix string
		healthy                bool
	}{
		{"sysadmin", dsn("sa", "Sim-Pa55!", addr), "", "", true},
		{"wrong password", dsn("sa", "wrong-Pa55!", addr), "Login failed", "password", false},
		{"not sysadmin", dsn("reader", "Reader-Pa55!", addr), "not sysadmin", "ALTER SERVER ROLE sysadmin", false},
		{"nothing listens", dsn("sa", "Sim-Pa55!", nowhere), "cannot connect", "firewall", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := json.Marshal(gateway.AddInstance{Name: "sql1", DSN: tc.dsn, Test: true})
			status, out := e.do(t, "POST", "/api/v1/instances", string(body), "")
			var got gateway.Instance
			if err := json.Unmarshal([]byte(out), &got); status != 200 || err != nil {
				t.Fatalf("test: %d %s; want 200", status, out)
			}
			if got.Healthy != tc.healthy || !strings.Contains(got.Reason, tc.reason) || !strings.Contains(got.Fix, tc.fix) {
				t.Errorf("got healthy %v, reason %q, fix %q; want %v, %q, %q", got.Healthy, got.Reason, got.Fix, tc.healthy, tc.reason, tc.fix)
			}
			if tc.healthy && (got.ServerName == "" || got.Version == "" || !got.Sysadmin || got.Registration != "") {
				t.Errorf("got %+v; want the server's name and version, sysadmin, and no registration", got)
			}
			if strings.Contains(out, "Pa55") {
				t.Errorf("the answer shows the password: %s", out)
			}
		})
	}

	body, _ := json.Marshal(gateway.AddInstance{Name: "sql2", DSN: dsn("sa", "Sim-Pa55!", addr)})
	if status, out := e.do(t, "POST", "/api/v1/instances", string(body), ""); status != 202 {
		t.Fatalf("add: %d %s", status, out)
	}
	m := e.next(t, "the registration of sql2")
	var ev cofferv1.InstanceAddRequested
	if err := m.Decode(&ev); err != nil || m.Subject != cofferv1.SubjectInstanceAddRequested {
		t.Fatalf("first event %s: %v; want the registration of sql2", m.Subject, err)
	}
	if ev.GetName() != "sql2" {
		t.Errorf("the first registration is %s's; want sql2's: a test registered something", ev.GetName())
	}
}
