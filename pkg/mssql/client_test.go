package mssql_test

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
)

func startSim(t *testing.T) (*mssqlsim.Instance, *mssql.Client, string) {
	t.Helper()
	dir := t.TempDir()
	inst := mssqlsim.New(mssqlsim.Config{SAPassword: "Pw-1", BackupDir: dir, DefaultPages: 128, DataPath: "/data/"})
	addr, err := inst.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", "Pw-1"), Host: addr, RawQuery: "encrypt=disable"}
	c, err := mssql.Open(u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return inst, c, dir
}

// TestRoundTrip discovers, backs up and restores databases with hostile
// names through the client, as the services will.
func TestRoundTrip(t *testing.T) {
	inst, c, dir := startSim(t)
	names := []string{"Sales", "it's ]odd; ", " Продажи/売上"}
	for _, n := range names {
		if err := inst.CreateDatabase(n, mssqlsim.DatabaseOptions{}); err != nil {
			t.Fatal(err)
		}
		inst.Commit(n, 10)
	}
	srv, err := c.ServerInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !srv.Sysadmin || srv.Version[:3] != "16." || srv.DataPath != "/data/" {
		t.Errorf("server info %+v", srv)
	}
	dbs, err := c.Databases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]mssql.Database{}
	for _, d := range dbs {
		found[d.Name] = d
	}
	if _, ok := found["tempdb"]; ok {
		t.Error("tempdb listed")
	}
	for k, n := range names {
		d, ok := found[n]
		if !ok {
			t.Fatalf("database %q not listed; got %v", n, dbs)
		}
		if d.State != "ONLINE" || d.RecoveryModel != "FULL" || len(d.Files) != 2 || d.LastLogBackupLSN != "" || d.DiffBaseLSN != "" {
			t.Errorf("database %q: %+v", n, d)
		}
		file := filepath.Join(dir, fmt.Sprintf("db%d.bak", k))
		var progress []int
		if err := c.Backup(t.Context(), mssql.BackupRequest{Database: n, Type: mssql.Full, Files: []string{file},
			OnProgress: func(p int) { progress = append(progress, p) }}); err != nil {
			t.Fatal(err)
		}
		if len(progress) == 0 || progress[len(progress)-1] != 100 {
			t.Errorf("progress %v, want it to reach 100", progress)
		}
		hs, err := c.HeaderOnly(t.Context(), []string{file})
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) != 1 || hs[0].BackupType != 1 || hs[0].DatabaseName != n || hs[0].FirstLSN == "" ||
			hs[0].LastLSN <= hs[0].FirstLSN && len(hs[0].LastLSN) == len(hs[0].FirstLSN) || !hs[0].HasChecksums || hs[0].FamilyGUID == "" {
			t.Errorf("header %+v", hs)
		}
		files, err := c.FileList(t.Context(), []string{file})
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 2 || files[0].Logical != n || files[1].Type != "LOG" {
			t.Fatalf("file list %+v", files)
		}
		target := n + " copy]"
		var moves []mssql.Move
		for _, f := range files {
			moves = append(moves, mssql.Move{Logical: f.Logical, Physical: fmt.Sprintf("/data/copy%d_%d", k, f.ID)})
		}
		if err := c.Restore(t.Context(), mssql.RestoreRequest{Database: target, Files: []string{file}, Moves: moves, Recovery: true}); err != nil {
			t.Fatal(err)
		}
		src, _ := inst.ContentHash(n, time.Time{})
		got, err := inst.ContentHash(target, time.Time{})
		if err != nil || got != src {
			t.Fatalf("restored %q: hash %s (%v), want %s", target, got, err, src)
		}
		if err := c.DropDatabase(t.Context(), target); err != nil {
			t.Fatal(err)
		}
		if ok, err := c.DatabaseExists(t.Context(), target); err != nil || ok {
			t.Fatalf("exists after drop: %v %v", ok, err)
		}
	}
}

// TestErrors: SQL Server's cause travels as mssql.Error with 3013 after it.
func TestErrors(t *testing.T) {
	inst, c, dir := startSim(t)
	inst.CreateDatabase("d", mssqlsim.DatabaseOptions{})
	err := c.Backup(t.Context(), mssql.BackupRequest{Database: "d", Type: mssql.Log, Files: []string{filepath.Join(dir, "l.trn")}})
	if got := mssql.Number(err); got != 4214 {
		t.Fatalf("log before full: got %d (%v), want 4214", got, err)
	}
	var e *mssql.Error
	if !asError(err, &e) || len(e.All) != 2 || e.All[1].Number != 3013 {
		t.Fatalf("got %#v, want 4214 then 3013", err)
	}
	// a connection string that does not parse is refused without echoing
	// its password
	_, err = mssql.Open("sqlserver://sa:s3cret@127.0.0.1:1?encrypt=disable&dial+timeout=x")
	if err == nil {
		t.Fatal("a malformed connection string opened")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %q reveals the password", err)
	}
}

// TestAvailabilityGroupState reads each replica's role, synchronization and
// backup preference, as discovery records them for the scheduler.
func TestAvailabilityGroupState(t *testing.T) {
	prim, pc, _ := startSim(t)
	sec, sc, _ := startSim(t)
	if err := prim.CreateDatabase("Orders", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := prim.CreateDatabase("Local", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pc.Backup(t.Context(), mssql.BackupRequest{Database: "Orders", Type: mssql.Full, Files: []string{"orders.bak"}}); err != nil {
		t.Fatal(err)
	}
	ag, err := mssqlsim.NewAvailabilityGroup("ag1", mssqlsim.PreferSecondary, prim, sec)
	if err != nil {
		t.Fatal(err)
	}
	if err := ag.AddDatabase("Orders"); err != nil {
		t.Fatal(err)
	}
	find := func(c *mssql.Client, name string) mssql.Database {
		t.Helper()
		dbs, err := c.Databases(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dbs {
			if d.Name == name {
				return d
			}
		}
		t.Fatalf("database %q not listed", name)
		return mssql.Database{}
	}
	if d := find(pc, "Local"); d.AG != nil {
		t.Errorf("a database in no group has group state %+v", *d.AG)
	}
	p, s := find(pc, "Orders"), find(sc, "Orders")
	if p.AG == nil || s.AG == nil {
		t.Fatalf("group state missing: primary %v, secondary %v", p.AG, s.AG)
	}
	want := mssql.Replica{Group: "ag1", Preference: "SECONDARY", Primary: true, Synchronization: "SYNCHRONIZED", Preferred: false}
	if *p.AG != want {
		t.Errorf("primary: got %+v, want %+v", *p.AG, want)
	}
	want = mssql.Replica{Group: "ag1", Preference: "SECONDARY", Primary: false, Synchronization: "SYNCHRONIZED", Preferred: true}
	if *s.AG != want {
		t.Errorf("secondary: got %+v, want %+v", *s.AG, want)
	}
	if p.GroupDatabaseID == "" || p.GroupDatabaseID != s.GroupDatabaseID {
		t.Errorf("group database ids: primary %q, secondary %q, want one id", p.GroupDatabaseID, s.GroupDatabaseID)
	}

	// a secondary that stops synchronizing is no longer preferred: the
	// primary takes the logs
	ag.SetSynchronization(sec, mssqlsim.NotSynchronizing)
	if p, s := find(pc, "Orders"), find(sc, "Orders"); !p.AG.Preferred || s.AG.Preferred || s.AG.Synchronization != "NOT SYNCHRONIZING" {
		t.Errorf("after the secondary stopped: primary %+v, secondary %+v", *p.AG, *s.AG)
	}
}
