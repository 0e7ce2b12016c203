package committer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/committer"
)

var now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

// TestCommitRedelivered publishes the same BackupStreamed twice under
// different message ids, as a streamer that lost its acknowledgement
// would: one recovery point, one manifest, one RecoveryPointCommitted.
func TestCommitRedelivered(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{Now: clock})
	const jid = "j20261122T100000-0badc0de"
	db := &cofferv1.DatabaseRef{Instance: "sql01", Database: "it's ]odd "}
	bs := e.stream(jid, db, 3<<20)
	e.publish(cofferv1.SubjectBackupStreamed, bs, "first")
	e.publish(cofferv1.SubjectBackupStreamed, bs, "second")
	e.settled()

	j := e.waitJob(jid, cofferv1.JobState_JOB_STATE_SUCCEEDED)
	rpID := event.RecoveryPointID(jid)
	if j.RecoveryPoint != rpID || j.Kind != cofferv1.JobKind_JOB_KIND_BACKUP || !proto.Equal(j.Database, db) {
		t.Errorf("job %v; want a succeeded backup of %v with recovery point %s", j, db, rpID)
	}
	rps := recoveryPoints(t, e.cat)
	if len(rps) != 1 {
		t.Fatalf("%d recovery points; want 1", len(rps))
	}
	rp := rps[catalog.Key(db.Instance, db.Database, rpID)]
	if rp == nil {
		t.Fatalf("no recovery point under its key; have %v", rps)
	}
	var stored int64
	for _, c := range e.chunksOf(bs) {
		stored += c.StoredSize
	}
	want := &cofferv1.RecoveryPoint{Id: rpID, Database: db, Backup: bs.Backup, Manifest: rpID, Size: bs.Size,
		StoredBytes: stored, NewBytes: bs.NewBytes, Chunks: int32(len(e.chunksOf(bs))), Checksum: bs.Checksum, JobId: jid,
		CommittedAt: rp.CommittedAt, Policy: "default", Tags: []string{"daily"},
		// the default policy keeps a full 30 days from when it was taken
		ExpiresAt: timestamppb.New(now.Add(30 * 24 * time.Hour))}
	if !proto.Equal(rp, want) || !rp.CommittedAt.AsTime().Equal(now) {
		t.Errorf("recovery point %v; want %v committed at %v", rp, want, now)
	}
	if ids := e.manifests(); len(ids) != 1 || ids[0] != rpID {
		t.Errorf("manifests %v; want [%s]", ids, rpID)
	}
	m, err := e.vault.GetManifest(context.Background(), rpID)
	if err != nil {
		t.Fatal(err)
	}
	var meta cofferv1.RecoveryPoint
	if err := protojson.Unmarshal(m.Meta, &meta); err != nil {
		t.Fatalf("manifest meta: %v", err)
	}
	if !proto.Equal(&meta, rp) {
		t.Errorf("manifest meta %v; want the catalog's record %v", &meta, rp)
	}
	if !slices.Equal(m.Chunks, e.chunksOf(bs)) {
		t.Errorf("the manifest's chunks are not the draft's")
	}
	if _, err := e.vault.GetDraft(context.Background(), bs.Draft); !errors.Is(err, blob.ErrNotExist) {
		t.Errorf("the draft of a committed backup is still there: %v", err)
	}
	if n := e.count(cofferv1.SubjectRecoveryPointCommitted); n != 1 {
		t.Errorf("%d RecoveryPointCommitted events; want 1", n)
	}
}

// TestCommitLegacyEvent commits a BackupStreamed that lists its chunks, as
// streamers did before drafts, so that events queued across an upgrade
// still become recovery points.
func TestCommitLegacyEvent(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{Now: clock})
	const jid = "j20261122T100000-00000003"
	db := &cofferv1.DatabaseRef{Instance: "sql01", Database: "Sales"}
	bs := e.legacyStream(jid, db, 3<<20)
	e.publish(cofferv1.SubjectBackupStreamed, bs, "streamed")
	e.waitJob(jid, cofferv1.JobState_JOB_STATE_SUCCEEDED)
	m, err := e.vault.GetManifest(context.Background(), event.RecoveryPointID(jid))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Chunks) != len(bs.Chunks) || m.Size != bs.Size {
		t.Fatalf("manifest of %d chunks, %d bytes; want the event's %d, %d", len(m.Chunks), m.Size, len(bs.Chunks), bs.Size)
	}
	for i, c := range bs.Chunks {
		if m.Chunks[i].ID != c.Id || m.Chunks[i].Size != c.Size {
			t.Fatalf("chunk %d is %v, want the event's %v", i, m.Chunks[i], c)
		}
	}
}

