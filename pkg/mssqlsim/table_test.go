package mssqlsim

import (
	"database/sql"
	"fmt"
	mssql "github.com/microsoft/go-mssqldb"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// connectTo opens a pool whose connections start in database name, as the
// DSN's database= does.
func connectTo(t *testing.T, addr, name string) *sql.DB {
	t.Helper()
	u := &url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", testPassword), Host: addr,
		RawQuery: url.Values{"encrypt": {"disable"}, "database": {name}, "dial timeout": {"5"}}.Encode()}
	db, err := sql.Open("sqlserver", u.String())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// tableState is what the portable oracle compares: COUNT(*) and
// CHECKSUM_AGG(CHECKSUM(*)).
type tableState struct {
	count    int64
	checksum sql.NullInt64
}

func queryState(t *testing.T, db *sql.DB, table string) tableState {
	t.Helper()
	var s tableState
	q := "SELECT COUNT(*), CHECKSUM_AGG(CHECKSUM(*)) FROM " + table
	if err := db.QueryRowContext(t.Context(), q).Scan(&s.count, &s.checksum); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}

const oracleTable = `CREATE TABLE coffer_oracle (id bigint IDENTITY(1,1) PRIMARY KEY,
	committed_at datetime2(3) NOT NULL, payload nvarchar(100) NOT NULL, n int NULL, at datetime NULL, code varchar(10))`

func TestTables(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [Sales]")
	db := connectTo(t, e.addr, "Sales")
	exec(t, db, oracleTable)
	if got := queryState(t, db, "coffer_oracle"); got.count != 0 || got.checksum.Valid {
		t.Fatalf("empty table: got %+v, want 0 rows and a NULL checksum", got)
	}
	at := e.tick(time.Second)
	res, err := db.ExecContext(t.Context(), `INSERT INTO coffer_oracle (committed_at, payload, n, at, code)
		VALUES (SYSDATETIME(), @p1, 7, '2026-01-02 03:04:05.123', 'x'), (@p2, N'two', NULL, NULL, NULL)`, "one", at)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 2 {
		t.Errorf("rows affected: got %d, want 2", n)
	}
	after2 := queryState(t, db, "coffer_oracle")
	if after2.count != 2 || !after2.checksum.Valid {
		t.Fatalf("after two rows: got %+v", after2)
	}
	// the same rows read in another way give the same checksum: it is a
	// function of the rows alone
	if again := queryState(t, e.db, "Sales.dbo.coffer_oracle"); again != after2 {
		t.Errorf("three-part name: got %+v, want %+v", again, after2)
	}
	rows, err := db.QueryContext(t.Context(), "SELECT id, committed_at, payload, at FROM dbo.coffer_oracle ORDER BY id DESC")
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		var c time.Time
		var p string
		var dt sql.NullTime
		if err := rows.Scan(&id, &c, &p, &dt); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if !c.Equal(at) {
			t.Errorf("row %d committed_at: got %v, want %v", id, c, at)
		}
		// datetime2(7) on the wire: 100 ns
		if id == 1 && (!dt.Valid || dt.Time.Nanosecond() != 123333300) {
			t.Errorf("datetime rounds to 1/300 s: got %v, want .1233333", dt.Time)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []int64{2, 1}) {
		t.Errorf("ids: got %v, want [2 1]", ids)
	}
	e.tick(time.Second)
	exec(t, db, "INSERT coffer_oracle (committed_at, payload) VALUES (SYSDATETIME(), 'three')")
	after3 := queryState(t, db, "coffer_oracle")
	if after3.count != 3 || after3.checksum == after2.checksum {
		t.Errorf("after a third row: got %+v, want 3 rows and a checksum other than %+v", after3, after2)
	}
	var before int64
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM coffer_oracle WHERE committed_at <= @p1", at).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if before != 2 {
		t.Errorf("rows committed at or before %v: got %d, want 2", at, before)
	}
	exec(t, db, "DROP TABLE coffer_oracle")
	wantErr(t, db, 208, "SELECT COUNT(*) FROM coffer_oracle")
	exec(t, db, "DROP TABLE IF EXISTS coffer_oracle")
}

