package mssqlsim

import (
	"bytes"
	"database/sql"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
)

// TestSysDatabases reads sys.databases with the columns discovery uses,
// filtered by a parameter and joined to sys.database_recovery_status and
// sys.master_files.
func TestSysDatabases(t *testing.T) {
	e := newEnv(t, Config{})
	created := e.clk.Now()
	e.exec("CREATE DATABASE [Sales]")
	e.exec("CREATE DATABASE [Simple One]")
	e.exec("ALTER DATABASE [Simple One] SET RECOVERY SIMPLE")

	type dbRow struct {
		Name                           string
		ID                             int
		State, Recovery, UserAccess    string
		ReadOnly, Standby, Encrypted   bool
		Source                         sql.NullInt64
		Replica, GroupDB               mssql.NullUniqueIdentifier
		Created                        time.Time
		Collation                      string
		LastLogBackup                  sql.NullString
		DataFiles, LogFiles, FileCount int
	}
	read := func(name string) dbRow {
		t.Helper()
		var r dbRow
		// the database's own settings are NULL while it is not online
		err := e.db.QueryRowContext(t.Context(), `SELECT d.name, d.database_id, d.state_desc, ISNULL(d.recovery_model_desc, ''),
			ISNULL(d.is_read_only, 0), ISNULL(d.is_in_standby, 0), d.source_database_id, d.replica_id, d.group_database_id,
			ISNULL(d.is_encrypted, 0), d.create_date, ISNULL(d.collation_name, ''), ISNULL(d.user_access_desc, ''), rs.last_log_backup_lsn
			FROM sys.databases AS d
			LEFT JOIN sys.database_recovery_status AS rs ON rs.database_id = d.database_id
			WHERE d.name = @p1`, name).Scan(&r.Name, &r.ID, &r.State, &r.Recovery, &r.ReadOnly, &r.Standby, &r.Source,
			&r.Replica, &r.GroupDB, &r.Encrypted, &r.Created, &r.Collation, &r.UserAccess, &r.LastLogBackup)
		if err != nil {
			t.Fatalf("sys.databases row of %q: %v", name, err)
		}
		rows, err := e.db.QueryContext(t.Context(), `SELECT f.type_desc FROM sys.master_files f
			INNER JOIN sys.databases d ON d.database_id = f.database_id WHERE d.name = @p1 ORDER BY f.file_id`, name)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var typ string
			if err := rows.Scan(&typ); err != nil {
				t.Fatal(err)
			}
			r.FileCount++
			switch typ {
			case "ROWS":
				r.DataFiles++
			case "LOG":
				r.LogFiles++
			}
		}
		return r
	}

	sales := read("Sales")
	if sales.Name != "Sales" || sales.ID < 5 || sales.State != "ONLINE" || sales.Recovery != "FULL" ||
		sales.ReadOnly || sales.Standby || sales.Encrypted || sales.Source.Valid || sales.Replica.Valid ||
		sales.GroupDB.Valid || sales.Collation != "SQL_Latin1_General_CP1_CI_AS" || sales.UserAccess != "MULTI_USER" {
		t.Errorf("Sales: %+v", sales)
	}
	if !sales.Created.Equal(created) {
		t.Errorf("Sales: create_date %v, want the clock's %v", sales.Created, created)
	}
	if sales.LastLogBackup.Valid {
		t.Errorf("Sales before any backup: last_log_backup_lsn %s, want NULL", sales.LastLogBackup.String)
	}
	if sales.DataFiles != 1 || sales.LogFiles != 1 {
		t.Errorf("Sales: %d ROWS and %d LOG files, want 1 and 1", sales.DataFiles, sales.LogFiles)
	}
	if got := read("Simple One").Recovery; got != "SIMPLE" {
		t.Errorf("Simple One: recovery_model_desc %s, want SIMPLE", got)
	}

	// system databases have their fixed ids
	ids := map[string]int{"master": 1, "tempdb": 2, "model": 3, "msdb": 4}
	for name, id := range ids {
		if got := read(name).ID; got != id {
			t.Errorf("%s: database_id %d, want %d", name, got, id)
		}
	}
	// the shapes discovery uses to skip databases
	got := queryStrings(t, e.db, `SELECT name FROM sys.databases
		WHERE database_id > 4 AND state_desc = 'ONLINE' AND source_database_id IS NULL AND name <> N'tempdb'
		ORDER BY name`)
	if strings.Join(got, ",") != "Sales,Simple One" {
		t.Errorf("user databases: %q", got)
	}
	got = queryStrings(t, e.db, `SELECT name FROM sys.databases WHERE recovery_model_desc IN ('FULL', 'BULK_LOGGED') AND database_id > 4`)
	if strings.Join(got, ",") != "Sales" {
		t.Errorf("databases with a log chain: %q", got)
	}
	got = queryStrings(t, e.db, `SELECT d.name FROM sys.databases d WHERE d.name LIKE 'S%' AND NOT d.name = 'Sales'`)
	if strings.Join(got, ",") != "Simple One" {
		t.Errorf("LIKE: %q", got)
	}
	var n int
	if err := e.db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM sys.databases").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("COUNT(*) FROM sys.databases: %d, want 6", n)
	}

	// a restoring database has no recovery status row
	e.exec("BACKUP DATABASE [Sales] TO DISK = 'f.bak'")
	e.exec("RESTORE DATABASE [R] FROM DISK = 'f.bak' WITH NORECOVERY, " + e.moveTo("Sales", "R"))
	r := read("R")
	if r.State != "RESTORING" || r.LastLogBackup.Valid {
		t.Errorf("R while restoring: state %s last_log_backup_lsn %v, want RESTORING and NULL", r.State, r.LastLogBackup)
	}
	if got := read("Sales").LastLogBackup; !got.Valid {
		t.Errorf("Sales after a full: last_log_backup_lsn NULL, want the chain's start")
	}
}

