package committer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/s3store"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/miniotest"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/committer"
)

// newLockedEnv is newEnv with the vault in a MinIO bucket with Object
// Lock, made immutable in governance mode; it returns the store too.
func newLockedEnv(t *testing.T) (*env, *s3store.Store) {
	t.Helper()
	b, cat := newBus(t)
	srv := miniotest.Start(t)
	store, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint, Bucket: "vault", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		RootCAs: srv.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store.MakeBucket(ctx, true); err != nil {
		t.Fatal(err)
	}
	master := vault.GenerateMasterKey()
	if _, err := vault.Init(ctx, store, master); err != nil {
		t.Fatal(err)
	}
	if err := vault.EnableObjectLock(ctx, store, blob.Governance); err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, store, master)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, bus: b, cat: cat, vault: v, master: master, streams: map[string][]vault.ChunkRef{}}, store
}

// TestImmutableCommitAndExpire: in an immutable vault, a committed
// recovery point's manifest and packs are locked until its expiry; an
// expiry the store refuses because the lock has not passed keeps the
// point, recorded, for a later sweep, which deletes it once the lock has
// passed. The point expires seconds after its commit because its backup
// is dated 30 days back (the default policy keeps a full 30 days); nothing
// bypasses a lock.
func TestImmutableCommitAndExpire(t *testing.T) {
	e, store := newLockedEnv(t)
	e.start(committer.Config{})
	ctx := t.Context()
	db := &cofferv1.DatabaseRef{Instance: "sql01", Database: "Sales"}
	const jid = "j20261122T100000-0000100a"
	bs := e.stream(jid, db, 1<<20)
	bs.Backup.BackupFinish = timestamppb.New(time.Now().Add(-30*24*time.Hour + 4*time.Second))
	e.publish(cofferv1.SubjectBackupStreamed, bs, "soon")
	e.waitJob(jid, cofferv1.JobState_JOB_STATE_SUCCEEDED)
	id := event.RecoveryPointID(jid)
	key := catalog.Key(db.Instance, db.Database, id)
	rp := recoveryPoints(t, e.cat)[key]
	if rp == nil {
		t.Fatal("the recovery point is not recorded")
	}
	expires := rp.GetExpiresAt().AsTime()
	if d := time.Until(expires); d > 10*time.Second {
		t.Fatalf("the recovery point expires in %v; the test wants seconds", d)
	}
	if until, err := store.Retention(ctx, "manifests/"+id); err != nil || until.Before(expires) {
		t.Errorf("manifest locked until %v (%v); want at least %v", until, err, expires)
	}
	for _, c := range e.chunksOf(bs) {
		loc, ok := e.vault.Locate(c.ID)
		if !ok {
			t.Fatalf("chunk %s not located", c.ID)
		}
		if until, err := store.Retention(ctx, loc.Key); err != nil || until.Before(expires) {
			t.Errorf("%s locked until %v (%v); want at least %v", loc.Key, until, err, expires)
		}
	}

	expire := func(n string) {
		ev := &cofferv1.RecoveryPointsExpired{Meta: event.Meta("exp-"+n, "j20261122T100000-e000000"+n, time.Now()),
			Database: db, RecoveryPoints: []string{id}}
		e.publish(cofferv1.SubjectRecoveryPointsExpired, ev, "exp-"+n)
	}
	expire("1")
	e.settled()
	if time.Now().Before(expires) {
		// the sweep came before the lock passed
		if recoveryPoints(t, e.cat)[key] == nil {
			t.Fatal("a recovery point the store still locks was dropped from the catalog")
		}
		if _, err := e.vault.GetManifest(ctx, id); err != nil {
			t.Fatalf("a locked manifest is gone: %v", err)
		}
		if _, err := e.job("j20261122T100000-e0000001"); !errors.Is(err, catalog.ErrNotFound) {
			t.Errorf("an expiry that deleted nothing recorded a job (%v)", err)
		}
	} else {
		t.Log("the first sweep came after the lock passed: nothing to show")
	}
	waitFor(t, time.Minute, "the lock to pass", func() bool { return time.Now().After(expires.Add(2 * time.Second)) })
	expire("2")
	e.waitJob("j20261122T100000-e0000002", cofferv1.JobState_JOB_STATE_SUCCEEDED)
	if recoveryPoints(t, e.cat)[key] != nil {
		t.Error("the recovery point is still recorded after its lock passed and it expired")
	}
	if _, err := store.Stat(ctx, "manifests/"+id); !errors.Is(err, blob.ErrNotExist) {
		t.Errorf("manifest after expiry: %v; want it deleted", err)
	}
}

