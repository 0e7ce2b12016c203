package mssqlsim

import (
	"context"
	"database/sql"
	"testing"
)

// TestExclusiveAccess: a session in a database (its login's database or
// USE, idle or not) keeps RESTORE over it, its tail-log backup, DROP and
// OFFLINE from running, as on SQL Server; ALTER DATABASE ... SET
// SINGLE_USER WITH ROLLBACK IMMEDIATE drops the other sessions.
func TestExclusiveAccess(t *testing.T) {
	inst, admin, addr := startInstanceAt(t, Config{DataPath: "/data/"})
	if err := inst.CreateDatabase("Sales", DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	exec(t, admin, "BACKUP DATABASE [Sales] TO DISK = 'sales.bak' WITH FORMAT")

	// an idle session whose current database is Sales
	user := connect(t, addr, "sa", testPassword)
	user.SetMaxOpenConns(1)
	conn, err := user.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(t.Context(), "USE [Sales]"); err != nil {
		t.Fatal(err)
	}
	restore := "RESTORE DATABASE [Sales] FROM DISK = 'sales.bak' WITH REPLACE"
	for _, c := range []struct {
		q    string
		want int32
	}{
		{restore, 3101},
		{"BACKUP LOG [Sales] TO DISK = 'tail.trn' WITH FORMAT, NORECOVERY", 3101},
		{"DROP DATABASE [Sales]", 3702},
		{"ALTER DATABASE [Sales] SET OFFLINE", 5070},
		{"ALTER DATABASE [Sales] SET SINGLE_USER WITH NO_WAIT", 5070},
	} {
		wantErr(t, admin, c.want, c.q)
	}
	// the session itself cannot restore the database it is in
	if _, err := conn.ExecContext(t.Context(), restore); errNumber(err) != 3102 {
		t.Errorf("restore from inside the database: %v; want 3102", err)
	}

	exec(t, admin, "ALTER DATABASE [Sales] SET SINGLE_USER WITH ROLLBACK IMMEDIATE")
	if err := conn.PingContext(t.Context()); err == nil {
		t.Error("the session in Sales survived ROLLBACK IMMEDIATE")
	}
	conn.Close()
	var access string
	if err := admin.QueryRowContext(t.Context(), "SELECT user_access_desc FROM sys.databases WHERE name = N'Sales'").Scan(&access); err != nil || access != "SINGLE_USER" {
		t.Errorf("user_access_desc %q (%v); want SINGLE_USER", access, err)
	}
	exec(t, admin, restore)
	exec(t, admin, "ALTER DATABASE [Sales] SET MULTI_USER")
}

// TestSingleUser: a SINGLE_USER database admits one session.
func TestSingleUser(t *testing.T) {
	inst, admin, addr := startInstanceAt(t, Config{})
	if err := inst.CreateDatabase("Solo", DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	exec(t, admin, "ALTER DATABASE [Solo] SET SINGLE_USER")
	first := onePinned(t, addr)
	if _, err := first.ExecContext(t.Context(), "USE [Solo]"); err != nil {
		t.Fatal(err)
	}
	second := onePinned(t, addr)
	if _, err := second.ExecContext(t.Context(), "USE [Solo]"); errNumber(err) != 924 {
		t.Errorf("a second session entering a SINGLE_USER database: %v; want 924", err)
	}
}

// TestPoolResetLeavesDatabase: a pooled connection that ran USE holds the
// database while idle, and leaves it when the pool resets it for its next
// request (sp_reset_connection).
func TestPoolResetLeavesDatabase(t *testing.T) {
	inst, admin, addr := startInstanceAt(t, Config{DataPath: "/data/"})
	if err := inst.CreateDatabase("Pooled", DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	exec(t, admin, "BACKUP DATABASE [Pooled] TO DISK = 'p.bak' WITH FORMAT")
	pool := connect(t, addr, "sa", testPassword)
	pool.SetMaxOpenConns(1)
	exec(t, pool, "USE [Pooled]")
	wantErr(t, admin, 3101, "RESTORE DATABASE [Pooled] FROM DISK = 'p.bak' WITH REPLACE")
	var db string
	if err := pool.QueryRowContext(t.Context(), "SELECT DB_NAME()").Scan(&db); err != nil || db != "master" {
		t.Fatalf("the reused connection is in %q (%v); want master after the reset", db, err)
	}
	exec(t, admin, "RESTORE DATABASE [Pooled] FROM DISK = 'p.bak' WITH REPLACE")
}

// onePinned returns one connection of its own pool, kept for the test.
func onePinned(t *testing.T, addr string) *sql.Conn {
	t.Helper()
	db := connect(t, addr, "sa", testPassword)
	c, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
