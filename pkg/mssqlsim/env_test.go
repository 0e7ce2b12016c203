package mssqlsim

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
)

// env is one simulated instance driven through go-mssqldb, with a fake
// clock and a backup directory of its own.
type env struct {
	t    *testing.T
	inst *Instance
	db   *sql.DB
	clk  *fakeClock
	dir  string
	addr string
}

// newEnv starts an instance with a fake clock. cfg.Now and cfg.BackupDir are
// filled in when empty.
func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	clk := newFakeClock()
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	if cfg.BackupDir == "" {
		cfg.BackupDir = t.TempDir()
	}
	if cfg.SAPassword == "" {
		cfg.SAPassword = testPassword
	}
	if cfg.DefaultPages == 0 {
		cfg.DefaultPages = 256
	}
	inst := New(cfg)
	addr, err := inst.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { inst.Close() })
	return &env{t: t, inst: inst, db: connect(t, addr, "sa", cfg.SAPassword), clk: clk, dir: cfg.BackupDir, addr: addr}
}

// path returns a backup file path in the environment's backup directory.
func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

func (e *env) exec(q string, args ...any) {
	e.t.Helper()
	exec(e.t, e.db, q, args...)
}

// work commits n transactions of 3 pages to database name, one every
// 700 ms of fake time, and returns the time of the last one.
func (e *env) work(name string, n int) time.Time {
	e.t.Helper()
	var last time.Time
	for k := 0; k < n; k++ {
		last = e.clk.Advance(700 * time.Millisecond)
		if _, err := e.inst.Commit(name, 3); err != nil {
			e.t.Fatalf("commit to %q: %v", name, err)
		}
	}
	return last
}

// tick advances the fake clock by d and returns the new time.
func (e *env) tick(d time.Duration) time.Time { return e.clk.Advance(d) }

// hash returns a database's content hash now, through EXEC sim.content_hash.
func (e *env) hash(name string) string {
	e.t.Helper()
	return queryHash(e.t, e.db, name, time.Time{})
}

// hashAsOf returns a database's content hash as of t, from the oracle.
func (e *env) hashAsOf(name string, t time.Time) string {
	e.t.Helper()
	h, err := e.inst.ContentHash(name, t)
	if err != nil {
		e.t.Fatalf("content hash of %q as of %v: %v", name, t, err)
	}
	return h
}

// state returns sys.databases.state_desc of a database, or "" when it is
// not listed.
func (e *env) state(name string) string {
	e.t.Helper()
	var s string
	err := e.db.QueryRowContext(e.t.Context(), "SELECT state_desc FROM sys.databases WHERE name = @p1", name).Scan(&s)
	if err == sql.ErrNoRows {
		return ""
	}
	if err != nil {
		e.t.Fatalf("state of %q: %v", name, err)
	}
	return s
}

// backupRow is the part of one msdb.dbo.backupset row the tests check.
type backupRow struct {
	Type                    string
	First, Last, Checkpoint string
	DatabaseBackupLSN       sql.NullString
	DiffBase                sql.NullString
	CopyOnly, BeginsChain   bool
	BulkLogged              bool
	FirstFork, LastFork     mssql.NullUniqueIdentifier
	ForkPoint               sql.NullString
	Start, Finish           time.Time
}

// lastBackup returns the newest msdb.dbo.backupset row of a database.
func (e *env) lastBackup(name string) backupRow {
	e.t.Helper()
	rows := e.backups(name)
	if len(rows) == 0 {
		e.t.Fatalf("no backupset row for %q", name)
	}
	return rows[len(rows)-1]
}

// backups returns a database's msdb.dbo.backupset rows, oldest first.
func (e *env) backups(name string) []backupRow {
	e.t.Helper()
	rows, err := e.db.QueryContext(e.t.Context(), `SELECT type, first_lsn, last_lsn, checkpoint_lsn,
		database_backup_lsn, differential_base_lsn, is_copy_only, begins_log_chain, has_bulk_logged_data,
		first_recovery_fork_guid, last_recovery_fork_guid, fork_point_lsn, backup_start_date, backup_finish_date
		FROM msdb.dbo.backupset WHERE database_name = @p1 ORDER BY backup_set_id`, name)
	if err != nil {
		e.t.Fatalf("read msdb.dbo.backupset: %v", err)
	}
	defer rows.Close()
	var out []backupRow
	for rows.Next() {
		var r backupRow
		var ckpt sql.NullString
		if err := rows.Scan(&r.Type, &r.First, &r.Last, &ckpt, &r.DatabaseBackupLSN, &r.DiffBase, &r.CopyOnly,
			&r.BeginsChain, &r.BulkLogged, &r.FirstFork, &r.LastFork, &r.ForkPoint, &r.Start, &r.Finish); err != nil {
			e.t.Fatalf("scan msdb.dbo.backupset: %v", err)
		}
		r.Checkpoint = ckpt.String
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatalf("read msdb.dbo.backupset: %v", err)
	}
	return out
}

