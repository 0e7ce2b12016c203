package mssql_test

import (
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
)

func byName(t *testing.T, dbs []mssql.Database) map[string]mssql.Database {
	t.Helper()
	out := map[string]mssql.Database{}
	for _, d := range dbs {
		out[d.Name] = d
	}
	return out
}

// TestDatabasesNullSettings lists an offline database and one AUTO_CLOSE
// shut down: sys.databases shows NULL for their settings, which must not
// fail the listing, and the listing must not start the closed one.
func TestDatabasesNullSettings(t *testing.T) {
	inst, c, _ := startSim(t)
	for _, n := range []string{"Sales", "Gone", "Sleepy"} {
		if err := inst.CreateDatabase(n, mssqlsim.DatabaseOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := inst.SetOffline("Gone", true); err != nil {
		t.Fatal(err)
	}
	if err := inst.SetAutoClose("Sleepy", true); err != nil {
		t.Fatal(err)
	}
	dbs, err := c.Databases(t.Context())
	if err != nil {
		t.Fatalf("Databases: %v", err)
	}
	got := byName(t, dbs)
	if d := got["Sales"]; d.RecoveryModel != "FULL" || d.Unknown || d.Closed || d.Problem != "" || d.RecoveryForkGUID == "" {
		t.Errorf("Sales: %+v; want FULL, known, open, with a recovery fork", d)
	}
	if d := got["Gone"]; d.State != "OFFLINE" || !d.Unknown || d.RecoveryModel != "" || d.Problem != "" {
		t.Errorf("Gone: %+v; want OFFLINE with unknown settings and no problem", d)
	}
	if d := got["Sleepy"]; d.State != "ONLINE" || !d.AutoClose || !d.Closed || !d.Unknown || d.Problem != "" || len(d.Files) != 2 {
		t.Errorf("Sleepy: %+v; want ONLINE, auto-closed, unknown settings, its two files", d)
	}
	if n, closed, err := inst.Wakes("Sleepy"); err != nil || n != 0 || !closed {
		t.Errorf("Sleepy after the listing: %d wakes, closed %v, %v; want 0 wakes, still closed", n, closed, err)
	}
	if _, err := c.Fingerprint(t.Context()); err != nil {
		t.Errorf("Fingerprint: %v", err)
	}
	if n, _, _ := inst.Wakes("Sleepy"); n != 0 {
		t.Errorf("Fingerprint started the closed database %d times; want 0", n)
	}
}

// TestDatabasesBadRow lists an instance where one database's files cannot
// be read: the others are listed whole, and the bad one says why.
func TestDatabasesBadRow(t *testing.T) {
	inst, c, _ := startSim(t)
	for _, n := range []string{"Before", "Broken", "After"} {
		if err := inst.CreateDatabase(n, mssqlsim.DatabaseOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := inst.DamageCatalog("Broken"); err != nil {
		t.Fatal(err)
	}
	dbs, err := c.Databases(t.Context())
	if err != nil {
		t.Fatalf("Databases: %v; want the readable databases and a problem on Broken", err)
	}
	got := byName(t, dbs)
	for _, n := range []string{"master", "model", "msdb", "Before", "After"} {
		if d, ok := got[n]; !ok || len(d.Files) != 2 || d.Problem != "" {
			t.Errorf("%s: %+v; want listed with its two files and no problem", n, d)
		}
	}
	if d := got["Broken"]; !strings.Contains(d.Problem, "files") || d.State != "ONLINE" {
		t.Errorf("Broken: %+v; want listed, with a problem that names its files", d)
	}
}

// TestFingerprint checks that the summary moves with a change that
// matters and stays put otherwise.
func TestFingerprint(t *testing.T) {
	inst, c, _ := startSim(t)
	if err := inst.CreateDatabase("Sales", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	f0, err := c.Fingerprint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	inst.Commit("Sales", 5)
	if f, _ := c.Fingerprint(t.Context()); f != f0 {
		t.Errorf("fingerprint moved with a transaction: %+v then %+v", f0, f)
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"create", func() error { return inst.CreateDatabase("New", mssqlsim.DatabaseOptions{}) }},
		{"recovery model", func() error { return inst.SetRecoveryModel("Sales", mssqlsim.Simple) }},
		{"read-only", func() error { return inst.SetReadOnly("Sales", true) }},
		{"offline", func() error { return inst.SetOffline("New", true) }},
		{"auto-close", func() error { return inst.SetAutoClose("Sales", true) }},
		{"drop", func() error { return inst.DropDatabase("New") }},
	}
	prev := f0
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		f, err := c.Fingerprint(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if f == prev {
			t.Errorf("fingerprint did not move with %s: %+v", s.what, f)
		}
		prev = f
	}
}

// TestHistoryNulls reads msdb history holding a row another tool wrote,
// with NULL type, copy-only flag and dates.
func TestHistoryNulls(t *testing.T) {
	inst, c, _ := startSim(t)
	if err := inst.CreateDatabase("Sales", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Backup(t.Context(), mssql.BackupRequest{Database: "Sales", Type: mssql.Full, Files: []string{"s.bak"}}); err != nil {
		t.Fatal(err)
	}
	inst.AddHistory(mssqlsim.HistoryRow{Database: "Sales"})
	hist, err := c.History(t.Context(), "Sales", 10)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if len(hist) != 2 || hist[0].Type != "" || !hist[0].Start.IsZero() || !hist[0].Finish.IsZero() || hist[1].Type != "D" {
		t.Errorf("history %+v; want the NULL row first, empty, then the full", hist)
	}
}
