package mssqlsim

import (
	mssql "github.com/microsoft/go-mssqldb"

	"path/filepath"
	"testing"
	"time"
)

// TestPointInTimeRestore takes a full, a differential and logs under a
// workload, then restores to a second inside a log: the restored database
// must equal the source as of that second.
func TestPointInTimeRestore(t *testing.T) {
	clk := newFakeClock()
	dir := t.TempDir()
	inst, db := startInstance(t, Config{Now: clk.Now, BackupDir: dir})
	exec(t, db, "CREATE DATABASE [Sales]")
	work := func(n int) {
		for k := 0; k < n; k++ {
			clk.Advance(700 * time.Millisecond)
			if _, err := inst.Commit("Sales", 3); err != nil {
				t.Fatal(err)
			}
		}
	}
	work(20)
	exec(t, db, "BACKUP DATABASE [Sales] TO DISK = 'full.bak' WITH CHECKSUM")
	work(20)
	exec(t, db, "BACKUP DATABASE [Sales] TO DISK = 'diff.bak' WITH DIFFERENTIAL")
	work(20)
	exec(t, db, "BACKUP LOG [Sales] TO DISK = 'log1.bak'")
	work(10)
	target := clk.Now().Truncate(time.Second)
	work(20)
	exec(t, db, "BACKUP LOG [Sales] TO DISK = 'log2.bak'")
	work(5)

	want := queryHash(t, db, "Sales", target)
	if now := queryHash(t, db, "Sales", time.Time{}); now == want {
		t.Fatalf("hash as of %v equals the hash now: the workload did not change anything", target)
	}
	exec(t, db, `RESTORE DATABASE [Sales_pit] FROM DISK = 'full.bak' WITH NORECOVERY,
		MOVE 'Sales' TO @p1, MOVE 'Sales_log' TO @p2`, filepath.Join(dir, "pit.mdf"), filepath.Join(dir, "pit.ldf"))
	exec(t, db, "RESTORE DATABASE [Sales_pit] FROM DISK = 'diff.bak' WITH NORECOVERY")
	// out of order: log2 before log1 is a gap
	wantErr(t, db, 4305, "RESTORE LOG [Sales_pit] FROM DISK = 'log2.bak' WITH NORECOVERY")
	exec(t, db, "RESTORE LOG [Sales_pit] FROM DISK = 'log1.bak' WITH NORECOVERY")
	// log1 again: too early
	wantErr(t, db, 4326, "RESTORE LOG [Sales_pit] FROM DISK = 'log1.bak' WITH NORECOVERY")
	exec(t, db, "RESTORE LOG [Sales_pit] FROM DISK = 'log2.bak' WITH STOPAT = @p1, RECOVERY", mssql.VarChar(target.Format("2006-01-02T15:04:05")))
	if got := queryHash(t, db, "Sales_pit", time.Time{}); got != want {
		t.Fatalf("restored hash %s, want source as of %v %s", got, target, want)
	}
}

// TestPointInTimeUnderRunningWorkload repeats the point-in-time restore
// with the real clock while a workload commits in the background during
// every backup, stopping at a millisecond inside the last log.
func TestPointInTimeUnderRunningWorkload(t *testing.T) {
	dir := t.TempDir()
	inst, db := startInstance(t, Config{BackupDir: dir})
	exec(t, db, "CREATE DATABASE [Live]")
	exec(t, db, "EXEC sim.workload @database = N'Live', @tps = 400")
	// waitCommits waits until the workload has committed n more transactions.
	waitCommits := func(n int) {
		t.Helper()
		start := len(recordsOf(t, inst, "Live"))
		deadline := time.Now().Add(20 * time.Second)
		for len(recordsOf(t, inst, "Live")) < start+n {
			if time.Now().After(deadline) {
				t.Fatal("the workload stopped committing")
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitCommits(20)
	exec(t, db, "BACKUP DATABASE [Live] TO DISK = 'f.bak'")
	waitCommits(20)
	exec(t, db, "BACKUP DATABASE [Live] TO DISK = 'd.bak' WITH DIFFERENTIAL")
	waitCommits(20)
	exec(t, db, "BACKUP LOG [Live] TO DISK = 'l1.trn'")
	waitCommits(20)
	target := time.Now().UTC().Truncate(time.Millisecond)
	waitCommits(20)
	exec(t, db, "BACKUP LOG [Live] TO DISK = 'l2.trn'")
	exec(t, db, "EXEC sim.workload @database = N'Live', @tps = 0")

	want, err := inst.ContentHash("Live", target)
	if err != nil {
		t.Fatal(err)
	}
	exec(t, db, "RESTORE DATABASE [Live_pit] FROM DISK = 'f.bak' WITH NORECOVERY, MOVE 'Live' TO @p1, MOVE 'Live_log' TO @p2",
		filepath.Join(dir, "lp.mdf"), filepath.Join(dir, "lp.ldf"))
	exec(t, db, "RESTORE DATABASE [Live_pit] FROM DISK = 'd.bak' WITH NORECOVERY")
	exec(t, db, "RESTORE LOG [Live_pit] FROM DISK = 'l1.trn' WITH NORECOVERY")
	exec(t, db, "RESTORE LOG [Live_pit] FROM DISK = 'l2.trn' WITH STOPAT = @p1, RECOVERY", mssql.VarChar(target.Format("2006-01-02T15:04:05.000")))
	if got := queryHash(t, db, "Live_pit", zeroTime); got != want {
		t.Fatalf("restored to %v: hash %s, want %s", target, got, want)
	}
}

// recordsOf returns the database's committed transactions so far.
func recordsOf(t *testing.T, inst *Instance, name string) []logRecord {
	t.Helper()
	d, e := inst.lookup(name)
	if e != nil {
		t.Fatal(e)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.recs
}
