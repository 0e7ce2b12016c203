package vault_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/vault"
)

// countObjects counts the objects under prefix.
func countObjects(t *testing.T, s blob.Store, prefix string) int {
	t.Helper()
	n := 0
	if err := s.List(t.Context(), prefix, func(blob.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPacks: a stream is stored in a few packs and an index, not an
// object per chunk; another process (a vault opened before the stream
// was written, as the committer is) finds it, commits it and reads it
// back; and a full check finds every chunk sound.
func TestPacks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, newStore newStoreFunc) {
		store := newStore(t)
		v := initVault(t, store)
		other := openVault(t, store) // opened before the stream exists
		data := sqlPages(30, 0, 48<<20/8192)
		res := write(t, v, data, vault.WriterOptions{PackSize: 4 << 20})
		packs, indexes := countObjects(t, store, "packs/"), countObjects(t, store, "index/")
		t.Logf("%d chunks in %d packs and %d index objects; %d bytes stored", len(res.Chunks), packs, indexes, res.StoredBytes)
		if packs == 0 || packs > int(res.StoredBytes/(4<<20))+1 || packs >= len(res.Chunks) {
			t.Errorf("%d packs for %d chunks, %d bytes stored in packs of 4 MiB", packs, len(res.Chunks), res.StoredBytes)
		}
		if indexes != 1 {
			t.Errorf("%d index objects; want 1, written when the writer closed", indexes)
		}
		if n := countObjects(t, store, "chunks/"); n != 0 {
			t.Errorf("%d chunks stored alone", n)
		}
		if err := other.PutManifest(t.Context(), "full", &vault.Manifest{Chunks: res.Chunks, Size: res.Size, Checksum: res.Checksum}); err != nil {
			t.Fatalf("another process commits the stream: %v", err)
		}
		if got, err := read(t, other, res.Chunks); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("another process reads the stream back: %d bytes, %v", len(got), err)
		}
		r, err := openVault(t, store).Check(t.Context(), vault.CheckOptions{Mode: vault.CheckFull})
		if err != nil || !r.OK() || r.Chunks != len(uniq(res.Chunks)) || r.Unreferenced != 0 {
			t.Errorf("full check: %+v, %v", r, err)
		}
		// a stream written again deduplicates against the packs
		if again := write(t, other, data, vault.WriterOptions{}); again.NewChunks != 0 {
			t.Errorf("the same stream again stored %d chunks", again.NewChunks)
		}
	})
}

func uniq(refs []vault.ChunkRef) map[string]bool {
	m := map[string]bool{}
	for _, c := range refs {
		m[c.ID] = true
	}
	return m
}