// TestServerProperties checks the instance-level functions discovery
// reads.
func TestServerProperties(t *testing.T) {
	e := newEnv(t, Config{ServerName: "SIMSQL07"})
	e.exec("CREATE DATABASE [s]")
	var version, full, server, edition string
	var sysadmin, preferred int
	err := e.db.QueryRowContext(t.Context(), `SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)), @@VERSION,
		@@SERVERNAME, CAST(SERVERPROPERTY('Edition') AS nvarchar(128)), IS_SRVROLEMEMBER('sysadmin'),
		sys.fn_hadr_backup_is_preferred_replica(@p1)`, "s").Scan(&version, &full, &server, &edition, &sysadmin, &preferred)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(version, "16.") {
		t.Errorf("ProductVersion %q, want 16.x (SQL Server 2022)", version)
	}
	if !strings.HasPrefix(full, "Microsoft SQL Server 2022") || !strings.Contains(full, version) {
		t.Errorf("@@VERSION %q", full)
	}
	if server != "SIMSQL07" {
		t.Errorf("@@SERVERNAME %q, want SIMSQL07", server)
	}
	if edition == "" {
		t.Error("SERVERPROPERTY('Edition') is empty")
	}
	if sysadmin != 1 {
		t.Errorf("IS_SRVROLEMEMBER('sysadmin') for sa: %d, want 1", sysadmin)
	}
	if preferred != 1 {
		t.Errorf("sys.fn_hadr_backup_is_preferred_replica for a database not in an AG: %d, want 1", preferred)
	}
	e.inst.AddLogin("reader", "r-Pa55word", false)
	op := connect(t, e.addr, "reader", "r-Pa55word")
	if err := op.QueryRowContext(t.Context(), "SELECT IS_SRVROLEMEMBER('sysadmin')").Scan(&sysadmin); err != nil {
		t.Fatal(err)
	}
	if sysadmin != 0 {
		t.Errorf("IS_SRVROLEMEMBER('sysadmin') for a login without it: %d, want 0", sysadmin)
	}
	if err := op.QueryRowContext(t.Context(), "SELECT SUSER_SNAME()").Scan(&server); err != nil || server != "reader" {
		t.Errorf("SUSER_SNAME(): %q, %v, want reader", server, err)
	}
}