// TestCommitBadDraft fails, visibly and committing nothing, a streamed
// backup whose draft is missing, or records another stream (a later
// attempt's, say), or comes with a chunk list as well.
func TestCommitBadDraft(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{})
	db := &cofferv1.DatabaseRef{Instance: "sql01", Database: "Sales"}
	for i, tc := range []struct {
		name   string
		change func(bs *cofferv1.BackupStreamed)
		want   string
	}{
		{"missing", func(bs *cofferv1.BackupStreamed) {
			if err := e.vault.DeleteDraft(context.Background(), bs.Draft); err != nil {
				t.Fatal(err)
			}
		}, "cannot be read"},
		{"other checksum", func(bs *cofferv1.BackupStreamed) { bs.Checksum = strings.Repeat("0", len(bs.Checksum)) }, "not the streamed backup's"},
		{"other size", func(bs *cofferv1.BackupStreamed) { bs.Size++ }, "not the streamed backup's"},
		{"chunks too", func(bs *cofferv1.BackupStreamed) {
			bs.Chunks = []*cofferv1.ChunkRef{{Id: e.chunksOf(bs)[0].ID, Size: bs.Size}}
		}, "names draft"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jid := fmt.Sprintf("j20261122T100000-0000010%d", i)
			bs := e.stream(jid, db, 1<<20)
			tc.change(bs)
			e.publish(cofferv1.SubjectBackupStreamed, bs, jid)
			j := e.waitJob(jid, cofferv1.JobState_JOB_STATE_FAILED)
			if !strings.Contains(j.Error, tc.want) {
				t.Errorf("reason %q; want it to say %q", j.Error, tc.want)
			}
			if _, err := e.vault.GetManifest(context.Background(), event.RecoveryPointID(jid)); !errors.Is(err, blob.ErrNotExist) {
				t.Errorf("manifest written: %v", err)
			}
		})
	}
}

// TestCommitMissingChunk fails the job, naming the chunk, and commits
// nothing.
func TestCommitMissingChunk(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{})
	const jid = "j20261122T100000-00000001"
	db := &cofferv1.DatabaseRef{Instance: "sql01", Database: "Sales"}
	bs := e.stream(jid, db, 3<<20)
	// the stream's pack lost: the committer names its first chunk
	missing := e.chunksOf(bs)[0].ID
	loc, ok := e.vault.Locate(missing)
	if !ok {
		t.Fatalf("chunk %s not in the vault", missing)
	}
	if err := e.store.Delete(context.Background(), loc.Key); err != nil {
		t.Fatal(err)
	}
	e.publish(cofferv1.SubjectBackupStreamed, bs, "streamed")
	j := e.waitJob(jid, cofferv1.JobState_JOB_STATE_FAILED)
	if !strings.Contains(j.Error, missing) || j.Service != committer.Name {
		t.Errorf("job failed by %q with %q; want the committer naming chunk %s", j.Service, j.Error, missing)
	}
	e.settled()
	if rps := recoveryPoints(t, e.cat); len(rps) != 0 {
		t.Errorf("recovery points %v; want none", rps)
	}
	if ids := e.manifests(); len(ids) != 0 {
		t.Errorf("manifests %v; want none", ids)
	}
	if n := e.count(cofferv1.SubjectJobFailed); n != 1 {
		t.Errorf("%d JobFailed events; want 1", n)
	}
}