// TestCollectRepacks: chunks no manifest names are condemned by one
// collection and deleted by the next; deleting some chunks of a pack
// rewrites it with the others, which still read back from any process;
// deleting all of a pack's chunks deletes it; a pack no index lists is
// deleted by the collection after the one that found it, once no writer
// that started before runs.
func TestCollectRepacks(t *testing.T) {
	store := newDirStore(t)
	v := initVault(t, store)
	ctx := t.Context()
	kept, dropped := sqlPages(31, 0, 6<<20/8192), sqlPages(32, 0, 6<<20/8192)
	// one writer: the kept and dropped streams' chunks share packs
	both := write(t, v, append(append([]byte(nil), kept...), dropped...), vault.WriterOptions{PackSize: 16 << 20})
	keptRes := write(t, v, kept, vault.WriterOptions{})
	if keptRes.NewChunks > 2 {
		t.Fatalf("the kept stream alone stored %d chunks; want it deduplicated but for the chunk at the seam", keptRes.NewChunks)
	}
	if err := v.PutManifest(ctx, "kept", &vault.Manifest{Chunks: keptRes.Chunks, Size: keptRes.Size, Checksum: keptRes.Checksum}); err != nil {
		t.Fatal(err)
	}
	live := uniq(keptRes.Chunks)
	doomed := map[string]bool{}
	for _, c := range both.Chunks {
		if !live[c.ID] {
			doomed[c.ID] = true
		}
	}
	reader := openVault(t, store) // a streamer that read the index before
	if _, err := read(t, reader, keptRes.Chunks); err != nil {
		t.Fatal(err)
	}
	st, err := v.Collect(ctx, vault.CollectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Condemned != len(doomed) || st.Chunks != 0 {
		t.Errorf("first collection: %+v; want the %d unreferenced chunks condemned, none deleted", st, len(doomed))
	}
	st, err = v.Collect(ctx, vault.CollectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", st)
	if st.Chunks != len(doomed) || st.Repacked == 0 || st.Bytes <= 0 || st.Processed != 1 || st.Condemned != 0 {
		t.Errorf("second collection: %+v; want the %d condemned chunks deleted, with a pack repacked", st, len(doomed))
	}
	var listed []string
	if err := v.ListChunks(ctx, func(c vault.ChunkInfo) error { listed = append(listed, c.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, id := range listed {
		if doomed[id] {
			t.Errorf("collected chunk %s is still listed", id)
		}
	}
	if len(listed) != len(live) {
		t.Errorf("%d chunks listed after collection; want the %d kept", len(listed), len(live))
	}
	for _, vv := range []*vault.Vault{v, reader, openVault(t, store)} {
		if got, err := read(t, vv, keptRes.Chunks); err != nil || !bytes.Equal(got, kept) {
			t.Errorf("the kept stream after repacking: %d bytes, %v", len(got), err)
		}
	}
	r, err := v.Check(ctx, vault.CheckOptions{Mode: vault.CheckFull})
	if err != nil || !r.OK() || r.Unreferenced != 0 {
		t.Errorf("full check after repacking: %+v, %v", r, err)
	}

	// a pack no index lists: a writer that died before its index, or one
	// still writing
	putRaw(t, store, "packs/ab/"+strings.Repeat("ab", 32), []byte("left by a writer that died"))
	sess, err := v.OpenSession(ctx, vault.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := v.Collect(ctx, vault.CollectOptions{}); err != nil || st.Orphans != 0 || st.Unlisted != 1 {
		t.Errorf("an unlisted pack: collected %+v, %v; want it condemned", st, err)
	}
	if st, err := v.Collect(ctx, vault.CollectOptions{}); err != nil || st.Orphans != 0 || st.Waiting != 1 {
		t.Errorf("an unlisted pack, with a writer open since before: collected %+v, %v; want it spared", st, err)
	}
	if err := sess.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := v.Collect(ctx, vault.CollectOptions{}); err != nil || st.Orphans != 1 {
		t.Errorf("an unlisted pack, no writer open: collected %+v, %v; want it deleted", st, err)
	}
	// every chunk of a pack collected: the pack goes whole
	if err := v.DeleteManifest(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
	packsBefore := countObjects(t, store, "packs/")
	if st, err := v.Collect(ctx, vault.CollectOptions{}); err != nil || st.Chunks != 0 || st.Condemned != len(live) {
		t.Errorf("collecting everything, first: %+v, %v; want the %d chunks condemned", st, err, len(live))
	}
	if st, err := v.Collect(ctx, vault.CollectOptions{}); err != nil || st.Deleted != packsBefore || st.Repacked != 0 {
		t.Errorf("collecting everything: %+v, %v; want %d packs deleted whole", st, err, packsBefore)
	}
	if n, m := countObjects(t, store, "packs/"), countObjects(t, store, "index/"); n != 0 || m != 0 {
		t.Errorf("%d packs and %d index objects left in an empty vault", n, m)
	}
	if n, m := countObjects(t, store, "sessions/"), countObjects(t, store, "condemned/"); n != 0 || m != 0 {
		t.Errorf("%d sessions and %d condemned generations left", n, m)
	}
}

// listHook runs after once, the first time index objects are listed
// while armed: a collection that replaces them between a process's
// listing of the index and its reading of what it listed.
type listHook struct {
	blob.Store
	armed atomic.Bool
	after func()
}

func (h *listHook) List(ctx context.Context, prefix string, fn func(blob.Info) error) error {
	err := h.Store.List(ctx, prefix, fn)
	if prefix == "index/" && h.armed.CompareAndSwap(true, false) {
		h.after()
	}
	return err
}

// TestRefreshMeetsReplacedIndex: a process lists the index objects, and
// garbage collection merges them into a new one (and deletes them) before
// the process reads them. The refresh must not end knowing neither the
// old objects nor the new one: it lists again, and knows every chunk.
func TestRefreshMeetsReplacedIndex(t *testing.T) {
	store := newDirStore(t)
	v := initVault(t, store)
	hook := &listHook{Store: store}
	other := openVault(t, hook) // a streamer that opened before
	ctx := t.Context()
	var chunks []vault.ChunkRef
	for i := range 33 { // one index object each: one more than a collection leaves unmerged
		res := write(t, v, sqlPages(uint64(100+i), 0, 8), vault.WriterOptions{})
		if err := v.PutManifest(ctx, fmt.Sprintf("m%d", i), &vault.Manifest{Chunks: res.Chunks, Size: res.Size, Checksum: res.Checksum}); err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, res.Chunks...)
	}
	countIndexes := func() int { return countObjects(t, store, "index/") }
	before := countIndexes()
	hook.after = func() {
		if _, err := v.Collect(ctx, vault.CollectOptions{}); err != nil {
			t.Errorf("collection: %v", err)
		}
	}
	hook.armed.Store(true)
	if err := vault.RefreshIndex(other); err != nil {
		t.Fatal(err)
	}
	if after := countIndexes(); hook.armed.Load() || after >= before {
		t.Fatalf("index objects: %d before, %d after the collection (armed still: %v); want them merged", before, after, hook.armed.Load())
	}
	missing := 0
	for _, c := range chunks {
		if !vault.KnowsChunk(other, c.ID) {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("after one refresh, %d of %d chunks unknown; want every one", missing, len(chunks))
	}
}