// TestHeaderOnly appends several backup sets to one file with NOINIT,
// reads them back with RESTORE HEADERONLY, restores a chain from the one
// file with FILE = n, and overwrites the file with INIT.
func TestHeaderOnly(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	e.work("s", 5)
	e.exec("BACKUP DATABASE [s] TO DISK = 'all.bak' WITH NOINIT")
	e.work("s", 5)
	e.exec("BACKUP DATABASE [s] TO DISK = 'all.bak' WITH DIFFERENTIAL")
	e.work("s", 5)
	e.exec("BACKUP LOG [s] TO DISK = 'all.bak' WITH NOINIT")
	want := e.hash("s")
	e.work("s", 5)
	e.exec("BACKUP DATABASE [s] TO DISK = 'all.bak' WITH COPY_ONLY, NOINIT")

	h := headerOnly(t, e.db, e.path("all.bak"))
	msdb := e.backups("s")
	if len(h) != 4 || len(msdb) != 4 {
		t.Fatalf("RESTORE HEADERONLY: %d sets, msdb %d rows, want 4 and 4", len(h), len(msdb))
	}
	for k, want := range []struct {
		typ      int
		copyOnly bool
	}{{1, false}, {5, false}, {2, false}, {1, true}} {
		got := h[k]
		if got.Position != k+1 || got.BackupType != want.typ || got.IsCopyOnly != want.copyOnly || got.DatabaseName != "s" {
			t.Errorf("set %d: %+v, want Position %d BackupType %d IsCopyOnly %v", k+1, got, k+1, want.typ, want.copyOnly)
		}
		if got.FirstLSN != msdb[k].First || got.LastLSN != msdb[k].Last {
			t.Errorf("set %d: FirstLSN %s LastLSN %s, msdb says %s %s", k+1, got.FirstLSN, got.LastLSN, msdb[k].First, msdb[k].Last)
		}
	}

	scanSeekingAndStreaming(t, e.path("all.bak"))

	e.exec("RESTORE DATABASE [r] FROM DISK = 'all.bak' WITH FILE = 1, NORECOVERY, " + e.moveTo("s", "r"))
	e.exec("RESTORE DATABASE [r] FROM DISK = 'all.bak' WITH FILE = 2, NORECOVERY")
	e.exec("RESTORE LOG [r] FROM DISK = 'all.bak' WITH FILE = 3, RECOVERY")
	if got := e.hash("r"); got != want {
		t.Fatalf("chain from one file: hash %s, want %s", got, want)
	}
	wantAbnormal(t, e.db, 4038, "RESTORE DATABASE [x] FROM DISK = 'all.bak' WITH FILE = 5, "+e.moveTo("s", "x"))

	e.exec("BACKUP LOG [s] TO DISK = 'all.bak' WITH INIT")
	if h := headerOnly(t, e.db, e.path("all.bak")); len(h) != 1 || h[0].BackupType != 2 || h[0].Position != 1 {
		t.Fatalf("after INIT: %+v, want one log set at position 1", h)
	}
	e.exec("BACKUP DATABASE [s] TO DISK = 'all.bak' WITH FORMAT")
	if h := headerOnly(t, e.db, e.path("all.bak")); len(h) != 1 || h[0].BackupType != 1 {
		t.Fatalf("after FORMAT: %+v, want one full set", h)
	}
}

