package mssqlsim

import (
	"bytes"
	"encoding/binary"
	"os"
	"reflect"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
)

const stopFormat = "2006-01-02T15:04:05.000"

// moveTo returns MOVE clauses putting database src's default files under
// the environment's directory for target.
func (e *env) moveTo(src, target string) string {
	return "MOVE " + quoteString(src) + " TO " + quoteString(e.path(target+".mdf")) +
		", MOVE " + quoteString(src+"_log") + " TO " + quoteString(e.path(target+"_log.ldf"))
}

// TestRestoringUntilRecovery checks that a database stays RESTORING through
// every NORECOVERY step, cannot be used meanwhile, and comes online with
// RESTORE DATABASE x WITH RECOVERY.
func TestRestoringUntilRecovery(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	e.work("s", 10)
	e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")
	e.work("s", 10)
	e.exec("BACKUP DATABASE [s] TO DISK = 'd.bak' WITH DIFFERENTIAL")
	e.work("s", 10)
	e.exec("BACKUP LOG [s] TO DISK = 'l.trn'")
	want := e.hash("s")
	e.work("s", 3)

	steps := []string{
		"RESTORE DATABASE [r] FROM DISK = 'f.bak' WITH NORECOVERY, " + e.moveTo("s", "r"),
		"RESTORE DATABASE [r] FROM DISK = 'd.bak' WITH NORECOVERY",
		"RESTORE LOG [r] FROM DISK = 'l.trn' WITH NORECOVERY",
	}
	for _, q := range steps {
		e.exec(q)
		if got := e.state("r"); got != "RESTORING" {
			t.Fatalf("after %q: state_desc %q, want RESTORING", q, got)
		}
		wantErr(t, e.db, 927, "USE [r]")
		wantErr(t, e.db, 927, "EXEC sim.content_hash @database = N'r'")
		wantAbnormal(t, e.db, 927, "BACKUP DATABASE [r] TO DISK = 'r.bak'")
		if _, err := e.inst.Commit("r", 1); err == nil {
			t.Fatalf("after %q: a transaction on a restoring database succeeded", q)
		}
	}
	wantErr(t, e.db, 5052, "ALTER DATABASE [r] SET OFFLINE")
	// sys.database_recovery_status has a row for a restoring database,
	// with nothing in it
	if rs := e.recoveryStatus("r"); rs.Fork.Valid || rs.LastLogBackup.Valid || rs.ForkPoint.Valid {
		t.Errorf("sys.database_recovery_status of a restoring database: %+v, want NULLs", rs)
	}

	e.exec("RESTORE DATABASE [r] WITH RECOVERY")
	if got := e.state("r"); got != "ONLINE" {
		t.Fatalf("after WITH RECOVERY: state_desc %q, want ONLINE", got)
	}
	if got := e.hash("r"); got != want {
		t.Fatalf("restored hash %s, want %s", got, want)
	}
	// the recovered database is a database like any other
	e.work("r", 2)
	e.exec("BACKUP LOG [r] TO DISK = 'r.trn'")
}

// TestTailLogBackup checks 3159 and the way out of it: BACKUP LOG WITH
// NORECOVERY leaves the database RESTORING, and the whole chain including
// the tail then restores over it without REPLACE.
func TestTailLogBackup(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	e.work("s", 10)
	e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")
	e.work("s", 10)
	e.exec("BACKUP LOG [s] TO DISK = 'l1.trn'")
	e.work("s", 10) // the tail
	want := e.hash("s")

	wantAbnormal(t, e.db, 3159, "RESTORE DATABASE [s] FROM DISK = 'f.bak' WITH NORECOVERY")
	if got := e.state("s"); got != "ONLINE" {
		t.Fatalf("after the refused restore: state_desc %q, want ONLINE", got)
	}
	e.exec("BACKUP LOG [s] TO DISK = 'tail.trn' WITH NORECOVERY")
	if got := e.state("s"); got != "RESTORING" {
		t.Fatalf("after the tail-log backup: state_desc %q, want RESTORING", got)
	}
	if rows := e.backups("s"); rows[len(rows)-1].Type != "L" {
		t.Fatalf("tail-log backup: msdb type %q, want L", rows[len(rows)-1].Type)
	}
	e.exec("RESTORE DATABASE [s] FROM DISK = 'f.bak' WITH NORECOVERY")
	e.exec("RESTORE LOG [s] FROM DISK = 'l1.trn' WITH NORECOVERY")
	e.exec("RESTORE LOG [s] FROM DISK = 'tail.trn' WITH RECOVERY")
	if got := e.hash("s"); got != want {
		t.Fatalf("hash after restoring with the tail %s, want %s (no work lost)", got, want)
	}

	// STOPAT lifts 3159 too: the restore goes back to a point in time
	// whatever the tail holds
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'l2.trn'")
	e.work("s", 5)
	target := e.clk.Now()
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'l3.trn'")
	e.work("s", 5)
	wantAbnormal(t, e.db, 3159, "RESTORE DATABASE [s] FROM DISK = 'f.bak' WITH NORECOVERY")
	e.exec("RESTORE DATABASE [s] FROM DISK = 'f.bak' WITH NORECOVERY, STOPAT = @p1", mssql.VarChar(target.Format(stopFormat)))
	if got := e.state("s"); got != "RESTORING" {
		t.Fatalf("after RESTORE DATABASE WITH STOPAT: state_desc %q, want RESTORING", got)
	}
}

