package mssqlsim

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBackupRefusals checks every rule that refuses a BACKUP: each case
// starts a fresh instance, runs its setup, and wants the cause and then
// 3013.
func TestBackupRefusals(t *testing.T) {
	tests := []struct {
		name  string
		setup []string
		stmt  string
		want  int32
	}{
		{
			name:  "log under SIMPLE",
			setup: []string{"CREATE DATABASE [s]", "BACKUP DATABASE [s] TO DISK = 'f.bak'", "ALTER DATABASE [s] SET RECOVERY SIMPLE"},
			stmt:  "BACKUP LOG [s] TO DISK = 'l.trn'",
			want:  4208,
		},
		{
			name:  "log under SIMPLE from the start",
			setup: []string{"CREATE DATABASE [s]", "ALTER DATABASE [s] SET RECOVERY SIMPLE"},
			stmt:  "BACKUP LOG [s] TO DISK = 'l.trn'",
			want:  4208,
		},
		{
			name:  "log before any full",
			setup: []string{"CREATE DATABASE [s]"},
			stmt:  "BACKUP LOG [s] TO DISK = 'l.trn'",
			want:  4214,
		},
		{
			name: "log after FULL to SIMPLE to FULL",
			setup: []string{"CREATE DATABASE [s]", "BACKUP DATABASE [s] TO DISK = 'f.bak'", "BACKUP LOG [s] TO DISK = 'l1.trn'",
				"ALTER DATABASE [s] SET RECOVERY SIMPLE", "ALTER DATABASE [s] SET RECOVERY FULL"},
			stmt: "BACKUP LOG [s] TO DISK = 'l2.trn'",
			want: 4214,
		},
		{
			name: "log after FULL to SIMPLE to BULK_LOGGED",
			setup: []string{"CREATE DATABASE [s]", "BACKUP DATABASE [s] TO DISK = 'f.bak'",
				"ALTER DATABASE [s] SET RECOVERY SIMPLE", "ALTER DATABASE [s] SET RECOVERY BULK_LOGGED"},
			stmt: "BACKUP LOG [s] TO DISK = 'l2.trn'",
			want: 4214,
		},
		{
			name:  "log after a full taken under SIMPLE",
			setup: []string{"CREATE DATABASE [s]", "ALTER DATABASE [s] SET RECOVERY SIMPLE", "BACKUP DATABASE [s] TO DISK = 'f.bak'", "ALTER DATABASE [s] SET RECOVERY FULL"},
			stmt:  "BACKUP LOG [s] TO DISK = 'l.trn'",
			want:  4214,
		},
		{
			name:  "differential without a full",
			setup: []string{"CREATE DATABASE [s]"},
			stmt:  "BACKUP DATABASE [s] TO DISK = 'd.bak' WITH DIFFERENTIAL",
			want:  3035,
		},
		{
			name:  "differential after only a copy-only full",
			setup: []string{"CREATE DATABASE [s]", "BACKUP DATABASE [s] TO DISK = 'c.bak' WITH COPY_ONLY"},
			stmt:  "BACKUP DATABASE [s] TO DISK = 'd.bak' WITH DIFFERENTIAL",
			want:  3035,
		},
		{
			name:  "differential of master",
			setup: []string{"BACKUP DATABASE [master] TO DISK = 'm.bak'"},
			stmt:  "BACKUP DATABASE [master] TO DISK = 'md.bak' WITH DIFFERENTIAL",
			want:  3024,
		},
		{name: "full of tempdb", stmt: "BACKUP DATABASE [tempdb] TO DISK = 't.bak'", want: 3147},
		{name: "log of tempdb", stmt: "BACKUP LOG tempdb TO DISK = 't.trn'", want: 3147},
		{
			name:  "offline database",
			setup: []string{"CREATE DATABASE [s]", "ALTER DATABASE [s] SET OFFLINE"},
			stmt:  "BACKUP DATABASE [s] TO DISK = 'f.bak'",
			want:  942,
		},
		{
			name:  "log of an offline database",
			setup: []string{"CREATE DATABASE [s]", "BACKUP DATABASE [s] TO DISK = 'f.bak'", "ALTER DATABASE [s] SET OFFLINE WITH ROLLBACK IMMEDIATE"},
			stmt:  "BACKUP LOG [s] TO DISK = 'l.trn'",
			want:  942,
		},
		{name: "no such database", stmt: "BACKUP DATABASE [nope] TO DISK = 'f.bak'", want: 911},
		{
			name:  "device is a directory",
			setup: []string{"CREATE DATABASE [s]"},
			stmt:  "BACKUP DATABASE [s] TO DISK = 'adir'",
			want:  3201,
		},
		{
			name:  "device in a missing directory",
			setup: []string{"CREATE DATABASE [s]"},
			stmt:  "BACKUP DATABASE [s] TO DISK = 'missing/dir/f.bak'",
			want:  3201,
		},
		{
			name:  "appending to a file that is not a backup",
			setup: []string{"CREATE DATABASE [s]"},
			stmt:  "BACKUP DATABASE [s] TO DISK = 'garbage.bak'",
			want:  3241,
		},
		{
			name:  "appending one stripe to a set of three",
			setup: []string{"CREATE DATABASE [s]", "BACKUP DATABASE [s] TO DISK = 's1.bak', DISK = 's2.bak', DISK = 's3.bak'"},
			stmt:  "BACKUP DATABASE [s] TO DISK = 's1.bak'",
			want:  3231,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			if err := os.Mkdir(e.path("adir"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(e.path("garbage.bak"), []byte(strings.Repeat("not a backup ", 1000)), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, q := range tc.setup {
				e.exec(q)
			}
			before := len(e.backups("s"))
			wantAbnormal(t, e.db, tc.want, tc.stmt)
			// a refused backup records nothing
			if got := len(e.backups("s")); got != before {
				t.Errorf("msdb.dbo.backupset rows for s: got %d after the refused backup, want %d", got, before)
			}
		})
	}
}

// TestLogChainAfterSimple checks that after FULL -> SIMPLE -> FULL, BACKUP
// LOG is refused until a full or a differential restarts the chain, and
// that the restarted chain restores.
func TestLogChainAfterSimple(t *testing.T) {
	for _, restart := range []string{"WITH DIFFERENTIAL", "WITH INIT"} {
		t.Run(restart, func(t *testing.T) {
			e := newEnv(t, Config{})
			e.exec("CREATE DATABASE [s]")
			e.work("s", 5)
			e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")
			e.work("s", 5)
			e.exec("BACKUP LOG [s] TO DISK = 'l1.trn'")
			e.exec("ALTER DATABASE [s] SET RECOVERY SIMPLE")
			if got := e.recoveryStatus("s").LastLogBackup; got.Valid {
				t.Errorf("last_log_backup_lsn under SIMPLE: got %s, want NULL", got.String)
			}
			e.work("s", 5)
			e.exec("ALTER DATABASE [s] SET RECOVERY FULL")
			e.work("s", 5)
			wantAbnormal(t, e.db, 4214, "BACKUP LOG [s] TO DISK = 'l2.trn'")
			// a copy-only full does not restart the chain
			e.exec("BACKUP DATABASE [s] TO DISK = 'c.bak' WITH COPY_ONLY")
			wantAbnormal(t, e.db, 4214, "BACKUP LOG [s] TO DISK = 'l2.trn'")

			base := "f.bak"
			if restart == "WITH INIT" {
				base = "f2.bak"
				e.exec("BACKUP DATABASE [s] TO DISK = 'f2.bak' WITH INIT")
			} else {
				e.exec("BACKUP DATABASE [s] TO DISK = 'd.bak' WITH DIFFERENTIAL")
			}
			e.work("s", 5)
			e.exec("BACKUP LOG [s] TO DISK = 'l3.trn'")
			want := e.hash("s")

			e.exec("RESTORE DATABASE [r] FROM DISK = @p1 WITH NORECOVERY, MOVE 's' TO @p2, MOVE 's_log' TO @p3",
				base, e.path("r.mdf"), e.path("r.ldf"))
			if restart == "WITH DIFFERENTIAL" {
				e.exec("RESTORE DATABASE [r] FROM DISK = 'd.bak' WITH NORECOVERY")
			}
			// the log taken before the switch to SIMPLE does not fit
			wantAbnormalOneOf(t, e.db, []int32{4326, 4305}, "RESTORE LOG [r] FROM DISK = 'l1.trn' WITH NORECOVERY")
			e.exec("RESTORE LOG [r] FROM DISK = 'l3.trn' WITH RECOVERY")
			if got := e.hash("r"); got != want {
				t.Fatalf("restored hash %s, want %s", got, want)
			}
		})
	}
}

// restoreFixture is an instance holding database A with a full, logs, a
// differential and a second full, database B, and some broken devices.
type restoreFixture struct {
	*env
	beforeFull time.Time // a moment before a_full.bak
	afterLog1  time.Time // a moment after a_log1.trn
}

func newRestoreFixture(t *testing.T) *restoreFixture {
	t.Helper()
	e := newEnv(t, Config{})
	f := &restoreFixture{env: e}
	e.exec("CREATE DATABASE [A]")
	e.work("A", 5)
	f.beforeFull = e.tick(time.Second)
	e.tick(time.Second)
	e.exec("BACKUP DATABASE [A] TO DISK = 'a_full.bak'")
	e.work("A", 5)
	e.exec("BACKUP LOG [A] TO DISK = 'a_log1.trn'")
	f.afterLog1 = e.tick(time.Second)
	e.work("A", 5)
	e.exec("BACKUP DATABASE [A] TO DISK = 'a_diff1.bak' WITH DIFFERENTIAL")
	e.work("A", 5)
	e.exec("BACKUP LOG [A] TO DISK = 'a_log2.trn'")
	e.work("A", 5)
	e.exec("BACKUP DATABASE [A] TO DISK = 'a_full2.bak'")
	e.work("A", 5)
	e.exec("BACKUP LOG [A] TO DISK = 'a_log3.trn'")
	e.exec("BACKUP DATABASE [A] TO DISK = 'a_s1.bak', DISK = 'a_s2.bak', DISK = 'a_s3.bak' WITH COPY_ONLY")
	e.work("A", 5) // the tail of A's log is not backed up
	e.exec("CREATE DATABASE [B]")
	e.exec("BACKUP DATABASE [B] TO DISK = 'b_full.bak'")

	if err := os.Mkdir(e.path("adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.path("garbage.bak"), []byte(strings.Repeat("garbage ", 4096)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.path("empty.bak"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(e.path("a_full.bak"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.path("trunc.bak"), full[:len(full)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// moves returns the MOVE clauses that put A's files at target's own paths.
func (f *restoreFixture) moves(target string) string {
	return "MOVE 'A' TO " + quoteString(f.path(target+".mdf")) + ", MOVE 'A_log' TO " + quoteString(f.path(target+"_log.ldf"))
}

// TestRestoreRefusals checks every rule that refuses a RESTORE, each after
// the restore steps that set it up, on one shared fixture. Every case uses
// its own target database.
func TestRestoreRefusals(t *testing.T) {
	f := newRestoreFixture(t)
	tests := []struct {
		name   string
		steps  func(target string) []string
		stmt   func(target string) string
		want   []int32 // any of these as the cause
		others []int32 // further errors that must be sent between the cause and 3013
	}{
		{
			name: "backup of another database over an existing one",
			stmt: func(string) string { return "RESTORE DATABASE [B] FROM DISK = 'a_full.bak' WITH " + f.moves("B2") },
			want: []int32{3154},
		},
		{
			name: "tail of the log not backed up",
			stmt: func(string) string { return "RESTORE DATABASE [A] FROM DISK = 'a_full.bak'" },
			want: []int32{3159},
		},
		{
			name:   "new name without MOVE collides with the original's files",
			stmt:   func(tg string) string { return "RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_full.bak'" },
			want:   []int32{1834},
			others: []int32{3156, 3119},
		},
		{
			name: "MOVE of an unknown logical file",
			stmt: func(tg string) string {
				return "RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_full.bak' WITH MOVE 'nope' TO " + quoteString(f.path("nope.mdf"))
			},
			want: []int32{3234},
		},
		{
			name: "FILE past the last set",
			stmt: func(tg string) string {
				return "RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_full.bak' WITH FILE = 2, " + f.moves(tg)
			},
			want: []int32{4038},
		},
		{
			name: "striped set with a stripe missing",
			stmt: func(tg string) string {
				return "RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_s1.bak', DISK = 'a_s3.bak' WITH " + f.moves(tg)
			},
			want: []int32{3132},
		},
		{
			name: "device that is not a backup",
			stmt: func(tg string) string { return "RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'garbage.bak'" },
			want: []int32{3241},
		},
		{
			name: "empty device",
			stmt: func(tg string) string { return "RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'empty.bak'" },
			want: []int32{3241},
		},
		{
			name: "truncated backup",
			stmt: func(tg string) string {
				return "RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'trunc.bak' WITH " + f.moves(tg)
			},
			want: []int32{3241},
		},
		{
			name: "missing file",
			stmt: func(tg string) string { return "RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'missing.bak'" },
			want: []int32{3201},
		},
		{
			name: "device is a directory",
			stmt: func(tg string) string { return "RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'adir'" },
			want: []int32{3201},
		},
		{
			name: "tempdb",
			stmt: func(string) string {
				return "RESTORE DATABASE [tempdb] FROM DISK = 'a_full.bak' WITH REPLACE, " + f.moves("t")
			},
			want: []int32{3147},
		},
		{
			name: "log onto an online database",
			stmt: func(string) string { return "RESTORE LOG [A] FROM DISK = 'a_log1.trn'" },
			want: []int32{3117, 4306},
		},
		{
			name: "differential onto an online database",
			stmt: func(string) string { return "RESTORE DATABASE [A] FROM DISK = 'a_diff1.bak'" },
			want: []int32{3117, 4306},
		},
		{
			name: "log after a restore WITH RECOVERY",
			steps: func(tg string) []string {
				return []string{"RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_full.bak' WITH RECOVERY, " + f.moves(tg)}
			},
			stmt: func(tg string) string { return "RESTORE LOG " + quoteName(tg) + " FROM DISK = 'a_log1.trn'" },
			want: []int32{4306, 3117},
		},
		{
			name: "RESTORE LOG from a full backup",
			steps: func(tg string) []string {
				return []string{"RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_full.bak' WITH NORECOVERY, " + f.moves(tg)}
			},
			stmt: func(tg string) string { return "RESTORE LOG " + quoteName(tg) + " FROM DISK = 'a_full2.bak'" },
			want: []int32{3135},
		},
		{
			name: "RESTORE DATABASE from a log backup",
			stmt: func(tg string) string { return "RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_log1.trn'" },
			want: []int32{3135},
		},
		{
			name: "differential without a full restored first",
			stmt: func(tg string) string { return "RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_diff1.bak'" },
			want: []int32{911, 3117},
		},
		{
			name: "differential onto a newer full",
			steps: func(tg string) []string {
				return []string{"RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_full2.bak' WITH NORECOVERY, " + f.moves(tg)}
			},
			stmt: func(tg string) string {
				return "RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_diff1.bak' WITH NORECOVERY"
			},
			want: []int32{3136},
		},
		{
			name: "differential onto a copy-only full",
			steps: func(tg string) []string {
				return []string{"RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_s1.bak', DISK = 'a_s2.bak', DISK = 'a_s3.bak' WITH NORECOVERY, " + f.moves(tg)}
			},
			stmt: func(tg string) string {
				return "RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_diff1.bak' WITH NORECOVERY"
			},
			want: []int32{3136},
		},
		{
			name: "log with a gap",
			steps: func(tg string) []string {
				return []string{"RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_full.bak' WITH NORECOVERY, " + f.moves(tg)}
			},
			stmt: func(tg string) string {
				return "RESTORE LOG " + quoteName(tg) + " FROM DISK = 'a_log2.trn' WITH NORECOVERY"
			},
			want: []int32{4305},
		},
		{
			name: "log that ends before the differential",
			steps: func(tg string) []string {
				return []string{
					"RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_full.bak' WITH NORECOVERY, " + f.moves(tg),
					"RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_diff1.bak' WITH NORECOVERY",
				}
			},
			stmt: func(tg string) string {
				return "RESTORE LOG " + quoteName(tg) + " FROM DISK = 'a_log1.trn' WITH NORECOVERY"
			},
			want: []int32{4326},
		},
		{
			name: "STOPAT before the full",
			stmt: func(tg string) string {
				return "RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_full.bak' WITH NORECOVERY, STOPAT = " +
					quoteString(f.beforeFull.Format("2006-01-02T15:04:05.000")) + ", " + f.moves(tg)
			},
			want: []int32{4338},
		},
		{
			name: "STOPAT before the point already reached",
			steps: func(tg string) []string {
				return []string{
					"RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_full.bak' WITH NORECOVERY, " + f.moves(tg),
					"RESTORE LOG " + quoteName(tg) + " FROM DISK = 'a_log1.trn' WITH NORECOVERY",
				}
			},
			stmt: func(tg string) string {
				return "RESTORE LOG " + quoteName(tg) + " FROM DISK = 'a_log2.trn' WITH RECOVERY, STOPAT = " +
					quoteString(f.beforeFull.Format("2006-01-02T15:04:05.000"))
			},
			want: []int32{4335},
		},
		{
			name: "second RECOVERY",
			steps: func(tg string) []string {
				return []string{"RESTORE DATABASE " + quoteName(tg) + " FROM DISK = 'a_full.bak' WITH RECOVERY, " + f.moves(tg)}
			},
			stmt: func(tg string) string { return "RESTORE DATABASE " + quoteName(tg) + " WITH RECOVERY" },
			want: []int32{3153},
		},
	}
	for k, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := "T" + string(rune('a'+k%26)) + strings.Repeat("x", k/26)
			if tc.steps != nil {
				for _, q := range tc.steps(target) {
					f.exec(q)
				}
			}
			err := wantAbnormalOneOf(t, f.db, tc.want, tc.stmt(target))
			nums := allNumbers(err)
			for _, n := range tc.others {
				if !slices.Contains(nums[1:len(nums)-1], n) {
					t.Errorf("errors %v: want %d between the cause and 3013", nums, n)
				}
			}
		})
	}
	// nothing above changed A or B
	if got := f.state("A"); got != "ONLINE" {
		t.Errorf("A: state %q after the refused restores, want ONLINE", got)
	}
	if got := f.state("B"); got != "ONLINE" {
		t.Errorf("B: state %q after the refused restores, want ONLINE", got)
	}
}

// TestRestoreWithReplace checks that the refusals above are lifted exactly
// by REPLACE: A's backup over B, and A's full over A with its tail unsaved.
func TestRestoreWithReplace(t *testing.T) {
	f := newRestoreFixture(t)
	wantAbnormal(t, f.db, 3154, "RESTORE DATABASE [B] FROM DISK = 'a_full.bak' WITH "+f.moves("B2"))
	f.exec("RESTORE DATABASE [B] FROM DISK = 'a_full.bak' WITH REPLACE, " + f.moves("B2"))
	var full backupRow
	for _, r := range f.backups("A") {
		if r.Type == "D" {
			full = r
			break
		}
	}
	if got, want := f.hash("B"), f.hashAsOf("A", full.Start); got != want {
		t.Errorf("B after REPLACE: hash %s, want A as of its full %s", got, want)
	}
	wantAbnormal(t, f.db, 3159, "RESTORE DATABASE [A] FROM DISK = 'a_full2.bak'")
	f.exec("RESTORE DATABASE [A] FROM DISK = 'a_full2.bak' WITH REPLACE")
	if got := f.state("A"); got != "ONLINE" {
		t.Errorf("A after RESTORE WITH REPLACE: state %q, want ONLINE", got)
	}
}

// TestPermissions checks that BACKUP and RESTORE need sysadmin: a login
// without it gets 262 and then 3013, and revoking sysadmin from a login
// takes effect on its open connection.
func TestPermissions(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")
	e.inst.AddLogin("op", "op-Pa55word", false)
	op := connect(t, e.addr, "op", "op-Pa55word")

	isSysadmin := func() int64 {
		t.Helper()
		var n int64
		if err := op.QueryRowContext(t.Context(), "SELECT IS_SRVROLEMEMBER('sysadmin')").Scan(&n); err != nil {
			t.Fatalf("IS_SRVROLEMEMBER: %v", err)
		}
		return n
	}
	refused := []string{
		"BACKUP DATABASE [s] TO DISK = 'op.bak'",
		"BACKUP LOG [s] TO DISK = 'op.trn'",
		"RESTORE DATABASE [s2] FROM DISK = 'f.bak' WITH MOVE 's' TO 'x.mdf', MOVE 's_log' TO 'x.ldf'",
	}
	check := func(when string) {
		t.Helper()
		if got := isSysadmin(); got != 0 {
			t.Fatalf("%s: IS_SRVROLEMEMBER('sysadmin') = %d, want 0", when, got)
		}
		for _, q := range refused {
			wantAbnormal(t, op, 262, q)
		}
		wantErr(t, op, 262, "CREATE DATABASE [byop]")
	}
	check("never granted")

	if err := e.inst.SetSysadmin("op", true); err != nil {
		t.Fatal(err)
	}
	if got := isSysadmin(); got != 1 {
		t.Fatalf("after grant: IS_SRVROLEMEMBER('sysadmin') = %d, want 1", got)
	}
	exec(t, op, "BACKUP DATABASE [s] TO DISK = 'op.bak'")
	exec(t, op, "BACKUP LOG [s] TO DISK = 'op.trn'")

	if err := e.inst.SetSysadmin("op", false); err != nil {
		t.Fatal(err)
	}
	check("after revoke")
	if err := e.inst.SetSysadmin("nobody", true); err == nil {
		t.Error("SetSysadmin of an unknown login: got nil, want an error")
	}
}

// TestLoginFailed checks 18456 for a wrong password and an unknown login.
func TestLoginFailed(t *testing.T) {
	e := newEnv(t, Config{})
	e.inst.AddLogin("op", "op-Pa55word", false)
	for _, tc := range []struct{ user, password string }{
		{"sa", "wrong"},
		{"sa", ""},
		{"op", "OP-PA55WORD"},
		{"nobody", testPassword},
	} {
		t.Run(tc.user+"/"+tc.password, func(t *testing.T) {
			db := connect(t, e.addr, tc.user, tc.password)
			err := db.PingContext(t.Context())
			if err == nil {
				t.Fatal("Ping: succeeded, want login failure")
			}
			if got := errNumber(err); got != 18456 {
				t.Fatalf("Ping: got error %d (%v), want 18456", got, err)
			}
		})
	}
	if err := connect(t, e.addr, "op", "op-Pa55word").PingContext(t.Context()); err != nil {
		t.Fatalf("Ping with the right password: %v", err)
	}
}

// TestUnknownShapes checks that what the simulator does not know is
// answered with SQL Server's error, never a guess.
func TestUnknownShapes(t *testing.T) {
	e := newEnv(t, Config{})
	e.exec("CREATE DATABASE [s]")
	tests := []struct {
		stmt string
		want int32
	}{
		{"SELEKT 1", 102},
		{"SELECT name FROM sys.databases WHERE", 102},
		{"SELECT name FROM sys.databases WHERE name = ", 102},
		{"BACKUP DATABASE [s] TO TAPE_DRIVE = 'x'", 102},
		{"BACKUP DATABASE [s] TO DISK = 'f.bak' WITH NONSENSE", 102},
		{"RESTORE DATABASE [s] FROM DISK = 'f.bak' WITH NONSENSE", 102},
		{"RESTORE NONSENSE FROM DISK = 'f.bak'", 102},
		{"ALTER DATABASE [s] SET NONSENSE", 102},
		{"CREATE DATABASE @p1", 102},
		{"ALTER DATABASE @p1 SET RECOVERY SIMPLE", 102},
		{"DROP DATABASE @p1", 102},
		{"SELECT name FROM [s", 105},
		{"SELECT 'unclosed", 105},
		{"SELECT * FROM sys.tables", 208},
		{"SELECT * FROM sys.nonsense", 208},
		{"SELECT * FROM msdb.dbo.nonsense", 208},
		{"SELECT * FROM dbo.backupset", 208},
		{"SELECT * FROM backupset", 208},
		{"SELECT nonsense FROM sys.databases", 207},
		{"SELECT name FROM sys.databases WHERE nonsense = 1", 207},
		{"SELECT name FROM sys.databases ORDER BY nonsense", 207},
		{"SELECT d.name FROM sys.databases d JOIN sys.master_files f ON f.nonsense = d.database_id", 207},
		{"SELECT x.name FROM sys.databases d", 4104},
		{"SELECT database_id FROM sys.databases d JOIN sys.master_files f ON f.database_id = d.database_id", 209},
		{"EXEC sp_nonsense", 2812},
		{"EXEC sim.nonsense @database = N's'", 2812},
		{"EXEC dbo.sp_who2", 2812},
		{"SELECT NONSENSE(1)", 195},
		{"EXEC sim.content_hash", 201},
		{"EXEC sim.content_hash @nonsense = 1", 8145},
		{"USE [nonsense]", 911},
		{"SELECT @undeclared", 137},
		{"COMMIT TRAN", 3902},
	}
	for _, tc := range tests {
		t.Run(tc.stmt, func(t *testing.T) {
			var args []any
			if strings.Contains(tc.stmt, "@p1") {
				args = append(args, "s")
			}
			wantErr(t, e.db, tc.want, tc.stmt, args...)
		})
	}
	// the refusals above changed nothing
	if got := e.state("s"); got != "ONLINE" {
		t.Fatalf("s: state %q, want ONLINE", got)
	}
	var model string
	if err := e.db.QueryRowContext(t.Context(), "SELECT recovery_model_desc FROM sys.databases WHERE name = 's'").Scan(&model); err != nil {
		t.Fatal(err)
	}
	if model != "FULL" {
		t.Fatalf("s: recovery model %s, want FULL", model)
	}
}