func TestTableErrors(t *testing.T) {
	e := newEnv(t, Config{})
	for _, name := range []string{"d", "ro", "off", "rst"} {
		e.exec("CREATE DATABASE " + quoteName(name))
	}
	db := connectTo(t, e.addr, "d")
	exec(t, db, "CREATE TABLE t (id int IDENTITY PRIMARY KEY, name nvarchar(5) NOT NULL, k int)")
	exec(t, db, "CREATE TABLE u (k int PRIMARY KEY)")
	exec(t, db, "INSERT INTO u (k) VALUES (1)")
	for _, name := range []string{"ro", "off", "rst"} {
		exec(t, e.db, "CREATE TABLE "+name+".dbo.t (id int)")
	}
	e.exec("BACKUP DATABASE [rst] TO DISK = 'rst.bak'")
	e.exec("RESTORE DATABASE [rst] FROM DISK = 'rst.bak' WITH NORECOVERY, REPLACE")
	e.exec("ALTER DATABASE [ro] SET READ_ONLY")
	e.exec("ALTER DATABASE [off] SET OFFLINE")

	tests := []struct {
		name string
		want int32
		sql  string
		args []any
	}{
		{"select from a missing table", 208, "SELECT COUNT(*) FROM nope", nil},
		{"insert into a missing table", 208, "INSERT INTO nope (a) VALUES (1)", nil},
		{"another schema", 208, "SELECT COUNT(*) FROM sales.t", nil},
		{"create twice", 2714, "CREATE TABLE t (a int)", nil},
		{"create in another schema", 2760, "CREATE TABLE s.x (a int)", nil},
		{"unknown type", 2715, "CREATE TABLE x (a money)", nil},
		{"duplicate column", 2705, "CREATE TABLE x (a int, A int)", nil},
		{"two primary keys", 8110, "CREATE TABLE x (a int PRIMARY KEY, b int PRIMARY KEY)", nil},
		{"identity on a string", 2749, "CREATE TABLE x (a nvarchar(3) IDENTITY)", nil},
		{"nvarchar too long", 131, "CREATE TABLE x (a nvarchar(4001))", nil},
		{"invalid column", 207, "INSERT INTO t (nope) VALUES (1)", nil},
		{"invalid column in WHERE", 207, "SELECT COUNT(*) FROM t WHERE nope = 1", nil},
		{"NULL into NOT NULL", 515, "INSERT INTO t (name) VALUES (NULL)", nil},
		{"NOT NULL column left out", 515, "INSERT INTO t (k) VALUES (1)", nil},
		{"NULL parameter into NOT NULL", 515, "INSERT INTO t (name) VALUES (@p1)", []any{nil}},
		{"explicit identity", 544, "INSERT INTO t (id, name) VALUES (1, 'a')", nil},
		{"duplicate key", 2627, "INSERT INTO u (k) VALUES (2), (1)", nil},
		{"string too long", 2628, "INSERT INTO t (name) VALUES (@p1)", []any{"toolong"}},
		{"not a number", 245, "INSERT INTO t (name, k) VALUES ('a', 'b')", nil},
		{"int overflow", 8115, "INSERT INTO t (name, k) VALUES ('a', 3000000000)", nil},
		{"more columns than values", 109, "INSERT INTO t (name, k) VALUES ('a')", nil},
		{"fewer columns than values", 110, "INSERT INTO t (name) VALUES ('a', 1)", nil},
		{"values do not match the table", 213, "INSERT INTO t VALUES ('a')", nil},
		{"drop a missing table", 3701, "DROP TABLE nope", nil},
		{"insert into a read-only database", 3906, "INSERT INTO ro.dbo.t (id) VALUES (1)", nil},
		{"create in a read-only database", 3906, "CREATE TABLE ro.dbo.x (a int)", nil},
		{"drop in a read-only database", 3906, "DROP TABLE ro.dbo.t", nil},
		{"select from an offline database", 942, "SELECT COUNT(*) FROM off.dbo.t", nil},
		{"insert into an offline database", 942, "INSERT INTO off.dbo.t (id) VALUES (1)", nil},
		{"select from a restoring database", 927, "SELECT COUNT(*) FROM rst.dbo.t", nil},
		{"insert into a restoring database", 927, "INSERT INTO rst.dbo.t (id) VALUES (1)", nil},
		{"a database that does not exist", 911, "SELECT COUNT(*) FROM nodb.dbo.t", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, db, tt.want, tt.sql, tt.args...)
		})
	}
	// every failed INSERT changed nothing
	if got := queryState(t, db, "u"); got.count != 1 {
		t.Errorf("rows of u after failed inserts: got %d, want 1", got.count)
	}
	if got := queryState(t, db, "t"); got.count != 0 {
		t.Errorf("rows of t after failed inserts: got %d, want 0", got.count)
	}
}

