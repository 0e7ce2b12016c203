package streamer_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/dirstore"
	"github.com/cofferhq/coffer/pkg/blob/s3store"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/miniotest"
	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	streamer "github.com/cofferhq/coffer/services/backup-streamer"
)

const (
	full = cofferv1.BackupType_BACKUP_TYPE_FULL
	logb = cofferv1.BackupType_BACKUP_TYPE_LOG
)

// hostile is a name the reference product refuses and SQL Server allows.
const hostile = "it's ]odd "

// TestBackupRestoreRoundTrip backs up a database with a hostile name
// through the streamer and the committer, checks the recovery point
// against msdb, restores it under a new name and compares contents, and
// checks that a second full of the unchanged database is deduplicated.
func TestBackupRestoreRoundTrip(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := t.Context()
	e.createFilled(hostile, 2048)
	e.startCommitter()
	e.startStreamer(e.streamerConfig())

	before := e.hash(hostile)
	jid := e.backup(ctx, hostile, full)
	job := e.mustSucceed(jid)
	rp := e.mustRecoveryPoint(hostile, jid)
	if job.RecoveryPoint != rp.Id || rp.Id != event.RecoveryPointID(jid) || rp.Manifest != rp.Id || rp.JobId != jid {
		t.Errorf("job recovery point %q, recovery point id %q manifest %q job %q; want all %q", job.RecoveryPoint, rp.Id, rp.Manifest, rp.JobId, event.RecoveryPointID(jid))
	}
	if job.Percent != 100 || job.Bytes != rp.Size {
		t.Errorf("job %v: want 100%%, %d bytes", job, rp.Size)
	}
	e.stagingEmpty()

	// The recovery point's metadata is SQL Server's, as msdb records it.
	var first, last, ckpt, typ string
	var dbBackup sql.NullString
	err := e.sqlDB().QueryRowContext(ctx, `SELECT TOP 1 first_lsn, last_lsn, checkpoint_lsn, database_backup_lsn, type
		FROM msdb.dbo.backupset WHERE database_name = @p1 ORDER BY backup_set_id DESC`, hostile).Scan(&first, &last, &ckpt, &dbBackup, &typ)
	if err != nil {
		t.Fatalf("read msdb: %v", err)
	}
	b := rp.Backup
	if b.FirstLsn != first || b.LastLsn != last || b.CheckpointLsn != ckpt || b.DatabaseBackupLsn != dbBackup.String || typ != "D" {
		t.Errorf("recovery point LSNs first %s last %s checkpoint %s database_backup %s; msdb says %s %s %s %s (type %s)",
			b.FirstLsn, b.LastLsn, b.CheckpointLsn, b.DatabaseBackupLsn, first, last, ckpt, dbBackup.String, typ)
	}
	if b.Type != full || b.DatabaseName != hostile || b.CopyOnly || len(b.Files) != 2 || b.BackupFinish == nil ||
		b.DatabaseGuid == "" || b.FamilyGuid == "" || b.LastRecoveryForkGuid == "" || !b.HasChecksums {
		t.Errorf("backup metadata %v", b)
	}
	m, err := e.vault.GetManifest(ctx, rp.Manifest)
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if m.Size != rp.Size || m.Checksum != rp.Checksum || len(m.Chunks) != int(rp.Chunks) || rp.Size < 2048*8192 {
		t.Errorf("manifest size %d checksum %s chunks %d; recovery point %d %s %d", m.Size, m.Checksum, len(m.Chunks), rp.Size, rp.Checksum, rp.Chunks)
	}
	events, err := e.bus.JetStream().Stream(ctx, cofferv1.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{cofferv1.SubjectRecoveryPointCommitted, cofferv1.SubjectJobProgress, cofferv1.SubjectBackupStreamed} {
		if _, err := events.GetLastMsgForSubject(ctx, subj); err != nil {
			t.Errorf("nothing published on %s: %v", subj, err)
		}
	}

	// A second full of the unchanged database stores almost nothing new.
	// Only the chunks holding the backup's header (its times and LSNs) and
	// trailer are new.
	rp2 := e.backupOK(ctx, hostile, full)
	m2, err := e.vault.GetManifest(ctx, rp2.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	n := len(m2.Chunks)
	allowed := m2.Chunks[0].Size + m2.Chunks[n-1].Size + m2.Chunks[n-2].Size
	if rp2.NewBytes > allowed || rp2.NewBytes > rp2.Size/2 {
		t.Errorf("second full of an unchanged database: %d new bytes of %d; want at most the %d of its first and last chunks",
			rp2.NewBytes, rp2.Size, allowed)
	}
	t.Logf("first full %d bytes, %d new; second %d bytes, %d new", rp.Size, rp.NewBytes, rp2.Size, rp2.NewBytes)

	// The source moves on; the restore brings back the backup's contents.
	if _, err := e.inst.Commit(hostile, 30); err != nil {
		t.Fatal(err)
	}
	const target = "copy of ]it's[ "
	e.mustSucceed(e.restore(ctx, hostile, target, false, rp.Id))
	if got := e.hash(target); got != before {
		t.Errorf("restored content hash %s; want the source's as of the backup, %s", got, before)
	}
	e.stagingEmpty()

	// Its files went to the instance's default paths, under safe names.
	c, err := mssql.Open(e.dsn())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dbs, err := c.Databases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, d := range dbs {
		if d.Name != target {
			continue
		}
		found = true
		for _, f := range d.Files {
			dir, name := "/var/opt/mssql/data/", "copy_of__it_s__"
			if f.Type == "LOG" {
				dir = "/var/opt/mssql/log/"
			}
			if !strings.HasPrefix(f.Physical, dir+name) || strings.ContainsAny(f.Physical[len(dir):], "]' [") {
				t.Errorf("restored file %s at %q; want it in %s named after %q", f.Logical, f.Physical, dir, name)
			}
		}
	}
	if !found {
		t.Errorf("database %q not listed after restore", target)
	}
}

// TestBackupConnectionDrop loses the SQL Server connection in the middle
// of a backup: the job fails with a reason, and nothing is committed.
func TestBackupConnectionDrop(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := t.Context()
	const db = "Sales"
	if err := e.inst.CreateDatabase(db, mssqlsim.DatabaseOptions{Pages: 512}); err != nil {
		t.Fatal(err)
	}
	remove := e.inst.InjectFault(mssqlsim.Fault{Kind: mssqlsim.FaultDropConnection, Database: db, AfterBytes: 1 << 20})
	defer remove()
	e.startCommitter()
	e.startStreamer(e.streamerConfig())

	jid := e.backup(ctx, db, full)
	j := e.mustFail(jid)
	t.Logf("reason: %s", j.Error)
	if j.Service != streamer.Name || !strings.Contains(j.Error, db) {
		t.Errorf("job failed by %q with %q; want the streamer, naming the database", j.Service, j.Error)
	}
	if _, err := e.recoveryPoint(db, jid); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("recovery point of a failed backup: %v; want none", err)
	}
	if ids := e.manifests(); len(ids) != 0 {
		t.Errorf("manifests %v after a failed backup; want none", ids)
	}
	e.stagingEmpty()

	// The instance still works: the next backup succeeds.
	e.backupOK(ctx, db, full)
}

// TestBackupSQLServerError fails a backup SQL Server refuses (a log backup
// under SIMPLE) with SQL Server's message.
func TestBackupSQLServerError(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := t.Context()
	const db = "Simple"
	if err := e.inst.CreateDatabase(db, mssqlsim.DatabaseOptions{Recovery: mssqlsim.Simple}); err != nil {
		t.Fatal(err)
	}
	e.startCommitter()
	e.startStreamer(e.streamerConfig())
	j := e.mustFail(e.backup(ctx, db, logb))
	if !strings.Contains(j.Error, "4208") {
		t.Errorf("reason %q; want SQL Server's error 4208", j.Error)
	}
	e.stagingEmpty()
}

// TestRestoreTamperedChunk flips a byte of a chunk in the vault: the
// restore refuses, naming the chunk, before any RESTORE runs.
func TestRestoreTamperedChunk(t *testing.T) {
	store, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{store: store})
	ctx := t.Context()
	const db = "Ledger"
	if err := e.inst.CreateDatabase(db, mssqlsim.DatabaseOptions{Pages: 1024}); err != nil {
		t.Fatal(err)
	}
	e.startCommitter()
	e.startStreamer(e.streamerConfig())
	rp := e.backupOK(ctx, db, full)
	chunk := e.corruptChunk(store, rp)

	const target = "Ledger restored"
	j := e.mustFail(e.restore(ctx, db, target, false, rp.Id))
	if !strings.Contains(j.Error, chunk) {
		t.Errorf("reason %q; want it to name chunk %s", j.Error, chunk)
	}
	if e.exists(target) {
		t.Errorf("database %q exists after a refused restore", target)
	}
	e.stagingEmpty()
}