// TestCopyOnly checks that a copy-only full is never a differential base
// and that a copy-only log neither moves last_log_backup_lsn nor breaks the
// chain.
func TestCopyOnly(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	e.work("s", 10)
	e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")
	full := e.lastBackup("s")
	e.work("s", 10)
	e.exec("BACKUP DATABASE [s] TO DISK = 'c.bak' WITH COPY_ONLY")
	copyFull := e.lastBackup("s")
	if !copyFull.CopyOnly || copyFull.Type != "D" {
		t.Fatalf("copy-only full: type %s is_copy_only %v, want D true", copyFull.Type, copyFull.CopyOnly)
	}
	var base string
	if err := e.db.QueryRowContext(t.Context(), `SELECT f.differential_base_lsn FROM sys.master_files f
		JOIN sys.databases d ON d.database_id = f.database_id WHERE d.name = N's' AND f.file_id = 1`).Scan(&base); err != nil {
		t.Fatal(err)
	}
	if base != full.Checkpoint {
		t.Fatalf("sys.master_files.differential_base_lsn after a copy-only full: %s, want the full's checkpoint %s", base, full.Checkpoint)
	}
	e.work("s", 10)
	e.exec("BACKUP DATABASE [s] TO DISK = 'd.bak' WITH DIFFERENTIAL")
	diff := e.lastBackup("s")
	if diff.DiffBase.String != full.Checkpoint {
		t.Fatalf("differential_base_lsn %s, want the full's checkpoint_lsn %s (not the copy-only's %s)",
			diff.DiffBase.String, full.Checkpoint, copyFull.Checkpoint)
	}
	wantDiff := e.hash("s")

	// the differential does not apply on the copy-only full
	e.exec("RESTORE DATABASE [c] FROM DISK = 'c.bak' WITH NORECOVERY, " + e.moveTo("s", "c"))
	wantAbnormal(t, e.db, 3136, "RESTORE DATABASE [c] FROM DISK = 'd.bak' WITH RECOVERY")
	// it does on the full
	e.exec("RESTORE DATABASE [r] FROM DISK = 'f.bak' WITH NORECOVERY, " + e.moveTo("s", "r"))
	e.exec("RESTORE DATABASE [r] FROM DISK = 'd.bak' WITH RECOVERY")
	if got := e.hash("r"); got != wantDiff {
		t.Fatalf("full + differential: hash %s, want %s", got, wantDiff)
	}
	// the copy-only full restores on its own to its own moment
	e.exec("RESTORE DATABASE [c] WITH RECOVERY")
	if got, want := e.hash("c"), e.hashAsOf("s", copyFull.Start); got != want {
		t.Fatalf("copy-only full: hash %s, want %s", got, want)
	}

	// copy-only log
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'l1.trn'")
	l1 := e.lastBackup("s")
	if got := e.recoveryStatus("s").LastLogBackup.String; got != l1.Last {
		t.Fatalf("last_log_backup_lsn after a log backup %s, want its last_lsn %s", got, l1.Last)
	}
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'cl.trn' WITH COPY_ONLY")
	cl := e.lastBackup("s")
	if !cl.CopyOnly || cl.Type != "L" {
		t.Fatalf("copy-only log: type %s is_copy_only %v, want L true", cl.Type, cl.CopyOnly)
	}
	if got := e.recoveryStatus("s").LastLogBackup.String; got != l1.Last {
		t.Fatalf("last_log_backup_lsn after a copy-only log %s, want it unchanged at %s", got, l1.Last)
	}
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'l2.trn'")
	l2 := e.lastBackup("s")
	if l2.First != l1.Last {
		t.Fatalf("log after a copy-only log: first_lsn %s, want the previous log's last_lsn %s", l2.First, l1.Last)
	}
	want := e.hash("s")
	e.exec("RESTORE DATABASE [r2] FROM DISK = 'f.bak' WITH NORECOVERY, " + e.moveTo("s", "r2"))
	e.exec("RESTORE DATABASE [r2] FROM DISK = 'd.bak' WITH NORECOVERY")
	e.exec("RESTORE LOG [r2] FROM DISK = 'l1.trn' WITH NORECOVERY")
	e.exec("RESTORE LOG [r2] FROM DISK = 'l2.trn' WITH RECOVERY")
	if got := e.hash("r2"); got != want {
		t.Fatalf("chain around a copy-only log: hash %s, want %s", got, want)
	}
}