// TestFileListOnly checks the file list that feeds WITH MOVE.
func TestFileListOnly(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec(`CREATE DATABASE [s] ON (NAME = N's_data', FILENAME = '/data/s.mdf', SIZE = 4MB),
		(NAME = s_more, FILENAME = '/data/s_more.ndf', SIZE = 1MB)
		LOG ON (NAME = 's_journal', FILENAME = '/logs/s.ldf')`)
	e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")
	files := fileList(t, e.db, e.path("f.bak"))
	want := []fileRow{{"s_data", "/data/s.mdf", "D"}, {"s_more", "/data/s_more.ndf", "D"}, {"s_journal", "/logs/s.ldf", "L"}}
	if len(files) != len(want) {
		t.Fatalf("RESTORE FILELISTONLY: %+v, want %+v", files, want)
	}
	for k := range want {
		if files[k] != want[k] {
			t.Errorf("file %d: %+v, want %+v", k, files[k], want[k])
		}
	}
	// the same names in sys.master_files
	got := queryStrings(t, e.db, `SELECT f.name + N'|' + f.physical_name FROM sys.master_files AS f
		JOIN sys.databases AS d ON d.database_id = f.database_id WHERE d.name = N's' ORDER BY f.file_id`)
	if strings.Join(got, ",") != "s_data|/data/s.mdf,s_more|/data/s_more.ndf,s_journal|/logs/s.ldf" {
		t.Errorf("sys.master_files: %q", got)
	}
	// every file must move, or collide
	e.exec("RESTORE DATABASE [r] FROM DISK = 'f.bak' WITH MOVE 's_data' TO '/data/r.mdf', MOVE 's_more' TO '/data/r.ndf', MOVE 's_journal' TO '/logs/r.ldf'")
	wantAbnormal(t, e.db, 1834, "RESTORE DATABASE [r2] FROM DISK = 'f.bak' WITH MOVE 's_data' TO '/data/r2.mdf', MOVE 's_journal' TO '/logs/r2.ldf'")
	if got, want := e.hash("r"), e.hash("s"); got != want {
		t.Fatalf("restored hash %s, want %s", got, want)
	}
}

