package mssqlsim

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"unicode/utf16"
)

// hostileNames are database names SQL Server allows and careless code
// breaks on.
var hostileNames = []struct {
	name string // test name
	db   string
}{
	{"bracket", "Sales]Archive"},
	{"only a bracket", "]"},
	{"brackets", "[[x]]"},
	{"quote", "O'Brien's"},
	{"semicolon", "a; DROP DATABASE master; --"},
	{"spaces at both ends", "  padded name  "},
	{"non-Latin", "Продажи 売上"},
	{"percent plus ampersand", "50% + R&D!"},
	{"double quote and slash", `say "hi" / \ bye`},
	{"128 characters", strings.Repeat("n", 120) + "]'; ]]'x"},
	{"128 UTF-16 units with surrogates", strings.Repeat("𝔖", 60) + strings.Repeat("ж", 8)},
}

// TestHostileNames creates every hostile name with CREATE DATABASE and a
// bracket-quoted name, backs it up with parameters and with literals,
// restores it to another hostile name with MOVE, and compares content.
func TestHostileNames(t *testing.T) {
	e := newEnv(t, Config{})
	for k, hn := range hostileNames {
		t.Run(hn.name, func(t *testing.T) {
			src := hn.db
			if n := len(utf16.Encode([]rune(src))); n > 128 {
				t.Fatalf("test name %q is %d UTF-16 units", src, n)
			}
			create := "CREATE DATABASE " + quoteName(src)
			if len(utf16.Encode([]rune(src))) > 123 {
				// SQL Server appends _log to a default log file name,
				// which must stay a sysname: long names name their files
				create += fmt.Sprintf(" ON (NAME = %s, FILENAME = %s) LOG ON (NAME = %s, FILENAME = %s)",
					quoteName(src), quoteString(e.path(fmt.Sprintf("src%d.mdf", k))),
					quoteString("log'"+fmt.Sprint(k)), quoteString(e.path(fmt.Sprintf("src%d.ldf", k))))
			}
			e.exec(create)
			var got string
			if err := e.db.QueryRowContext(t.Context(), "SELECT name FROM sys.databases WHERE name = @p1", src).Scan(&got); err != nil {
				t.Fatalf("sys.databases WHERE name = @p1: %v", err)
			}
			if got != src {
				t.Fatalf("sys.databases.name %q, want %q", got, src)
			}
			if _, err := e.inst.Commit(src, 5); err != nil {
				t.Fatal(err)
			}
			exec(t, e.db, "EXEC sim.commit @database = @p1, @transactions = 3", src)

			full := e.path(fmt.Sprintf("full%d.bak", k))
			logPath := e.path(fmt.Sprintf("log %d ']; x.trn", k))
			e.exec("BACKUP DATABASE @db TO DISK = @path WITH INIT, CHECKSUM", sql.Named("db", src), sql.Named("path", full))
			e.work(src, 3)
			e.exec("BACKUP LOG " + quoteName(src) + " TO DISK = " + quoteString(logPath))
			want := e.hash(src)

			if rows := e.backups(src); len(rows) != 2 {
				t.Fatalf("msdb.dbo.backupset rows WHERE database_name = @p1: %d, want 2", len(rows))
			}
			if h := headerOnly(t, e.db, full); len(h) != 1 || h[0].DatabaseName != src {
				t.Fatalf("RESTORE HEADERONLY DatabaseName: %+v, want %q", h, src)
			}

			files := fileList(t, e.db, full)
			if len(files) != 2 {
				t.Fatalf("RESTORE FILELISTONLY: %d files, want 2", len(files))
			}
			dst := renamed(src)
			args := []any{sql.Named("db", dst), sql.Named("path", full)}
			q := "RESTORE DATABASE @db FROM DISK = @path WITH NORECOVERY"
			for j, f := range files {
				q += fmt.Sprintf(", MOVE @l%d TO @p%d", j, j)
				args = append(args, sql.Named(fmt.Sprintf("l%d", j), f.logical), sql.Named(fmt.Sprintf("p%d", j), e.path(fmt.Sprintf("dst%d_%d", k, j))))
			}
			e.exec(q, args...)
			if got := e.state(dst); got != "RESTORING" {
				t.Fatalf("%q after RESTORE WITH NORECOVERY: state %q, want RESTORING", dst, got)
			}
			e.exec("RESTORE LOG " + quoteName(dst) + " FROM DISK = " + quoteString(logPath) + " WITH RECOVERY")
			if got := e.hash(dst); got != want {
				t.Fatalf("restored %q: hash %s, want %s", dst, got, want)
			}

			// and back over the source, by literal, with REPLACE
			e.exec("RESTORE DATABASE " + quoteName(src) + " FROM DISK = " + quoteString(full) + " WITH REPLACE, NORECOVERY")
			e.exec("RESTORE LOG "+quoteName(src)+" FROM DISK = @p1 WITH RECOVERY", logPath)
			if got := e.hash(src); got != want {
				t.Fatalf("%q restored over itself: hash %s, want %s", src, got, want)
			}
			e.exec("ALTER DATABASE " + quoteName(src) + " SET RECOVERY SIMPLE")
			var model string
			if err := e.db.QueryRowContext(t.Context(), "SELECT recovery_model_desc FROM sys.databases WHERE name = @p1", src).Scan(&model); err != nil {
				t.Fatal(err)
			}
			if model != "SIMPLE" {
				t.Fatalf("%q after ALTER DATABASE SET RECOVERY SIMPLE: %s", src, model)
			}
			e.exec("DROP DATABASE " + quoteName(dst))
			if got := e.state(dst); got != "" {
				t.Fatalf("%q after DROP DATABASE: state %q, want no row", dst, got)
			}
		})
	}
}

