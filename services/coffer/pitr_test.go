package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/services/gateway"
)

// history builds days of backups of one database under a workload with
// the fake clock: a full every day at 00:00, a differential at 12:00, a
// log every five minutes, and a transaction every minute (at :30).
func history(t *testing.T, h *harness, clk *fakeClock, db string, start time.Time, days int) {
	t.Helper()
	h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{})
	h.sim.Commit(db, 4)
	h.register(db)
	h.setPolicy("pitr", `{"full":{"frequency":"daily","hour":0},"differential":{"days":[0,1,2,3,4,5,6],"hour":12},
		"log":{"every":"5m"},"retention":{"full":"7d","differential":"7d","log":"7d"}}`)
	h.mustCoffer("protect", "sql1/"+db, "--policy", "pitr")
	ctx := context.Background()
	h.waitIdle(db)
	end := start.Add(time.Duration(days) * 24 * time.Hour)
	for now := start.Add(5 * time.Minute); !now.After(end); now = now.Add(5 * time.Minute) {
		for k := 4; k >= 0; k-- {
			clk.Set(now.Add(-time.Duration(k)*time.Minute - 30*time.Second))
			if _, err := h.sim.Commit(db, 2); err != nil {
				t.Fatal(err)
			}
		}
		clk.Set(now)
		if err := h.run.scheduler.Tick(ctx, now); err != nil {
			t.Fatalf("tick at %v: %v", now, err)
		}
		h.waitIdle(db)
	}
}

// TestRandomPointsInTime builds two days of history under a running
// workload, then restores to 50 random seconds across the restorable
// range, each to a new name, and compares every restored database with
// the source as of that second.
func TestRandomPointsInTime(t *testing.T) {
	if testing.Short() {
		t.Skip("two simulated days and 50 restores take a while")
	}
	t.Parallel() // beside the other long tests (make test)
	h, clk, start := clockedHarness(t)
	const db = "Orders"
	history(t, h, clk, db, start, 2)

	ranges := cofferJSON[[]gateway.RecoveryRange](h, "rp", "ranges", "sql1/"+db)
	if len(ranges) != 1 {
		t.Fatalf("restorable ranges %+v, want one unbroken range", ranges)
	}
	r := ranges[0]
	if r.From.After(start.Add(time.Minute)) || r.To.Before(start.Add(48*time.Hour)) {
		t.Fatalf("range %v to %v, want the whole two days", r.From, r.To)
	}
	rng := rand.New(rand.NewPCG(5, 2026))
	span := int64(r.To.Sub(r.From) / time.Second)
	for k := range 50 {
		at := r.From.Truncate(time.Second).Add(time.Duration(1+rng.Int64N(span)) * time.Second)
		if at.After(r.To) {
			at = r.To
		}
		target := fmt.Sprintf("Orders at %s", at.Format("0102-150405"))
		h.mustCoffer("restore", "sql1/"+db, "--time", at.Format(time.RFC3339), "--as", target, "--wait")
		want, err := h.sim.ContentHash(db, at)
		if err != nil {
			t.Fatal(err)
		}
		got, err := h.sim.ContentHash(target, time.Time{})
		if err != nil {
			t.Fatalf("restore %d to %v: %v", k, at, err)
		}
		if got != want {
			t.Errorf("restore %d to %v: content hash %s, want the source's as of then %s", k, at, got, want)
		}
	}
}

