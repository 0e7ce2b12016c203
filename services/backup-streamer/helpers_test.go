package streamer_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/dirstore"
	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/secret"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	streamer "github.com/cofferhq/coffer/services/backup-streamer"
	"github.com/cofferhq/coffer/services/committer"
)

const (
	simPassword = "Sim-Pa55word!"
	instName    = "sql01"
)

// env is one coffer installation for a test: embedded NATS with the
// topology, a vault, a simulated SQL Server registered as instName, and a
// staging directory.
type env struct {
	t       testing.TB
	bus     *bus.Bus
	cat     *catalog.Catalog
	store   blob.Store
	vault   *vault.Vault
	master  []byte
	inst    *mssqlsim.Instance
	addr    string
	staging string
	tp      trace.TracerProvider
}

type envOptions struct {
	store blob.Store           // default: a dirstore in a temp dir
	tp    trace.TracerProvider // default: none
	sim   mssqlsim.Config      // SAPassword, paths and pages get defaults
	// simHost is the loopback address the simulator listens on: default
	// 127.0.0.1
	simHost string
	// staging is the staging directory: default a new temp dir
	staging string
}

func newEnv(t testing.TB, opt envOptions) *env {
	t.Helper()
	ctx := context.Background()
	n := topologytest.Start(t, bus.Config{Logger: testLogger(t), TracerProvider: opt.tp, NakDelay: 100 * time.Millisecond})
	store := opt.store
	if store == nil {
		var err error
		if store, err = dirstore.New(t.TempDir()); err != nil {
			t.Fatalf("dirstore: %v", err)
		}
	}
	master := vault.GenerateMasterKey()
	v, err := vault.Init(ctx, store, master)
	if err != nil {
		t.Fatalf("init vault: %v", err)
	}

	cfg := opt.sim
	cfg.SAPassword = simPassword
	if cfg.DataPath == "" {
		cfg.DataPath = "/var/opt/mssql/data/"
	}
	if cfg.LogPath == "" {
		cfg.LogPath = "/var/opt/mssql/log"
	}
	if cfg.DefaultPages == 0 {
		cfg.DefaultPages = 256
	}
	inst := mssqlsim.New(cfg)
	host := opt.simHost
	if host == "" {
		host = "127.0.0.1"
	}
	addr, err := inst.Listen(net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { inst.Close() })

	staging := opt.staging
	if staging == "" {
		staging = t.TempDir()
	}
	e := &env{t: t, bus: n.Bus, cat: n.Catalog, store: store, vault: v, master: master, inst: inst, addr: addr, staging: staging, tp: opt.tp}
	e.register(instName)
	return e
}

func (e *env) dsn() string { return simDSN(e.addr) }

func simDSN(addr string) string {
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", simPassword), Host: addr, RawQuery: "encrypt=disable&dial+timeout=5"}
	return u.String()
}

// register records the simulator as instance name, its connection string
// sealed as the gateway seals it.
func (e *env) register(name string) { e.registerAt(name, e.addr) }

// addInstance starts another simulated SQL Server, registered as name.
func (e *env) addInstance(name string, cfg mssqlsim.Config) *mssqlsim.Instance {
	e.t.Helper()
	cfg.SAPassword = simPassword
	inst := mssqlsim.New(cfg)
	addr, err := inst.Listen("127.0.0.1:0")
	if err != nil {
		e.t.Fatalf("listen: %v", err)
	}
	e.t.Cleanup(func() { inst.Close() })
	e.registerAt(name, addr)
	return inst
}

func (e *env) registerAt(name, addr string) {
	e.t.Helper()
	s, err := secret.New(e.master, "instance-credentials")
	if err != nil {
		e.t.Fatal(err)
	}
	rec := &cofferv1.Instance{Name: name, SealedDsn: s.Seal([]byte(simDSN(addr)), name), Healthy: true}
	if _, err := e.cat.Bucket(cofferv1.BucketInstances).Put(context.Background(), catalog.Key(name), rec); err != nil {
		e.t.Fatalf("register instance: %v", err)
	}
}

