package mssqlsim

import (
	"strings"
	"testing"
	"time"
)

// TestDifferentialBaseGUID: a full taken while a transaction is open
// starts its log at that transaction (FirstLSN < CheckpointLSN) and sets
// a differential base past its checkpoint. The full's BackupSetGUID is
// what links it to its differentials: HEADERONLY, msdb's backup_set_uuid,
// sys.master_files.differential_base_guid and the differential's
// DifferentialBaseGUID agree, and RESTORE accepts the differential only on
// that full (3136 on another).
func TestDifferentialBaseGUID(t *testing.T) {
	inst, db := startInstance(t, Config{DataPath: "/data/"})
	if err := inst.CreateDatabase("G", DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	inst.Commit("G", 3)
	exec(t, db, "BACKUP DATABASE [G] TO DISK = 'g0.bak' WITH FORMAT")
	end, err := inst.BeginTransaction("G")
	if err != nil {
		t.Fatal(err)
	}
	exec(t, db, "BACKUP DATABASE [G] TO DISK = 'g1.bak' WITH FORMAT")
	end()
	inst.Commit("G", 3)
	exec(t, db, "BACKUP DATABASE [G] TO DISK = 'g1d.bak' WITH FORMAT, DIFFERENTIAL")

	var first, ckpt, setGUID string
	rows, err := db.QueryContext(t.Context(), "RESTORE HEADERONLY FROM DISK = 'g1.bak'")
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := rows.Columns()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for k := range vals {
		ptrs[k] = &vals[k]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
	}
	rows.Close()
	for k, c := range cols {
		switch c {
		case "FirstLSN":
			first = string(vals[k].([]byte))
		case "CheckpointLSN":
			ckpt = string(vals[k].([]byte))
		}
	}
	if err := db.QueryRowContext(t.Context(), "SELECT TOP 1 CAST(backup_set_uuid AS nvarchar(36)) FROM msdb.dbo.backupset WHERE database_name = N'G' AND type = 'D' ORDER BY backup_set_id DESC").Scan(&setGUID); err != nil {
		t.Fatal(err)
	}
	if !lsnBefore(first, ckpt) {
		t.Errorf("FirstLSN %s, CheckpointLSN %s; want the open transaction's begin before the checkpoint", first, ckpt)
	}
	var baseLSN, baseGUID string
	if err := db.QueryRowContext(t.Context(), "SELECT CAST(differential_base_lsn AS nvarchar(30)), CAST(differential_base_guid AS nvarchar(36)) FROM sys.master_files WHERE database_id = DB_ID(N'G') AND file_id = 1").Scan(&baseLSN, &baseGUID); err != nil {
		t.Fatal(err)
	}
	if !lsnBefore(ckpt, baseLSN) {
		t.Errorf("differential base LSN %s; want it past the full's checkpoint %s", baseLSN, ckpt)
	}
	var diffBase string
	if err := db.QueryRowContext(t.Context(), "SELECT TOP 1 CAST(differential_base_guid AS nvarchar(36)) FROM msdb.dbo.backupset WHERE database_name = N'G' AND type = 'I'").Scan(&diffBase); err != nil {
		t.Fatal(err)
	}
	if !strings.EqualFold(baseGUID, setGUID) || !strings.EqualFold(diffBase, setGUID) {
		t.Errorf("backup set %s, database's differential base %s, differential's base %s; want one GUID", setGUID, baseGUID, diffBase)
	}

	move := "MOVE 'G' TO '/data/g2.mdf', MOVE 'G_log' TO '/data/g2.ldf'"
	exec(t, db, "RESTORE DATABASE [G2] FROM DISK = 'g1.bak' WITH NORECOVERY, "+move)
	exec(t, db, "RESTORE DATABASE [G2] FROM DISK = 'g1d.bak' WITH RECOVERY")
	if got, want := queryHash(t, db, "G2", time.Time{}), queryHash(t, db, "G", time.Time{}); got != want {
		t.Errorf("full and differential restore to %s; want %s", got, want)
	}
	move = "MOVE 'G' TO '/data/g3.mdf', MOVE 'G_log' TO '/data/g3.ldf'"
	exec(t, db, "RESTORE DATABASE [G3] FROM DISK = 'g0.bak' WITH NORECOVERY, "+move)
	wantErr(t, db, 3136, "RESTORE DATABASE [G3] FROM DISK = 'g1d.bak' WITH RECOVERY")
}

// lsnBefore compares two LSNs in their decimal form.
func lsnBefore(a, b string) bool { return len(a) < len(b) || len(a) == len(b) && a < b }

// TestBackupsSerialized: SQL Server runs one data backup of a database at
// a time and one log backup (3023 for a second); a log backup may run
// beside a full.
func TestBackupsSerialized(t *testing.T) {
	inst, db := startInstance(t, Config{DefaultPages: 2048})
	if err := inst.CreateDatabase("S", DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	exec(t, db, "BACKUP DATABASE [S] TO DISK = 's0.bak' WITH FORMAT")
	remove := inst.InjectFault(Fault{Kind: FaultStall, Database: "S"})
	stalled := make(chan error, 1)
	go func() {
		_, err := db.ExecContext(t.Context(), "BACKUP DATABASE [S] TO DISK = 's1.bak' WITH FORMAT")
		stalled <- err
	}()
	eventually(t, 10*time.Second, "the first full to start", func() bool {
		inst.mu.Lock()
		d := inst.dbByName("S")
		inst.mu.Unlock()
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.activeBackups == 1
	})
	wantErr(t, db, 3023, "BACKUP DATABASE [S] TO DISK = 's2.bak' WITH FORMAT")
	wantErr(t, db, 3023, "BACKUP DATABASE [S] TO DISK = 's3.bak' WITH FORMAT, DIFFERENTIAL")
	exec(t, db, "BACKUP LOG [S] TO DISK = 's.trn' WITH FORMAT")
	remove()
	if err := <-stalled; err != nil {
		t.Fatalf("the stalled full: %v", err)
	}
	exec(t, db, "BACKUP DATABASE [S] TO DISK = 's2.bak' WITH FORMAT")
}
