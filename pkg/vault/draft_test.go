package vault_test

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/vault"
)

// TestDrafts stores the chunk list of a stream as a draft, reads it back,
// lists and deletes it, and checks that a draft is never taken for a
// manifest or the other way round.
func TestDrafts(t *testing.T) {
	store := newDirStore(t)
	v := initVault(t, store)
	ctx := t.Context()
	data := make([]byte, 3<<20)
	r := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < len(data); i += 8 {
		binary.LittleEndian.PutUint64(data[i:], r.Uint64())
	}
	res := write(t, v, data, vault.WriterOptions{})
	m := &vault.Manifest{CreatedAt: time.Now().UTC().Truncate(time.Microsecond), Size: res.Size, Checksum: res.Checksum, Chunks: res.Chunks}

	if err := v.PutDraft(ctx, "job-1", m); err != nil {
		t.Fatal(err)
	}
	got, err := v.GetDraft(ctx, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "job-1" || got.Size != m.Size || got.Checksum != m.Checksum || !slices.Equal(got.Chunks, m.Chunks) {
		t.Fatalf("draft read back as %+v, want %+v", got, m)
	}
	if back, err := read(t, v, got.Chunks); err != nil || !slices.Equal(back, data) {
		t.Fatalf("the draft's chunks do not read back as the stream (err %v)", err)
	}
	var ids []string
	if err := v.ListDrafts(ctx, func(id string, stored time.Time) error {
		if stored.IsZero() {
			t.Errorf("draft %s listed without when it was stored", id)
		}
		ids = append(ids, id)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{"job-1"}) {
		t.Fatalf("ListDrafts = %v, want [job-1]", ids)
	}
	if _, err := v.GetManifest(ctx, "job-1"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("a draft reads as a manifest: %v", err)
	}

	// a draft copied over a manifest's place fails authentication
	putRaw(t, store, "manifests/job-1", getRaw(t, store, "drafts/job-1"))
	if _, err := v.GetManifest(ctx, "job-1"); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("a draft moved to manifests/ read as a manifest: %v", err)
	}

	// a draft is checked as a manifest is, except for its chunks' presence
	bad := *m
	bad.Size++
	if err := v.PutDraft(ctx, "job-2", &bad); err == nil {
		t.Fatal("PutDraft took chunks that do not add up to the size")
	}
	missing := *m
	missing.Chunks = append([]vault.ChunkRef{{ID: "00" + res.Chunks[0].ID[2:], Size: 1}}, m.Chunks...)
	missing.Size++
	if err := v.PutDraft(ctx, "job-3", &missing); err != nil {
		t.Fatalf("PutDraft checked the chunks' presence: %v", err)
	}
	if err := v.PutDraft(ctx, "../x", m); err == nil {
		t.Fatal("PutDraft took an invalid id")
	}

	if err := v.DeleteDraft(ctx, "job-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.GetDraft(ctx, "job-1"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("deleted draft: %v", err)
	}
	if err := v.DeleteDraft(ctx, "job-1"); err != nil {
		t.Fatalf("deleting a missing draft: %v", err)
	}
}