// TestForeignLogBackup checks that a log backup taken by another tool, even
// to NUL, moves last_log_backup_lsn and so breaks our chain: the next log
// restored after ours fails with 4305.
func TestForeignLogBackup(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	e.work("s", 5)
	e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")
	afterFull := e.recoveryStatus("s").LastLogBackup
	full := e.lastBackup("s")
	if !afterFull.Valid {
		t.Fatal("last_log_backup_lsn after the first full: NULL, want the start of the next log backup")
	}
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'l1.trn'")
	l1 := e.lastBackup("s")
	if l1.First != afterFull.String {
		t.Fatalf("first log: first_lsn %s, want last_log_backup_lsn before it %s", l1.First, afterFull.String)
	}
	if !full.BeginsChain {
		t.Error("first full: begins_log_chain = 0, want 1")
	}
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'NUL'")
	nul := e.lastBackup("s")
	if got := e.recoveryStatus("s").LastLogBackup.String; got != nul.Last || got == l1.Last {
		t.Fatalf("last_log_backup_lsn after a log to NUL %s, want the NUL backup's last_lsn %s", got, nul.Last)
	}
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'l3.trn'")
	l3 := e.lastBackup("s")
	if l3.First == l1.Last {
		t.Fatalf("log after the NUL backup starts at our last log's end %s: the chain should be broken", l3.First)
	}
	e.exec("RESTORE DATABASE [r] FROM DISK = 'f.bak' WITH NORECOVERY, " + e.moveTo("s", "r"))
	e.exec("RESTORE LOG [r] FROM DISK = 'l1.trn' WITH NORECOVERY")
	wantAbnormal(t, e.db, 4305, "RESTORE LOG [r] FROM DISK = 'l3.trn' WITH RECOVERY")
	wantAbnormal(t, e.db, 3201, "RESTORE LOG [r] FROM DISK = 'NUL' WITH RECOVERY")
	if got := e.state("r"); got != "RESTORING" {
		t.Fatalf("after the refused log: state_desc %q, want RESTORING", got)
	}
}

