package mssqlsim

import (
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
)

func paris(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	return loc
}

// TestLocalTimeAcrossDaylightSaving checks, on a server in Europe/Paris,
// that the clock functions, msdb and HEADERONLY give local times as
// datetime with the backup's own offset, across the March and October
// changes of 2026.
func TestLocalTimeAcrossDaylightSaving(t *testing.T) {
	e := newEnv(t, Config{Location: paris(t)})
	cases := []struct {
		name  string
		utc   time.Time
		local string
		zone  int64 // backupset.time_zone
	}{
		{"winter", time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC), "2026-03-29 01:30:00", 4},
		{"after the March change", time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC), "2026-03-29 03:30:00", 8},
		{"first 02:30 in October", time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), "2026-10-25 02:30:00", 8},
		{"second 02:30 in October", time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC), "2026-10-25 02:30:00", 4},
	}
	e.setClock(cases[0].utc.Add(-time.Hour))
	e.exec("CREATE DATABASE [tz]")
	for k, c := range cases {
		e.setClock(c.utc)
		var local, utc time.Time
		if err := e.db.QueryRowContext(t.Context(), "SELECT SYSDATETIME(), SYSUTCDATETIME()").Scan(&local, &utc); err != nil {
			t.Fatalf("%s: SELECT SYSDATETIME(): %v", c.name, err)
		}
		if got := local.Format(time.DateTime); got != c.local {
			t.Errorf("%s: SYSDATETIME() %s; want %s", c.name, got, c.local)
		}
		if !utc.Equal(c.utc) {
			t.Errorf("%s: SYSUTCDATETIME() %s; want %s", c.name, utc, c.utc)
		}
		file := e.path("tz" + string(rune('a'+k)) + ".bak")
		e.exec("BACKUP DATABASE [tz] TO DISK = @p1", file)
		var start time.Time
		var zone int64
		err := e.db.QueryRowContext(t.Context(), `SELECT TOP 1 backup_start_date, time_zone
			FROM msdb.dbo.backupset WHERE database_name = 'tz' ORDER BY backup_set_id DESC`).Scan(&start, &zone)
		if err != nil {
			t.Fatalf("%s: read msdb.dbo.backupset: %v", c.name, err)
		}
		if got := start.Format(time.DateTime); got != c.local {
			t.Errorf("%s: backup_start_date %s; want %s", c.name, got, c.local)
		}
		if zone != c.zone {
			t.Errorf("%s: time_zone %d; want %d", c.name, zone, c.zone)
		}
		rows, err := e.db.QueryContext(t.Context(), "RESTORE HEADERONLY FROM DISK = @p1", file)
		if err != nil {
			t.Fatalf("%s: HEADERONLY: %v", c.name, err)
		}
		cols, _ := rows.ColumnTypes()
		for _, ct := range cols {
			if ct.Name() == "BackupStartDate" && ct.DatabaseTypeName() != "DATETIME" {
				t.Errorf("%s: HEADERONLY BackupStartDate is %s; want DATETIME", c.name, ct.DatabaseTypeName())
			}
		}
		rows.Close()
	}
	rows, err := e.db.QueryContext(t.Context(), "SELECT backup_start_date FROM msdb.dbo.backupset")
	if err != nil {
		t.Fatalf("read msdb.dbo.backupset: %v", err)
	}
	cols, _ := rows.ColumnTypes()
	rows.Close()
	if got := cols[0].DatabaseTypeName(); got != "DATETIME" {
		t.Errorf("backup_start_date is %s; want DATETIME", got)
	}
}

