package committer_test

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/committer"
)

// TestExpireAndCollect: an expired recovery point loses its manifest and
// record; its chunks are condemned by a collection and deleted by a later
// one — but never while a backup that started before they were condemned
// is in flight, in any process, and never a chunk a kept recovery point
// references.
func TestExpireAndCollect(t *testing.T) {
	e := newEnv(t)
	ticks := make(chan time.Time)
	e.start(committer.Config{GCTicks: ticks})
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

	// a backup in flight in a streamer's process, which may deduplicate
	// against the expired point's chunks: nothing is deleted
	streamer, err := vault.Open(context.Background(), e.store, e.master)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := streamer.OpenSession(context.Background(), vault.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := clock().Add(2 * time.Hour)
	for k := 0; k < 2; k++ {
		if n, _, err := svc.CollectGarbage(context.Background(), now.Add(time.Duration(k)*2*time.Hour)); err != nil || n != 0 {
			t.Fatalf("collection with a backup in flight deleted %d chunks (%v)", n, err)
		}
	}
	if err := sess.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
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

// TestTrimJobs: finished jobs past their retention are trimmed while
// recent ones stay, and job records, a queued backup's without news for
// a day included, have no say in garbage collection.
func TestTrimJobs(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{GCTicks: make(chan time.Time)})
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
	put("j20261122T100000-5ca1e000", cofferv1.JobState_JOB_STATE_QUEUED, at.Add(-25*time.Hour))       // without news
	put("j20261122T100000-01d00000", cofferv1.JobState_JOB_STATE_SUCCEEDED, at.Add(-91*24*time.Hour)) // past retention
	put("j20261122T100000-7ece7000", cofferv1.JobState_JOB_STATE_FAILED, at.Add(-89*24*time.Hour))    // kept

	// two phases: condemned, then deleted
	if _, _, err := e.svc.CollectGarbage(ctx, at); err != nil {
		t.Fatal(err)
	}
	n, _, err := e.svc.CollectGarbage(ctx, at.Add(2*time.Hour))
	if err != nil || n == 0 {
		t.Fatalf("collected %d chunks (%v), want the expired point's", n, err)
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