// TestLogChainLSNs checks the LSN arithmetic of msdb.dbo.backupset: each
// log begins where the previous ended, a differential's base is the full's
// checkpoint, and every LSN is an exact 17-digit decimal.
func TestLogChainLSNs(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	e.work("s", 3)
	e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")
	for k := 0; k < 3; k++ {
		e.work("s", 4)
		e.exec("BACKUP LOG [s] TO DISK = 'l.trn'")
		e.work("s", 2)
		e.exec("BACKUP DATABASE [s] TO DISK = 'd.bak' WITH DIFFERENTIAL")
	}
	e.work("s", 4)
	e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")
	e.work("s", 4)
	e.exec("BACKUP LOG [s] TO DISK = 'l.trn'")
	e.work("s", 4)
	e.exec("BACKUP DATABASE [s] TO DISK = 'd.bak' WITH DIFFERENTIAL")

	rows := e.backups("s")
	if len(rows) != 10 {
		t.Fatalf("got %d backupset rows, want 10", len(rows))
	}
	var full, prevLog *backupRow
	for k := range rows {
		r := &rows[k]
		for _, l := range []string{r.First, r.Last, r.Checkpoint} {
			if len(l) != 17 || l[0] == '0' || !allDigits(l) {
				t.Fatalf("row %d: LSN %q is not a 17-digit decimal", k, l)
			}
		}
		if r.First >= r.Last && len(r.First) == len(r.Last) {
			t.Errorf("row %d (%s): first_lsn %s not before last_lsn %s", k, r.Type, r.First, r.Last)
		}
		switch r.Type {
		case "D":
			full = r
			if r.Checkpoint < r.First {
				t.Errorf("full: checkpoint_lsn %s before first_lsn %s", r.Checkpoint, r.First)
			}
		case "I":
			if r.DiffBase.String != full.Checkpoint {
				t.Errorf("row %d: differential_base_lsn %s, want the full's checkpoint_lsn %s", k, r.DiffBase.String, full.Checkpoint)
			}
			if r.DatabaseBackupLSN.String != full.Checkpoint {
				t.Errorf("row %d: database_backup_lsn %s, want the full's checkpoint_lsn %s", k, r.DatabaseBackupLSN.String, full.Checkpoint)
			}
		case "L":
			if prevLog != nil && r.First != prevLog.Last {
				t.Errorf("row %d: log first_lsn %s, want the previous log's last_lsn %s", k, r.First, prevLog.Last)
			}
			if prevLog == nil && r.First > full.Last {
				t.Errorf("first log: first_lsn %s after the full's last_lsn %s", r.First, full.Last)
			}
			if r.DatabaseBackupLSN.String != full.Checkpoint {
				t.Errorf("row %d: log database_backup_lsn %s, want the full's checkpoint_lsn %s", k, r.DatabaseBackupLSN.String, full.Checkpoint)
			}
			prevLog = r
		}
		if r.FirstFork != r.LastFork {
			t.Errorf("row %d: fork %v -> %v without any restore", k, r.FirstFork, r.LastFork)
		}
		if r.ForkPoint.Valid {
			t.Errorf("row %d: fork_point_lsn %s, want NULL when the backup spans no fork", k, r.ForkPoint.String)
		}
	}
	if got := e.recoveryStatus("s").LastLogBackup.String; got != prevLog.Last {
		t.Errorf("last_log_backup_lsn %s, want the last log's last_lsn %s", got, prevLog.Last)
	}
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// TestRecoveryForks checks that a recovery to an earlier point starts a new
// fork, that the first log after it spans the fork, that a restore can
// follow the new path, and that a log of the new path is refused (4330) on
// a database that went past the fork point on the old one.
func TestRecoveryForks(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	e.work("s", 5)
	e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")
	e.work("s", 5)
	stop := e.tick(300 * time.Millisecond)
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'l1.trn'")
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'l2.trn'")
	atL2 := e.hash("s")
	fork0 := e.recoveryStatus("s")
	if fork0.ForkPoint.Valid {
		t.Errorf("fork_point_lsn before any restore: %s, want NULL", fork0.ForkPoint.String)
	}
	atStop := e.hashAsOf("s", stop)

	// back to a point inside l1: a new fork
	e.exec("RESTORE DATABASE [s] FROM DISK = 'f.bak' WITH NORECOVERY, REPLACE")
	e.exec("RESTORE LOG [s] FROM DISK = 'l1.trn' WITH RECOVERY, STOPAT = @p1", mssql.VarChar(stop.Format(stopFormat)))
	if got := e.hash("s"); got != atStop {
		t.Fatalf("after STOPAT: hash %s, want %s", got, atStop)
	}
	fork1 := e.recoveryStatus("s")
	if fork1.Fork == fork0.Fork {
		t.Fatalf("recovery_fork_guid unchanged (%s) by a recovery to an earlier point", fork1.Fork)
	}
	if !fork1.ForkPoint.Valid {
		t.Errorf("fork_point_lsn after the recovery: NULL, want the fork point")
	}

	// work on the new path, far enough that its LSNs pass l2's
	e.work("s", 40)
	e.exec("BACKUP LOG [s] TO DISK = 'l3.trn'")
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'l4.trn'")
	want := e.hash("s")
	rows := e.backups("s")
	l2, l3, l4 := rows[2], rows[3], rows[4]
	if l3.LastFork != fork1.Fork || l4.LastFork != fork1.Fork {
		t.Fatalf("logs after the recovery: last_recovery_fork_guid %s, %s, want the new fork %s", l3.LastFork, l4.LastFork, fork1.Fork)
	}
	if l3.FirstFork != fork0.Fork || !l3.ForkPoint.Valid {
		t.Errorf("first log after the recovery: first_recovery_fork_guid %s fork_point_lsn %v, want the old fork %s and the fork point",
			l3.FirstFork, l3.ForkPoint, fork0.Fork)
	}
	if l3.ForkPoint.String != fork1.ForkPoint.String {
		t.Errorf("first log after the recovery: fork_point_lsn %s, want sys.database_recovery_status's %s", l3.ForkPoint.String, fork1.ForkPoint.String)
	}
	if l4.FirstFork != fork1.Fork || l4.ForkPoint.Valid {
		t.Errorf("second log after the recovery: first_recovery_fork_guid %s fork_point_lsn %v, want the new fork %s and NULL",
			l4.FirstFork, l4.ForkPoint, fork1.Fork)
	}
	if l4.First != l3.Last {
		t.Errorf("log chain on the new fork: first_lsn %s, want %s", l4.First, l3.Last)
	}
	if !(l3.Last > l2.Last) {
		t.Fatalf("setup: l3 last_lsn %s must pass l2's %s for the fork check to be the only one failing", l3.Last, l2.Last)
	}

	// the new path: f, l1 up to the fork point, then l3 and l4
	e.exec("RESTORE DATABASE [p] FROM DISK = 'f.bak' WITH NORECOVERY, " + e.moveTo("s", "p"))
	e.exec("RESTORE LOG [p] FROM DISK = 'l1.trn' WITH NORECOVERY, STOPAT = @p1", mssql.VarChar(stop.Format(stopFormat)))
	e.exec("RESTORE LOG [p] FROM DISK = 'l3.trn' WITH NORECOVERY")
	e.exec("RESTORE LOG [p] FROM DISK = 'l4.trn' WITH RECOVERY")
	if got := e.hash("p"); got != want {
		t.Fatalf("restore along the new fork: hash %s, want %s", got, want)
	}

	// the old path went past the fork point: the new path's logs do not fit
	e.exec("RESTORE DATABASE [o] FROM DISK = 'f.bak' WITH NORECOVERY, " + e.moveTo("s", "o"))
	e.exec("RESTORE LOG [o] FROM DISK = 'l1.trn' WITH NORECOVERY")
	e.exec("RESTORE LOG [o] FROM DISK = 'l2.trn' WITH NORECOVERY")
	wantAbnormal(t, e.db, 4330, "RESTORE LOG [o] FROM DISK = 'l3.trn' WITH NORECOVERY")
	// the old path itself is still whole
	e.exec("RESTORE DATABASE [o] WITH RECOVERY")
	if got := e.hash("o"); got != atL2 {
		t.Fatalf("restore along the old fork: hash %s, want %s", got, atL2)
	}
}

// TestRestoreContinuesChain checks that a full restore of a database over
// itself, with its tail, does not break the log chain: the first log after
// the recovery restores on top of the same backups.
func TestRestoreContinuesChain(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	e.work("s", 5)
	e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'l1.trn'")
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'tail.trn' WITH NORECOVERY")
	e.exec("RESTORE DATABASE [s] FROM DISK = 'f.bak' WITH NORECOVERY")
	e.exec("RESTORE LOG [s] FROM DISK = 'l1.trn' WITH NORECOVERY")
	e.exec("RESTORE LOG [s] FROM DISK = 'tail.trn' WITH RECOVERY")
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'l2.trn'")
	tail, l2 := e.backups("s")[2], e.lastBackup("s")
	if l2.First != tail.Last {
		t.Fatalf("first log after the restore: first_lsn %s, want the tail's last_lsn %s", l2.First, tail.Last)
	}
	want := e.hash("s")
	e.exec("RESTORE DATABASE [r] FROM DISK = 'f.bak' WITH NORECOVERY, " + e.moveTo("s", "r"))
	e.exec("RESTORE LOG [r] FROM DISK = 'l1.trn' WITH NORECOVERY")
	e.exec("RESTORE LOG [r] FROM DISK = 'tail.trn' WITH NORECOVERY")
	e.exec("RESTORE LOG [r] FROM DISK = 'l2.trn' WITH RECOVERY")
	if got := e.hash("r"); got != want {
		t.Fatalf("restored hash %s, want %s", got, want)
	}

	// a tail-log backup and RESTORE ... WITH RECOVERY alone bring s back
	// as it was, and its chain goes on
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'tail2.trn' WITH NORECOVERY")
	e.exec("RESTORE DATABASE [s] WITH RECOVERY")
	if got := e.state("s"); got != "ONLINE" {
		t.Fatalf("after RESTORE WITH RECOVERY: state %q, want ONLINE", got)
	}
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'l3.trn'")
	want = e.hash("s")
	e.exec("RESTORE DATABASE [r2] FROM DISK = 'f.bak' WITH NORECOVERY, " + e.moveTo("s", "r2"))
	for _, l := range []string{"l1.trn", "tail.trn", "l2.trn", "tail2.trn"} {
		e.exec("RESTORE LOG [r2] FROM DISK = @p1 WITH NORECOVERY", l)
	}
	e.exec("RESTORE LOG [r2] FROM DISK = 'l3.trn' WITH RECOVERY")
	if got := e.hash("r2"); got != want {
		t.Fatalf("chain through two recoveries: hash %s, want %s", got, want)
	}
}

// TestMarks checks STOPATMARK and STOPBEFOREMARK, for a mark made in T-SQL
// (BEGIN TRAN m WITH MARK ... COMMIT TRAN m) and with Instance.Mark: the
// restore ends exactly after or exactly before the marked transaction.
func TestMarks(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	e.work("s", 5)
	e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")
	e.work("s", 5)

	conn, err := e.db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	e.tick(time.Second)
	beforeM1 := e.hash("s")
	if _, err := conn.ExecContext(t.Context(), "USE [s]; BEGIN TRAN m1 WITH MARK 'before the price change'; COMMIT TRAN m1"); err != nil {
		t.Fatalf("marked transaction: %v", err)
	}
	afterM1 := e.hash("s")
	if afterM1 == beforeM1 {
		t.Fatal("the marked transaction changed nothing")
	}
	if _, err := conn.ExecContext(t.Context(), "USE [master]"); err != nil {
		t.Fatal(err)
	}
	e.work("s", 5)
	e.tick(time.Second)
	beforeM2 := e.hash("s")
	if _, err := e.inst.Mark("s", "m2"); err != nil {
		t.Fatal(err)
	}
	afterM2 := e.hash("s")
	e.work("s", 5)
	// a mark name used twice: AFTER picks the later one
	e.tick(time.Second)
	if _, err := e.inst.Mark("s", "dup"); err != nil {
		t.Fatal(err)
	}
	e.work("s", 3)
	between := e.tick(time.Second)
	e.tick(time.Second)
	beforeDup2 := e.hash("s")
	if _, err := e.inst.Mark("s", "dup"); err != nil {
		t.Fatal(err)
	}
	afterDup2 := e.hash("s")
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'l1.trn'")
	end := e.hash("s")

	tests := []struct {
		name string
		with string
		args []any
		want string
	}{
		{"STOPATMARK T-SQL mark", "STOPATMARK = 'm1'", nil, afterM1},
		{"STOPBEFOREMARK T-SQL mark", "STOPBEFOREMARK = 'm1'", nil, beforeM1},
		{"STOPATMARK Instance.Mark", "STOPATMARK = @p1", []any{"m2"}, afterM2},
		{"STOPBEFOREMARK Instance.Mark", "STOPBEFOREMARK = N'm2'", nil, beforeM2},
		{"STOPATMARK AFTER", "STOPATMARK = 'dup' AFTER @p1", []any{between.Format(stopFormat)}, afterDup2},
		{"STOPBEFOREMARK AFTER", "STOPBEFOREMARK = 'dup' AFTER @p1", []any{between.Format(stopFormat)}, beforeDup2},
	}
	for k, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := "r" + string(rune('a'+k))
			e.exec("RESTORE DATABASE " + quoteName(target) + " FROM DISK = 'f.bak' WITH NORECOVERY, " + e.moveTo("s", target))
			e.exec("RESTORE LOG "+quoteName(target)+" FROM DISK = 'l1.trn' WITH RECOVERY, "+tc.with, tc.args...)
			if got := e.state(target); got != "ONLINE" {
				t.Fatalf("state_desc %q, want ONLINE", got)
			}
			if got := e.hash(target); got != tc.want {
				t.Fatalf("hash %s, want %s (end of log %s)", got, tc.want, end)
			}
		})
	}

	// a mark the log does not hold: the whole log is applied and the
	// database waits for more
	e.exec("RESTORE DATABASE [rz] FROM DISK = 'f.bak' WITH NORECOVERY, " + e.moveTo("s", "rz"))
	e.exec("RESTORE LOG [rz] FROM DISK = 'l1.trn' WITH RECOVERY, STOPATMARK = 'nonsense'")
	if got := e.state("rz"); got != "RESTORING" {
		t.Fatalf("STOPATMARK of a mark not in the log: state_desc %q, want RESTORING", got)
	}
	e.exec("RESTORE DATABASE [rz] WITH RECOVERY")
	if got := e.hash("rz"); got != end {
		t.Fatalf("after recovering: hash %s, want the end of the log %s", got, end)
	}
}