// TestRestoreOntoExisting refuses to restore over an existing database
// unless asked to overwrite, and overwrites when asked.
func TestRestoreOntoExisting(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := t.Context()
	const db, other = "Orders", "Other"
	for _, n := range []string{db, other} {
		if err := e.inst.CreateDatabase(n, mssqlsim.DatabaseOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.startCommitter()
	e.startStreamer(e.streamerConfig())
	before := e.hash(db)
	rp := e.backupOK(ctx, db, full)
	if _, err := e.inst.Commit(db, 10); err != nil {
		t.Fatal(err)
	}
	changed, otherHash := e.hash(db), e.hash(other)

	for _, target := range []string{db, other} {
		j := e.mustFail(e.restore(ctx, db, target, false, rp.Id))
		want := `database "` + target + `" already exists on instance "` + instName + `": restore under another name, or overwrite`
		if j.Error != want {
			t.Errorf("reason %q; want %q", j.Error, want)
		}
	}
	if e.hash(db) != changed || e.hash(other) != otherHash {
		t.Error("a refused restore changed a database")
	}
	e.stagingEmpty()

	e.mustSucceed(e.restore(ctx, db, db, true, rp.Id))
	if got := e.hash(db); got != before {
		t.Errorf("content after overwrite %s; want the backup's %s", got, before)
	}
	e.stagingEmpty()
}

// TestRestoreChain restores a full and two logs, and a full, a
// differential and a log, and drops the new
// database when a restore fails half-way (a gap in the log chain).
func TestRestoreChain(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := t.Context()
	const db = "Chain"
	if err := e.inst.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	e.startCommitter()
	e.startStreamer(e.streamerConfig())
	fullRP := e.backupOK(ctx, db, full)
	e.inst.Commit(db, 5)
	log1 := e.backupOK(ctx, db, logb)
	e.inst.Commit(db, 5)
	diff := e.backupOK(ctx, db, cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL)
	e.inst.Commit(db, 5)
	log2 := e.backupOK(ctx, db, logb)
	want := e.hash(db)
	if diff.Backup.Type != cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL || diff.Backup.DifferentialBaseLsn != fullRP.Backup.CheckpointLsn {
		t.Errorf("differential %v; want one based on the full's checkpoint %s", diff.Backup, fullRP.Backup.CheckpointLsn)
	}
	if log2.Backup.FirstLsn != log1.Backup.LastLsn {
		t.Errorf("log 2 starts at %s, log 1 ends at %s", log2.Backup.FirstLsn, log1.Backup.LastLsn)
	}

	j := e.mustFail(e.restore(ctx, db, "Chain gap", false, fullRP.Id, log2.Id))
	if !strings.Contains(j.Error, "4305") || !strings.Contains(j.Error, "was dropped") {
		t.Errorf("reason %q; want SQL Server's 4305 and the partial database dropped", j.Error)
	}
	if e.exists("Chain gap") {
		t.Error("partly restored database left behind")
	}

	e.mustSucceed(e.restore(ctx, db, "Chain copy", false, fullRP.Id, log1.Id, log2.Id))
	if got := e.hash("Chain copy"); got != want {
		t.Errorf("content after full and logs %s; want %s", got, want)
	}
	e.mustSucceed(e.restore(ctx, db, "Chain diff", false, fullRP.Id, diff.Id, log2.Id))
	if got := e.hash("Chain diff"); got != want {
		t.Errorf("content after full, differential and log %s; want %s", got, want)
	}
	e.stagingEmpty()
}

// TestShutdownHandsBackWork stops the streamer while a backup is stalled:
// the statement is cancelled, the job is not failed, and the next streamer
// takes the work and completes it.
func TestShutdownHandsBackWork(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := t.Context()
	const db = "Stalled"
	if err := e.inst.CreateDatabase(db, mssqlsim.DatabaseOptions{Pages: 512}); err != nil {
		t.Fatal(err)
	}
	// The simulator writes through a 1 MiB buffer: stall in the second MiB.
	remove := e.inst.InjectFault(mssqlsim.Fault{Kind: mssqlsim.FaultStall, Database: db, AfterBytes: 2 << 20})
	defer remove()
	e.startCommitter()
	cfg := e.streamerConfig()
	cfg.DrainTimeout = 100 * time.Millisecond
	stop := e.startStreamer(cfg)

	jid := e.backup(ctx, db, full)
	waitFor(t, time.Minute, "the backup to stall", func() bool {
		fi, err := os.Stat(filepath.Join(e.staging, jid+".bak"))
		return err == nil && fi.Size() >= 1<<20
	})
	if err := stop(); err != nil {
		t.Logf("streamer stopped: %v", err)
	}
	// Were the BACKUP not cancelled, releasing the stall would let it
	// finish and record a second backup set below.
	remove()
	var j cofferv1.Job
	if _, err := e.cat.Bucket(cofferv1.BucketJobs).Get(ctx, catalog.Key(jid), &j); err == nil && j.State == cofferv1.JobState_JOB_STATE_FAILED {
		t.Fatalf("job failed at shutdown: %s", j.Error)
	}
	e.stagingEmpty()

	e.startStreamer(e.streamerConfig())
	e.mustSucceed(jid)
	e.mustRecoveryPoint(db, jid)
	if n := len(e.manifests()); n != 1 {
		t.Errorf("%d manifests; want 1", n)
	}
	var sets int
	if err := e.sqlDB().QueryRowContext(ctx, "SELECT COUNT(*) FROM msdb.dbo.backupset WHERE database_name = @p1", db).Scan(&sets); err != nil {
		t.Fatal(err)
	}
	if sets != 1 {
		t.Errorf("%d backup sets in msdb; want 1 (the interrupted BACKUP cancelled)", sets)
	}
}

// TestBackupRestoreS3 runs a backup and a restore with the vault in MinIO.
func TestBackupRestoreS3(t *testing.T) {
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "vault")
	store, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint, Bucket: "vault", Prefix: "coffer",
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, RootCAs: srv.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{store: store})
	ctx := t.Context()
	const db = "Sales S3"
	if err := e.inst.CreateDatabase(db, mssqlsim.DatabaseOptions{Pages: 1024}); err != nil {
		t.Fatal(err)
	}
	e.startCommitter()
	e.startStreamer(e.streamerConfig())
	want := e.hash(db)
	rp := e.backupOK(ctx, db, full)
	var objects int
	if err := store.List(ctx, "packs/", func(blob.Info) error { objects++; return nil }); err != nil {
		t.Fatal(err)
	}
	if objects == 0 || objects >= int(rp.Chunks) {
		t.Errorf("%d packs in the bucket for %d chunks; want fewer packs than chunks", objects, rp.Chunks)
	}
	e.mustSucceed(e.restore(ctx, db, "Sales S3 copy", false, rp.Id))
	if got := e.hash("Sales S3 copy"); got != want {
		t.Errorf("restored content %s; want %s", got, want)
	}
	e.stagingEmpty()
}