// TestStopAtRepeatedHour checks STOPAT in local time on a server in
// Europe/Paris across the October change: a time of the repeated hour
// stops at its first occurrence, as redo stops at the first commit later
// than STOPAT; a log whose records all lie in the second occurrence
// stops there.
func TestStopAtRepeatedHour(t *testing.T) {
	e := newEnv(t, Config{Location: paris(t)})
	e.setClock(time.Date(2026, 10, 24, 23, 50, 0, 0, time.UTC)) // 01:50 CEST
	e.exec("CREATE DATABASE [dst]")
	e.exec("BACKUP DATABASE [dst] TO DISK = 'f.bak'")
	commitEvery := func(until time.Time) {
		for e.clk.Now().Before(until) {
			e.tick(time.Minute)
			if _, err := e.inst.Commit("dst", 2); err != nil {
				t.Fatalf("commit: %v", err)
			}
		}
	}
	change := time.Date(2026, 10, 25, 1, 0, 0, 0, time.UTC)
	commitEvery(change.Add(-5 * time.Minute)) // to 02:55 CEST
	e.exec("BACKUP LOG [dst] TO DISK = 'l1.trn'")
	commitEvery(change.Add(5 * time.Minute)) // to 02:05 CET
	e.exec("BACKUP LOG [dst] TO DISK = 'l2.trn'")
	commitEvery(change.Add(50 * time.Minute)) // to 02:50 CET
	e.exec("BACKUP LOG [dst] TO DISK = 'l3.trn'")

	first := time.Date(2026, 10, 25, 0, 30, 30, 0, time.UTC)  // 02:30:30 CEST, in l1
	second := time.Date(2026, 10, 25, 1, 30, 30, 0, time.UTC) // 02:30:30 CET, in l3
	stop := mssql.VarChar("2026-10-25T02:30:30")

	e.exec("RESTORE DATABASE [first] FROM DISK = 'f.bak' WITH NORECOVERY, MOVE 'dst' TO @p1, MOVE 'dst_log' TO @p2", e.path("a.mdf"), e.path("a.ldf"))
	e.exec("RESTORE LOG [first] FROM DISK = 'l1.trn' WITH RECOVERY, STOPAT = @p1", stop)
	if got, want := e.hash("first"), e.hashAsOf("dst", first); got != want {
		t.Errorf("STOPAT 02:30:30 on l1: hash %s; want the first occurrence's %s", got, want)
	}

	e.exec("RESTORE DATABASE [second] FROM DISK = 'f.bak' WITH NORECOVERY, MOVE 'dst' TO @p1, MOVE 'dst_log' TO @p2", e.path("b.mdf"), e.path("b.ldf"))
	e.exec("RESTORE LOG [second] FROM DISK = 'l1.trn' WITH NORECOVERY")
	e.exec("RESTORE LOG [second] FROM DISK = 'l2.trn' WITH NORECOVERY")
	e.exec("RESTORE LOG [second] FROM DISK = 'l3.trn' WITH RECOVERY, STOPAT = @p1", stop)
	if got, want := e.hash("second"), e.hashAsOf("dst", second); got != want {
		t.Errorf("STOPAT 02:30:30 on l3: hash %s; want the second occurrence's %s", got, want)
	}

	// a restore already past 02:30:30 of the first occurrence cannot go
	// to that time again: SQL Server's 4335
	e.exec("RESTORE DATABASE [late] FROM DISK = 'f.bak' WITH NORECOVERY, MOVE 'dst' TO @p1, MOVE 'dst_log' TO @p2", e.path("c.mdf"), e.path("c.ldf"))
	e.exec("RESTORE LOG [late] FROM DISK = 'l1.trn' WITH NORECOVERY")
	wantAbnormal(t, e.db, 4335, "RESTORE LOG [late] FROM DISK = 'l2.trn' WITH RECOVERY, STOPAT = @p1", stop)
}

// TestStopAtVariableType checks that STOPAT takes a varchar or datetime
// variable and refuses an nvarchar one, as SQL Server documents
// @datetime_var as varchar, char, smalldatetime or datetime.
func TestStopAtVariableType(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [v]")
	e.exec("BACKUP DATABASE [v] TO DISK = 'f.bak'")
	e.work("v", 3)
	stop := e.work("v", 1)
	e.work("v", 3)
	e.exec("BACKUP LOG [v] TO DISK = 'l.trn'")
	want := e.hashAsOf("v", stop)
	for _, c := range []struct {
		name string
		arg  any
	}{
		{"varchar", mssql.VarChar(stop.Format(stopFormat))},
		{"datetime", mssql.DateTime1(stop)},
	} {
		e.exec("RESTORE DATABASE [v] FROM DISK = 'f.bak' WITH NORECOVERY, REPLACE")
		e.exec("RESTORE LOG [v] FROM DISK = 'l.trn' WITH RECOVERY, STOPAT = @p1", c.arg)
		if got := e.hash("v"); got != want {
			t.Errorf("STOPAT as %s: hash %s; want %s", c.name, got, want)
		}
	}
	e.exec("RESTORE DATABASE [v] FROM DISK = 'f.bak' WITH NORECOVERY, REPLACE")
	wantErr(t, e.db, 206, "RESTORE LOG [v] FROM DISK = 'l.trn' WITH RECOVERY, STOPAT = @p1", stop.Format(stopFormat))
}

// setClock sets the fake clock to t.
func (e *env) setClock(t time.Time) {
	e.clk.mu.Lock()
	defer e.clk.mu.Unlock()
	e.clk.t = t
}
