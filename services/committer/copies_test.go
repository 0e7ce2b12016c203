package committer_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/dirstore"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/committer"
)

// TestExpireCopies: garbage collection deletes a copy whose own retention
// ended (its manifest in the copy's vault, then the copy on the record)
// and leaves the point in its first vault, and a copy still within its
// retention, as they are.
func TestExpireCopies(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	dir := t.TempDir()
	store, err := dirstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	second, err := daemon.OpenVault(ctx, store, e.master, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cat.Bucket(cofferv1.BucketVaults).Put(ctx, catalog.Key("second"), &cofferv1.VaultRecord{Name: "second", Dir: dir}); err != nil {
		t.Fatal(err)
	}
	e.start(committer.Config{MasterKey: e.master, GCTicks: make(chan time.Time), CopyTicks: make(chan time.Time)})

	t0 := time.Date(2026, 9, 6, 0, 0, 0, 0, time.UTC)
	db := &cofferv1.DatabaseRef{Instance: "sql1", Database: "Sales"}
	for id, keep := range map[string]time.Duration{"rp-short": time.Hour, "rp-long": 10 * time.Hour} {
		data := make([]byte, 4096)
		rand.Read(data)
		w := second.NewWriter(ctx, vault.WriterOptions{})
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		res := w.Result()
		m := &vault.Manifest{ID: id, CreatedAt: t0, Size: res.Size, Checksum: res.Checksum, Chunks: res.Chunks, Meta: []byte(`{}`)}
		if err := second.PutManifest(ctx, id, m); err != nil {
			t.Fatal(err)
		}
		rp := &cofferv1.RecoveryPoint{Id: id, Manifest: id, Database: db, Copies: []*cofferv1.RecoveryPointCopy{{Vault: "second",
			DueAt: timestamppb.New(t0), CommittedAt: timestamppb.New(t0), ExpiresAt: timestamppb.New(t0.Add(keep))}}}
		if _, err := e.cat.Bucket(cofferv1.BucketRecoveryPoints).Put(ctx, catalog.Key("sql1", "Sales", id), rp); err != nil {
			t.Fatal(err)
		}
	}

	if _, _, err := e.svc.CollectGarbage(ctx, t0.Add(2*time.Hour)); err != nil {
		t.Fatalf("CollectGarbage: %v", err)
	}
	rps := recoveryPoints(t, e.cat)
	for id, want := range map[string]int{"rp-short": 0, "rp-long": 1} {
		rp, ok := rps[catalog.Key("sql1", "Sales", id)]
		if !ok {
			t.Fatalf("recovery point %s gone; want it kept in its first vault", id)
		}
		if got := len(rp.GetCopies()); got != want {
			t.Errorf("%s has %d copies; want %d", id, got, want)
		}
		_, err := second.GetManifest(ctx, id)
		if gone := errors.Is(err, blob.ErrNotExist); gone != (want == 0) {
			t.Errorf("manifest of %s in the copy's vault: %v; want it deleted %v", id, err, want == 0)
		}
	}
}
