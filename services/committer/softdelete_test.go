package committer_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/committer"
)

// movingClock is a clock the test sets.
type movingClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *movingClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *movingClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// softDeleteEnv is a committer on a moving clock with a full and the log
// that needs it committed for sql01/Sales, and a full of sql01/Other.
type softDeleteEnv struct {
	*env
	clk             *movingClock
	db, other       *cofferv1.DatabaseRef
	full, log, keep string // recovery point ids
	seq             int
}

func newSoftDeleteEnv(t *testing.T) *softDeleteEnv {
	t.Helper()
	e := &softDeleteEnv{env: newEnv(t), clk: &movingClock{t: now},
		db: &cofferv1.DatabaseRef{Instance: "sql01", Database: "Sales"}, other: &cofferv1.DatabaseRef{Instance: "sql01", Database: "Other"}}
	e.start(committer.Config{GCTicks: make(chan time.Time), Now: e.clk.Now, SoftDeleteDays: 14})
	full, log, keep := "j20261122T090000-0000f001", "j20261122T093000-00001001", "j20261122T090000-0000f002"
	fs := e.stream(full, e.db, 2<<20)
	fs.Backup.BackupFinish = timestamppb.New(now.Add(-time.Hour))
	ls := e.stream(log, e.db, 1<<20)
	// a log from inside the full to past it: the full is its base
	ls.Backup = &cofferv1.BackupMetadata{Type: cofferv1.BackupType_BACKUP_TYPE_LOG, FirstLsn: "41000000002000001",
		LastLsn: "41000000003000001", DatabaseName: "Sales", BackupFinish: timestamppb.New(now.Add(-30 * time.Minute))}
	ks := e.stream(keep, e.other, 1<<20)
	for _, bs := range []*cofferv1.BackupStreamed{fs, ls, ks} {
		e.publish(cofferv1.SubjectBackupStreamed, bs, bs.GetMeta().GetEventId())
		e.waitJob(bs.GetMeta().GetJobId(), cofferv1.JobState_JOB_STATE_SUCCEEDED)
	}
	e.full, e.log, e.keep = event.RecoveryPointID(full), event.RecoveryPointID(log), event.RecoveryPointID(keep)
	return e
}

// nextJob returns a new job id.
func (e *softDeleteEnv) nextJob() string {
	e.seq++
	return event.DerivedJobID(now, "softdelete-test", strconv.Itoa(e.seq))
}

// del asks for a delete and waits for its outcome.
func (e *softDeleteEnv) del(req *cofferv1.RecoveryPointsDeleteRequested, want cofferv1.JobState) *cofferv1.Job {
	e.t.Helper()
	jid := e.nextJob()
	req.Meta = event.Meta("del-"+jid, jid, e.clk.Now())
	if req.Database == nil {
		req.Database = e.db
	}
	e.publish(cofferv1.SubjectRecoveryPointsDelete, req, req.Meta.EventId)
	return e.outcome(jid, want)
}

// undel asks for an undelete and waits for its outcome.
func (e *softDeleteEnv) undel(want cofferv1.JobState, ids ...string) *cofferv1.Job {
	e.t.Helper()
	jid := e.nextJob()
	req := &cofferv1.RecoveryPointsUndeleteRequested{Meta: event.Meta("undel-"+jid, jid, e.clk.Now()), Database: e.db,
		RecoveryPoints: ids, RequestedBy: "tester"}
	e.publish(cofferv1.SubjectRecoveryPointsUndelete, req, req.Meta.EventId)
	return e.outcome(jid, want)
}

// outcome waits until job jid has ended and checks it ended as want.
func (e *softDeleteEnv) outcome(jid string, want cofferv1.JobState) *cofferv1.Job {
	e.t.Helper()
	var j *cofferv1.Job
	waitFor(e.t, time.Minute, "job "+jid+" to end", func() bool {
		var err error
		j, err = e.job(jid)
		return err == nil && (j.State == cofferv1.JobState_JOB_STATE_SUCCEEDED || j.State == cofferv1.JobState_JOB_STATE_FAILED)
	})
	if j.State != want {
		e.t.Fatalf("job %s: got %s (%s%s), want %s", jid, j.State, j.Error, j.Detail, want)
	}
	return j
}

// deleted reports, for each recovery point of both databases, whether it
// is marked deleted; a point with no record is missing from the map.
func (e *softDeleteEnv) deleted() map[string]bool {
	e.t.Helper()
	out := map[string]bool{}
	for _, rp := range recoveryPoints(e.t, e.cat) {
		out[rp.GetId()] = rp.GetDeletedAt() != nil
	}
	return out
}