// TestCommitSizeMismatch fails a stream whose chunks do not add up.
func TestCommitSizeMismatch(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{})
	const jid = "j20261122T100000-00000002"
	bs := e.legacyStream(jid, &cofferv1.DatabaseRef{Instance: "sql01", Database: "Sales"}, 1<<20)
	bs.Size++
	e.publish(cofferv1.SubjectBackupStreamed, bs, "streamed")
	j := e.waitJob(jid, cofferv1.JobState_JOB_STATE_FAILED)
	if !strings.Contains(j.Error, "add up") {
		t.Errorf("reason %q; want it to say the sizes do not add up", j.Error)
	}
	if ids := e.manifests(); len(ids) != 0 {
		t.Errorf("manifests %v; want none", ids)
	}
}

// TestJobEventsOutOfOrder feeds job events in orders they may arrive in:
// a job's state only moves forward.
func TestJobEventsOutOfOrder(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{Workers: 1})
	db := &cofferv1.DatabaseRef{Instance: "sql01", Database: "Sales"}
	tgt := &cofferv1.DatabaseRef{Instance: "sql02", Database: "Sales copy"}
	at := func(s int) time.Time { return now.Add(time.Duration(s) * time.Second) }
	queued := func(job string, s int) proto.Message {
		return &cofferv1.JobQueued{Meta: event.Meta("q", job, at(s)), Kind: cofferv1.JobKind_JOB_KIND_BACKUP, Database: db,
			BackupType: cofferv1.BackupType_BACKUP_TYPE_FULL, Detail: "on-demand"}
	}
	progress := func(job string, s int, pct float64) proto.Message {
		return &cofferv1.JobProgress{Meta: event.Meta("p", job, at(s)), Kind: cofferv1.JobKind_JOB_KIND_BACKUP, Database: db,
			Percent: pct, Bytes: int64(pct) * 1000, Step: "backup"}
	}
	failed := func(job string, s int) proto.Message {
		return &cofferv1.JobFailed{Meta: event.Meta("f", job, at(s)), Kind: cofferv1.JobKind_JOB_KIND_BACKUP, Database: db,
			Reason: "SQL Server said no", Service: "backup-streamer"}
	}
	restored := func(job string, s int) proto.Message {
		return &cofferv1.RestoreCompleted{Meta: event.Meta("r", job, at(s)), Source: db, Target: tgt, Bytes: 42}
	}
	subject := map[string]string{
		"coffer.v1.JobQueued": cofferv1.SubjectJobQueued, "coffer.v1.JobProgress": cofferv1.SubjectJobProgress,
		"coffer.v1.JobFailed": cofferv1.SubjectJobFailed, "coffer.v1.RestoreCompleted": cofferv1.SubjectRestoreCompleted,
	}
	for _, tc := range []struct {
		name   string
		events func(job string) []proto.Message
		want   *cofferv1.Job
	}{
		{"progress before queued", func(j string) []proto.Message { return []proto.Message{progress(j, 2, 10), queued(j, 1)} },
			&cofferv1.Job{State: cofferv1.JobState_JOB_STATE_RUNNING, Percent: 10, Bytes: 10000, Step: "backup", Detail: "on-demand",
				BackupType: cofferv1.BackupType_BACKUP_TYPE_FULL}},
		{"late progress after failure", func(j string) []proto.Message {
			return []proto.Message{queued(j, 1), progress(j, 2, 10), failed(j, 4), progress(j, 3, 50)}
		}, &cofferv1.Job{State: cofferv1.JobState_JOB_STATE_FAILED, Percent: 10, Bytes: 10000, Step: "backup", Detail: "on-demand",
			Error: "SQL Server said no", Service: "backup-streamer", BackupType: cofferv1.BackupType_BACKUP_TYPE_FULL}},
		{"progress overtaken", func(j string) []proto.Message {
			return []proto.Message{queued(j, 1), progress(j, 3, 50), progress(j, 2, 20)}
		}, &cofferv1.Job{State: cofferv1.JobState_JOB_STATE_RUNNING, Percent: 50, Bytes: 50000, Step: "backup", Detail: "on-demand",
			BackupType: cofferv1.BackupType_BACKUP_TYPE_FULL}},
		{"queued after the outcome", func(j string) []proto.Message { return []proto.Message{failed(j, 3), queued(j, 1)} },
			&cofferv1.Job{State: cofferv1.JobState_JOB_STATE_FAILED, Error: "SQL Server said no", Service: "backup-streamer",
				Detail: "on-demand", BackupType: cofferv1.BackupType_BACKUP_TYPE_FULL}},
		{"failure of an unknown job", func(j string) []proto.Message { return []proto.Message{failed(j, 3)} },
			&cofferv1.Job{State: cofferv1.JobState_JOB_STATE_FAILED, Error: "SQL Server said no", Service: "backup-streamer"}},
		{"failure after success", func(j string) []proto.Message { return []proto.Message{restored(j, 3), failed(j, 4)} },
			&cofferv1.Job{Kind: cofferv1.JobKind_JOB_KIND_RESTORE, State: cofferv1.JobState_JOB_STATE_SUCCEEDED, Percent: 100, Bytes: 42,
				Target: tgt}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jid := event.NewJobID(now)
			evs := tc.events(jid)
			for k, ev := range evs {
				e.publish(subject[string(proto.MessageName(ev))], ev, jid+"-"+string(rune('a'+k)))
			}
			// consumer info can lag a publish: wait for the outcome state
			// first, then for the rest of the events to be handled
			e.waitJob(jid, tc.want.State)
			e.settled()
			got, err := e.job(jid)
			if err != nil {
				t.Fatal(err)
			}
			want := proto.CloneOf(tc.want)
			want.Id = jid
			if want.Kind == cofferv1.JobKind_JOB_KIND_UNSPECIFIED {
				want.Kind = cofferv1.JobKind_JOB_KIND_BACKUP
			}
			want.Database = db
			var first, last time.Time
			for _, ev := range evs {
				at := metaOf(t, ev).Time.AsTime()
				if first.IsZero() || at.Before(first) {
					first = at
				}
				if at.After(last) {
					last = at
				}
			}
			if !got.CreatedAt.AsTime().Equal(first) || got.UpdatedAt.AsTime().Before(first) || got.UpdatedAt.AsTime().After(last) {
				t.Errorf("created %v updated %v; want created at the earliest event, %v, and updated by %v", got.CreatedAt.AsTime(), got.UpdatedAt.AsTime(), first, last)
			}
			got.CreatedAt, got.UpdatedAt = nil, nil
			got.Steps = nil // TestJobSteps
			if !proto.Equal(got, want) {
				t.Errorf("job\n got %v\nwant %v", got, want)
			}
		})
	}
}