// TestBulkLoggedStopAt checks 4327: a STOPAT inside a log backup holding
// bulk-logged changes is refused (and nothing is applied), while a STOPAT
// in a log without them, before or after, still works.
func TestBulkLoggedStopAt(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	e.work("s", 5)
	e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")
	e.work("s", 5)
	inL1 := e.tick(300 * time.Millisecond)
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'l1.trn'")
	e.exec("ALTER DATABASE [s] SET RECOVERY BULK_LOGGED")
	e.work("s", 3)
	inL2 := e.tick(300 * time.Millisecond)
	e.tick(time.Second)
	if _, err := e.inst.BulkLoad("s", 40); err != nil {
		t.Fatal(err)
	}
	e.work("s", 3)
	e.exec("BACKUP LOG [s] TO DISK = 'l2.trn'")
	e.exec("ALTER DATABASE [s] SET RECOVERY FULL")
	e.work("s", 5)
	inL3 := e.tick(300 * time.Millisecond)
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'l3.trn'")

	rows := e.backups("s")
	for k, want := range []bool{false, false, true, false} {
		if rows[k].BulkLogged != want {
			t.Errorf("backupset row %d (%s): has_bulk_logged_data %v, want %v", k, rows[k].Type, rows[k].BulkLogged, want)
		}
	}
	if h := headerOnly(t, e.db, e.path("l2.trn")); len(h) != 1 || !h[0].BulkLogged {
		t.Errorf("RESTORE HEADERONLY of the bulk-logged log: %+v, want HasBulkLoggedData 1", h)
	}

	restore := func(target string) {
		t.Helper()
		e.exec("RESTORE DATABASE " + quoteName(target) + " FROM DISK = 'f.bak' WITH NORECOVERY, " + e.moveTo("s", target))
		e.exec("RESTORE LOG " + quoteName(target) + " FROM DISK = 'l1.trn' WITH NORECOVERY")
	}
	// inside the bulk-logged log: refused, the database as it was
	restore("x")
	wantAbnormal(t, e.db, 4327, "RESTORE LOG [x] FROM DISK = 'l2.trn' WITH RECOVERY, STOPAT = @p1", mssql.VarChar(inL2.Format(stopFormat)))
	if got := e.state("x"); got != "RESTORING" {
		t.Fatalf("after 4327: state_desc %q, want RESTORING", got)
	}
	wantAbnormal(t, e.db, 4327, "RESTORE LOG [x] FROM DISK = 'l2.trn' WITH NORECOVERY, STOPAT = @p1", mssql.VarChar(inL2.Format(stopFormat)))
	// after it: the bulk-logged log is applied whole, the stop is in l3
	e.exec("RESTORE LOG [x] FROM DISK = 'l2.trn' WITH NORECOVERY, STOPAT = @p1", mssql.VarChar(inL3.Format(stopFormat)))
	e.exec("RESTORE LOG [x] FROM DISK = 'l3.trn' WITH RECOVERY, STOPAT = @p1", mssql.VarChar(inL3.Format(stopFormat)))
	if got, want := e.hash("x"), e.hashAsOf("s", inL3); got != want {
		t.Fatalf("STOPAT after the bulk-logged log: hash %s, want %s", got, want)
	}
	// before it: a stop inside l1
	e.exec("RESTORE DATABASE [y] FROM DISK = 'f.bak' WITH NORECOVERY, " + e.moveTo("s", "y"))
	e.exec("RESTORE LOG [y] FROM DISK = 'l1.trn' WITH RECOVERY, STOPAT = @p1", mssql.VarChar(inL1.Format(stopFormat)))
	if got, want := e.hash("y"), e.hashAsOf("s", inL1); got != want {
		t.Fatalf("STOPAT before the bulk-logged log: hash %s, want %s", got, want)
	}
	// the whole chain without a stop
	restore("z")
	e.exec("RESTORE LOG [z] FROM DISK = 'l2.trn' WITH NORECOVERY")
	e.exec("RESTORE LOG [z] FROM DISK = 'l3.trn' WITH RECOVERY")
	if got, want := e.hash("z"), e.hash("s"); got != want {
		t.Fatalf("whole chain: hash %s, want %s", got, want)
	}
}

