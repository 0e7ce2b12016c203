package committer_test

import (
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/blob/dirstore"
	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/committer"
)

// env is embedded NATS with coffer's topology and a vault in a directory.
type env struct {
	svc   *committer.Service
	t     *testing.T
	bus   *bus.Bus
	cat   *catalog.Catalog
	store *dirstore.Store
	vault *vault.Vault
	// master is the vault's master key, for opening it as another
	// process would
	master []byte
	// streams are the chunks of the streams made by stream, by draft
	streams map[string][]vault.ChunkRef
}

// newBus starts an embedded NATS with coffer's topology for the test.
func newBus(t *testing.T) (*bus.Bus, *catalog.Catalog) {
	t.Helper()
	n := topologytest.Start(t, bus.Config{NakDelay: 100 * time.Millisecond})
	return n.Bus, n.Catalog
}

func newEnv(t *testing.T) *env {
	t.Helper()
	b, cat := newBus(t)
	store, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	master := vault.GenerateMasterKey()
	v, err := vault.Init(context.Background(), store, master)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, bus: b, cat: cat, store: store, vault: v, master: master, streams: map[string][]vault.ChunkRef{}}
}

// start runs a committer until the test ends.
func (e *env) start(cfg committer.Config) {
	e.t.Helper()
	svc, err := committer.New(e.bus, e.cat, e.vault, cfg)
	if err != nil {
		e.t.Fatalf("committer: %v", err)
	}
	e.svc = svc
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := svc.Run(ctx); err != nil {
			e.t.Errorf("committer: %v", err)
		}
	})
	e.t.Cleanup(func() { cancel(); wg.Wait() })
}

func (e *env) publish(subject string, m proto.Message, id string) {
	e.t.Helper()
	if err := e.bus.Publish(context.Background(), subject, m, id); err != nil {
		e.t.Fatalf("publish %s: %v", subject, err)
	}
}

// stream writes size random bytes to the vault as a backup stream would,
// with its draft, and returns the BackupStreamed that describes it.
func (e *env) stream(jobID string, db *cofferv1.DatabaseRef, size int) *cofferv1.BackupStreamed {
	e.t.Helper()
	bs, chunks := e.write(jobID, db, size)
	bs.Draft = event.RecoveryPointID(jobID) + ".draft"
	d := &vault.Manifest{CreatedAt: time.Now().UTC(), Size: bs.Size, Checksum: bs.Checksum, Chunks: chunks}
	if err := e.vault.PutDraft(context.Background(), bs.Draft, d); err != nil {
		e.t.Fatal(err)
	}
	e.streams[bs.Draft] = chunks
	return bs
}

// legacyStream is stream as a streamer older than drafts did it: the
// event lists the chunks.
func (e *env) legacyStream(jobID string, db *cofferv1.DatabaseRef, size int) *cofferv1.BackupStreamed {
	e.t.Helper()
	bs, chunks := e.write(jobID, db, size)
	for _, c := range chunks {
		bs.Chunks = append(bs.Chunks, &cofferv1.ChunkRef{Id: c.ID, Size: c.Size, StoredSize: c.StoredSize})
	}
	return bs
}

// chunksOf returns the chunks of a stream made by stream.
func (e *env) chunksOf(bs *cofferv1.BackupStreamed) []vault.ChunkRef {
	e.t.Helper()
	c, ok := e.streams[bs.GetDraft()]
	if !ok {
		e.t.Fatalf("no stream made with draft %q", bs.GetDraft())
	}
	return c
}

// write stores size random bytes in the vault and returns the
// BackupStreamed of a full backup of db without its chunks, and them.
func (e *env) write(jobID string, db *cofferv1.DatabaseRef, size int) (*cofferv1.BackupStreamed, []vault.ChunkRef) {
	e.t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	w := e.vault.NewWriter(context.Background(), vault.WriterOptions{})
	if _, err := w.Write(data); err != nil {
		e.t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		e.t.Fatal(err)
	}
	res := w.Result()
	bs := &cofferv1.BackupStreamed{
		Meta:     event.Meta(event.ID("streamed", jobID), jobID, time.Now()),
		Database: db,
		Backup: &cofferv1.BackupMetadata{Type: cofferv1.BackupType_BACKUP_TYPE_FULL, FirstLsn: "41000000001600001",
			LastLsn: "41000000002400001", CheckpointLsn: "41000000001600001", DatabaseName: db.GetDatabase()},
		Size:     res.Size,
		Checksum: res.Checksum,
		NewBytes: res.NewBytes,
	}
	return bs, res.Chunks
}

// settled waits until the committer has handled every event published so
// far.
func (e *env) settled() {
	e.t.Helper()
	ctx := context.Background()
	waitFor(e.t, time.Minute, "the committer to handle every event", func() bool {
		c, err := e.bus.JetStream().Consumer(ctx, cofferv1.StreamJobs, committer.Name)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
	})
}

func (e *env) job(id string) (*cofferv1.Job, error) {
	j := &cofferv1.Job{}
	_, err := e.cat.Bucket(cofferv1.BucketJobs).Get(context.Background(), catalog.Key(id), j)
	return j, err
}

func (e *env) waitJob(id string, state cofferv1.JobState) *cofferv1.Job {
	e.t.Helper()
	var j *cofferv1.Job
	waitFor(e.t, time.Minute, "job "+id+" to be "+state.String(), func() bool {
		var err error
		j, err = e.job(id)
		return err == nil && j.State == state
	})
	return j
}

// recoveryPoints lists the recovery_points bucket by key.
func recoveryPoints(t *testing.T, cat *catalog.Catalog) map[string]*cofferv1.RecoveryPoint {
	t.Helper()
	out := map[string]*cofferv1.RecoveryPoint{}
	err := cat.Bucket(cofferv1.BucketRecoveryPoints).List(context.Background(), "",
		func() proto.Message { return &cofferv1.RecoveryPoint{} },
		func(key string, m proto.Message) error {
			out[key] = m.(*cofferv1.RecoveryPoint)
			return nil
		})
	if err != nil {
		t.Fatalf("list recovery points: %v", err)
	}
	return out
}

func (e *env) manifests() []string {
	e.t.Helper()
	var ids []string
	if err := e.vault.ListManifests(context.Background(), func(id string) error { ids = append(ids, id); return nil }); err != nil {
		e.t.Fatal(err)
	}
	return ids
}

// count returns how many messages the event stream holds on subject.
func (e *env) count(subject string) uint64 {
	e.t.Helper()
	ctx := context.Background()
	s, err := e.bus.JetStream().Stream(ctx, cofferv1.StreamJobs)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
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

// chunks returns the ids of every chunk in the vault.
func (e *env) chunks() map[string]bool {
	e.t.Helper()
	out := map[string]bool{}
	if err := e.vault.ListChunks(context.Background(), func(c vault.ChunkInfo) error {
		out[c.ID] = true
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}
