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

// TestConnectionsSitInMaster: a connection string that names a user
// database would put every pooled connection in it, and RESTORE over it
// would fail (3101/3102). The client's connections sit in master whatever
// the string says.
func TestConnectionsSitInMaster(t *testing.T) {
	inst, dsn, dir := simWith(t, mssqlsim.Config{DataPath: "/data/"})
	if err := inst.CreateDatabase("Sales", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	c := openClient(t, dsn+"&database=Sales")
	file := filepath.Join(dir, "full.bak")
	if err := c.Backup(t.Context(), mssql.BackupRequest{Database: "Sales", Type: mssql.Full, Files: []string{file}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Restore(t.Context(), mssql.RestoreRequest{Database: "Sales", Files: []string{file}, Replace: true, Recovery: true}); err != nil {
		t.Fatalf("restore over Sales with a connection string naming it: %v", err)
	}
}

// TestGUIDConversionIgnored: with the driver's "guid conversion" option a
// uniqueidentifier read as bytes would come out in another byte order than
// the same GUID cast to text, and every chain check would fail. The client
// neutralises the option.
func TestGUIDConversionIgnored(t *testing.T) {
	inst, dsn, dir := simWith(t, mssqlsim.Config{})
	if err := inst.CreateDatabase("Sales", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	c := openClient(t, dsn+"&guid+conversion=true")
	file := filepath.Join(dir, "full.bak")
	if err := c.Backup(t.Context(), mssql.BackupRequest{Database: "Sales", Type: mssql.Full, Files: []string{file}}); err != nil {
		t.Fatal(err)
	}
	h, err := c.HeaderOnly(t.Context(), []string{file})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := c.ChainState(t.Context(), "Sales")
	if err != nil {
		t.Fatal(err)
	}
	if h[0].RecoveryForkID == "" || h[0].RecoveryForkID != ch.RecoveryFork {
		t.Errorf("the backup's recovery fork %q, the database's %q; want the same GUID", h[0].RecoveryForkID, ch.RecoveryFork)
	}
}

// TestBasicAvailabilityGroup: discovery sees a basic availability group
// as such, and its secondary refuses a log backup even when the group's
// preference names it.
func TestBasicAvailabilityGroup(t *testing.T) {
	prim, primDSN, dir := simWith(t, mssqlsim.Config{ServerName: "P"})
	sec, secDSN, _ := simWith(t, mssqlsim.Config{ServerName: "S"})
	if err := prim.CreateDatabase("Orders", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := openClient(t, primDSN).Backup(t.Context(), mssql.BackupRequest{Database: "Orders", Type: mssql.Full,
		Files: []string{filepath.Join(dir, "o.bak")}}); err != nil {
		t.Fatal(err)
	}
	ag, err := mssqlsim.NewBasicAvailabilityGroup("bag", mssqlsim.PreferSecondary, prim, sec)
	if err != nil {
		t.Fatal(err)
	}
	if err := ag.AddDatabase("Orders"); err != nil {
		t.Fatal(err)
	}
	c := openClient(t, secDSN)
	dbs, err := c.Databases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var orders *mssql.Database
	for k := range dbs {
		if dbs[k].Name == "Orders" {
			orders = &dbs[k]
		}
	}
	if orders == nil || orders.AG == nil || !orders.AG.Basic || orders.AG.Primary {
		t.Fatalf("the secondary's Orders: %+v; want a secondary replica of a basic group", orders)
	}
	err = c.Backup(t.Context(), mssql.BackupRequest{Database: "Orders", Type: mssql.Log, Files: []string{filepath.Join(dir, "o.trn")}})
	if mssql.Number(err) != 3059 {
		t.Errorf("a log backup on the basic group's secondary: %v; want 3059", err)
	}
}