// TestTakeRestoredFields keeps takeRestored in step with dbData: a field
// added to dbData must be replaced by a full restore or listed here as
// kept.
func TestTakeRestoredFields(t *testing.T) {
	// open transactions belong to sessions, which a restore has none of
	kept := map[string]bool{"mu": true, "activeBackups": true, "activeLogs": true, "openTx": true, "txSeq": true}
	handled := map[string]bool{}
	for _, f := range restoredFields {
		handled[f] = true
	}
	typ := reflect.TypeOf(dbData{})
	for k := 0; k < typ.NumField(); k++ {
		name := typ.Field(k).Name
		if !kept[name] && !handled[name] {
			t.Errorf("dbData.%s is neither replaced by takeRestored (restore.go) nor kept", name)
		}
		delete(handled, name)
	}
	for name := range handled {
		t.Errorf("restoredFields lists %s, which dbData does not have", name)
	}
}

// TestRestoredIdentity checks the GUIDs a restore gives: a restore to a
// new name gets a new database_guid and keeps the family_guid, so the
// source's backups still restore over the copy without REPLACE.
func TestRestoredIdentity(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	e.work("s", 5)
	e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")
	src := e.recoveryStatus("s")
	if !src.DatabaseGUID.Valid || !src.FamilyGUID.Valid {
		t.Fatalf("source: %+v, want its GUIDs", src)
	}
	e.exec("RESTORE DATABASE [r] FROM DISK = 'f.bak' WITH " + e.moveTo("s", "r"))
	r := e.recoveryStatus("r")
	if r.DatabaseGUID == src.DatabaseGUID {
		t.Errorf("restore to a new name: database_guid %v, want a new one", r.DatabaseGUID)
	}
	if r.FamilyGUID != src.FamilyGUID {
		t.Errorf("restore to a new name: family_guid %v, want the source's %v", r.FamilyGUID, src.FamilyGUID)
	}
	// same family: no 3154, and no tail to save on a copy without a log
	// backup chain of its own
	e.exec("RESTORE DATABASE [r] FROM DISK = 'f.bak' WITH " + e.moveTo("s", "r"))
	e.exec("BACKUP DATABASE [r] TO DISK = 'r.bak'")
	var guid mssql.NullUniqueIdentifier
	if err := e.db.QueryRowContext(t.Context(), "SELECT database_guid FROM msdb.dbo.backupset WHERE database_name = N'r'").Scan(&guid); err != nil {
		t.Fatal(err)
	}
	if guid != e.recoveryStatus("r").DatabaseGUID {
		t.Errorf("msdb database_guid of r's backup %v, want r's %v", guid, e.recoveryStatus("r").DatabaseGUID)
	}
	// over the source itself the GUIDs are the backup's
	e.exec("RESTORE DATABASE [s] FROM DISK = 'f.bak' WITH REPLACE")
	if got := e.recoveryStatus("s"); got.DatabaseGUID != src.DatabaseGUID || got.FamilyGUID != src.FamilyGUID {
		t.Errorf("restore over the source: %+v, want its GUIDs %v %v", got, src.DatabaseGUID, src.FamilyGUID)
	}
}