func TestNewRejectsBadConfig(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, err := streamer.New(e.bus, e.cat, e.vault, streamer.Config{MasterKey: []byte("short"), Workers: -1})
	if err == nil {
		t.Fatal("New accepted a bad config")
	}
	for _, want := range []string{"master key", "staging", "workers"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

// failingStore is a blob.Store whose Puts fail once armed, as a full or
// unreachable object store would.
type failingStore struct {
	blob.Store
	armed atomic.Bool
}

var errStoreDown = errors.New("object store unavailable (injected)")

func (f *failingStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if f.armed.Load() {
		return errStoreDown
	}
	return f.Store.Put(ctx, key, r, size)
}

// TestBackupVaultFailure fails the vault in the middle of a backup: the
// statement is cancelled, the job fails naming the store's error, and
// nothing is committed.
func TestBackupVaultFailure(t *testing.T) {
	inner, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &failingStore{Store: inner}
	e := newEnv(t, envOptions{store: store})
	ctx := t.Context()
	const db = "Unlucky"
	e.createFilled(db, 2048)
	e.startCommitter()
	e.startStreamer(e.streamerConfig())
	store.armed.Store(true)

	jid := e.backup(ctx, db, full)
	j := e.mustFail(jid)
	if !strings.Contains(j.Error, errStoreDown.Error()) {
		t.Errorf("reason %q; want the store's error", j.Error)
	}
	if ids := e.manifests(); len(ids) != 0 {
		t.Errorf("manifests %v; want none", ids)
	}
	e.stagingEmpty()
}

// TestSweepStaging: at start the streamer deletes backup files a crashed
// job left in the staging directory, once they are older than
// StagingMaxAge, and leaves younger ones and other files alone.
func TestSweepStaging(t *testing.T) {
	e := newEnv(t, envOptions{})
	old := filepath.Join(e.staging, "j20261120T101010-deadbeef.bak")
	young := filepath.Join(e.staging, "j20261122T101010-cafef00d.bak")
	other := filepath.Join(e.staging, "notes.txt")
	for _, p := range []string{old, young, other} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	twoDays := time.Now().Add(-48 * time.Hour)
	for _, p := range []string{old, other} {
		if err := os.Chtimes(p, twoDays, twoDays); err != nil {
			t.Fatal(err)
		}
	}
	e.startStreamer(e.streamerConfig())
	waitFor(t, 10*time.Second, "the leftover to be removed", func() bool {
		_, err := os.Stat(old)
		return errors.Is(err, fs.ErrNotExist)
	})
	for _, p := range []string{young, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v, want it kept", p, err)
		}
	}
}