// streamerConfig is the configuration tests run the streamer with.
func (e *env) streamerConfig() streamer.Config {
	return streamer.Config{MasterKey: e.master, StagingDir: e.staging, TracerProvider: e.tp, Logger: testLogger(e.t),
		ProgressInterval: 50 * time.Millisecond, Backoff: []time.Duration{100 * time.Millisecond}}
}

// run runs a service until the test ends, or until the returned stop is
// called, which returns Run's error.
func (e *env) run(name string, r interface{ Run(context.Context) error }) (stop func() error) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	var byTest bool
	stop = func() error {
		byTest = true
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				err = errors.New(name + " did not stop")
			}
		})
		return err
	}
	e.t.Cleanup(func() {
		if byTest {
			return
		}
		if err := stop(); err != nil {
			e.t.Errorf("%s: %v", name, err)
		}
	})
	return stop
}

func (e *env) startStreamer(cfg streamer.Config) (stop func() error) {
	e.t.Helper()
	svc, err := streamer.New(e.bus, e.cat, e.vault, cfg)
	if err != nil {
		e.t.Fatalf("streamer: %v", err)
	}
	return e.run("streamer", svc)
}

func (e *env) startCommitter() (stop func() error) {
	e.t.Helper()
	svc, err := committer.New(e.bus, e.cat, e.vault, committer.Config{TracerProvider: e.tp, Backoff: []time.Duration{100 * time.Millisecond}, MasterKey: e.master})
	if err != nil {
		e.t.Fatalf("committer: %v", err)
	}
	return e.run("committer", svc)
}

func (e *env) publish(ctx context.Context, subject string, m proto.Message, id string) {
	e.t.Helper()
	if err := e.bus.Publish(ctx, subject, m, id); err != nil {
		e.t.Fatalf("publish %s: %v", subject, err)
	}
}

// backup queues a backup of database on instName, as the scheduler does,
// and returns its job id.
func (e *env) backup(ctx context.Context, database string, typ cofferv1.BackupType) string {
	e.t.Helper()
	return e.backupOn(ctx, instName, database, typ)
}

// restore queues a restore of the recovery points of source into target,
// as the gateway does, and returns its job id.
func (e *env) restore(ctx context.Context, source, target string, overwrite bool, rps ...string) string {
	e.t.Helper()
	return e.restoreWith(ctx, source, target, func(r *cofferv1.RestoreRequested) { r.Overwrite = overwrite }, rps...)
}

// restoreWith queues a restore as the gateway does, with the request
// adjusted by edit, and returns its job id.
func (e *env) restoreWith(ctx context.Context, source, target string, edit func(*cofferv1.RestoreRequested), rps ...string) string {
	e.t.Helper()
	jid := event.NewJobID(time.Now())
	src := &cofferv1.DatabaseRef{Instance: instName, Database: source}
	tgt := &cofferv1.DatabaseRef{Instance: instName, Database: target}
	e.publish(ctx, cofferv1.SubjectJobQueued, &cofferv1.JobQueued{Meta: event.Meta(event.ID("queued", jid), jid, time.Now()),
		Kind: cofferv1.JobKind_JOB_KIND_RESTORE, Database: src, Target: tgt}, event.ID("queued", jid))
	req := &cofferv1.RestoreRequested{Meta: event.Meta(event.ID("restore", jid), jid, time.Now()),
		RecoveryPoints: rps, Source: src, Target: tgt}
	if edit != nil {
		edit(req)
	}
	e.publish(ctx, cofferv1.SubjectWorkRestore, req, event.ID("restore", jid))
	return jid
}

// waitJob waits for job id to reach an outcome and returns it.
func (e *env) waitJob(id string, timeout time.Duration) *cofferv1.Job {
	e.t.Helper()
	var j *cofferv1.Job
	waitFor(e.t, timeout, "job "+id+" to finish", func() bool {
		j = &cofferv1.Job{}
		_, err := e.cat.Bucket(cofferv1.BucketJobs).Get(context.Background(), catalog.Key(id), j)
		return err == nil && (j.State == cofferv1.JobState_JOB_STATE_SUCCEEDED || j.State == cofferv1.JobState_JOB_STATE_FAILED)
	})
	return j
}