// TestRebuild recreates the recovery points of a lost catalog from the
// vault alone. It merges: a record already there is kept as it is (it may
// hold a later verification), a damaged manifest is named and skipped, a
// record whose manifest is gone is reported and deleted only with Prune.
func TestRebuild(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{})
	names := []string{"Sales", "it's ]odd ", "Продажи.db", "Damaged"}
	for k, name := range names {
		jid := event.NewJobID(now.Add(time.Duration(k) * time.Hour))
		e.publish(cofferv1.SubjectBackupStreamed, e.stream(jid, &cofferv1.DatabaseRef{Instance: "sql01", Database: name}, 1<<20), jid)
		e.waitJob(jid, cofferv1.JobState_JOB_STATE_SUCCEEDED)
	}
	want := recoveryPoints(t, e.cat)
	if len(want) != len(names) {
		t.Fatalf("%d recovery points committed; want %d", len(want), len(names))
	}
	var damaged, verified string
	for key, rp := range want {
		switch rp.GetDatabase().GetDatabase() {
		case "Damaged":
			damaged = rp.GetId()
			delete(want, key)
		case "Sales":
			verified = key
		}
	}
	damage(t, e.store, damaged)

	// A new catalog, as after losing the NATS cluster, with one record
	// whose manifest never existed and one that a verification changed
	// after its commit.
	_, cat := newBus(t)
	rps := cat.Bucket(cofferv1.BucketRecoveryPoints)
	staleKey := catalog.Key("sql01", "Gone", "rp-gone")
	stale := &cofferv1.RecoveryPoint{Id: "rp-gone", Manifest: "rp-gone", Database: &cofferv1.DatabaseRef{Instance: "sql01", Database: "Gone"}}
	if _, err := rps.Put(t.Context(), staleKey, stale); err != nil {
		t.Fatal(err)
	}
	newer := proto.Clone(want[verified]).(*cofferv1.RecoveryPoint)
	newer.Verification = &cofferv1.Verification{At: timestamppb.New(now.Add(time.Hour)), Passed: true, Detail: "checked"}
	if _, err := rps.Put(t.Context(), verified, newer); err != nil {
		t.Fatal(err)
	}
	want[verified] = newer

	rep, err := committer.Rebuild(t.Context(), e.vault, cat, committer.RebuildOptions{})
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	t.Logf("rebuild: %s", rep)
	if rep.Manifests != 4 || rep.Recorded != 2 || rep.Kept != 1 || rep.Pruned != 0 {
		t.Errorf("rebuild read %d manifests, recorded %d, kept %d, pruned %d; want 4, 2, 1, 0", rep.Manifests, rep.Recorded, rep.Kept, rep.Pruned)
	}
	if len(rep.Unreadable) != 1 || rep.Unreadable[0].Manifest != damaged || !errors.Is(rep.Unreadable[0].Err, vault.ErrCorrupt) {
		t.Errorf("unreadable manifests %v; want %s, corrupt", rep.Unreadable, damaged)
	}
	if len(rep.Missing) != 1 || rep.Missing[0] != staleKey {
		t.Errorf("records without a manifest %v; want %s", rep.Missing, staleKey)
	}
	want[staleKey] = stale
	check := func(when string) {
		t.Helper()
		got := recoveryPoints(t, cat)
		if len(got) != len(want) {
			t.Errorf("%s: %d recovery points; want %d", when, len(got), len(want))
		}
		for key, rp := range want {
			if !proto.Equal(got[key], rp) {
				t.Errorf("%s: %s is %v; want %v", when, key, got[key], rp)
			}
		}
	}
	check("after the rebuild")

	// Idempotent; Prune deletes the record whose manifest is gone.
	rep, err = committer.Rebuild(t.Context(), e.vault, cat, committer.RebuildOptions{Prune: true})
	if err != nil {
		t.Fatalf("second rebuild: %v", err)
	}
	if rep.Recorded != 0 || rep.Kept != 3 || rep.Pruned != 1 || len(rep.Unreadable) != 1 {
		t.Errorf("second rebuild recorded %d, kept %d, pruned %d, %d unreadable; want 0, 3, 1, 1", rep.Recorded, rep.Kept, rep.Pruned, len(rep.Unreadable))
	}
	delete(want, staleKey)
	check("after a second rebuild with prune")
}

