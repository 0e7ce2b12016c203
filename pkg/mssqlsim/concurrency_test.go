package mssqlsim

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"
)

// eventually polls cond every few milliseconds until it holds or the
// timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		case <-tick.C:
		}
	}
}

// TestConcurrentSessions runs 20 sessions at once, each on its own
// connection creating, changing, backing up, restoring and querying its own
// database, while a workload writes to another database that some of them
// also back up. Run with -race.
func TestConcurrentSessions(t *testing.T) {
	const sessions = 20
	dir := t.TempDir()
	inst := New(Config{SAPassword: testPassword, BackupDir: dir, DefaultPages: 128}) // real clock
	addr, err := inst.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	db := connect(t, addr, "sa", testPassword)
	exec(t, db, "CREATE DATABASE [Busy]")
	exec(t, db, "BACKUP DATABASE [Busy] TO DISK = 'busy_full.bak'")
	start := queryHash(t, db, "Busy", time.Time{})
	if err := inst.StartWorkload("Busy", WorkloadOptions{TPS: 500, PagesPerTx: 2, MarkEvery: 7}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the workload changes Busy", func() bool {
		return queryHash(t, db, "Busy", time.Time{}) != start
	})

	var wg sync.WaitGroup
	for k := 0; k < sessions; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := clientSession(t.Context(), db, k); err != nil {
				t.Errorf("session %d: %v", k, err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// Busy kept changing all along; stop it and check its chain restores
	if err := inst.StartWorkload("Busy", WorkloadOptions{}); err != nil {
		t.Fatal(err)
	}
	exec(t, db, "BACKUP LOG [Busy] TO DISK = 'busy_log.trn'")
	want := queryHash(t, db, "Busy", time.Time{})
	exec(t, db, "RESTORE DATABASE [BusyR] FROM DISK = 'busy_full.bak' WITH NORECOVERY, MOVE 'Busy' TO '/data/br.mdf', MOVE 'Busy_log' TO '/data/br.ldf'")
	exec(t, db, "RESTORE LOG [BusyR] FROM DISK = 'busy_log.trn' WITH RECOVERY")
	if got := queryHash(t, db, "BusyR", time.Time{}); got != want {
		t.Fatalf("Busy restored after the workload: hash %s, want %s", got, want)
	}

	var n, ids int
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*), MAX(backup_set_id) FROM msdb.dbo.backupset").Scan(&n, &ids); err != nil {
		t.Fatal(err)
	}
	if want := 2 + sessions*3; n != want || ids != want {
		t.Fatalf("msdb.dbo.backupset: %d rows, max id %d, want %d and %d", n, ids, want, want)
	}
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM sys.databases WHERE name LIKE N'c[_]%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2*sessions {
		t.Fatalf("session databases: %d, want %d", n, 2*sessions)
	}
}

