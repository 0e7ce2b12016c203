package discovery_test

import (
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/telemetry/telemetrytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Names SQL Server allows and careless code breaks on.
var hostileNames = []string{"Sales", "odd]name", "it's", "trailing ", "Продажи", "売上 ]'; x"}

func TestRegisterDiscoverChangeDrop(t *testing.T) {
	e := newEnv(t)
	inst, addr := newSim(t)
	for _, n := range hostileNames {
		if err := inst.CreateDatabase(n, mssqlsim.DatabaseOptions{}); err != nil {
			t.Fatalf("create %q: %v", n, err)
		}
	}
	conn := dsn("sa", saPassword, addr)
	added := e.register("SQL01", conn)

	rec := e.instance("SQL01", func(r *cofferv1.Instance) bool { return r.GetDiscoveredAt() != nil })
	if rec.GetRegistrationId() != added {
		t.Errorf("registration_id %q; want the registration's event id %q", rec.GetRegistrationId(), added)
	}
	if !rec.GetHealthy() || !rec.GetSysadmin() || rec.GetReason() != "" || rec.GetFix() != "" {
		t.Errorf("instance after registration: %v; want healthy sysadmin without reason", rec)
	}
	if rec.GetServerName() != "SIMSQL" || !strings.HasPrefix(rec.GetVersion(), "16.") || rec.GetRegisteredAt() == nil {
		t.Errorf("instance server fields: %v", rec)
	}
	if plain, err := e.sealer.Open(rec.GetSealedDsn(), "SQL01"); err != nil || string(plain) != conn {
		t.Errorf("sealed_dsn opens to %q, %v; want the registered connection string", plain, err)
	}
	assertNoSecret(t, "instance record", recordText(rec), saPassword)

	want := append([]string{"master", "model", "msdb"}, hostileNames...)
	inv := e.inventory("SQL01")
	if got := slices.Sorted(maps.Keys(inv)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("inventory holds %q; want %q", got, want)
	}
	if got := rec.GetDatabaseCount(); int(got) != len(want) {
		t.Errorf("database_count %d; want %d", got, len(want))
	}
	for _, n := range hostileNames {
		d := inv[n]
		if d.GetState() != "ONLINE" || d.GetRecoveryModel() != "FULL" || d.GetSnapshot() || len(d.GetFiles()) == 0 ||
			d.GetCreateDate() == nil || d.GetDatabaseId() <= 4 || d.GetSizeBytes() == 0 {
			t.Errorf("inventory of %q: %v", n, d)
		}
	}

	got := discoveredNames(discovered(e))
	if !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("DatabaseDiscovered for %q; want one each for %q", got, want)
	}
	hs := healthEvents(e)
	if len(hs) != 1 || !hs[0].GetInstance().GetHealthy() || len(hs[0].GetInstance().GetSealedDsn()) != 0 {
		t.Errorf("health events %v; want one, healthy, without the sealed connection string", hs)
	}
	// The registration's discovery is part of the gateway's trace.
	// (The timer's first round, at start, may have looked at it too.)
	process := e.spans.Span(t, "process "+cofferv1.SubjectInstanceAddRequested)
	var child sdktrace.ReadOnlySpan
	for _, sp := range e.spans.Named("discover instance") {
		if sp.Parent().SpanID() == process.SpanContext().SpanID() {
			child = sp
		}
	}
	if child == nil {
		t.Error("no discover instance span under the registration's process span")
	} else {
		telemetrytest.AssertChildOf(t, child, process)
	}

	// A database appears, one changes its recovery model, one is dropped.
	if err := inst.CreateDatabase("New ]DB'", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := inst.SetRecoveryModel("Sales", mssqlsim.Simple); err != nil {
		t.Fatal(err)
	}
	if err := inst.DropDatabase("it's"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DiscoverAll(t.Context()); err != nil {
		t.Fatalf("DiscoverAll: %v", err)
	}
	if got := discoveredNames(discovered(e)); !slices.Contains(got, "New ]DB'") || len(got) != len(want)+1 {
		t.Errorf("DatabaseDiscovered for %q; want one more, for %q", got, "New ]DB'")
	}
	ch := changed(e)
	if len(ch) != 1 || ch[0].GetDatabase().GetName() != "Sales" || ch[0].GetInstance() != "SQL01" ||
		ch[0].GetDatabase().GetRecoveryModel() != "SIMPLE" || ch[0].GetPrevious().GetRecoveryModel() != "FULL" {
		t.Errorf("DatabaseChanged %v; want Sales from FULL to SIMPLE", ch)
	}
	dr := dropped(e)
	if len(dr) != 1 || dr[0].GetDatabase() != "it's" || dr[0].GetInstance() != "SQL01" {
		t.Errorf("DatabaseDropped %v; want it's", dr)
	}
	inv = e.inventory("SQL01")
	if _, ok := inv["it's"]; ok {
		t.Error("dropped database still in the inventory")
	}
	if inv["Sales"].GetRecoveryModel() != "SIMPLE" || inv["New ]DB'"] == nil {
		t.Errorf("inventory after changes: Sales %v, New ]DB' %v", inv["Sales"], inv["New ]DB'"])
	}

	// Nothing changed: nothing is published.
	if err := e.svc.DiscoverAll(t.Context()); err != nil {
		t.Fatalf("DiscoverAll: %v", err)
	}
	if d, c, x := len(discovered(e)), len(changed(e)), len(dropped(e)); d != len(want)+1 || c != 1 || x != 1 {
		t.Errorf("after a discovery without changes: %d discovered, %d changed, %d dropped; want %d, 1, 1", d, c, x, len(want)+1)
	}

	// Dropped and created again under the same name: a drop, then a
	// discovery.
	if err := inst.DropDatabase("Продажи"); err != nil {
		t.Fatal(err)
	}
	if err := inst.CreateDatabase("Продажи", mssqlsim.DatabaseOptions{Recovery: mssqlsim.BulkLogged}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DiscoverAll(t.Context()); err != nil {
		t.Fatalf("DiscoverAll: %v", err)
	}
	dr = dropped(e)
	ds := discovered(e)
	if len(dr) != 2 || dr[1].GetDatabase() != "Продажи" || len(ds) != len(want)+2 || ds[len(ds)-1].GetDatabase().GetName() != "Продажи" {
		t.Errorf("recreated database: drops %v, last discovery %v; want a drop and a discovery of Продажи", dr, ds[len(ds)-1])
	}
	if len(changed(e)) != 1 {
		t.Errorf("recreated database reported as a change")
	}

	// On request.
	if err := inst.CreateDatabase("Requested", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	id := event.ID("discover", "SQL01", "test")
	if err := e.bus.Publish(t.Context(), cofferv1.SubjectDiscoverRequested,
		&cofferv1.DiscoverRequested{Meta: event.Meta(id, "", time.Now()), Instance: "SQL01"}, id); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() bool { return e.inventory("SQL01")["Requested"] != nil },
		func() string { return "DiscoverRequested did not discover the new database" })

	// On the timer.
	if err := inst.CreateDatabase("Ticked", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	e.ticks <- time.Now()
	eventually(t, 20*time.Second, func() bool { return e.inventory("SQL01")["Ticked"] != nil },
		func() string { return "a tick did not discover the new database" })

	if hs := healthEvents(e); len(hs) != 1 {
		t.Errorf("%d health events; want 1 (the health never changed)", len(hs))
	}
	assertNoSecret(t, "logs", e.logs.String(), saPassword)
	if strings.Contains(e.logs.String(), "sqlserver://") {
		t.Error("a connection string was logged")
	}
	if !strings.Contains(e.logs.String(), "database discovered") {
		t.Error("the log holds no discovery record; is the logger wired?")
	}
}

func TestUnhealthy(t *testing.T) {
	tests := []struct {
		name     string
		conn     func(inst *mssqlsim.Instance, addr string) (dsn, password string)
		sealAs   string // seal for another instance name
		reason   string
		fix      string
		sysadmin bool
	}{
		{
			name: "wrong password",
			conn: func(_ *mssqlsim.Instance, addr string) (string, string) {
				return dsn("sa", "Wrong-Pw-77", addr), "Wrong-Pw-77"
			},
			reason: "login failed for user 'sa'",
			fix:    "check the user name and password",
		},
		{
			name: "login without sysadmin",
			conn: func(inst *mssqlsim.Instance, addr string) (string, string) {
				inst.AddLogin("op", "Op-Pw-4242", false)
				return dsn("op", "Op-Pw-4242", addr), "Op-Pw-4242"
			},
			reason: "login 'op' is not a member of sysadmin",
			fix:    "run ALTER SERVER ROLE sysadmin ADD MEMBER [op]",
		},
		{
			name: "unreachable",
			conn: func(_ *mssqlsim.Instance, _ string) (string, string) {
				addr := closedPort(t)
				return dsn("sa", saPassword, addr), saPassword
			},
			reason: "cannot connect to 127.0.0.1:",
			fix:    "check the address, that SQL Server listens on TCP and that a firewall allows it",
		},
		{
			name: "sealed for another instance",
			conn: func(_ *mssqlsim.Instance, addr string) (string, string) {
				return dsn("sa", saPassword, addr), saPassword
			},
			sealAs: "OTHER",
			reason: "the stored connection string does not open",
			fix:    "register the instance again",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			inst, addr := newSim(t)
			if err := inst.CreateDatabase("Sales", mssqlsim.DatabaseOptions{}); err != nil {
				t.Fatal(err)
			}
			conn, password := tt.conn(inst, addr)
			if tt.sealAs != "" {
				req := &cofferv1.InstanceAddRequested{Meta: event.Meta("add-1", "", time.Now()), Name: "SQL01",
					SealedDsn: e.sealer.Seal([]byte(conn), tt.sealAs)}
				if err := e.bus.Publish(t.Context(), cofferv1.SubjectInstanceAddRequested, req, "add-1"); err != nil {
					t.Fatal(err)
				}
			} else {
				e.register("SQL01", conn)
			}
			rec := e.instance("SQL01", func(r *cofferv1.Instance) bool { return r.GetReason() != "" })
			t.Logf("reason: %s; fix: %s", rec.GetReason(), rec.GetFix())
			if rec.GetHealthy() || !strings.Contains(rec.GetReason(), tt.reason) || !strings.Contains(rec.GetFix(), tt.fix) {
				t.Errorf("instance: healthy %v, reason %q, fix %q; want unhealthy, reason with %q, fix with %q",
					rec.GetHealthy(), rec.GetReason(), rec.GetFix(), tt.reason, tt.fix)
			}
			hs := healthEvents(e)
			if len(hs) != 1 || hs[0].GetInstance().GetHealthy() || hs[0].GetInstance().GetReason() != rec.GetReason() {
				t.Errorf("health events %v; want one, unhealthy, with the record's reason", hs)
			}
			if inv := e.inventory("SQL01"); len(inv) != 0 {
				t.Errorf("inventory of an instance coffer cannot use: %v", slices.Collect(maps.Keys(inv)))
			}
			if d := discovered(e); len(d) != 0 {
				t.Errorf("%d DatabaseDiscovered for an unhealthy instance", len(d))
			}
			assertNoSecret(t, "instance record", recordText(rec), password)
			assertNoSecret(t, "health event", protojson.Format(hs[0]), password)
			assertNoSecret(t, "logs", e.logs.String(), password)

			// The verdict stands on rediscovery: no new health event.
			if err := e.svc.DiscoverAll(t.Context()); err != nil {
				t.Fatalf("DiscoverAll: %v", err)
			}
			if hs := healthEvents(e); len(hs) != 1 {
				t.Errorf("%d health events after a rediscovery with the same verdict; want 1", len(hs))
			}
		})
	}
}

// TestUnreachableKeepsInventory: an instance that goes away is unhealthy,
// and its databases are not reported dropped.
func TestUnreachableKeepsInventory(t *testing.T) {
	e := newEnv(t)
	inst, addr := newSim(t)
	for _, n := range hostileNames {
		if err := inst.CreateDatabase(n, mssqlsim.DatabaseOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.register("SQL01", dsn("sa", saPassword, addr))
	e.instance("SQL01", func(r *cofferv1.Instance) bool { return r.GetHealthy() })
	before := e.inventory("SQL01")

	inst.Close()
	if err := e.svc.DiscoverAll(t.Context()); err != nil {
		t.Fatalf("DiscoverAll: %v", err)
	}
	rec := e.instance("SQL01", func(*cofferv1.Instance) bool { return true })
	if rec.GetHealthy() || !strings.Contains(rec.GetReason(), "cannot connect to "+addr) || !strings.Contains(rec.GetFix(), "firewall") {
		t.Errorf("instance after its server went away: %v", rec)
	}
	if int(rec.GetDatabaseCount()) != len(before) || rec.GetDiscoveredAt() == nil {
		t.Errorf("instance lost its last discovery: count %d, discovered_at %v", rec.GetDatabaseCount(), rec.GetDiscoveredAt())
	}
	after := e.inventory("SQL01")
	if len(after) != len(before) {
		t.Errorf("inventory has %d databases; want the %d it had", len(after), len(before))
	}
	for n, d := range before {
		if !proto.Equal(d, after[n]) {
			t.Errorf("inventory of %q changed while unreachable", n)
		}
	}
	if d := dropped(e); len(d) != 0 {
		t.Errorf("%d DatabaseDropped for an unreachable instance", len(d))
	}
	hs := healthEvents(e)
	if len(hs) != 2 || !hs[0].GetInstance().GetHealthy() || hs[1].GetInstance().GetHealthy() {
		t.Errorf("health events %v; want healthy, then unhealthy", hs)
	}
	assertNoSecret(t, "logs", e.logs.String(), saPassword)
}

func discoveredNames(ds []*cofferv1.DatabaseDiscovered) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.GetDatabase().GetName())
	}
	slices.Sort(out)
	return out
}

// recordText is every field of an instance record but the sealed
// connection string, as text.
func recordText(r *cofferv1.Instance) string {
	c := proto.CloneOf(r)
	c.SealedDsn = nil
	return protojson.Format(c)
}

func assertNoSecret(t *testing.T, where, text, secret string) {
	t.Helper()
	if strings.Contains(text, secret) {
		t.Errorf("%s holds the password", where)
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