// TestImmutableChainRelock: a full whose own expiry is near, but that a
// later log depends on, has its lock (manifest and packs) extended to the
// log's expiry by the next garbage collection; the log's own lock is left
// as it is. The full is dated 30 days back, so that its expiry is an hour
// away; the log depends on it by its LSNs.
func TestImmutableChainRelock(t *testing.T) {
	e, store := newLockedEnv(t)
	ticks := make(chan time.Time)
	e.start(committer.Config{GCTicks: ticks})
	ctx := t.Context()
	db := &cofferv1.DatabaseRef{Instance: "sql01", Database: "Sales"}
	const full, log = "j20261122T100000-0000200a", "j20261122T100000-0000200b"
	fs := e.stream(full, db, 1<<20)
	fs.Backup.BackupFinish = timestamppb.New(time.Now().Add(-30*24*time.Hour + time.Hour))
	e.publish(cofferv1.SubjectBackupStreamed, fs, "full")
	e.waitJob(full, cofferv1.JobState_JOB_STATE_SUCCEEDED)
	ls := e.stream(log, db, 256<<10)
	ls.Backup.Type = cofferv1.BackupType_BACKUP_TYPE_LOG
	ls.Backup.FirstLsn, ls.Backup.LastLsn, ls.Backup.CheckpointLsn = fs.Backup.LastLsn, "41000000003200001", ""
	ls.Backup.BackupFinish = timestamppb.New(time.Now())
	e.publish(cofferv1.SubjectBackupStreamed, ls, "log")
	e.waitJob(log, cofferv1.JobState_JOB_STATE_SUCCEEDED)

	rps := recoveryPoints(t, e.cat)
	fullID, logID := event.RecoveryPointID(full), event.RecoveryPointID(log)
	fullRP, logRP := rps[catalog.Key("sql01", "Sales", fullID)], rps[catalog.Key("sql01", "Sales", logID)]
	fullExpires, logExpires := fullRP.GetExpiresAt().AsTime(), logRP.GetExpiresAt().AsTime()
	if !logExpires.After(fullExpires.Add(24 * time.Hour)) {
		t.Fatalf("the log expires %v, the full %v: want the log much later", logExpires, fullExpires)
	}
	lockOf := func(key string) time.Time {
		t.Helper()
		u, err := store.Retention(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	if u := lockOf("manifests/" + fullID); u.After(logExpires) {
		t.Fatalf("the full is locked until %v before any collection; want its own expiry %v", u, fullExpires)
	}
	if _, _, err := e.svc.CollectGarbage(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if u := lockOf("manifests/" + fullID); u.Before(logExpires) {
		t.Errorf("the full's manifest is locked until %v after a collection; want the log's expiry %v", u, logExpires)
	}
	for _, c := range e.chunksOf(fs) {
		loc, ok := e.vault.Locate(c.ID)
		if !ok {
			t.Fatalf("chunk %s not located", c.ID)
		}
		if u := lockOf(loc.Key); u.Before(logExpires) {
			t.Errorf("%s of the full is locked until %v; want the log's expiry %v", loc.Key, u, logExpires)
		}
	}
	if u := lockOf("manifests/" + logID); u.After(logExpires.Add(time.Minute)) {
		t.Errorf("the log is locked until %v; want its own expiry %v", u, logExpires)
	}
}