// recoveryStatus is sys.database_recovery_status for one database.
type recoveryStatus struct {
	DatabaseGUID  mssql.NullUniqueIdentifier
	FamilyGUID    mssql.NullUniqueIdentifier
	LastLogBackup sql.NullString
	Fork          mssql.NullUniqueIdentifier
	FirstFork     mssql.NullUniqueIdentifier
	ForkPoint     sql.NullString
}

func (e *env) recoveryStatus(name string) recoveryStatus {
	e.t.Helper()
	var s recoveryStatus
	err := e.db.QueryRowContext(e.t.Context(), `SELECT rs.database_guid, rs.family_guid, rs.last_log_backup_lsn,
		rs.recovery_fork_guid, rs.first_recovery_fork_guid, rs.fork_point_lsn
		FROM sys.databases d JOIN sys.database_recovery_status rs ON rs.database_id = d.database_id
		WHERE d.name = @p1`, name).Scan(&s.DatabaseGUID, &s.FamilyGUID, &s.LastLogBackup, &s.Fork, &s.FirstFork, &s.ForkPoint)
	if err != nil {
		e.t.Fatalf("recovery status of %q: %v", name, err)
	}
	return s
}

// wantAbnormal runs a BACKUP or RESTORE statement that must fail with cause
// as its first error and 3013 ("terminating abnormally") as its last.
func wantAbnormal(t *testing.T, db *sql.DB, cause int32, q string, args ...any) error {
	t.Helper()
	return wantAbnormalOneOf(t, db, []int32{cause}, q, args...)
}

// wantAbnormalOneOf is wantAbnormal where SQL Server may send any of
// several causes.
func wantAbnormalOneOf(t *testing.T, db *sql.DB, causes []int32, q string, args ...any) error {
	t.Helper()
	_, err := db.ExecContext(t.Context(), q, args...)
	if err == nil {
		t.Fatalf("%s: succeeded, want error %v then 3013", q, causes)
	}
	nums := allNumbers(err)
	if len(nums) < 2 || !slices.Contains(causes, nums[0]) || nums[len(nums)-1] != 3013 {
		t.Fatalf("%s: got errors %v (%v), want %v first and 3013 last", q, nums, err, causes)
	}
	return err
}

// queryStrings returns the values of the first column of a query, NULL as
// "".
func queryStrings(t *testing.T, db *sql.DB, q string, args ...any) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			t.Fatalf("%s: scan: %v", q, err)
		}
		out = append(out, s.String)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// headerRow is the part of one RESTORE HEADERONLY row the tests check.
type headerRow struct {
	BackupType   int
	Position     int
	DatabaseName string
	FirstLSN     string
	LastLSN      string
	IsCopyOnly   bool
	Compressed   bool
	BulkLogged   bool
	Checksums    bool
	// SoftwareMajor is SoftwareVersionMajor: the version that wrote it
	SoftwareMajor int
}

// headerOnly runs RESTORE HEADERONLY FROM DISK = path and returns its rows.
func headerOnly(t *testing.T, db *sql.DB, path string) []headerRow {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "RESTORE HEADERONLY FROM DISK = @p1", path)
	if err != nil {
		t.Fatalf("RESTORE HEADERONLY FROM %s: %v", path, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []headerRow
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for k := range vals {
			ptrs[k] = &vals[k]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatalf("scan HEADERONLY: %v", err)
		}
		get := func(name string) any {
			k := slices.Index(cols, name)
			if k < 0 {
				t.Fatalf("RESTORE HEADERONLY has no column %s (columns %v)", name, cols)
			}
			return vals[k]
		}
		out = append(out, headerRow{
			BackupType:    int(asInt(t, get("BackupType"))),
			Position:      int(asInt(t, get("Position"))),
			DatabaseName:  asString(get("DatabaseName")),
			FirstLSN:      asString(get("FirstLSN")),
			LastLSN:       asString(get("LastLSN")),
			IsCopyOnly:    asInt(t, get("IsCopyOnly")) != 0,
			Compressed:    asInt(t, get("Compressed")) != 0,
			SoftwareMajor: int(asInt(t, get("SoftwareVersionMajor"))),
			BulkLogged:    asInt(t, get("HasBulkLoggedData")) != 0,
			Checksums:     asInt(t, get("HasBackupChecksums")) != 0,
		})
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("RESTORE HEADERONLY FROM %s: %v", path, err)
	}
	return out
}

func asInt(t *testing.T, v any) int64 {
	t.Helper()
	switch x := v.(type) {
	case int64:
		return x
	case bool:
		if x {
			return 1
		}
		return 0
	case nil:
		return 0
	}
	t.Fatalf("value %v (%T) is not an integer", v, v)
	return 0
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}