// TestRebuildJob runs a rebuild as a person asks for one: a job whose
// detail says what it did, failed when a manifest could not be read, each
// such manifest named; a redelivery of the request does nothing more.
func TestRebuildJob(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{})
	db := &cofferv1.DatabaseRef{Instance: "sql01", Database: "Sales"}
	var ids []string
	for k := range 3 {
		jid := event.NewJobID(now.Add(time.Duration(k) * time.Hour))
		e.publish(cofferv1.SubjectBackupStreamed, e.stream(jid, db, 1<<20), jid)
		e.waitJob(jid, cofferv1.JobState_JOB_STATE_SUCCEEDED)
		ids = append(ids, event.RecoveryPointID(jid))
	}
	rps := e.cat.Bucket(cofferv1.BucketRecoveryPoints)
	for _, id := range ids[:2] {
		if err := rps.Delete(t.Context(), catalog.Key(db.Instance, db.Database, id)); err != nil {
			t.Fatal(err)
		}
	}
	request := func(jid string) *cofferv1.Job {
		t.Helper()
		req := &cofferv1.CatalogRebuildRequested{Meta: event.Meta(event.ID("rebuild", jid), jid, now)}
		e.publish(cofferv1.SubjectCatalogRebuild, req, req.Meta.EventId)
		waitFor(t, time.Minute, "the rebuild job "+jid, func() bool {
			j, err := e.job(jid)
			return err == nil && (j.State == cofferv1.JobState_JOB_STATE_SUCCEEDED || j.State == cofferv1.JobState_JOB_STATE_FAILED)
		})
		j, _ := e.job(jid)
		return j
	}
	jid := event.NewJobID(now.Add(4 * time.Hour))
	j := request(jid)
	if j.State != cofferv1.JobState_JOB_STATE_SUCCEEDED || j.Kind != cofferv1.JobKind_JOB_KIND_REBUILD ||
		!strings.Contains(j.Detail, "3 manifests in the vault: 2 recovery points recorded, 1 already in the catalog") {
		t.Errorf("rebuild job %v; want succeeded, 2 of 3 recorded", j)
	}
	if n := len(recoveryPoints(t, e.cat)); n != 3 {
		t.Errorf("%d recovery points after the rebuild; want 3", n)
	}
	// the same request again (JetStream redelivers): the job stands
	e.publish(cofferv1.SubjectCatalogRebuild, &cofferv1.CatalogRebuildRequested{Meta: event.Meta(event.ID("rebuild", jid, "again"), jid, now)}, "again")
	e.settled()
	if again, _ := e.job(jid); !proto.Equal(again, j) {
		t.Errorf("a redelivered rebuild changed its job: %v; was %v", again, j)
	}

	damage(t, e.store, ids[0])
	j = request(event.NewJobID(now.Add(5 * time.Hour)))
	if j.State != cofferv1.JobState_JOB_STATE_FAILED || !strings.Contains(j.Error, ids[0]) || !strings.Contains(j.Error, "could not be read and skipped (everything else is in the catalog): manifest "+ids[0]) ||
		!strings.Contains(j.Detail, "2 already in the catalog") {
		t.Errorf("rebuild over a damaged manifest: %v; want failed naming %s, the other two kept", j, ids[0])
	}
	if n := len(recoveryPoints(t, e.cat)); n != 3 {
		t.Errorf("%d recovery points after a rebuild over a damaged manifest; want all 3 kept", n)
	}
}

