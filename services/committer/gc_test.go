package committer_test

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/committer"
)

// TestExpireAndCollect: an expired recovery point loses its manifest and
// record; its chunks are deleted by a later collection once they are past
// the grace period — but never while a backup is in flight, and never a
// chunk a kept recovery point references.
func TestExpireAndCollect(t *testing.T) {
	e := newEnv(t)
	ticks := make(chan time.Time)
	e.start(committer.Config{GCTicks: ticks, GCGrace: time.Hour})
	svc := e.svc
	db := &cofferv1.DatabaseRef{Instance: "sql01", Database: "Sales"}
	keep, drop := "j20261122T100000-0000000a", "j20261122T100000-0000000b"
	e.publish(cofferv1.SubjectBackupStreamed, e.stream(keep, db, 3<<20), "keep")
	e.publish(cofferv1.SubjectBackupStreamed, e.stream(drop, db, 3<<20), "drop")
	e.waitJob(keep, cofferv1.JobState_JOB_STATE_SUCCEEDED)
	e.waitJob(drop, cofferv1.JobState_JOB_STATE_SUCCEEDED)
	keptChunks := map[string]bool{}
	m, err := e.vault.GetManifest(context.Background(), event.RecoveryPointID(keep))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range m.Chunks {
		keptChunks[c.ID] = true
	}
	chunksBefore := e.chunks()

	e.publish(cofferv1.SubjectRecoveryPointsExpired, &cofferv1.RecoveryPointsExpired{Meta: event.Meta("exp-1", "j20261122T100000-e0000001", clock()),
		Database: db, RecoveryPoints: []string{event.RecoveryPointID(drop)}}, "exp-1")
	e.waitJob("j20261122T100000-e0000001", cofferv1.JobState_JOB_STATE_SUCCEEDED)
	if rps := recoveryPoints(t, e.cat); len(rps) != 1 || rps[catalog.Key("sql01", "Sales", event.RecoveryPointID(keep))] == nil {
		t.Fatalf("recovery points after expiry: %v", rps)
	}
	if ids := e.manifests(); len(ids) != 1 {
		t.Fatalf("manifests after expiry: %v", ids)
	}

	now := clock().Add(2 * time.Hour) // every chunk is past the grace period
	// a backup in flight: nothing is deleted
	e.publish(cofferv1.SubjectJobQueued, &cofferv1.JobQueued{Meta: event.Meta("q", "j20261122T100000-b0000001", clock()),
		Kind: cofferv1.JobKind_JOB_KIND_BACKUP, Database: db}, "q")
	e.waitJob("j20261122T100000-b0000001", cofferv1.JobState_JOB_STATE_QUEUED)
	for k := 0; k < 2; k++ {
		if n, _, err := svc.CollectGarbage(context.Background(), now.Add(time.Duration(k)*2*time.Hour)); err != nil || n != 0 {
			t.Fatalf("collection with a backup in flight deleted %d chunks (%v)", n, err)
		}
	}
	e.publish(cofferv1.SubjectJobFailed, &cofferv1.JobFailed{Meta: event.Meta("f", "j20261122T100000-b0000001", clock()),
		Kind: cofferv1.JobKind_JOB_KIND_BACKUP, Database: db, Reason: "test"}, "f")
	e.waitJob("j20261122T100000-b0000001", cofferv1.JobState_JOB_STATE_FAILED)
	n, freed, err := svc.CollectGarbage(context.Background(), now.Add(5*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	after := e.chunks()
	if n == 0 || freed == 0 || len(after) != len(chunksBefore)-n {
		t.Fatalf("collected %d chunks (%d bytes); %d before, %d after", n, freed, len(chunksBefore), len(after))
	}
	for id := range keptChunks {
		if !after[id] {
			t.Errorf("chunk %s of a kept recovery point was deleted", id)
		}
	}
	for id := range after {
		if !keptChunks[id] {
			t.Errorf("chunk %s no manifest references survived", id)
		}
	}
	// the kept point still restores
	r := e.vault.NewReader(context.Background(), m.Chunks)
	defer r.Close()
	if n, err := io.Copy(io.Discard, r); err != nil || n != m.Size {
		t.Fatalf("reading the kept point: %d bytes, %v; want %d", n, err, m.Size)
	}
}

// TestStaleJobsAndTrim: a backup job with no news for a day no longer
// holds up garbage collection, and finished jobs past their retention are
// trimmed while recent ones stay.
func TestStaleJobsAndTrim(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{GCTicks: make(chan time.Time), GCGrace: time.Hour})
	ctx := context.Background()
	db := &cofferv1.DatabaseRef{Instance: "sql01", Database: "Sales"}
	drop := "j20261122T100000-0000000d"
	e.publish(cofferv1.SubjectBackupStreamed, e.stream(drop, db, 3<<20), "drop")
	e.waitJob(drop, cofferv1.JobState_JOB_STATE_SUCCEEDED)
	e.publish(cofferv1.SubjectRecoveryPointsExpired, &cofferv1.RecoveryPointsExpired{Meta: event.Meta("exp-2", "j20261122T100000-e0000002", clock()),
		Database: db, RecoveryPoints: []string{event.RecoveryPointID(drop)}}, "exp-2")
	e.waitJob("j20261122T100000-e0000002", cofferv1.JobState_JOB_STATE_SUCCEEDED)

	jobs := e.cat.Bucket(cofferv1.BucketJobs)
	put := func(id string, state cofferv1.JobState, updated time.Time) {
		t.Helper()
		j := &cofferv1.Job{Id: id, Kind: cofferv1.JobKind_JOB_KIND_BACKUP, State: state, UpdatedAt: timestamppb.New(updated)}
		if _, err := jobs.Put(ctx, catalog.Key(id), j); err != nil {
			t.Fatal(err)
		}
	}
	at := clock().Add(3 * time.Hour)
	put("j20261122T100000-5ca1e000", cofferv1.JobState_JOB_STATE_QUEUED, at.Add(-25*time.Hour))       // stale
	put("j20261122T100000-01d00000", cofferv1.JobState_JOB_STATE_SUCCEEDED, at.Add(-91*24*time.Hour)) // past retention
	put("j20261122T100000-7ece7000", cofferv1.JobState_JOB_STATE_FAILED, at.Add(-89*24*time.Hour))    // kept

	// two phases: found unreferenced, then deleted past the grace period
	if _, _, err := e.svc.CollectGarbage(ctx, at); err != nil {
		t.Fatal(err)
	}
	n, _, err := e.svc.CollectGarbage(ctx, at.Add(2*time.Hour))
	if err != nil || n == 0 {
		t.Fatalf("with only a stale backup job: collected %d chunks (%v), want the expired point's", n, err)
	}
	var j cofferv1.Job
	if _, err := jobs.Get(ctx, catalog.Key("j20261122T100000-01d00000"), &j); err == nil {
		t.Error("a job finished 91 days ago was kept")
	}
	for _, id := range []string{"j20261122T100000-7ece7000", "j20261122T100000-5ca1e000", drop} {
		if _, err := jobs.Get(ctx, catalog.Key(id), &j); err != nil {
			t.Errorf("job %s: %v, want it kept", id, err)
		}
	}
}
