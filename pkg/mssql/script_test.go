package mssql_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/mssql"
)

func TestScript(t *testing.T) {
	s := mssql.Script{
		Database: "it's ]odd",
		Files: []mssql.ScriptFile{
			{Path: "/bak/01-full.bak", Note: "full"},
			{Path: "/bak/O'Neil/02-log.bak", Log: true, Note: "log\nsecond line"},
		},
		LogicalNames: []string{"odd", "odd_log"},
		StopAt:       time.Date(2026, 11, 21, 10, 15, 3, 0, time.FixedZone("CET", 3600)),
	}
	got := s.String()
	for _, want := range []string{
		"RESTORE DATABASE [it's ]]odd] FROM DISK = N'/bak/01-full.bak' WITH FILE = 1, NORECOVERY;\nGO\n",
		"-- 2. log second line\n",
		"RESTORE LOG [it's ]]odd] FROM DISK = N'/bak/O''Neil/02-log.bak' WITH FILE = 1, STOPAT = '2026-11-21T09:15:03.000', RECOVERY;\nGO\n",
		"--   MOVE N'odd_log' TO N'<path>'\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("script lacks %q:\n%s", want, got)
		}
	}
	s.Moves, s.Replace, s.NoRecovery, s.StopAt = []mssql.Move{{Logical: "odd", Physical: "/data/x.mdf"}}, true, true, time.Time{}
	got = s.String()
	if !strings.Contains(got, "WITH FILE = 1, MOVE N'odd' TO N'/data/x.mdf', REPLACE, NORECOVERY;") || strings.Contains(got, "RECOVERY;\nGO\n") && !strings.Contains(got, "02-log.bak' WITH FILE = 1, NORECOVERY;") {
		t.Errorf("with moves, replace and no recovery:\n%s", got)
	}
}

// TestScriptStripes: a backup striped over several files is restored from
// all of them, named as StripeFileNames names them.
func TestScriptStripes(t *testing.T) {
	s := mssql.Script{Database: "S", Files: []mssql.ScriptFile{{Path: "/bak/01-full-x.bak", Stripes: 3}, {Path: "/bak.d/02-log", Log: true}}}
	got := s.String()
	want := "RESTORE DATABASE [S] FROM DISK = N'/bak/01-full-x-stripe01-of-03.bak', DISK = N'/bak/01-full-x-stripe02-of-03.bak', DISK = N'/bak/01-full-x-stripe03-of-03.bak' WITH FILE = 1, NORECOVERY;"
	if !strings.Contains(got, want) {
		t.Errorf("script lacks %q:\n%s", want, got)
	}
	if !strings.Contains(got, "FROM DISK = N'/bak.d/02-log' WITH FILE = 1") {
		t.Errorf("an unstriped file without an extension is named as given:\n%s", got)
	}
	if n := mssql.StripeFileNames("/d.x/name", 2); n[0] != "/d.x/name-stripe01-of-02" {
		t.Errorf("StripeFileNames of a name without extension in a dotted directory: %q", n)
	}
}
