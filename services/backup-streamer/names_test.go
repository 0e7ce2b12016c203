package streamer

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/policy"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func TestFileStem(t *testing.T) {
	for _, tc := range []struct{ db, job, want string }{
		{"Sales", "j20261122T101010-a1b2c3d4", "Sales_a1b2c3d4"},
		{"it's ]odd ", "j20261122T101010-a1b2c3d4", "it_s__odd__a1b2c3d4"},
		{"../../etc/passwd", "j1-ffff0000", "______etc_passwd_ffff0000"},
		{"Продажи", "j1-0000abcd", "db________0000abcd"},
		{"a\\b:c*d?e\"f<g>h|i", "j1-x", "a_b_c_d_e_f_g_h_i_j1x"},
		{"", "j1-ab", "db_j1ab"},
		{"x", "", "x"},
	} {
		if got := fileStem(tc.db, tc.job); got != tc.want {
			t.Errorf("fileStem(%q, %q) = %q; want %q", tc.db, tc.job, got, tc.want)
		}
	}
	long := fileStem(strings.Repeat("x", 300), "j-12345678")
	if len(long) != 64+1+8 {
		t.Errorf("stem of a 300-character name is %d characters; want 73", len(long))
	}
}

func TestServerPath(t *testing.T) {
	for _, tc := range []struct{ dir, want string }{
		{"/var/opt/mssql/data/", "/var/opt/mssql/data/f.bak"},
		{"/var/opt/mssql/data", "/var/opt/mssql/data/f.bak"},
		{`C:\Program Files\MSSQL\DATA\`, `C:\Program Files\MSSQL\DATA\f.bak`},
		{`C:\Program Files\MSSQL\DATA`, `C:\Program Files\MSSQL\DATA\f.bak`},
		{`\\nas\share`, `\\nas\share\f.bak`},
		{"", "f.bak"},
	} {
		if got := serverPath(tc.dir, "f.bak"); got != tc.want {
			t.Errorf("serverPath(%q) = %q; want %q", tc.dir, got, tc.want)
		}
	}
}

func TestPlanMoves(t *testing.T) {
	files := []mssql.File{
		{ID: 1, Logical: "Sales", Type: "ROWS"},
		{ID: 2, Logical: "Sales_log", Type: "LOG"},
		{ID: 3, Logical: "Sales_archive", Type: "ROWS"},
		{ID: 4, Logical: "Sales_log2", Type: "LOG"},
	}
	got := planMoves(files, `D:\Data`, "/log/", "New_j1", nil)
	want := []mssql.Move{
		{Logical: "Sales", Physical: `D:\Data\New_j1.mdf`},
		{Logical: "Sales_log", Physical: "/log/New_j1_log.ldf"},
		{Logical: "Sales_archive", Physical: `D:\Data\New_j1_3.ndf`},
		{Logical: "Sales_log2", Physical: "/log/New_j1_log4.ldf"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("moves %v; want %v", got, want)
	}
	// Overwriting keeps the existing database's files where they are.
	got = planMoves(files[:2], "/data", "/log", "New_j1", map[string]string{"Sales": "/old/sales.mdf"})
	want = []mssql.Move{{Logical: "Sales", Physical: "/old/sales.mdf"}, {Logical: "Sales_log", Physical: "/log/New_j1_log.ldf"}}
	if !slices.Equal(got, want) {
		t.Errorf("moves when overwriting %v; want %v", got, want)
	}
}

func TestHeaderType(t *testing.T) {
	for _, tc := range []struct {
		typ      int
		copyOnly bool
		want     cofferv1.BackupType
	}{
		{1, false, cofferv1.BackupType_BACKUP_TYPE_FULL},
		{1, true, cofferv1.BackupType_BACKUP_TYPE_COPY_ONLY_FULL},
		{5, false, cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL},
		{2, false, cofferv1.BackupType_BACKUP_TYPE_LOG},
		{2, true, cofferv1.BackupType_BACKUP_TYPE_LOG},
		{7, false, cofferv1.BackupType_BACKUP_TYPE_UNSPECIFIED},
	} {
		if got := headerType(mssql.Header{BackupType: tc.typ, IsCopyOnly: tc.copyOnly}); got != tc.want {
			t.Errorf("headerType(%d, copy-only %v) = %v; want %v", tc.typ, tc.copyOnly, got, tc.want)
		}
	}
}

func TestBackupMetadata(t *testing.T) {
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	h := mssql.Header{BackupType: 2, IsCopyOnly: true, FirstLSN: "41000000001600001", LastLSN: "41000000002400001",
		CheckpointLSN: "41000000000800001", DatabaseBackupLSN: "41000000000800001", BackupStart: start,
		BackupFinish: start.Add(time.Second), ServerName: "SQL01", DatabaseName: "it's ]odd ", BindingID: "AAAA-1",
		FamilyGUID: "BBBB-2", FirstRecoveryForkID: "CCCC-3", RecoveryForkID: "DDDD-4", ForkPointLSN: "",
		HasChecksums: true, RecoveryModel: "FULL", Collation: "SQL_Latin1_General_CP1_CI_AS"}
	m := backupMetadata(h, []mssql.File{{ID: 1, Logical: "d", Physical: "/d.mdf", Type: "ROWS", Size: 8192}})
	if m.Type != cofferv1.BackupType_BACKUP_TYPE_LOG || !m.CopyOnly || m.FirstLsn != h.FirstLSN || m.LastLsn != h.LastLSN ||
		m.CheckpointLsn != h.CheckpointLSN || m.DatabaseBackupLsn != h.DatabaseBackupLSN || !m.BackupStart.AsTime().Equal(start) ||
		m.DatabaseName != h.DatabaseName || m.DatabaseGuid != "aaaa-1" || m.FamilyGuid != "bbbb-2" ||
		m.FirstRecoveryForkGuid != "cccc-3" || m.LastRecoveryForkGuid != "dddd-4" || !m.HasChecksums ||
		len(m.Files) != 1 || m.Files[0].SizeBytes != 8192 || m.Files[0].Type != "ROWS" {
		t.Errorf("metadata %v", m)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{MasterKey: make([]byte, 32), StagingDir: "/tmp/x"}
	good.setDefaults()
	if err := good.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	bad := Config{MasterKey: make([]byte, 16), Workers: -1, AckWait: time.Millisecond, Backoff: []time.Duration{0}}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"master key", "staging", "workers", "ack wait", "backoff[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

// TestServerTimeZone: a server an hour ahead of UTC reports backup times
// an hour ahead; the metadata keeps them in UTC, and STOPAT goes back in
// the server's local time.
func TestServerTimeZone(t *testing.T) {
	local := time.Date(2026, 11, 21, 11, 15, 3, 0, time.UTC) // wall clock of a UTC+1 server
	m := &cofferv1.BackupMetadata{BackupStart: timestamppb.New(local.Add(-time.Minute)), BackupFinish: timestamppb.New(local),
		Marks: []*cofferv1.LogMark{{Name: "m", Time: timestamppb.New(local.Add(-30 * time.Second))}}}
	toUTC(m, time.Hour)
	if got := m.GetBackupFinish().AsTime(); !got.Equal(local.Add(-time.Hour)) || m.GetUtcOffsetMinutes() != 60 {
		t.Errorf("finish %v (offset %d), want %v (60)", got, m.GetUtcOffsetMinutes(), local.Add(-time.Hour))
	}
	if got := m.GetMarks()[0].GetTime().AsTime(); !got.Equal(local.Add(-time.Hour - 30*time.Second)) {
		t.Errorf("mark at %v", got)
	}
	if got, err := policy.ServerTime(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), nil, m); err != nil || !got.Equal(time.Date(2026, 11, 21, 11, 0, 0, 0, time.UTC)) {
		t.Errorf("STOPAT for 10:00 UTC: %v (%v), want 11:00 server time", got, err)
	}
}

// TestStopAtAcrossDaylightSaving: STOPAT converts a moment with the
// offset of the log it stops in, not today's offset nor another
// backup's, and refuses a moment inside a log during which the offset
// changed (Europe/Paris, October 2026: 03:00 CEST became 02:00 CET at
// 01:00 UTC).
func TestStopAtAcrossDaylightSaving(t *testing.T) {
	at := func(h, m int, offset int32) *cofferv1.BackupMetadata {
		utc := time.Date(2026, 10, 25, h, m, 0, 0, time.UTC)
		return &cofferv1.BackupMetadata{BackupStart: timestamppb.New(utc), BackupFinish: timestamppb.New(utc), UtcOffsetMinutes: offset}
	}
	tests := []struct {
		name        string
		target      time.Time
		prev, last  *cofferv1.BackupMetadata
		want        string // the server's wall clock
		wantRefused bool
	}{
		{"summer, first 02:30", time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), at(0, 15, 120), at(0, 45, 120), "2026-10-25 02:30:00", false},
		{"winter, second 02:30", time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC), at(1, 15, 60), at(1, 45, 60), "2026-10-25 02:30:00", false},
		{"winter, after the change", time.Date(2026, 10, 26, 9, 0, 0, 0, time.UTC), at(8, 0, 60), at(10, 0, 60), "2026-10-26 10:00:00", false},
		{"inside the log that spans the change", time.Date(2026, 10, 25, 0, 50, 0, 0, time.UTC), at(0, 45, 120), at(1, 0, 60), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := policy.ServerTime(tt.target, tt.prev, tt.last)
			if tt.wantRefused {
				if err == nil || !strings.Contains(err.Error(), "daylight saving") {
					t.Fatalf("got %v, %v; want a refusal naming daylight saving", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v; want %s", err, tt.want)
			}
			if s := got.Format(time.DateTime); s != tt.want {
				t.Errorf("got %s; want %s", s, tt.want)
			}
		})
	}
}