func (e *softDeleteEnv) wantDeleted(full, log bool) {
	e.t.Helper()
	got := e.deleted()
	if len(got) != 3 || got[e.full] != full || got[e.log] != log || got[e.keep] {
		e.t.Fatalf("deleted marks %v; want full %v, log %v, other database's full false", got, full, log)
	}
}

func wantError(t *testing.T, j *cofferv1.Job, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(j.GetError(), p) {
			t.Errorf("job error %q does not say %q", j.GetError(), p)
		}
	}
}

// TestSoftDeleteAndUndelete: a delete marks points deleted, with when, by
// whom and until when they can come back, and is refused for an unknown
// or already deleted point, and for a full a kept log needs unless its
// dependents go too; an undelete brings a point back with the deleted
// points it needs. Deleting the end of the chain tells the scheduler the
// next backup is a full.
func TestSoftDeleteAndUndelete(t *testing.T) {
	e := newSoftDeleteEnv(t)
	e.wantDeleted(false, false)

	j := e.del(&cofferv1.RecoveryPointsDeleteRequested{RecoveryPoints: []string{e.full}}, cofferv1.JobState_JOB_STATE_FAILED)
	wantError(t, j, e.full, e.log, "--with-dependents")
	e.wantDeleted(false, false)
	j = e.del(&cofferv1.RecoveryPointsDeleteRequested{RecoveryPoints: []string{e.log, "rp-nope"}}, cofferv1.JobState_JOB_STATE_FAILED)
	wantError(t, j, "no recovery point rp-nope")
	e.wantDeleted(false, false) // nothing of a refused request

	if n := e.count(cofferv1.SubjectChainBroken); n != 0 {
		t.Fatalf("%d ChainBroken before the tail was deleted", n)
	}
	e.del(&cofferv1.RecoveryPointsDeleteRequested{RecoveryPoints: []string{e.log}, RequestedBy: "tester"}, cofferv1.JobState_JOB_STATE_SUCCEEDED)
	e.wantDeleted(false, true)
	rp := recoveryPoints(t, e.cat)[catalog.Key("sql01", "Sales", e.log)]
	if rp.GetDeletedBy() != "tester" || !rp.GetDeletedAt().AsTime().Equal(now) || !rp.GetPurgeAfter().AsTime().Equal(now.Add(14*24*time.Hour)) {
		t.Errorf("deleted log: by %q at %v, purge after %v; want tester, %v, 14 days later", rp.GetDeletedBy(), rp.GetDeletedAt().AsTime(),
			rp.GetPurgeAfter().AsTime(), now)
	}
	if n := e.count(cofferv1.SubjectChainBroken); n != 1 {
		t.Errorf("%d ChainBroken after the chain's last log was deleted, want 1", n)
	}
	if ids := e.manifests(); len(ids) != 3 {
		t.Errorf("manifests after a soft delete: %v, want all 3 kept", ids)
	}
	j = e.del(&cofferv1.RecoveryPointsDeleteRequested{RecoveryPoints: []string{e.log}}, cofferv1.JobState_JOB_STATE_FAILED)
	wantError(t, j, "already deleted", "by tester")

	e.undel(cofferv1.JobState_JOB_STATE_SUCCEEDED, e.log)
	e.wantDeleted(false, false)

	e.del(&cofferv1.RecoveryPointsDeleteRequested{RecoveryPoints: []string{e.full}, WithDependents: true}, cofferv1.JobState_JOB_STATE_SUCCEEDED)
	e.wantDeleted(true, true)
	// the log alone would not restore: its full comes back with it
	j = e.undel(cofferv1.JobState_JOB_STATE_SUCCEEDED, e.log)
	if !strings.Contains(j.GetDetail(), e.full) {
		t.Errorf("undelete detail %q does not name the full it brought back too", j.GetDetail())
	}
	e.wantDeleted(false, false)
	if rp := recoveryPoints(t, e.cat)[catalog.Key("sql01", "Sales", e.log)]; rp.GetDeletedBy() != "" || rp.GetPurgeAfter() != nil {
		t.Errorf("undeleted log still carries its deletion: %v", rp)
	}

	// every point of one database, the other's untouched
	e.del(&cofferv1.RecoveryPointsDeleteRequested{All: true}, cofferv1.JobState_JOB_STATE_SUCCEEDED)
	e.wantDeleted(true, true)
}