// TestRestoreDamagedEarly restores a database of many pages, which RESTORE
// reads and checks in batches, from a backup without checksums whose
// tenth page is no page at all: RESTORE stops at it with 3183, with
// batches after it read and checked meanwhile, and the instance restores
// the undamaged backup exactly afterwards.
func TestRestoreDamagedEarly(t *testing.T) {
	e := newEnv(t, Config{DefaultPages: 8192})
	e.exec("CREATE DATABASE [s]")
	if _, err := e.inst.Commit("s", 4000); err != nil {
		t.Fatal(err)
	}
	want := e.hash("s")
	e.exec("BACKUP DATABASE [s] TO DISK = 'good.bak'")
	good, err := os.ReadFile(e.path("good.bak"))
	if err != nil {
		t.Fatal(err)
	}
	var magic [4]byte
	binary.LittleEndian.PutUint32(magic[:], pageMagic)
	bad := bytes.Clone(good)
	at := 0
	for range 10 {
		k := bytes.Index(bad[at+1:], magic[:])
		if k < 0 {
			t.Fatal("fewer than 10 pages in the backup")
		}
		at += 1 + k
	}
	copy(bad[at:], "JUNK")
	if err := os.WriteFile(e.path("bad.bak"), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	wantAbnormal(t, e.db, 3183, "RESTORE DATABASE [r] FROM DISK = 'bad.bak' WITH "+e.moveTo("s", "r"))
	e.exec("RESTORE DATABASE [r] FROM DISK = 'good.bak' WITH REPLACE, " + e.moveTo("s", "r"))
	if got := e.hash("r"); got != want {
		t.Fatalf("restored from the good backup after the bad one: hash %s, want %s", got, want)
	}
}
