package mssqlsim

import (
	"database/sql"
	"testing"
)

// TestDeclare: a variable declared with a constant value stands for it in
// the rest of the batch, in expressions and wherever BACKUP and RESTORE
// take a variable, so that a script can name a database whose name holds a
// line break without writing one.
func TestDeclare(t *testing.T) {
	e := newEnv(t, Config{})
	query := func(q string, args ...any) sql.NullString {
		t.Helper()
		var s sql.NullString
		if err := e.db.QueryRowContext(t.Context(), q, args...).Scan(&s); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return s
	}
	for _, c := range []struct {
		q    string
		want sql.NullString
	}{
		{"DECLARE @v sysname = N'a' + NCHAR(10) + N'b'; SELECT @v", sql.NullString{String: "a\nb", Valid: true}},
		{"DECLARE @v nvarchar(3) = N'abcdef'; SELECT @v", sql.NullString{String: "abc", Valid: true}},
		{"DECLARE @v nvarchar = N'xyz'; SELECT @v", sql.NullString{String: "x", Valid: true}},
		{"DECLARE @v nvarchar(max) = N'xyz'; SELECT @v", sql.NullString{String: "xyz", Valid: true}},
		{"DECLARE @a int = 40, @b nvarchar(10) = CAST(@a + 2 AS nvarchar(10)); SELECT @b", sql.NullString{String: "42", Valid: true}},
		{"DECLARE @v sysname; SELECT @v", sql.NullString{}},
		{"SELECT CHAR(65) + NCHAR(1046)", sql.NullString{String: "AЖ", Valid: true}},
		{"SELECT NCHAR(70000)", sql.NullString{}},
		{"SELECT CHAR(256)", sql.NullString{}},
	} {
		if got := query(c.q); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.q, got, c.want)
		}
	}
	wantErr(t, e.db, 134, "DECLARE @v int = 1; DECLARE @V int = 2; SELECT @v")
	wantErr(t, e.db, 134, "DECLARE @p1 int = 1; SELECT @p1", 5)
	wantErr(t, e.db, 137, "SELECT @v; DECLARE @v int = 1")
	wantErr(t, e.db, 40517, "DECLARE @v datetime2 = SYSDATETIME(); SELECT @v")

	// a database whose name holds a line break, backed up and restored
	// through variables built with NCHAR
	e.exec("CREATE DATABASE [line\nbreak]")
	e.work("line\nbreak", 2)
	want := e.hash("line\nbreak")
	path := quoteString(e.path("line\nbreak.bak"))
	e.exec("DECLARE @db sysname = N'line' + NCHAR(10) + N'break', @path nvarchar(4000) = N'" + e.path("line") + "' + NCHAR(10) + N'break.bak';\n" +
		"BACKUP DATABASE @db TO DISK = @path WITH INIT")
	files := fileList(t, e.db, e.path("line\nbreak.bak"))
	e.exec("DECLARE @db sysname = N'copy' + NCHAR(13) + NCHAR(10), @l0 sysname = N'" + files[0].logical + "', @l1 sysname = N'" + files[1].logical + "';\n" +
		"RESTORE DATABASE @db FROM DISK = " + path + " WITH MOVE @l0 TO N'/data/copy.mdf', MOVE @l1 TO N'/data/copy.ldf'")
	if got := e.hash("copy\r\n"); got != want {
		t.Errorf("restored through variables: hash %s, want %s", got, want)
	}
	// STOPAT refuses a declared nvarchar variable as it refuses an
	// nvarchar parameter
	wantErr(t, e.db, 206, "DECLARE @t nvarchar(30) = N'2026-01-01T00:00:00'; RESTORE LOG [x] FROM DISK = N'/nowhere' WITH STOPAT = @t")
}
