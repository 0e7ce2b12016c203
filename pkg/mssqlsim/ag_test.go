package mssqlsim

import (
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
)

func preferred(t *testing.T, db *sql.DB, name string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), "SELECT sys.fn_hadr_backup_is_preferred_replica(@p1)", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAvailabilityGroup: backup preference picks the replica, full
// backups run only on the primary, and the log chain is shared: logs taken
// on either replica restore as one chain.
func TestAvailabilityGroup(t *testing.T) {
	clk := newFakeClock()
	dir := t.TempDir()
	p, pdb := startInstance(t, Config{ServerName: "NODE1", Now: clk.Now, BackupDir: dir})
	s, sdb := startInstance(t, Config{ServerName: "NODE2", Now: clk.Now, BackupDir: dir})
	exec(t, pdb, "CREATE DATABASE [Orders]")
	p.Commit("Orders", 4)
	exec(t, pdb, "BACKUP DATABASE [Orders] TO DISK = 'ag-full.bak'")
	ag, err := NewAvailabilityGroup("ag1", PreferSecondary, p, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := ag.AddDatabase("Orders"); err != nil {
		t.Fatal(err)
	}

	if got := preferred(t, sdb, "Orders"); got != 1 {
		t.Errorf("secondary preferred: got %d, want 1", got)
	}
	if got := preferred(t, pdb, "Orders"); got != 0 {
		t.Errorf("primary preferred: got %d, want 0", got)
	}
	var role, sync string
	if err := sdb.QueryRowContext(t.Context(), `SELECT rs.role_desc, drs.synchronization_state_desc
		FROM sys.dm_hadr_database_replica_states drs
		JOIN sys.dm_hadr_availability_replica_states rs ON rs.replica_id = drs.replica_id
		JOIN sys.databases d ON d.database_id = drs.database_id
		WHERE d.name = @p1 AND rs.is_local = 1`, "Orders").Scan(&role, &sync); err != nil {
		t.Fatal(err)
	}
	if role != "SECONDARY" || sync != "SYNCHRONIZED" {
		t.Errorf("secondary state: got %s/%s, want SECONDARY/SYNCHRONIZED", role, sync)
	}

	// full and differential only on the primary; log and copy-only on the secondary
	wantErr(t, sdb, 3059, "BACKUP DATABASE [Orders] TO DISK = 'x.bak'")
	wantErr(t, sdb, 3059, "BACKUP DATABASE [Orders] TO DISK = 'x.bak' WITH DIFFERENTIAL")
	exec(t, sdb, "BACKUP DATABASE [Orders] TO DISK = 'ag-copy.bak' WITH COPY_ONLY")
	p.Commit("Orders", 4)
	exec(t, sdb, "BACKUP LOG [Orders] TO DISK = 'ag-log1.trn'")
	p.Commit("Orders", 4)
	exec(t, pdb, "BACKUP LOG [Orders] TO DISK = 'ag-log2.trn'")
	// the secondary cannot be written
	if _, err := s.Commit("Orders", 1); !errors.Is(err, &Error{Number: 976}) {
		t.Errorf("a write on the secondary: got %v, want error 976", err)
	}

	// one chain across replicas
	var last1, first2 string
	if err := sdb.QueryRowContext(t.Context(), "SELECT last_lsn FROM msdb.dbo.backupset WHERE type = 'L'").Scan(&last1); err != nil {
		t.Fatal(err)
	}
	if err := pdb.QueryRowContext(t.Context(), "SELECT first_lsn FROM msdb.dbo.backupset WHERE type = 'L'").Scan(&first2); err != nil {
		t.Fatal(err)
	}
	if last1 != first2 {
		t.Errorf("log on primary starts at %s, want the secondary log's last_lsn %s", first2, last1)
	}
	want := queryHash(t, pdb, "Orders", zeroTime)
	exec(t, pdb, "RESTORE DATABASE [Orders_copy] FROM DISK = 'ag-full.bak' WITH NORECOVERY, MOVE 'Orders' TO @p1, MOVE 'Orders_log' TO @p2",
		filepath.Join(dir, "oc.mdf"), filepath.Join(dir, "oc.ldf"))
	exec(t, pdb, "RESTORE LOG [Orders_copy] FROM DISK = 'ag-log1.trn' WITH NORECOVERY")
	exec(t, pdb, "RESTORE LOG [Orders_copy] FROM DISK = 'ag-log2.trn' WITH RECOVERY")
	if got := queryHash(t, pdb, "Orders_copy", zeroTime); got != want {
		t.Errorf("restored across replicas: hash %s, want %s", got, want)
	}

	// an unsynchronized secondary is not preferred; the primary is
	ag.SetSynchronization(s, NotSynchronizing)
	if got := preferred(t, pdb, "Orders"); got != 1 {
		t.Errorf("primary preferred with the secondary not synchronizing: got %d, want 1", got)
	}
	wantErr(t, sdb, 976, "BACKUP LOG [Orders] TO DISK = 'x.trn'")
	ag.SetSynchronization(s, Synchronized)

	// SECONDARY_ONLY with every secondary at priority 0: no replica
	ag.SetBackupPreference(PreferSecondaryOnly)
	ag.SetBackupPriority(s, 0)
	if a, b := preferred(t, pdb, "Orders"), preferred(t, sdb, "Orders"); a != 0 || b != 0 {
		t.Errorf("SECONDARY_ONLY, priority 0: preferred %d/%d, want 0/0", a, b)
	}
	ag.SetBackupPriority(s, 50)

	// failover: the old secondary takes fulls
	if err := ag.Failover(s); err != nil {
		t.Fatal(err)
	}
	exec(t, sdb, "BACKUP DATABASE [Orders] TO DISK = 'ag-full2.bak'")
	wantErr(t, pdb, 3059, "BACKUP DATABASE [Orders] TO DISK = 'x.bak'")
	ag.SetBackupPreference(PreferPrimary)
	if got := preferred(t, sdb, "Orders"); got != 1 {
		t.Errorf("new primary preferred under PRIMARY: got %d, want 1", got)
	}
}
