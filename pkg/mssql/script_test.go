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

// TestScriptLineBreaks: a name or path that holds a line break never puts
// one in the script, where sqlcmd would read a line of it as GO or as one
// of its commands; RESTORE gets it through a variable built with NCHAR.
func TestScriptLineBreaks(t *testing.T) {
	evil := "x\r\nGO\r\n!!rm -rf /\nDROP DATABASE [master]\u2028--"
	s := mssql.Script{
		Database:     evil,
		Files:        []mssql.ScriptFile{{Path: "/bak/\n01-full.bak", Note: "full\r\nGO"}, {Path: "/bak/02-log.bak", Log: true}},
		LogicalNames: []string{evil, "plain"},
	}
	got := s.String()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\u2028") || strings.TrimSpace(l) != l && l != "" {
			t.Errorf("line %q holds a control character or leading/trailing space", l)
		}
		if strings.HasPrefix(l, "!!") || strings.HasPrefix(l, ":") || strings.HasPrefix(l, "DROP") {
			t.Errorf("line %q would run as a command of its own", l)
		}
	}
	expr := "N'x' + NCHAR(13) + NCHAR(10) + N'GO' + NCHAR(13) + NCHAR(10) + N'!!rm -rf /' + NCHAR(10) + N'DROP DATABASE [master]' + NCHAR(8232) + N'--'"
	for _, want := range []string{
		"-- Restore [x\\r\\nGO\\r\\n!!rm -rf /\\nDROP DATABASE [master]]\\u2028--] from 2 backup file(s), in this order.\n",
		"--   MOVE @logical TO N'<path>', with DECLARE @logical sysname = " + expr + ";\n",
		"--   MOVE N'plain' TO N'<path>'\n",
		"-- 1. full\\r GO\n",
		"DECLARE @v1 sysname = " + expr + ";\nDECLARE @v2 nvarchar(4000) = N'/bak/' + NCHAR(10) + N'01-full.bak';\n" +
			"RESTORE DATABASE @v1 FROM DISK = @v2 WITH FILE = 1, NORECOVERY;\nGO\n",
		"DECLARE @v1 sysname = " + expr + ";\nRESTORE LOG @v1 FROM DISK = N'/bak/02-log.bak' WITH FILE = 1, RECOVERY;\nGO\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("script lacks %q:\n%s", want, got)
		}
	}
	if mssql.SafeInScript(evil) || !mssql.SafeInScript("tab\there ]'") {
		t.Error("SafeInScript: want false for a line break, true for a tab")
	}
}