// mustSucceed waits for job id and fails the test unless it succeeded.
func (e *env) mustSucceed(id string) *cofferv1.Job {
	e.t.Helper()
	j := e.waitJob(id, 2*time.Minute)
	if j.State != cofferv1.JobState_JOB_STATE_SUCCEEDED {
		e.t.Fatalf("job %s: state %v, error %q; want SUCCEEDED", id, j.State, j.Error)
	}
	return j
}

// mustFail waits for job id and fails the test unless it failed.
func (e *env) mustFail(id string) *cofferv1.Job {
	e.t.Helper()
	j := e.waitJob(id, 2*time.Minute)
	if j.State != cofferv1.JobState_JOB_STATE_FAILED {
		e.t.Fatalf("job %s: state %v; want FAILED", id, j.State)
	}
	if j.Error == "" || j.Service == "" {
		e.t.Errorf("job %s failed without reason or service: %+v", id, j)
	}
	return j
}

// recoveryPoint reads the recovery point of a backup job.
func (e *env) recoveryPoint(database, jobID string) (*cofferv1.RecoveryPoint, error) {
	rp := &cofferv1.RecoveryPoint{}
	_, err := e.cat.Bucket(cofferv1.BucketRecoveryPoints).Get(context.Background(),
		catalog.Key(instName, database, event.RecoveryPointID(jobID)), rp)
	return rp, err
}

func (e *env) mustRecoveryPoint(database, jobID string) *cofferv1.RecoveryPoint {
	e.t.Helper()
	rp, err := e.recoveryPoint(database, jobID)
	if err != nil {
		e.t.Fatalf("recovery point of job %s: %v", jobID, err)
	}
	return rp
}

// backupOK runs a backup to success and returns its recovery point.
func (e *env) backupOK(ctx context.Context, database string, typ cofferv1.BackupType) *cofferv1.RecoveryPoint {
	e.t.Helper()
	jid := e.backup(ctx, database, typ)
	e.mustSucceed(jid)
	return e.mustRecoveryPoint(database, jid)
}

// createFilled creates a database of pages pages and writes rows into
// nearly all of them. A new simulated database is all empty pages, long
// runs of zeros in which the vault's chunker finds no content-defined
// boundary; real databases hold data.
func (e *env) createFilled(name string, pages int) {
	e.t.Helper()
	if err := e.inst.CreateDatabase(name, mssqlsim.DatabaseOptions{Pages: pages}); err != nil {
		e.t.Fatalf("create database %q: %v", name, err)
	}
	if _, err := e.inst.Commit(name, 4*pages); err != nil {
		e.t.Fatalf("fill database %q: %v", name, err)
	}
}

func (e *env) hash(database string) string {
	e.t.Helper()
	h, err := e.inst.ContentHash(database, time.Time{})
	if err != nil {
		e.t.Fatalf("content hash of %q: %v", database, err)
	}
	return h
}

func (e *env) exists(database string) bool {
	_, err := e.inst.DatabaseState(database)
	return err == nil
}

func (e *env) manifests() []string {
	e.t.Helper()
	var ids []string
	if err := e.vault.ListManifests(context.Background(), func(id string) error { ids = append(ids, id); return nil }); err != nil {
		e.t.Fatalf("list manifests: %v", err)
	}
	return ids
}

// stagingEmpty fails the test unless the staging directory empties: a
// backup's staging file is removed after its BackupStreamed is out, while
// the committer commits it.
func (e *env) stagingEmpty() {
	e.t.Helper()
	waitFor(e.t, 30*time.Second, "the staging directory "+e.staging+" to empty", func() bool {
		ents, err := os.ReadDir(e.staging)
		if err != nil {
			e.t.Fatal(err)
		}
		return len(ents) == 0
	})
}

