package mssqlsim

import (
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
	exec(t, db, "RESTORE LOG [Sales_pit] FROM DISK = 'log2.bak' WITH STOPAT = @p1, RECOVERY", target.Format("2006-01-02T15:04:05"))
	if got := queryHash(t, db, "Sales_pit", time.Time{}); got != want {
		t.Fatalf("restored hash %s, want source as of %v %s", got, target, want)
	}
}
