package discovery_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// registered registers inst as SQL01 and waits for its first listing.
func registered(t *testing.T, e *env, addr string) *cofferv1.Instance {
	t.Helper()
	e.register("SQL01", dsn("sa", saPassword, addr))
	return e.instance("SQL01", func(r *cofferv1.Instance) bool { return r.GetDiscoveredAt() != nil })
}

// TestNotOnlineAndAutoClosed discovers an instance with an offline
// database and one AUTO_CLOSE shut down. sys.databases shows NULL for
// their settings: the instance stays healthy, the settings already known
// are kept rather than reported as changed, and discovery starts no
// closed database.
func TestNotOnlineAndAutoClosed(t *testing.T) {
	e := newEnv(t)
	inst, addr := newSim(t)
	for _, n := range []string{"Sales", "Sleepy", "Gone"} {
		if err := inst.CreateDatabase(n, mssqlsim.DatabaseOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := inst.SetRecoveryModel("Gone", mssqlsim.Simple); err != nil {
		t.Fatal(err)
	}
	rec := registered(t, e, addr)
	if !rec.GetHealthy() {
		t.Fatalf("instance %v; want healthy", rec)
	}
	// Known while open, then closed and taken offline.
	if err := inst.SetAutoClose("Sleepy", true); err != nil {
		t.Fatal(err)
	}
	if err := inst.SetOffline("Gone", true); err != nil {
		t.Fatal(err)
	}
	wakes0, _, _ := inst.Wakes("Sleepy")
	for range 3 {
		if err := e.svc.DiscoverAll(t.Context()); err != nil {
			t.Fatalf("DiscoverAll: %v", err)
		}
		if err := e.svc.PollAll(t.Context()); err != nil {
			t.Fatalf("PollAll: %v", err)
		}
	}
	if n, closed, _ := inst.Wakes("Sleepy"); n != wakes0 || !closed {
		t.Errorf("discovery started Sleepy %d times (closed %v); want 0, still closed", n-wakes0, closed)
	}
	rec = e.instance("SQL01", func(*cofferv1.Instance) bool { return true })
	if !rec.GetHealthy() || rec.GetReason() != "" {
		t.Errorf("instance %v; want healthy without reason", rec)
	}
	inv := e.inventory("SQL01")
	if d := inv["Sleepy"]; d.GetState() != "ONLINE" || d.GetRecoveryModel() != "FULL" || d.GetCollation() == "" || d.GetRecoveryForkGuid() == "" {
		t.Errorf("Sleepy in the inventory: %v; want ONLINE with its known settings and fork", d)
	}
	if d := inv["Gone"]; d.GetState() != "OFFLINE" || d.GetRecoveryModel() != "SIMPLE" {
		t.Errorf("Gone in the inventory: %v; want OFFLINE, still SIMPLE", d)
	}
	ch := changed(e)
	if len(ch) != 1 || ch[0].GetDatabase().GetName() != "Gone" || ch[0].GetDatabase().GetRecoveryModel() != "SIMPLE" {
		t.Errorf("DatabaseChanged %v; want one, Gone going OFFLINE with its recovery model kept", ch)
	}

	// A database first seen closed is listed, with what is known.
	if err := inst.CreateDatabase("Dormant", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := inst.SetAutoClose("Dormant", true); err != nil {
		t.Fatal(err)
	}
	d0, _, _ := inst.Wakes("Dormant")
	if err := e.svc.PollAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := e.inventory("SQL01")["Dormant"]; d.GetState() != "ONLINE" || len(d.GetFiles()) != 2 {
		t.Errorf("Dormant in the inventory: %v; want ONLINE with its files", d)
	}
	if n, _, _ := inst.Wakes("Dormant"); n != d0 {
		t.Errorf("discovery started Dormant %d times; want 0", n-d0)
	}
}

// TestOneUnreadableDatabase discovers an instance where one database's
// files cannot be read: the others are discovered, the instance is
// connected and healthy, and its reason names the database and what
// failed (not "cannot connect").
func TestOneUnreadableDatabase(t *testing.T) {
	e := newEnv(t)
	inst, addr := newSim(t)
	for _, n := range []string{"Before", "Broken", "After"} {
		if err := inst.CreateDatabase(n, mssqlsim.DatabaseOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := inst.DamageCatalog("Broken"); err != nil {
		t.Fatal(err)
	}
	rec := registered(t, e, addr)
	if !rec.GetHealthy() {
		t.Errorf("instance %v; want healthy (connected, one database unreadable)", rec)
	}
	if r := rec.GetReason(); !strings.Contains(r, "[Broken]") || !strings.Contains(r, "files") || strings.Contains(r, "cannot connect") {
		t.Errorf("reason %q; want it to name [Broken] and its files", r)
	}
	inv := e.inventory("SQL01")
	for _, n := range []string{"Before", "After", "master"} {
		if d := inv[n]; d == nil || len(d.GetFiles()) != 2 {
			t.Errorf("%s in the inventory: %v; want it with its files", n, d)
		}
	}
	if inv["Broken"] == nil {
		t.Error("Broken is not in the inventory; want it listed with what could be read")
	}
}

// TestPollIsLight checks what a poll costs an instance of many databases:
// one batch and one row when nothing changed, and that a change is seen
// by the next poll.
func TestPollIsLight(t *testing.T) {
	e := newEnv(t)
	inst, addr := newSim(t)
	for k := range 300 {
		if err := inst.CreateDatabase(fmt.Sprintf("db%03d", k), mssqlsim.DatabaseOptions{Pages: 8}); err != nil {
			t.Fatal(err)
		}
	}
	registered(t, e, addr)
	if err := e.svc.PollAll(t.Context()); err != nil { // the first poll lists once more
		t.Fatal(err)
	}
	before := inst.Stats()
	const polls = 5
	for range polls {
		if err := e.svc.PollAll(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	after := inst.Stats()
	if got := after.Batches - before.Batches; got != polls {
		t.Errorf("%d polls of an unchanged instance ran %d batches; want %d", polls, got, polls)
	}
	if got := after.RowsSent - before.RowsSent; got != polls {
		t.Errorf("%d polls of an unchanged instance sent %d rows; want %d", polls, got, polls)
	}
	if err := inst.CreateDatabase("Fresh", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.PollAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if e.inventory("SQL01")["Fresh"] == nil {
		t.Error("the poll after CREATE DATABASE did not discover it")
	}
}