// stagingModTime is when the staging directory last had a file created,
// renamed or removed in it.
func (e *env) stagingModTime() time.Time {
	e.t.Helper()
	fi, err := os.Stat(e.staging)
	if err != nil {
		e.t.Fatal(err)
	}
	return fi.ModTime()
}

// stagingUntouched fails the test when a file was created in (or removed
// from) the staging directory since mark, even one that is gone again.
func (e *env) stagingUntouched(mark time.Time) {
	e.t.Helper()
	if got := e.stagingModTime(); !got.Equal(mark) {
		e.t.Errorf("the staging directory changed at %v (since %v): something was staged", got, mark)
	}
}

func (e *env) sqlDB() *sql.DB {
	e.t.Helper()
	db, err := sql.Open("sqlserver", e.dsn())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	return db
}

// testLogger logs to the test's log, shown when it fails or with -v.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// credentials lists the credentials on the simulated server.
func (e *env) credentials() []string {
	e.t.Helper()
	rows, err := e.sqlDB().QueryContext(context.Background(), "SELECT name FROM sys.credentials")
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// registerMode registers instance name at addr with a backup mode.
func (e *env) registerMode(name, addr, mode string) {
	e.t.Helper()
	s, err := secret.New(e.master, "instance-credentials")
	if err != nil {
		e.t.Fatal(err)
	}
	rec := &cofferv1.Instance{Name: name, SealedDsn: s.Seal([]byte(simDSN(addr)), name), Healthy: true, BackupMode: mode}
	if _, err := e.cat.Bucket(cofferv1.BucketInstances).Put(context.Background(), catalog.Key(name), rec); err != nil {
		e.t.Fatalf("register instance: %v", err)
	}
}

// backupOn queues a backup of database on instance, as the scheduler
// does, and returns its job id.
func (e *env) backupOn(ctx context.Context, instance, database string, typ cofferv1.BackupType) string {
	e.t.Helper()
	return e.backupWith(ctx, instance, database, typ, nil)
}

// backupWith is backupOn with the request adjusted by edit.
func (e *env) backupWith(ctx context.Context, instance, database string, typ cofferv1.BackupType, edit func(*cofferv1.BackupRequested)) string {
	e.t.Helper()
	jid := event.NewJobID(time.Now())
	db := &cofferv1.DatabaseRef{Instance: instance, Database: database}
	e.publish(ctx, cofferv1.SubjectJobQueued, &cofferv1.JobQueued{Meta: event.Meta(event.ID("queued", jid), jid, time.Now()),
		Kind: cofferv1.JobKind_JOB_KIND_BACKUP, Database: db, BackupType: typ}, event.ID("queued", jid))
	req := &cofferv1.BackupRequested{Meta: event.Meta(event.ID("backup", jid), jid, time.Now()),
		Database: db, Type: typ, Reason: "on-demand", Compression: true, VaultCompression: "zstd"}
	if edit != nil {
		edit(req)
	}
	e.publish(ctx, cofferv1.SubjectWorkBackup, req, event.ID("backup", jid))
	return jid
}

// openDB opens a database/sql handle on dsn, closed with the test.
func openDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlserver", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// corruptChunk flips a bit in the middle chunk of a recovery point, in
// place in the directory store, and returns the chunk's id.
func (e *env) corruptChunk(store *dirstore.Store, rp *cofferv1.RecoveryPoint) string {
	e.t.Helper()
	m, err := e.vault.GetManifest(context.Background(), rp.GetManifest())
	if err != nil {
		e.t.Fatal(err)
	}
	chunk := m.Chunks[len(m.Chunks)/2].ID
	loc, ok := e.vault.Locate(chunk)
	if !ok {
		e.t.Fatalf("chunk %s is not in the vault's index", chunk)
	}
	path := filepath.Join(store.Root(), filepath.FromSlash(loc.Key))
	data, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatal(err)
	}
	data[loc.Offset+loc.Length/2] ^= 0x40
	if err := os.WriteFile(path, data, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return chunk
}