// renamed returns a different hostile name of at most 128 UTF-16 units.
func renamed(src string) string {
	r := []rune("]копия' " + src)
	for len(utf16.Encode(r)) > 128 {
		r = r[:len(r)-1]
	}
	return string(r)
}

type fileRow struct{ logical, physical, typ string }

func fileList(t *testing.T, db *sql.DB, path string) []fileRow {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "RESTORE FILELISTONLY FROM DISK = @p1", path)
	if err != nil {
		t.Fatalf("RESTORE FILELISTONLY: %v", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []fileRow
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for k := range vals {
			ptrs[k] = &vals[k]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var f fileRow
		for k, c := range cols {
			switch c {
			case "LogicalName":
				f.logical = asString(vals[k])
			case "PhysicalName":
				f.physical = asString(vals[k])
			case "Type":
				f.typ = asString(vals[k])
			}
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNameLimits checks the sysname limit: 128 UTF-16 code units pass,
// 129 fail with 103, whether the name is quoted or a parameter.
func TestNameLimits(t *testing.T) {
	e := newEnv(t, Config{})
	long := strings.Repeat("x", 129)
	wantErr(t, e.db, 103, "CREATE DATABASE "+quoteName(long))
	wantErr(t, e.db, 103, "SELECT name FROM sys.databases WHERE name = "+quoteName(long))
	// a surrogate pair counts twice
	wantErr(t, e.db, 103, "CREATE DATABASE "+quoteName(strings.Repeat("𝔖", 64)+"x"))
	// 128 units need a logical log file name: the derived one (name +
	// "_log") limits a name to 123 (407)
	wantErr(t, e.db, 407, "CREATE DATABASE "+quoteName(strings.Repeat("𝔖", 64)))
	e.exec("CREATE DATABASE " + quoteName(strings.Repeat("𝔖", 64)) + " ON (NAME = 's_data') LOG ON (NAME = 's_log')")
	e.exec("CREATE DATABASE " + quoteName(strings.Repeat("𝔖", 61)+"x"))
	e.exec("CREATE DATABASE [ok]")
	wantErr(t, e.db, 1038, "CREATE DATABASE []")
	// trailing spaces do not count when names are compared
	wantErr(t, e.db, 1801, "CREATE DATABASE [ok   ]")
	wantErr(t, e.db, 1801, "CREATE DATABASE [OK]")
	e.exec("CREATE DATABASE [  ok]") // leading spaces do
}

// TestCaseSensitiveNames checks that under a case-sensitive server
// collation Sales and sales are two databases that back up and restore
// independently, and that under the default collation they are one.
func TestCaseSensitiveNames(t *testing.T) {
	t.Run("case-insensitive", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.exec("CREATE DATABASE [Sales]")
		wantErr(t, e.db, 1801, "CREATE DATABASE [sales]")
		var n int
		if err := e.db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM sys.databases WHERE name = N'SALES'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("WHERE name = N'SALES': %d rows, want 1", n)
		}
	})
	t.Run("case-sensitive", func(t *testing.T) {
		e := newEnv(t, Config{CaseSensitive: true})
		var coll string
		if err := e.db.QueryRowContext(t.Context(), "SELECT CAST(SERVERPROPERTY('Collation') AS nvarchar(128))").Scan(&coll); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(coll, "_CS_") {
			t.Fatalf("server collation %q, want a case-sensitive one", coll)
		}
		names := []string{"Sales", "sales", "SALES"}
		for k, n := range names {
			e.exec(fmt.Sprintf("CREATE DATABASE %s ON (NAME = %s, FILENAME = %s) LOG ON (NAME = %s, FILENAME = %s)",
				quoteName(n), quoteName(n), quoteString(e.path(fmt.Sprintf("d%d.mdf", k))),
				quoteName(n+"_log"), quoteString(e.path(fmt.Sprintf("d%d.ldf", k)))))
			e.work(n, k+2)
		}
		hashes := map[string]string{}
		for k, n := range names {
			hashes[n] = e.hash(n)
			e.exec("BACKUP DATABASE @p1 TO DISK = @p2", n, e.path(fmt.Sprintf("b%d.bak", k)))
		}
		if hashes["Sales"] == hashes["sales"] {
			t.Fatal("Sales and sales have the same content")
		}
		var n int
		if err := e.db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM sys.databases WHERE name = N'sales'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("WHERE name = N'sales': %d rows, want 1", n)
		}
		if rows := e.backups("sales"); len(rows) != 1 {
			t.Fatalf("msdb rows for sales: %d, want 1", len(rows))
		}
		// each backup restores over its own database only
		wantAbnormal(t, e.db, 3154, "RESTORE DATABASE [sales] FROM DISK = @p1", e.path("b0.bak"))
		for k, n := range names {
			e.work(n, 2)
			e.exec("RESTORE DATABASE @p1 FROM DISK = @p2 WITH REPLACE", n, e.path(fmt.Sprintf("b%d.bak", k)))
		}
		for _, n := range names {
			if got := e.hash(n); got != hashes[n] {
				t.Errorf("%s after restore: hash %s, want %s", n, got, hashes[n])
			}
		}
		e.exec("DROP DATABASE [sales]")
		if got := e.state("Sales"); got != "ONLINE" {
			t.Fatalf("after DROP DATABASE [sales]: Sales is %q, want ONLINE", got)
		}
		if got := e.state("sales"); got != "" {
			t.Fatalf("after DROP DATABASE [sales]: sales is %q, want gone", got)
		}
	})
	t.Run("default file names", func(t *testing.T) {
		// The instance's default paths are Linux paths (/var/opt/mssql/data/),
		// where Sales.mdf and sales.mdf are two files; SQL Server on Linux
		// creates both databases.
		e := newEnv(t, Config{CaseSensitive: true})
		e.exec("CREATE DATABASE [Sales]")
		e.exec("CREATE DATABASE [sales]")
	})
}