// TestTableBackupRestore inserts rows between a full, a differential and
// log backups, then restores to a new name as of moments in the middle of
// each part of the chain: the rows are exactly those committed at or
// before the moment.
func TestTableBackupRestore(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [Sales]")
	db := connectTo(t, e.addr, "Sales")
	exec(t, db, oracleTable)
	type point struct {
		at    time.Time
		state tableState
	}
	var points []point
	insert := func(n int) {
		t.Helper()
		for range n {
			at := e.tick(700 * time.Millisecond)
			exec(t, db, "INSERT INTO coffer_oracle (committed_at, payload) VALUES (SYSDATETIME(), @p1), (SYSDATETIME(), @p2)",
				"a "+at.String(), "b "+at.String())
			e.work("Sales", 1) // page-only transactions interleave with the rows
			points = append(points, point{at: at, state: queryState(t, db, "coffer_oracle")})
		}
	}
	insert(3)
	e.exec("BACKUP DATABASE [Sales] TO DISK = 'full.bak' WITH CHECKSUM")
	insert(3)
	e.exec("BACKUP DATABASE [Sales] TO DISK = 'diff.bak' WITH DIFFERENTIAL, COMPRESSION")
	insert(3)
	e.exec("BACKUP LOG [Sales] TO DISK = 'log1.trn'")
	insert(3)
	exec(t, db, "BEGIN TRAN m WITH MARK; COMMIT TRAN m")
	markState := queryState(t, db, "coffer_oracle")
	insert(3)
	e.exec("BACKUP LOG [Sales] TO DISK = 'log2.trn'")

	// restore restores the chain to a new name, with or without the
	// differential, up to log last (1 or 2), stopping as that log's
	// restore says.
	restore := func(t *testing.T, name string, diff bool, last int, stop string, args ...any) tableState {
		t.Helper()
		exec(t, e.db, "RESTORE DATABASE "+quoteName(name)+" FROM DISK = 'full.bak' WITH NORECOVERY, MOVE 'Sales' TO @p1, MOVE 'Sales_log' TO @p2",
			e.path(name+".mdf"), e.path(name+".ldf"))
		if diff {
			exec(t, e.db, "RESTORE DATABASE "+quoteName(name)+" FROM DISK = 'diff.bak' WITH NORECOVERY")
		}
		logs := []string{"log1.trn", "log2.trn"}
		if last < 2 {
			logs = logs[:1]
		}
		for k, l := range logs {
			if k < len(logs)-1 {
				exec(t, e.db, "RESTORE LOG "+quoteName(name)+" FROM DISK = '"+l+"' WITH NORECOVERY")
				continue
			}
			// the stop goes on the log that holds it
			exec(t, e.db, "RESTORE LOG "+quoteName(name)+" FROM DISK = '"+l+"' WITH RECOVERY"+stop, args...)
		}
		return queryState(t, e.db, name+".dbo.coffer_oracle")
	}
	// points 0-2 are before the full, 3-5 before the differential, 6-8 in
	// the first log, 9-14 in the second; each stop falls between a row
	// insert and the next transaction
	for _, tt := range []struct {
		k    int
		diff bool
		last int
	}{{3, false, 1}, {4, false, 1}, {6, true, 1}, {6, false, 1}, {8, true, 1}, {9, true, 2}, {11, false, 2}, {14, true, 2}} {
		p := points[tt.k]
		t.Run(fmt.Sprintf("stopat point %d diff %v", tt.k, tt.diff), func(t *testing.T) {
			name := fmt.Sprintf("pit%d%v", tt.k, tt.diff)
			got := restore(t, name, tt.diff, tt.last, ", STOPAT = @p1", mssql.VarChar(p.at.Add(100*time.Millisecond).Format("2006-01-02T15:04:05.000")))
			if got != p.state {
				t.Errorf("restored as of %v: got %+v, want %+v", p.at, got, p.state)
			}
		})
	}
	t.Run("stopatmark", func(t *testing.T) {
		if got := restore(t, "marked", true, 2, ", STOPATMARK = 'm'"); got != markState {
			t.Errorf("restored at the mark: got %+v, want %+v", got, markState)
		}
	})
	t.Run("whole chain", func(t *testing.T) {
		if got, want := restore(t, "whole", true, 2, ""), points[len(points)-1].state; got != want {
			t.Errorf("restored whole: got %+v, want %+v", got, want)
		}
	})
	// a restore of the full alone has the rows of the full only
	e.exec("RESTORE DATABASE [fullonly] FROM DISK = 'full.bak' WITH RECOVERY, MOVE 'Sales' TO @p1, MOVE 'Sales_log' TO @p2",
		e.path("fo.mdf"), e.path("fo.ldf"))
	if got := queryState(t, e.db, "fullonly.dbo.coffer_oracle"); got != points[2].state {
		t.Errorf("full alone: got %+v, want %+v", got, points[2].state)
	}
	// dropping the table is logged like any change
	exec(t, db, "DROP TABLE coffer_oracle")
	e.exec("BACKUP LOG [Sales] TO DISK = 'log3.trn'")
	e.exec("RESTORE DATABASE [dropped] FROM DISK = 'full.bak' WITH NORECOVERY, MOVE 'Sales' TO @p1, MOVE 'Sales_log' TO @p2",
		e.path("dr.mdf"), e.path("dr.ldf"))
	for _, f := range []string{"diff.bak", "log1.trn", "log2.trn", "log3.trn"} {
		kind := "LOG"
		if strings.HasSuffix(f, ".bak") {
			kind = "DATABASE"
		}
		e.exec("RESTORE " + kind + " [dropped] FROM DISK = '" + f + "' WITH NORECOVERY")
	}
	e.exec("RESTORE DATABASE [dropped] WITH RECOVERY")
	wantErr(t, e.db, 208, "SELECT COUNT(*) FROM dropped.dbo.coffer_oracle")
}