// TestPolicyCopy: the committer keeps a copy of the policies in the vault,
// following puts and deletes; a committer starting on a lost catalog
// removes nothing from it, and a rebuild asks the scheduler to put back,
// only where none of its name is, each policy the catalog lacks.
func TestPolicyCopy(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{})
	copyHas := func(e *env, names ...string) func() bool {
		return func() bool {
			data, err := e.vault.GetCatalogCopy(t.Context(), "policies")
			if err != nil {
				return false
			}
			var set cofferv1.PolicySet
			if err := protojson.Unmarshal(data, &set); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range set.GetPolicies() {
				got = append(got, p.GetName())
			}
			slices.Sort(got)
			return slices.Equal(got, names)
		}
	}
	put := func(e *env, name string) {
		t.Helper()
		rec := &cofferv1.PolicyRecord{Name: name, Json: `{"name":"` + name + `"}`, UpdatedAt: timestamppb.New(now)}
		if _, err := e.cat.Bucket(cofferv1.BucketPolicies).Put(t.Context(), catalog.Key(name), rec); err != nil {
			t.Fatal(err)
		}
	}
	put(e, "gold")
	put(e, "silver")
	waitFor(t, time.Minute, "gold and silver in the copy", copyHas(e, "gold", "silver"))
	if err := e.cat.Bucket(cofferv1.BucketPolicies).Delete(t.Context(), catalog.Key("gold")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "silver alone in the copy", copyHas(e, "silver"))

	// the catalog lost: a committer on a new one, with the same vault
	b, cat := newBus(t)
	lost := &env{t: t, bus: b, cat: cat, store: e.store, vault: e.vault, master: e.master, streams: map[string][]vault.ChunkRef{}}
	lost.start(committer.Config{})
	put(lost, "bronze")
	waitFor(t, time.Minute, "bronze added to the copy, silver kept", copyHas(lost, "bronze", "silver"))

	jid := event.NewJobID(now)
	req := &cofferv1.CatalogRebuildRequested{Meta: event.Meta(event.ID("rebuild", jid), jid, now)}
	lost.publish(cofferv1.SubjectCatalogRebuild, req, req.Meta.EventId)
	j := lost.waitJob(jid, cofferv1.JobState_JOB_STATE_SUCCEEDED)
	if !strings.Contains(j.Detail, "1 policies put back from the vault's copy: silver") {
		t.Errorf("rebuild job detail %q; want silver put back", j.Detail)
	}
	s, err := b.JetStream().Stream(t.Context(), cofferv1.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(t.Context(), cofferv1.SubjectPolicyPutRequested)
	if err != nil {
		t.Fatal(err)
	}
	var ev cofferv1.PolicyPutRequested
	if err := proto.Unmarshal(msg.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.GetPolicy().GetName() != "silver" || !ev.GetIfAbsent() || ev.GetPolicy().GetJson() != `{"name":"silver"}` {
		t.Errorf("the rebuild asked for %v; want silver, if absent, as copied", &ev)
	}
}

// damage replaces manifest id in the vault's store with bytes that are
// not a sealed manifest.
func damage(t *testing.T, s blob.Store, id string) {
	t.Helper()
	junk := []byte("not a sealed manifest")
	if err := s.Put(t.Context(), "manifests/"+id, bytes.NewReader(junk), int64(len(junk))); err != nil {
		t.Fatal(err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	e := newEnv(t)
	_, err := committer.New(e.bus, e.cat, nil, committer.Config{Workers: -1, Backoff: []time.Duration{-time.Second}})
	if err == nil {
		t.Fatal("New accepted a bad config")
	}
	for _, want := range []string{"workers", "backoff[0]", "vault"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

// TestConcurrentJobUpdates races many handlers on one job: compare-and-set
// keeps every update, and the outcome stands.
func TestConcurrentJobUpdates(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{Workers: 8})
	jid := event.NewJobID(now)
	db := &cofferv1.DatabaseRef{Instance: "sql01", Database: "Sales"}
	for pct := range 40 {
		e.publish(cofferv1.SubjectJobProgress, &cofferv1.JobProgress{Meta: event.Meta("p", jid, now), Kind: cofferv1.JobKind_JOB_KIND_RESTORE,
			Database: db, Percent: float64(pct), Step: "restore 1/1"}, event.ID("progress", jid, string(rune(pct))))
	}
	e.publish(cofferv1.SubjectRestoreCompleted, &cofferv1.RestoreCompleted{Meta: event.Meta("r", jid, now), Source: db, Target: db, Bytes: 7}, "done")
	e.settled()
	j, err := e.job(jid)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != cofferv1.JobState_JOB_STATE_SUCCEEDED || j.Percent != 100 || j.Bytes != 7 {
		t.Errorf("job %v; want succeeded, 100%%, 7 bytes", j)
	}
}

// metaOf reads the metadata every event carries as field 1.
func metaOf(t *testing.T, m proto.Message) *cofferv1.EventMeta {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var env cofferv1.Envelope
	if err := proto.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	return env.Meta
}

// TestBreakHealedOnce: two fulls queued to heal the same chain break (a
// scheduled one and an on-demand one) both carry it; the chain as
// committed decides, and only the earlier full records the break.
func TestBreakHealedOnce(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{Now: clock})
	db := &cofferv1.DatabaseRef{Instance: "sql01", Database: "Healed"}
	const reason = "a log backup was taken outside coffer"
	var ids []string
	for k, jid := range []string{"j20261122T100000-0000000a", "j20261122T100500-0000000b"} {
		bs := e.stream(jid, db, 1<<20)
		bs.ChainBreak = reason
		bs.Backup.BackupStart = timestamppb.New(now.Add(time.Duration(k) * 5 * time.Minute))
		e.publish(cofferv1.SubjectBackupStreamed, bs, jid)
		e.waitJob(jid, cofferv1.JobState_JOB_STATE_SUCCEEDED)
		ids = append(ids, event.RecoveryPointID(jid))
	}
	rps := recoveryPoints(t, e.cat)
	first, second := rps[catalog.Key(db.Instance, db.Database, ids[0])], rps[catalog.Key(db.Instance, db.Database, ids[1])]
	if first.GetChainBreak() != reason || second.GetChainBreak() != "" {
		t.Errorf("chain breaks %q and %q; want the first full to heal the break and the second none", first.GetChainBreak(), second.GetChainBreak())
	}
}