// TestRestoreRefusals: a moment before the first full, after the last
// log, in a gap of the chain, or inside bulk-logged changes is refused
// before anything moves, with the reason; --dry-run prints the plan.
func TestRestoreRefusals(t *testing.T) {
	h, clk, start := clockedHarness(t)
	const db = "Orders"
	history(t, h, clk, db, start, 0)
	// an hour of logs, then a break: a log backup coffer did not take
	tick := func(now time.Time) { h.tickAt(clk, db, now, 30*time.Second) }
	now := start
	for range 12 {
		now = now.Add(5 * time.Minute)
		tick(now)
	}
	clk.Set(now.Add(2 * time.Minute))
	h.sim.Commit(db, 2)
	h.exec("BACKUP LOG [Orders] TO DISK = @p1", filepath.Join(t.TempDir(), "elsewhere.trn"))
	for range 3 {
		now = now.Add(5 * time.Minute)
		tick(now)
	}
	// bulk-logged changes inside the next log
	h.exec("ALTER DATABASE [Orders] SET RECOVERY BULK_LOGGED")
	clk.Set(now.Add(time.Minute))
	h.sim.BulkLoad(db, 4)
	now = now.Add(5 * time.Minute)
	tick(now)
	bulkEnd := now
	now = now.Add(5 * time.Minute)
	tick(now)
	ranges := cofferJSON[[]gateway.RecoveryRange](h, "rp", "ranges", "sql1/"+db)
	if len(ranges) != 2 || !strings.Contains(ranges[0].Break, "outside coffer") {
		t.Fatalf("ranges %+v, want two, the first ending at the foreign log", ranges)
	}
	before := len(h.jobs())
	for _, c := range []struct {
		name string
		at   time.Time
		want string
	}{
		{"before the first full", start.Add(-time.Hour), "before the first full backup"},
		{"after the last log", now.Add(time.Hour), "after the last log backup"},
		{"in the gap", ranges[0].To.Add(time.Minute), "falls in a break of the backup chain"},
		{"inside bulk-logged changes", bulkEnd.Add(-2 * time.Minute), "bulk-logged changes"},
	} {
		out, err := h.coffer("restore", "sql1/"+db, "--time", c.at.Format(time.RFC3339), "--as", "Refused", "--wait")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v\n%s\nwant a refusal saying %q", c.name, err, out, c.want)
		}
	}
	if n := len(h.jobs()); n != before {
		t.Errorf("refused restores started %d jobs", n-before)
	}
	exists, err := h.sim.ContentHash("Refused", time.Time{})
	if err == nil {
		t.Errorf("a refused restore created the database (hash %s)", exists)
	}

	// a dry run prints the plan and runs nothing
	at := ranges[1].To.Add(-90 * time.Second)
	out := h.mustCoffer("restore", "sql1/"+db, "--time", at.Format(time.RFC3339), "--as", "Planned", "--dry-run")
	if !strings.Contains(out, "full") || !strings.Contains(out, "STOPAT") || !strings.Contains(out, "the database will be as of") {
		t.Errorf("dry run printed:\n%s", out)
	}
	if n := len(h.jobs()); n != before {
		t.Errorf("a dry run started a job")
	}
}

// TestOverwriteWithTailLog: restoring over the original database first
// takes a tail-log backup, so no transaction committed before the restore
// began is lost: applied when the restore goes to the latest moment, kept
// as a recovery point when it goes to an earlier one.
func TestOverwriteWithTailLog(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	const db = "Till"
	h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{})
	h.sim.Commit(db, 4)
	h.register(db)
	h.mustCoffer("protect", "sql1/"+db)
	logs := func() []gateway.RecoveryPoint {
		var out []gateway.RecoveryPoint
		for _, rp := range cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db) {
			if rp.Type == "log" {
				out = append(out, rp)
			}
		}
		return out
	}
	h.eventually("the first full", func() bool {
		return len(cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)) == 1
	})
	h.sim.Commit(db, 3)
	h.mustCoffer("backup", "sql1/"+db, "--type", "log", "--wait")
	first := h.mustCoffer("rp", "list", "sql1/"+db)
	// committed after the last log: only a tail-log backup has these
	h.sim.Commit(db, 3)
	before, err := h.sim.ContentHash(db, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	h.mustCoffer("restore", "sql1/"+db, "--latest", "--as", db, "--overwrite", "--wait")
	if got, err := h.sim.ContentHash(db, time.Time{}); err != nil || got != before {
		t.Fatalf("after overwriting with the latest backups: content %s (%v), want %s as before the restore: transactions were lost\n%s", got, err, before, first)
	}
	h.eventually("the tail-log recovery point", func() bool { return len(logs()) == 2 })

	// an overwrite to an earlier point keeps what it replaces as a
	// recovery point
	h.sim.Commit(db, 5)
	before, err = h.sim.ContentHash(db, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	full := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)[0]
	h.mustCoffer("restore", "sql1/"+db, "--point", full.ID, "--as", db, "--overwrite", "--wait")
	h.eventually("the second tail-log recovery point", func() bool { return len(logs()) == 3 })
	tail := logs()[2]
	h.mustCoffer("restore", "sql1/"+db, "--point", tail.ID, "--as", "Till as replaced", "--wait")
	if got, err := h.sim.ContentHash("Till as replaced", time.Time{}); err != nil || got != before {
		t.Errorf("the database as it was replaced: content %s (%v), want %s", got, err, before)
	}
}