// corruptPage flips bytes inside the body of the page nearest the middle
// of an uncompressed backup file, so the damage is inside page data and not
// in the file's framing.
func corruptPage(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var magic [4]byte
	binary.LittleEndian.PutUint32(magic[:], pageMagic)
	k := bytes.Index(b[len(b)/2:], magic[:])
	if k < 0 {
		t.Fatalf("no page in the second half of %s", path)
	}
	at := len(b)/2 + k + 1000
	for j := 0; j < 16; j++ {
		b[at+j] ^= 0x5a
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyOnlyAndDamage checks RESTORE VERIFYONLY on good backups, and
// what damage in the middle of a backup does: detected WITH CHECKSUM (3189,
// and 3183 on restore), undetected without, where the restore succeeds with
// different content that DBCC CHECKDB reports (8939).
func TestVerifyOnlyAndDamage(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	e.work("s", 20)
	e.exec("BACKUP DATABASE [s] TO DISK = 'sum.bak' WITH CHECKSUM")
	e.exec("BACKUP DATABASE [s] TO DISK = 'nosum.bak' WITH COPY_ONLY")
	want := e.hash("s")
	for _, q := range []string{
		"RESTORE VERIFYONLY FROM DISK = 'sum.bak'",
		"RESTORE VERIFYONLY FROM DISK = 'sum.bak' WITH CHECKSUM",
		"RESTORE VERIFYONLY FROM DISK = 'nosum.bak'",
	} {
		e.exec(q)
	}
	wantAbnormal(t, e.db, 3187, "RESTORE VERIFYONLY FROM DISK = 'nosum.bak' WITH CHECKSUM")
	if h := headerOnly(t, e.db, e.path("sum.bak")); !h[0].Checksums {
		t.Error("HasBackupChecksums of a backup WITH CHECKSUM: 0, want 1")
	}

	corruptPage(t, e.path("sum.bak"))
	wantAbnormal(t, e.db, 3189, "RESTORE VERIFYONLY FROM DISK = 'sum.bak' WITH CHECKSUM")
	wantAbnormal(t, e.db, 3189, "RESTORE VERIFYONLY FROM DISK = 'sum.bak'")
	wantAbnormal(t, e.db, 3183, "RESTORE DATABASE [a] FROM DISK = 'sum.bak' WITH "+e.moveTo("s", "a"))

	corruptPage(t, e.path("nosum.bak"))
	e.exec("RESTORE VERIFYONLY FROM DISK = 'nosum.bak'") // nothing to check the pages against
	e.exec("RESTORE DATABASE [b] FROM DISK = 'nosum.bak' WITH " + e.moveTo("s", "b"))
	if got := e.hash("b"); got == want {
		t.Fatal("a backup damaged without checksums restored to the original content")
	}
	wantErr(t, e.db, 8939, "DBCC CHECKDB ([b]) WITH NO_INFOMSGS")
	e.exec("DBCC CHECKDB ([s]) WITH NO_INFOMSGS")
	e.exec("DBCC CHECKDB (N's')")
	// a backup of the damaged database WITH CHECKSUM refuses the bad page
	wantAbnormal(t, e.db, 3043, "BACKUP DATABASE [b] TO DISK = 'b.bak' WITH CHECKSUM")
}

// TestAlterDatabase checks that ALTER DATABASE options show in
// sys.databases and are enforced, and DROP DATABASE.
func TestAlterDatabase(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	row := func() (state, model string, ro bool) {
		t.Helper()
		if err := e.db.QueryRowContext(t.Context(), "SELECT state_desc, ISNULL(recovery_model_desc, ''), ISNULL(is_read_only, 0) FROM sys.databases WHERE name = N's'").
			Scan(&state, &model, &ro); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, m := range []string{"SIMPLE", "BULK_LOGGED", "FULL"} {
		e.exec("ALTER DATABASE [s] SET RECOVERY " + m)
		if _, got, _ := row(); got != m {
			t.Errorf("after SET RECOVERY %s: recovery_model_desc %s", m, got)
		}
	}

	e.exec("ALTER DATABASE [s] SET READ_ONLY WITH ROLLBACK IMMEDIATE")
	if _, _, ro := row(); !ro {
		t.Error("after SET READ_ONLY: is_read_only 0")
	}
	wantErr(t, e.db, 3906, "EXEC sim.commit @database = N's'")
	e.exec("BACKUP DATABASE [s] TO DISK = 'ro.bak'") // a read-only database backs up
	e.exec("ALTER DATABASE [s] SET READ_WRITE")
	if _, _, ro := row(); ro {
		t.Error("after SET READ_WRITE: is_read_only 1")
	}
	e.exec("EXEC sim.commit @database = N's'")

	e.exec("ALTER DATABASE [s] SET OFFLINE WITH ROLLBACK IMMEDIATE")
	if state, _, _ := row(); state != "OFFLINE" {
		t.Errorf("after SET OFFLINE: state_desc %s", state)
	}
	wantAbnormal(t, e.db, 942, "BACKUP DATABASE [s] TO DISK = 'off.bak'")
	wantErr(t, e.db, 942, "EXEC sim.commit @database = N's'")
	e.exec("ALTER DATABASE [s] SET ONLINE")
	if state, _, _ := row(); state != "ONLINE" {
		t.Errorf("after SET ONLINE: state_desc %s", state)
	}
	e.exec("BACKUP DATABASE [s] TO DISK = 'on.bak'")

	wantErr(t, e.db, 5011, "ALTER DATABASE [nope] SET RECOVERY SIMPLE")
	wantErr(t, e.db, 5011, "ALTER DATABASE [nope] SET OFFLINE")

	e.exec("DROP DATABASE [s]")
	if got := e.state("s"); got != "" {
		t.Errorf("after DROP DATABASE: state %q, want no row", got)
	}
	wantErr(t, e.db, 3701, "DROP DATABASE [s]")
	e.exec("DROP DATABASE IF EXISTS [s]")
	wantErr(t, e.db, 3708, "DROP DATABASE [master]")
	wantAbnormal(t, e.db, 911, "BACKUP DATABASE [s] TO DISK = 'gone.bak'")
	// the name is free again
	e.exec("CREATE DATABASE [s]")
}

// TestMsdbQueries checks the msdb query shapes a backup tool uses to find
// its chain.
func TestMsdbQueries(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	e.exec("CREATE DATABASE [t]")
	e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")
	e.exec("BACKUP DATABASE [t] TO DISK = 't.bak'")
	var lastLog string
	for k := 0; k < 3; k++ {
		e.work("s", 2)
		e.exec("BACKUP LOG [s] TO DISK = 'l.trn'")
		lastLog = e.lastBackup("s").Last
	}
	var got string
	if err := e.db.QueryRowContext(t.Context(), `SELECT TOP 1 CAST(last_lsn AS nvarchar(30)) FROM msdb.dbo.backupset
		WHERE database_name = @p1 AND type = 'L' AND is_copy_only = 0 ORDER BY backup_finish_date DESC, backup_set_id DESC`, "s").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != lastLog {
		t.Errorf("newest log's last_lsn %s, want %s", got, lastLog)
	}
	var count int
	var newest time.Time
	if err := e.db.QueryRowContext(t.Context(), `SELECT COUNT(*), MAX(backup_finish_date) FROM msdb..backupset WHERE database_name = N's'`).Scan(&count, &newest); err != nil {
		t.Fatal(err)
	}
	if count != 4 || !newest.Equal(e.clk.Now()) {
		t.Errorf("COUNT(*), MAX(backup_finish_date): %d %v, want 4 %v", count, newest, e.clk.Now())
	}
	devices := queryStrings(t, e.db, `SELECT m.physical_device_name FROM msdb.dbo.backupset b
		JOIN msdb.dbo.backupmediafamily m ON m.media_set_id = b.media_set_id WHERE b.database_name = N't'`)
	if len(devices) != 1 || !strings.HasSuffix(devices[0], "t.bak") {
		t.Errorf("backupmediafamily of t: %q, want one device t.bak", devices)
	}
	if n := len(queryStrings(t, e.db, "USE msdb; SELECT type FROM dbo.backupset")); n != 5 {
		t.Errorf("dbo.backupset in msdb: %d rows, want 5", n)
	}
}

// TestLikePatterns checks LIKE, including character classes that escape _
// and %.
func TestLikePatterns(t *testing.T) {
	e := newEnv(t, Config{})
	for _, n := range []string{"a_b", "axb", "a%b", "[x]", "Ab"} {
		e.exec("CREATE DATABASE " + quoteName(n))
	}
	tests := []struct{ pattern, want string }{
		{"a_b", "a%b,a_b,axb"},
		{"a[_]b", "a_b"},
		{"a[%]b", "a%b"},
		{"a[^_]b", "a%b,axb"},
		{"[[]x]", "[x]"},
		{"[a-b]%", "Ab,a%b,a_b,axb"},
		{"a%", "Ab,a%b,a_b,axb"},
		{"%b", "Ab,a%b,a_b,axb"},
		{"_b", "Ab"},
		{"[xyz]%", ""},
	}
	for _, tc := range tests {
		t.Run(tc.pattern, func(t *testing.T) {
			got := queryStrings(t, e.db, "SELECT name FROM sys.databases WHERE database_id > 4 AND name LIKE @p1", tc.pattern)
			slices.Sort(got)
			if strings.Join(got, ",") != tc.want {
				t.Fatalf("LIKE %q: %q, want %q", tc.pattern, strings.Join(got, ","), tc.want)
			}
		})
	}
}

// scanSeekingAndStreaming scans the backup file at path, and each of a
// series of its prefixes, both from the file, which steps over block
// bodies by seeking, and as a stream, which reads them: both must find
// the same sets, the same end, and fail alike.
func scanSeekingAndStreaming(t *testing.T, path string) {
	t.Helper()
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.bak")
	for _, n := range []int{len(whole), len(whole) - 1, len(whole) * 3 / 4, len(whole) / 2, len(whole) / 3, 100} {
		if err := os.WriteFile(cut, whole[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(cut)
		if err != nil {
			t.Fatal(err)
		}
		m1, sets1, end1, err1 := scanSets(f)
		f.Close()
		m2, sets2, end2, err2 := scanSets(struct{ io.Reader }{bytes.NewReader(whole[:n])})
		if (err1 == nil) != (err2 == nil) || end1 != end2 || !reflect.DeepEqual(m1, m2) || !reflect.DeepEqual(sets1, sets2) {
			t.Fatalf("%d of %d bytes: seeking found %d sets ending at %d (%v), streaming %d sets ending at %d (%v)",
				n, len(whole), len(sets1), end1, err1, len(sets2), end2, err2)
		}
		if n == len(whole) && (err1 != nil || len(sets1) < 2) {
			t.Fatalf("the whole file: %d sets, %v; want all of them", len(sets1), err1)
		}
	}
}