// TestSoftDeleteWindow: a deleted point cannot be undeleted once its
// window has ended, and the collection after it deletes the point, its
// manifest and then its chunks; before the window ends a collection
// leaves it.
func TestSoftDeleteWindow(t *testing.T) {
	e := newSoftDeleteEnv(t)
	ctx := context.Background()
	e.del(&cofferv1.RecoveryPointsDeleteRequested{RecoveryPoints: []string{e.full}, WithDependents: true}, cofferv1.JobState_JOB_STATE_SUCCEEDED)
	chunksBefore := len(e.chunks())

	for _, at := range []time.Time{now.Add(13 * 24 * time.Hour), now.Add(14*24*time.Hour - time.Second)} {
		if n, _, err := e.svc.CollectGarbage(ctx, at); err != nil || n != 0 {
			t.Fatalf("collection at %v, inside the window: %d chunks freed (%v)", at, n, err)
		}
	}
	e.wantDeleted(true, true)
	if ids := e.manifests(); len(ids) != 3 {
		t.Fatalf("manifests inside the window: %v", ids)
	}

	e.clk.Set(now.Add(14 * 24 * time.Hour))
	j := e.undel(cofferv1.JobState_JOB_STATE_FAILED, e.log)
	wantError(t, j, "cannot be brought back", "window has ended")
	e.wantDeleted(true, true)

	at := now.Add(14*24*time.Hour + time.Minute)
	if _, _, err := e.svc.CollectGarbage(ctx, at); err != nil {
		t.Fatal(err)
	}
	if got := e.deleted(); len(got) != 1 || got[e.keep] {
		t.Fatalf("recovery points after the window: %v, want only the other database's", got)
	}
	if ids := e.manifests(); len(ids) != 1 || ids[0] != e.keep {
		t.Fatalf("manifests after the window: %v, want only %s", ids, e.keep)
	}
	n, freed, err := e.svc.CollectGarbage(ctx, at.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if after := len(e.chunks()); n == 0 || freed == 0 || after != chunksBefore-n {
		t.Fatalf("collected %d chunks (%d bytes); %d before, %d after", n, freed, chunksBefore, after)
	}
	j = e.undel(cofferv1.JobState_JOB_STATE_FAILED, e.log)
	wantError(t, j, "no recovery point "+e.log)
}

// TestRebuildKeepsDeletions loses the catalog after a soft delete: the
// rebuild from the vault alone records the deleted log deleted, by the
// same person, with the same window, and the others live. Undeleted, the
// log's mark leaves the vault, and the next rebuild records it live; so
// does a purge's.
func TestRebuildKeepsDeletions(t *testing.T) {
	e := newSoftDeleteEnv(t)
	e.del(&cofferv1.RecoveryPointsDeleteRequested{RecoveryPoints: []string{e.log}, RequestedBy: "tester"}, cofferv1.JobState_JOB_STATE_SUCCEEDED)
	before := recoveryPoints(t, e.cat)
	logKey := catalog.Key("sql01", "Sales", e.log)

	rebuilt := func() map[string]*cofferv1.RecoveryPoint {
		t.Helper()
		_, cat := newBus(t) // the catalog lost
		rep, err := committer.Rebuild(t.Context(), e.vault, cat, committer.RebuildOptions{})
		if err != nil || len(rep.Unreadable) != 0 || rep.Recorded != 3 {
			t.Fatalf("rebuild: %s (%v); want 3 points recorded, nothing unreadable", rep, err)
		}
		t.Logf("rebuild: %s", rep)
		return recoveryPoints(t, cat)
	}
	got := rebuilt()
	for key, want := range before {
		rp := got[key]
		if rp == nil {
			t.Fatalf("%s not rebuilt", key)
		}
		if (rp.GetDeletedAt() != nil) != (key == logKey) || !rp.GetDeletedAt().AsTime().Equal(want.GetDeletedAt().AsTime()) ||
			rp.GetDeletedBy() != want.GetDeletedBy() || !rp.GetPurgeAfter().AsTime().Equal(want.GetPurgeAfter().AsTime()) ||
			rp.GetDeleteJobId() != want.GetDeleteJobId() {
			t.Errorf("rebuilt %s: deleted at %v by %q, purge after %v, job %q; want %v, %q, %v, %q", key,
				rp.GetDeletedAt(), rp.GetDeletedBy(), rp.GetPurgeAfter(), rp.GetDeleteJobId(),
				want.GetDeletedAt(), want.GetDeletedBy(), want.GetPurgeAfter(), want.GetDeleteJobId())
		}
	}

	e.undel(cofferv1.JobState_JOB_STATE_SUCCEEDED, e.log)
	for key, rp := range rebuilt() {
		if rp.GetDeletedAt() != nil {
			t.Errorf("after the undelete, rebuilt %s is deleted", key)
		}
	}
}