// TestRestoreAsFiles: the backup files a restore as files writes, applied
// with the script it prints on another SQL Server, give the database as
// of the moment asked for.
func TestRestoreAsFiles(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	const db = "Filed ]'"
	h.protected(db)
	h.sim.Commit(db, 3)
	h.mustCoffer("backup", "sql1/"+db, "--type", "log", "--wait")
	h.sim.Commit(db, 3)
	at := time.Now().UTC().Truncate(time.Millisecond)
	h.eventually("the clock to pass the moment", func() bool { return time.Now().After(at.Add(2 * time.Millisecond)) })
	h.sim.Commit(db, 3)
	h.mustCoffer("backup", "sql1/"+db, "--type", "log", "--wait")
	want, err := h.sim.ContentHash(db, at)
	if err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "restore files")
	out := h.mustCoffer("restore", "sql1/"+db, "--time", at.Format(time.RFC3339Nano), "--to-dir", dir, "--as", "Copied", "--wait")
	script, err := os.ReadFile(filepath.Join(dir, "restore.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, string(script)) {
		t.Errorf("the printed script is not restore.sql:\n%s", out)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 { // full, two logs, restore.sql
		t.Errorf("%d files in %s, want 3 backups and restore.sql", len(entries), dir)
	}

	// another SQL Server applies them with the script
	other := mssqlsim.New(mssqlsim.Config{SAPassword: "Sim-Pa55!", ServerName: "OTHER"})
	addr, err := other.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	conn, err := sql.Open("sqlserver", (&url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", "Sim-Pa55!"), Host: addr, RawQuery: "encrypt=disable"}).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, stmt := range strings.Split(string(script), "\nGO\n") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := conn.ExecContext(t.Context(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if got, err := other.ContentHash("Copied", time.Time{}); err != nil || got != want {
		t.Errorf("applied on another server: content %s (%v), want the source's as of %v: %s", got, err, at, want)
	}

	// never over existing files; a refused job leaves them as they were
	if _, err := h.coffer("restore", "sql1/"+db, "--latest", "--to-dir", dir, "--wait"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("restoring as files into a directory that has them: %v", err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "restore.sql")); string(again) != string(script) {
		t.Error("a refused restore as files changed restore.sql")
	}
}

// TestRestoreToMark: a restore stops at a marked transaction, including
// it or just before it; a mark no backup holds is refused.
func TestRestoreToMark(t *testing.T) {
	h, clk, start := clockedHarness(t)
	const db = "Marked"
	history(t, h, clk, db, start, 0)
	ctx := context.Background()
	clk.Set(start.Add(time.Minute))
	h.sim.Commit(db, 2)
	markAt := start.Add(2 * time.Minute)
	clk.Set(markAt)
	if _, err := h.sim.Mark(db, "before upgrade: it's ]"); err != nil {
		t.Fatal(err)
	}
	clk.Set(start.Add(3 * time.Minute))
	h.sim.Commit(db, 2)
	// a second transaction of the same name in the same log backup: the
	// restore goes to the latest, which STOPATMARK alone would pass by
	markAt = start.Add(4 * time.Minute)
	clk.Set(markAt)
	if _, err := h.sim.Mark(db, "before upgrade: it's ]"); err != nil {
		t.Fatal(err)
	}
	clk.Set(start.Add(4*time.Minute + 30*time.Second))
	h.sim.Commit(db, 2)
	clk.Set(start.Add(5 * time.Minute))
	if err := h.run.scheduler.Tick(ctx, start.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	h.eventually("the log backup", func() bool {
		for _, rp := range cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db) {
			if rp.Type == "log" {
				return true
			}
		}
		return false
	})
	for _, c := range []struct {
		as     string
		before bool
		at     time.Time
	}{{"At mark", false, markAt}, {"Before mark", true, markAt.Add(-time.Millisecond)}} {
		args := []string{"restore", "sql1/" + db, "--mark", "before upgrade: it's ]", "--as", c.as, "--wait"}
		if c.before {
			args = append(args, "--before-mark")
		}
		h.mustCoffer(args...)
		want, _ := h.sim.ContentHash(db, c.at)
		if got, err := h.sim.ContentHash(c.as, time.Time{}); err != nil || got != want {
			t.Errorf("%s: content %s (%v), want %s", c.as, got, err, want)
		}
	}
	if _, err := h.coffer("restore", "sql1/"+db, "--mark", "nope", "--as", "X", "--wait"); err == nil || !strings.Contains(err.Error(), `no log backup holds a transaction marked "nope"`) {
		t.Errorf("an unknown mark: %v", err)
	}
}

// TestRestoreToAnotherInstance: a restore to another registered instance
// puts the files in the paths given (or the instance's defaults), under
// the logical names the backup lists.
func TestRestoreToAnotherInstance(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	const db = "Moved"
	h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{})
	h.sim.Commit(db, 4)
	h.register(db)
	other := mssqlsim.New(mssqlsim.Config{SAPassword: "Sim-Pa55!", ServerName: "OTHER", DataPath: "/srv/other/data/", LogPath: "/srv/other/log/"})
	addr, err := other.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	h.mustCoffer("instance", "add", "sql2", "--dsn", (&url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", "Sim-Pa55!"), Host: addr, RawQuery: "encrypt=disable"}).String())
	h.mustCoffer("protect", "sql1/"+db)
	h.eventually("the first full", func() bool {
		return len(cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)) == 1
	})
	rp := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)[0]
	want, _ := h.sim.ContentHash(db, *rp.Start)

	files := func(name string) map[string]string {
		t.Helper()
		conn, err := sql.Open("sqlserver", (&url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", "Sim-Pa55!"), Host: addr, RawQuery: "encrypt=disable"}).String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		rows, err := conn.QueryContext(t.Context(), "SELECT mf.name, mf.physical_name FROM sys.master_files mf JOIN sys.databases d ON d.database_id = mf.database_id WHERE d.name = @p1", name)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]string{}
		for rows.Next() {
			var l, p string
			rows.Scan(&l, &p)
			out[l] = p
		}
		return out
	}
	h.mustCoffer("restore", "sql1/"+db, "--latest", "--target", "sql2", "--as", "Moved copy", "--wait")
	if got, err := other.ContentHash("Moved copy", time.Time{}); err != nil || got != want {
		t.Errorf("restored on sql2: content %s (%v), want %s", got, err, want)
	}
	for logical, path := range files("Moved copy") {
		if !strings.HasPrefix(path, "/srv/other/data/") && !strings.HasPrefix(path, "/srv/other/log/") {
			t.Errorf("file %s at %s, want the target instance's default paths", logical, path)
		}
	}
	h.mustCoffer("restore", "sql1/"+db, "--latest", "--target", "sql2", "--as", "Placed", "--data-path", "/mnt/fast/", "--log-path", "/mnt/log/", "--wait")
	got := files("Placed")
	if len(got) != 2 {
		t.Fatalf("files of the restored database: %v", got)
	}
	for logical, path := range got {
		if !strings.HasPrefix(path, "/mnt/fast/") && !strings.HasPrefix(path, "/mnt/log/") {
			t.Errorf("file %s at %s, want the paths given", logical, path)
		}
	}
}

// TestRestoreNoRecovery: --norecovery leaves the database RESTORING, ready
// for more logs; RESTORE ... WITH RECOVERY then brings it online as of
// the point.
func TestRestoreNoRecovery(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	const db = "Pending"
	h.protected(db)
	h.sim.Commit(db, 3)
	h.mustCoffer("backup", "sql1/"+db, "--type", "log", "--wait")
	rps := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)
	want, _ := h.sim.ContentHash(db, *rps[1].Finish)
	h.mustCoffer("restore", "sql1/"+db, "--latest", "--as", "Pending copy", "--norecovery", "--wait")
	if _, err := h.sim.ContentHash("Pending copy", time.Time{}); err == nil || !strings.Contains(err.Error(), "in the middle of a restore") {
		t.Fatalf("after --norecovery: %v, want the database RESTORING", err)
	}
	h.exec("RESTORE DATABASE [Pending copy] WITH RECOVERY")
	if got, err := h.sim.ContentHash("Pending copy", time.Time{}); err != nil || got != want {
		t.Errorf("after WITH RECOVERY: %s (%v), want %s", got, err, want)
	}
}
