package streamer_test

import (
	"crypto/tls"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/blob/dirstore"
	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/tlsca"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	streamer "github.com/cofferhq/coffer/services/backup-streamer"
)

// clock is a clock a test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// urlEnv is an installation whose streamer is the S3 endpoint of the
// simulated SQL Server 2022, which trusts the endpoint's CA; the
// simulator's clock is moved by the test. The simulator has a loopback
// address of its own (127.0.0.2), the endpoint 127.0.0.1, as two hosts.
func urlEnv(t *testing.T) (*env, *clock, *dirstore.Store) {
	t.Helper()
	return urlEnvWith(t, nil)
}

// urlEnvWith is urlEnv with the simulator's and the streamer's settings
// changed by set.
func urlEnvWith(t *testing.T, set func(*mssqlsim.Config, *streamer.Config)) (*env, *clock, *dirstore.Store) {
	t.Helper()
	ca, err := tlsca.New("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	store, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}
	sim := mssqlsim.Config{TrustedCAs: ca.Pool(), Now: clk.Now, DefaultPages: 3000}
	var cfg streamer.Config
	if set != nil {
		set(&sim, &cfg)
	}
	e := newEnv(t, envOptions{store: store, sim: sim, simHost: "127.0.0.2"})
	stripeBytes := cfg.Endpoint.StripeBytes
	cfg = e.streamerConfig()
	cfg.Endpoint = streamer.Endpoint{Addr: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, StripeBytes: stripeBytes}
	e.startCommitter()
	e.startStreamer(cfg)
	return e, clk, store
}

// TestURLMode: SQL Server 2022 backs up to the streamer's S3 endpoint and
// restores from it. Full, differential and log backups of a database with
// a hostile name, taken while a workload commits, land in the vault with
// nothing staged; a restore to a second inside the last log, to a new
// name, gives the source's content as of that second; an overwrite to the
// latest moment goes through a tail-log backup and gives back exactly
// what the database had; and no credential is left on the server.
func TestURLMode(t *testing.T) {
	e, clk, _ := urlEnv(t)
	ctx := t.Context()
	const db = "it's ]odd "
	e.createFilled(db, 3000)
	mark := e.stagingModTime()
	if err := e.inst.StartWorkload(db, mssqlsim.WorkloadOptions{TPS: 200, PagesPerTx: 2}); err != nil {
		t.Fatal(err)
	}
	before := e.hash(db)
	fullRP := e.backupOK(ctx, db, full)
	if e.hash(db) == before {
		t.Fatal("the workload committed nothing while the full was taken")
	}
	e.stagingEmpty()
	clk.advance(time.Minute)
	diff := e.backupOK(ctx, db, cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL)
	clk.advance(time.Minute)
	stop := clk.advance(30 * time.Second)
	clk.advance(30 * time.Second)
	logRP := e.backupOK(ctx, db, logb)
	e.stagingEmpty()
	// the workload stops for the overwrite below, whose tail-log backup
	// must give back exactly what the database had
	if err := e.inst.StartWorkload(db, mssqlsim.WorkloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if fullRP.GetSize() < 2*5<<20 {
		t.Fatalf("the full is %d bytes; want several parts", fullRP.GetSize())
	}

	want, err := e.inst.ContentHash(db, stop)
	if err != nil {
		t.Fatal(err)
	}
	e.mustSucceed(e.restoreWith(ctx, db, "odd copy", func(r *cofferv1.RestoreRequested) { r.StopAt = timestamppb.New(stop) },
		fullRP.Id, diff.Id, logRP.Id))
	if got := e.hash("odd copy"); got != want {
		t.Errorf("restored as of %v: %s; want %s", stop, got, want)
	}
	e.stagingEmpty()

	clk.advance(time.Minute)
	e.inst.Commit(db, 5)
	before = e.hash(db)
	e.mustSucceed(e.restoreWith(ctx, db, db, func(r *cofferv1.RestoreRequested) { r.Overwrite, r.Latest = true, true },
		fullRP.Id, diff.Id, logRP.Id))
	if got := e.hash(db); got != before {
		t.Errorf("after an overwrite to the latest moment (with its tail-log backup): %s; want %s", got, before)
	}
	e.stagingEmpty()
	e.stagingUntouched(mark)
	if creds := e.credentials(); len(creds) != 0 {
		t.Errorf("credentials left on the server: %v", creds)
	}
}

// TestURLModeStriped: a database larger than one URL carries is backed up
// to several URLs at once, as SQL Server stripes a database of terabytes,
// with none past SQL Server's part limit; each stripe is its own stream
// in the recovery point. It restores exactly through RESTORE ... FROM URL
// with every stripe, and through disk mode's staging.
func TestURLModeStriped(t *testing.T) {
	e, clk, _ := urlEnvWith(t, func(sim *mssqlsim.Config, cfg *streamer.Config) {
		// 20 MB a URL, at most: a backup of 50 MB needs three or more
		sim.MaxURLParts = 2
		cfg.Endpoint.StripeBytes = 12 << 20
	})
	ctx := t.Context()
	const db = "Striped ]"
	e.createFilled(db, 6000)
	fullRP := e.backupOK(ctx, db, full)
	if fullRP.GetStripes() < 3 {
		t.Fatalf("a full of %d bytes went to %d URLs; want 3 or more", fullRP.GetSize(), fullRP.GetStripes())
	}
	var devices int
	if err := openDB(t, simDSN(e.addr)).QueryRowContext(ctx, `SELECT COUNT(*) FROM msdb.dbo.backupmediafamily mf
		JOIN msdb.dbo.backupset bs ON bs.media_set_id = mf.media_set_id WHERE bs.type = 'D'`).Scan(&devices); err != nil {
		t.Fatal(err)
	}
	if devices != int(fullRP.GetStripes()) {
		t.Errorf("msdb shows the full on %d devices; the recovery point has %d stripes", devices, fullRP.GetStripes())
	}
	clk.advance(time.Minute)
	e.inst.Commit(db, 30)
	clk.advance(time.Minute)
	logRP := e.backupOK(ctx, db, logb)
	e.stagingEmpty()
	want := e.hash(db)

	e.mustSucceed(e.restore(ctx, db, "Striped copy", false, fullRP.Id, logRP.Id))
	if got := e.hash("Striped copy"); got != want {
		t.Errorf("restored through the endpoint: %s; want %s", got, want)
	}
	e.stagingEmpty()
	e.registerMode(instName, e.addr, "disk")
	e.mustSucceed(e.restore(ctx, db, "Striped staged", false, fullRP.Id, logRP.Id))
	if got := e.hash("Striped staged"); got != want {
		t.Errorf("restored through disk staging: %s; want %s", got, want)
	}
	e.stagingEmpty()

	// restore as files: one file per stripe, and a script that names them
	dir := t.TempDir()
	script := mssql.Script{Database: "Striped files", Files: []mssql.ScriptFile{
		{Path: filepath.Join(dir, "01-full.bak"), Stripes: int(fullRP.GetStripes())}, {Path: filepath.Join(dir, "02-log.bak"), Log: true}},
		Moves: []mssql.Move{{Logical: db, Physical: "/var/opt/mssql/data/files.mdf"}, {Logical: db + "_log", Physical: "/var/opt/mssql/data/files.ldf"}}}
	e.mustSucceed(e.restoreWith(ctx, db, "", func(r *cofferv1.RestoreRequested) {
		r.ToDirectory, r.FileNames, r.Script = dir, []string{"01-full.bak", "02-log.bak"}, script.String()
	}, fullRP.Id, logRP.Id))
	sqlDB := openDB(t, simDSN(e.addr))
	for _, stmt := range strings.Split(script.String(), "\nGO\n") {
		if _, err := sqlDB.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("the script written beside the files: %v\n%s", err, stmt)
		}
	}
	if got := e.hash("Striped files"); got != want {
		t.Errorf("restored from the files written: %s; want %s", got, want)
	}
}

// TestURLModeDamagedChunk: a damaged chunk stops a restore to a new name,
// named in the reason, with no database left; an overwrite never starts.
func TestURLModeDamagedChunk(t *testing.T) {
	e, _, store := urlEnv(t)
	ctx := t.Context()
	const db = "Damaged"
	e.createFilled(db, 3000)
	rp := e.backupOK(ctx, db, full)
	chunk := e.corruptChunk(store, rp)
	j := e.mustFail(e.restore(ctx, db, "Damaged copy", false, rp.Id))
	if !strings.Contains(j.Error, chunk) {
		t.Errorf("reason %q; want it to name chunk %s", j.Error, chunk)
	}
	if e.exists("Damaged copy") {
		t.Error("a database is left after the failed restore")
	}
	before := e.hash(db)
	j = e.mustFail(e.restore(ctx, db, db, true, rp.Id))
	if !strings.Contains(j.Error, chunk) {
		t.Errorf("overwrite: reason %q; want it to name chunk %s", j.Error, chunk)
	}
	if st, _ := e.inst.DatabaseState(db); st != mssqlsim.Online || e.hash(db) != before {
		t.Errorf("the overwrite with a damaged chunk changed the database (state %v)", st)
	}
	if creds := e.credentials(); len(creds) != 0 {
		t.Errorf("credentials left on the server: %v", creds)
	}
}

// TestURLModeConnectionDrop: SQL Server's connection drops in the middle
// of a backup to the endpoint: the job fails visibly, no recovery point
// is recorded, and the job's credential is gone from the server.
func TestURLModeConnectionDrop(t *testing.T) {
	e, _, _ := urlEnv(t)
	ctx := t.Context()
	const db = "Dropped"
	e.createFilled(db, 3000)
	e.inst.InjectFault(mssqlsim.Fault{Kind: mssqlsim.FaultDropConnection, Database: db, AfterBytes: 8 << 20})
	jid := e.backup(ctx, db, full)
	j := e.mustFail(jid)
	if !strings.Contains(j.Error, db) {
		t.Errorf("reason %q; want it to name the database", j.Error)
	}
	if _, err := e.recoveryPoint(db, jid); err == nil {
		t.Error("a recovery point was recorded for the failed backup")
	}
	if len(e.manifests()) != 0 {
		t.Errorf("manifests written: %v", e.manifests())
	}
	if creds := e.credentials(); len(creds) != 0 {
		t.Errorf("credentials left on the server: %v", creds)
	}
	e.stagingEmpty()
}

// TestBackupModes: in one run, SQL Server 2022 backs up through the
// endpoint (URL mode), SQL Server 2019 keeps disk mode, an instance set to
// disk mode uses it whatever its version, and an instance set to URL mode
// that cannot have it is refused with the reason. msdb says which device
// each backup went to.
func TestBackupModes(t *testing.T) {
	e, clk, _ := urlEnv(t)
	ctx := t.Context()
	start := func(name string, cfg mssqlsim.Config) (*mssqlsim.Instance, string) {
		cfg.SAPassword, cfg.Now, cfg.DefaultPages = simPassword, clk.Now, 3000
		inst := mssqlsim.New(cfg)
		addr, err := inst.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { inst.Close() })
		e.registerAt(name, addr)
		return inst, addr
	}
	old, oldAddr := start("sql19", mssqlsim.Config{ServerName: "SIM2019", MajorVersion: 15})
	for _, inst := range []*mssqlsim.Instance{e.inst, old} {
		if err := inst.CreateDatabase("Modes", mssqlsim.DatabaseOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	device := func(addr string) string {
		t.Helper()
		var d string
		db := openDB(t, simDSN(addr))
		if err := db.QueryRowContext(ctx, "SELECT TOP 1 mf.physical_device_name FROM msdb.dbo.backupset bs JOIN msdb.dbo.backupmediafamily mf ON mf.media_set_id = bs.media_set_id ORDER BY bs.backup_set_id DESC").Scan(&d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	e.mustSucceed(e.backupOn(ctx, instName, "Modes", full))
	if d := device(e.addr); !strings.HasPrefix(d, "s3://") {
		t.Errorf("SQL Server 2022 backed up to %q; want the endpoint's URL", d)
	}
	e.mustSucceed(e.backupOn(ctx, "sql19", "Modes", full))
	if d := device(oldAddr); strings.HasPrefix(d, "s3://") || !strings.HasPrefix(d, e.staging) {
		t.Errorf("SQL Server 2019 backed up to %q; want a file in the staging directory", d)
	}
	e.registerMode(instName, e.addr, "disk")
	e.mustSucceed(e.backupOn(ctx, instName, "Modes", logb))
	if d := device(e.addr); strings.HasPrefix(d, "s3://") {
		t.Errorf("an instance set to disk mode backed up to %q", d)
	}
	e.registerMode("sql19", oldAddr, "url")
	j := e.mustFail(e.backupOn(ctx, "sql19", "Modes", full))
	if !strings.Contains(j.Error, "no S3 connector") {
		t.Errorf("URL mode on SQL Server 2019: %q; want the reason", j.Error)
	}
}
