package mssql_test

import (
	"net/url"
	"path/filepath"
	"testing"

	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
)

// simWith starts a simulator with cfg (its password, backup directory and
// size filled in) and returns it with its DSN and backup directory.
func simWith(t *testing.T, cfg mssqlsim.Config) (*mssqlsim.Instance, string, string) {
	t.Helper()
	dir := t.TempDir()
	cfg.SAPassword, cfg.BackupDir = "Pw-1", dir
	if cfg.DefaultPages == 0 {
		cfg.DefaultPages = 128
	}
	inst := mssqlsim.New(cfg)
	addr, err := inst.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", "Pw-1"), Host: addr, RawQuery: "encrypt=disable"}
	return inst, u.String(), dir
}

func openClient(t *testing.T, dsn string) *mssql.Client {
	t.Helper()
	c, err := mssql.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestProgressInAnyLanguage: on a server whose default language is not
// English, BACKUP's progress messages (3211) are translated; progress is
// read by message number, so it is still reported.
func TestProgressInAnyLanguage(t *testing.T) {
	inst, dsn, dir := simWith(t, mssqlsim.Config{Language: "Deutsch"})
	if err := inst.CreateDatabase("Sales", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	c := openClient(t, dsn)
	var got []int
	err := c.Backup(t.Context(), mssql.BackupRequest{Database: "Sales", Type: mssql.Full,
		Files: []string{filepath.Join(dir, "full.bak")}, OnProgress: func(p int) { got = append(got, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[len(got)-1] != 100 {
		t.Errorf("progress reported %v; want steps ending at 100", got)
	}
}