// clientSession is one client's work in TestConcurrentSessions, on a connection
// of its own.
func clientSession(ctx context.Context, db *sql.DB, k int) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	name := fmt.Sprintf("c_%02d ]'", k)
	copyName := fmt.Sprintf("c_%02d_restored", k)
	run := func(q string, args ...any) error {
		for {
			_, err := conn.ExecContext(ctx, q, args...)
			if errNumber(err) == 3023 {
				// another session's backup of Busy runs: SQL Server takes
				// one data backup of a database at a time; reissue it
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
			return nil
		}
	}
	hash := func(db string) (string, error) {
		var h string
		err := conn.QueryRowContext(ctx, "EXEC sim.content_hash @database = @p1", db).Scan(&h)
		return h, err
	}
	full, logFile := fmt.Sprintf("s%02d_full.bak", k), fmt.Sprintf("s%02d_log.trn", k)
	steps := []struct {
		q    string
		args []any
	}{
		{"CREATE DATABASE " + quoteName(name), nil},
		{"EXEC sim.commit @database = @p1, @transactions = 5, @pages_per_tx = 3", []any{name}},
		{"BACKUP DATABASE @p1 TO DISK = @p2 WITH CHECKSUM", []any{name, full}},
		{"EXEC sim.commit @database = @p1, @transactions = 5", []any{name}},
		{"BACKUP LOG @p1 TO DISK = @p2", []any{name, logFile}},
		{"BACKUP DATABASE [Busy] TO DISK = @p1 WITH COPY_ONLY", []any{fmt.Sprintf("busy%02d.bak", k)}},
	}
	for _, s := range steps {
		if err := run(s.q, s.args...); err != nil {
			return err
		}
	}
	want, err := hash(name)
	if err != nil {
		return err
	}
	var state, model string
	if err := conn.QueryRowContext(ctx, `SELECT d.state_desc, d.recovery_model_desc FROM sys.databases d
		JOIN sys.database_recovery_status rs ON rs.database_id = d.database_id WHERE d.name = @p1`, name).Scan(&state, &model); err != nil {
		return fmt.Errorf("sys.databases: %w", err)
	}
	if state != "ONLINE" || model != "FULL" {
		return fmt.Errorf("sys.databases: %s %s, want ONLINE FULL", state, model)
	}
	var sets int
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM msdb.dbo.backupset WHERE database_name = @p1", name).Scan(&sets); err != nil {
		return err
	}
	if sets != 2 {
		return fmt.Errorf("msdb rows for %q: %d, want 2", name, sets)
	}
	if err := run("RESTORE VERIFYONLY FROM DISK = @p1 WITH CHECKSUM", full); err != nil {
		return err
	}
	if err := run("RESTORE DATABASE @p1 FROM DISK = @p2 WITH NORECOVERY, MOVE @p3 TO @p4, MOVE @p5 TO @p6",
		copyName, full, name, "/data/"+copyName+".mdf", name+"_log", "/data/"+copyName+".ldf"); err != nil {
		return err
	}
	if err := run("RESTORE LOG @p1 FROM DISK = @p2 WITH RECOVERY", copyName, logFile); err != nil {
		return err
	}
	got, err := hash(copyName)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("restored hash %s, want %s", got, want)
	}
	rows, err := conn.QueryContext(ctx, "RESTORE HEADERONLY FROM DISK = @p1", fmt.Sprintf("busy%02d.bak", k))
	if err != nil {
		return fmt.Errorf("HEADERONLY of Busy's copy: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil || n != 1 {
		return fmt.Errorf("HEADERONLY of Busy's copy: %d sets, %v; want 1", n, err)
	}
	return nil
}

// TestBackupWhileRestoring races backups of a database against restores
// over it. Either may be refused (927 while it is restoring); the race
// detector and the final state are what count.
func TestBackupWhileRestoring(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [x]")
	e.work("x", 5)
	e.exec("BACKUP DATABASE [x] TO DISK = 'x.bak'")
	want := e.hash("x")
	var wg sync.WaitGroup
	for _, q := range []string{
		"BACKUP DATABASE [x] TO DISK = 'copy.bak' WITH COPY_ONLY, INIT",
		"BACKUP LOG [x] TO DISK = 'log.trn' WITH COPY_ONLY, INIT",
		"RESTORE DATABASE [x] FROM DISK = 'x.bak' WITH REPLACE",
		"SELECT f.name FROM sys.master_files f JOIN sys.databases d ON d.database_id = f.database_id WHERE d.name = N'x'",
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 15; k++ {
				if _, err := e.db.ExecContext(t.Context(), q); err != nil {
					if n := errNumber(err); n != 927 && n != 3013 && n != 4214 && n != 3101 && n != 3023 {
						t.Errorf("%s: %v", q, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if got := e.state("x"); got != "ONLINE" {
		t.Fatalf("x after the race: state %q, want ONLINE", got)
	}
	if got := e.hash("x"); got != want {
		t.Fatalf("x after the race: hash %s, want the backup's %s", got, want)
	}
}
