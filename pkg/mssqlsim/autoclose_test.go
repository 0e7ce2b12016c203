package mssqlsim

import (
	"database/sql"
	"strings"
	"testing"
	"time"
)

// wakes returns how often AUTO_CLOSE's shut-down name was started, and
// whether it is shut down now.
func wakes(t *testing.T, inst *Instance, name string) (int64, bool) {
	t.Helper()
	n, closed, err := inst.Wakes(name)
	if err != nil {
		t.Fatal(err)
	}
	return n, closed
}

func TestAutoClose(t *testing.T) {
	inst, db := startInstance(t, Config{})
	exec(t, db, "CREATE DATABASE [Idle]")
	exec(t, db, "CREATE DATABASE [Busy]")
	exec(t, db, "ALTER DATABASE [Idle] SET AUTO_CLOSE ON")
	if n, closed := wakes(t, inst, "Idle"); !closed || n != 0 {
		t.Fatalf("after SET AUTO_CLOSE ON: %d wakes, closed %v; want 0, closed", n, closed)
	}

	// sys.databases, sys.master_files and DB_ID read master's catalog and
	// start nothing; the closed database shows NULL where its own
	// metadata would be.
	var autoClose bool
	var coll, rm sql.NullString
	var ro sql.NullBool
	if err := db.QueryRowContext(t.Context(), `SELECT is_auto_close_on, collation_name, recovery_model_desc, is_read_only
		FROM sys.databases WHERE name = 'Idle'`).Scan(&autoClose, &coll, &rm, &ro); err != nil {
		t.Fatal(err)
	}
	if !autoClose || coll.Valid || rm.Valid || ro.Valid {
		t.Errorf("closed database: is_auto_close_on %v, collation %v, recovery model %v, read-only %v; want 1 and NULLs", autoClose, coll, rm, ro)
	}
	var files int
	if err := db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM sys.master_files WHERE database_id = DB_ID('Idle')`).Scan(&files); err != nil {
		t.Fatal(err)
	}
	if files != 2 {
		t.Errorf("sys.master_files lists %d files of the closed database; want 2", files)
	}
	// the recovery status of other databases only
	var busyID int
	if err := db.QueryRowContext(t.Context(), `SELECT database_id FROM sys.database_recovery_status WHERE database_id = DB_ID('Busy')`).Scan(&busyID); err != nil {
		t.Fatal(err)
	}
	if n, closed := wakes(t, inst, "Idle"); !closed || n != 0 {
		t.Fatalf("after reading catalogs that do not start it: %d wakes, closed %v; want 0, closed", n, closed)
	}

	// Reading its recovery status starts it; it closes again once idle.
	var guid sql.NullString
	if err := db.QueryRowContext(t.Context(), `SELECT CAST(rs.database_guid AS nvarchar(36)) FROM sys.databases d
		JOIN sys.database_recovery_status rs ON rs.database_id = d.database_id WHERE d.name = 'Idle'`).Scan(&guid); err != nil {
		t.Fatal(err)
	}
	if !guid.Valid {
		t.Error("database_guid of a database started to read it is NULL")
	}
	if n, closed := wakes(t, inst, "Idle"); n != 1 || !closed {
		t.Errorf("after reading sys.database_recovery_status: %d wakes, closed %v; want 1, closed again", n, closed)
	}

	// A session using it keeps it open; leaving lets it close.
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(t.Context(), "USE [Idle]"); err != nil {
		t.Fatal(err)
	}
	if n, closed := wakes(t, inst, "Idle"); n != 2 || closed {
		t.Errorf("while a session uses it: %d wakes, closed %v; want 2, open", n, closed)
	}
	if err := db.QueryRowContext(t.Context(), `SELECT collation_name FROM sys.databases WHERE name = 'Idle'`).Scan(&coll); err != nil {
		t.Fatal(err)
	}
	if !coll.Valid {
		t.Error("collation_name of an open AUTO_CLOSE database is NULL")
	}
	if _, err := conn.ExecContext(t.Context(), "USE master"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if _, closed := wakes(t, inst, "Idle"); !closed {
		t.Error("the database stayed open after its last user left")
	}

	// A backup starts it.
	exec(t, db, "BACKUP DATABASE [Idle] TO DISK = 'idle.bak'")
	if n, _ := wakes(t, inst, "Idle"); n != 3 {
		t.Errorf("after BACKUP: %d wakes; want 3", n)
	}

	exec(t, db, "ALTER DATABASE [Idle] SET AUTO_CLOSE OFF")
	if _, closed := wakes(t, inst, "Idle"); closed {
		t.Error("closed after SET AUTO_CLOSE OFF")
	}
	wantErr(t, db, 5058, "ALTER DATABASE [msdb] SET AUTO_CLOSE ON")
}

func TestDatabasesNullWhenNotOnline(t *testing.T) {
	inst, db := startInstance(t, Config{})
	exec(t, db, "CREATE DATABASE [Gone]")
	if err := inst.SetOffline("Gone", true); err != nil {
		t.Fatal(err)
	}
	var state string
	var id int
	var created time.Time
	var coll, rm, ua sql.NullString
	var ro, standby, enc sql.NullBool
	if err := db.QueryRowContext(t.Context(), `SELECT database_id, create_date, state_desc, collation_name, recovery_model_desc,
		user_access_desc, is_read_only, is_in_standby, is_encrypted FROM sys.databases WHERE name = 'Gone'`).
		Scan(&id, &created, &state, &coll, &rm, &ua, &ro, &standby, &enc); err != nil {
		t.Fatal(err)
	}
	if state != "OFFLINE" || id == 0 || created.IsZero() {
		t.Errorf("offline database: state %q, id %d, created %v; want OFFLINE with an id and a date", state, id, created)
	}
	for name, valid := range map[string]bool{"collation_name": coll.Valid, "recovery_model_desc": rm.Valid,
		"user_access_desc": ua.Valid, "is_read_only": ro.Valid, "is_in_standby": standby.Valid, "is_encrypted": enc.Valid} {
		if valid {
			t.Errorf("%s of an offline database is not NULL", name)
		}
	}
}

func TestCreateDatabaseNameLimit(t *testing.T) {
	_, db := startInstance(t, Config{})
	// The log's logical name is derived as name + "_log": 123 characters
	// is the most a name can have without LOG ON (NAME = ...).
	exec(t, db, "CREATE DATABASE "+quoteName(strings.Repeat("a", 123)))
	wantErr(t, db, 407, "CREATE DATABASE "+quoteName(strings.Repeat("b", 124)))
	wantErr(t, db, 407, "CREATE DATABASE "+quoteName(strings.Repeat("c", 128)))
	long := strings.Repeat("d", 128)
	exec(t, db, "CREATE DATABASE "+quoteName(long)+" ON (NAME = 'd_data', FILENAME = '/data/d.mdf') LOG ON (NAME = 'd_log', FILENAME = '/data/d.ldf')")
	var n int
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM sys.databases WHERE name = @p1", long).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d databases with the 128-character name; want 1", n)
	}
	var missing int
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM sys.databases WHERE name LIKE 'b%' OR name LIKE 'c%'").Scan(&missing); err != nil {
		t.Fatal(err)
	}
	if missing != 0 {
		t.Errorf("%d refused databases exist; want 0", missing)
	}
}

func TestChecksumNoticesChanges(t *testing.T) {
	inst, db := startInstance(t, Config{})
	fingerprint := func() (int64, int64) {
		t.Helper()
		var n int64
		var sum sql.NullInt64
		if err := db.QueryRowContext(t.Context(), `SELECT COUNT_BIG(*), CHECKSUM_AGG(CHECKSUM(name, database_id, create_date,
			state, recovery_model, is_read_only, collation_name)) FROM sys.databases`).Scan(&n, &sum); err != nil {
			t.Fatal(err)
		}
		return n, sum.Int64
	}
	exec(t, db, "CREATE DATABASE [A]")
	n0, s0 := fingerprint()
	if n1, s1 := fingerprint(); n1 != n0 || s1 != s0 {
		t.Fatalf("fingerprint moved without a change: %d/%d then %d/%d", n0, s0, n1, s1)
	}
	exec(t, db, "ALTER DATABASE [A] SET RECOVERY SIMPLE")
	if _, s := fingerprint(); s == s0 {
		t.Error("fingerprint did not move when a recovery model changed")
	}
	exec(t, db, "ALTER DATABASE [A] SET RECOVERY FULL")
	if _, s := fingerprint(); s != s0 {
		t.Error("fingerprint differs after the change was undone")
	}
	exec(t, db, "CREATE DATABASE [B]")
	if n, _ := fingerprint(); n != n0+1 {
		t.Errorf("count %d after a CREATE; want %d", n, n0+1)
	}
	// CHECKSUM compares strings under the collation, as SQL Server's does
	var a, b int64
	if err := db.QueryRowContext(t.Context(), `SELECT CHECKSUM(N'Sales'), CHECKSUM(N'SALES  ')`).Scan(&a, &b); err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("CHECKSUM('Sales') %d, CHECKSUM('SALES  ') %d; want equal under a case-insensitive collation", a, b)
	}
	_ = inst
}

func TestHistoryNulls(t *testing.T) {
	inst, db := startInstance(t, Config{})
	exec(t, db, "CREATE DATABASE [H]")
	exec(t, db, "BACKUP DATABASE [H] TO DISK = 'h.bak'")
	inst.AddHistory(HistoryRow{Database: "H"})
	exec(t, db, "BACKUP DATABASE [H] TO DISK = 'h2.bak'")
	rows, err := db.QueryContext(t.Context(), `SELECT backup_set_id, type, is_copy_only, backup_start_date, backup_finish_date
		FROM msdb.dbo.backupset WHERE database_name = 'H' ORDER BY backup_set_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []int64
	var nulls int
	for rows.Next() {
		var id int64
		var typ sql.NullString
		var copyOnly sql.NullBool
		var start, finish sql.NullTime
		if err := rows.Scan(&id, &typ, &copyOnly, &start, &finish); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if !typ.Valid && !copyOnly.Valid && !start.Valid && !finish.Valid {
			nulls++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || ids[0] >= ids[1] || ids[1] >= ids[2] || nulls != 1 {
		t.Errorf("history ids %v with %d all-NULL rows; want 3 increasing ids, one all-NULL", ids, nulls)
	}
}