// TestTablesPersist saves and loads an instance with a table, and restores
// a backup after the reload.
func TestTablesPersist(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [k]")
	exec(t, e.db, oracleTable[:len("CREATE TABLE ")]+"k.dbo."+oracleTable[len("CREATE TABLE "):])
	e.exec("INSERT INTO k.dbo.coffer_oracle (committed_at, payload, n) VALUES (SYSDATETIME(), N'Zoë', 1), ('2026-01-01', N'é', NULL)")
	e.exec("BACKUP DATABASE [k] TO DISK = 'k.bak'")
	e.tick(time.Second)
	e.exec("INSERT INTO k.dbo.coffer_oracle (committed_at, payload) VALUES (SYSDATETIME(), N'after')")
	want := queryState(t, e.db, "k.dbo.coffer_oracle")
	state := filepath.Join(e.dir, "state.gob")
	if err := e.inst.Save(state); err != nil {
		t.Fatal(err)
	}
	e.inst.Close()
	again, err := Load(state, Config{Now: e.clk.Now, BackupDir: e.dir, SAPassword: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := again.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.Close() })
	db := connect(t, addr, "sa", testPassword)
	if got := queryState(t, db, "k.dbo.coffer_oracle"); got != want {
		t.Errorf("after reload: got %+v, want %+v", got, want)
	}
	// the log since the full survived the reload too
	exec(t, db, "BACKUP LOG [k] TO DISK = 'k.trn'")
	exec(t, db, "RESTORE DATABASE [k2] FROM DISK = 'k.bak' WITH NORECOVERY, MOVE 'k' TO @p1, MOVE 'k_log' TO @p2",
		filepath.Join(e.dir, "k2.mdf"), filepath.Join(e.dir, "k2.ldf"))
	exec(t, db, "RESTORE LOG [k2] FROM DISK = 'k.trn' WITH RECOVERY")
	if got := queryState(t, db, "k2.dbo.coffer_oracle"); got != want {
		t.Errorf("restored after reload: got %+v, want %+v", got, want)
	}
}

func TestChecksumProperties(t *testing.T) {
	a := []any{int64(1), "x", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := []any{int64(2), "x", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := []any{int64(1), "X", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if rowChecksum(a) != rowChecksum(append([]any(nil), a...)) {
		t.Error("CHECKSUM is not deterministic")
	}
	if rowChecksum(a) == rowChecksum(b) || rowChecksum(a) == rowChecksum(c) {
		t.Error("CHECKSUM does not change with a value")
	}
	ab := checksumAgg([]any{rowChecksum(a), rowChecksum(b), nil})
	ba := checksumAgg([]any{rowChecksum(b), rowChecksum(a)})
	if ab != ba {
		t.Errorf("CHECKSUM_AGG depends on order: got %v and %v", ab, ba)
	}
	if aa := checksumAgg([]any{rowChecksum(a), rowChecksum(a)}); aa == int64(0) {
		t.Error("CHECKSUM_AGG of two equal rows cancels out")
	}
	if got := checksumAgg(nil); got != nil {
		t.Errorf("CHECKSUM_AGG of no rows: got %v, want NULL", got)
	}
}
