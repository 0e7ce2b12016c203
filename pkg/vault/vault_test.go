package vault_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/dirstore"
	"github.com/cofferhq/coffer/pkg/vault"
)

// TestVault runs the vault's behaviour on every real backend.
func TestVault(t *testing.T) {
	forEachBackend(t, func(t *testing.T, newStore newStoreFunc) {
		tests := []struct {
			name string
			fn   func(t *testing.T, newStore newStoreFunc)
		}{
			{"RoundTrip64MiB", testRoundTrip},
			{"Dedup", testDedup},
			{"OnePageChange", testOnePageChange},
			{"ConcurrentWriters", testConcurrentWriters},
			{"WriteSizes", testWriteSizes},
			{"EmptyStream", testEmptyStream},
			{"Incompressible", testIncompressible},
			{"DedupAcrossCompressions", testDedupAcrossCompressions},
			{"CorruptChunk", testCorruptChunk},
			{"MissingChunk", testMissingChunk},
			{"Manifests", testManifests},
			{"TamperedManifest", testTamperedManifest},
			{"PutManifestChecksChunks", testPutManifestChecksChunks},
			{"ListAndDeleteChunks", testListAndDeleteChunks},
			{"Keys", testKeys},
			{"KeyRotation", testKeyRotation},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore) })
		}
	})
}

func testRoundTrip(t *testing.T, newStore newStoreFunc) {
	store := newStore(t)
	v := initVault(t, store)
	data := sqlPages(1, 0, 64<<20/8192)
	res := write(t, v, data, vault.WriterOptions{})

	if res.Size != int64(len(data)) {
		t.Errorf("Result.Size = %d; want %d", res.Size, len(data))
	}
	sum := blake3.Sum256(data)
	if want := "blake3:" + hex.EncodeToString(sum[:]); res.Checksum != want {
		t.Errorf("Result.Checksum = %s; want %s", res.Checksum, want)
	}
	var total, stored int64
	for i, c := range res.Chunks {
		total += c.Size
		stored += c.StoredSize
		// a new vault cuts chunks of 64 KiB to 1 MiB (about 256 KiB)
		if c.Size > 1<<20 || (i < len(res.Chunks)-1 && c.Size < 64<<10) {
			t.Errorf("chunk %d is %d bytes; want 64 KiB to 1 MiB", i, c.Size)
		}
	}
	if total != res.Size {
		t.Errorf("chunk sizes add up to %d; want %d", total, res.Size)
	}
	if res.NewChunks != len(res.Chunks) || res.NewBytes != res.Size || res.DedupBytes != 0 || res.StoredBytes != stored {
		t.Errorf("Result counts = %d new chunks, %d new bytes, %d stored, %d dedup; want %d, %d, %d, 0",
			res.NewChunks, res.NewBytes, res.StoredBytes, res.DedupBytes, len(res.Chunks), res.Size, stored)
	}
	t.Logf("%d chunks, mean %.2f MiB, compression ratio %.2f", len(res.Chunks), float64(res.Size)/float64(len(res.Chunks))/(1<<20), float64(res.Size)/float64(stored))
	if float64(stored) > 0.7*float64(res.Size) {
		t.Errorf("stored %d bytes of %d; want SQL-like pages compressed", stored, res.Size)
	}

	got, err := read(t, openVault(t, store), res.Chunks)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes differing from the %d written", len(got), len(data))
	}
}

func testDedup(t *testing.T, newStore newStoreFunc) {
	store := newStore(t)
	v := initVault(t, store)
	data := sqlPages(2, 0, 16<<20/8192)
	first := write(t, v, data, vault.WriterOptions{})

	// Again in the same process, which remembers the chunks, and from a
	// freshly opened vault, which must ask the store.
	for _, tt := range []struct {
		name string
		v    *vault.Vault
	}{{"same vault", v}, {"reopened vault", openVault(t, store)}} {
		t.Run(tt.name, func(t *testing.T) {
			again := write(t, tt.v, data, vault.WriterOptions{})
			if again.NewChunks != 0 || again.NewBytes != 0 || again.StoredBytes != 0 {
				t.Errorf("second write uploaded %d chunks, %d bytes; want none", again.NewChunks, again.StoredBytes)
			}
			if again.DedupBytes != int64(len(data)) {
				t.Errorf("DedupBytes = %d; want %d", again.DedupBytes, len(data))
			}
			if !slices.Equal(again.Chunks, first.Chunks) {
				t.Errorf("second write's chunks differ from the first's")
			}
			if again.Checksum != first.Checksum {
				t.Errorf("checksums differ: %s, %s", again.Checksum, first.Checksum)
			}
		})
	}
}

func testOnePageChange(t *testing.T, newStore newStoreFunc) {
	v := initVault(t, newStore(t))
	data := sqlPages(3, 0, 32<<20/8192)
	first := write(t, v, data, vault.WriterOptions{})

	changed := slices.Clone(data)
	page := changed[1500*8192 : 1501*8192]
	copy(page[200:], sqlPages(99, 7, 1)[200:600]) // rewrite some rows
	page[40]++                                    // and the LSN
	second := write(t, v, changed, vault.WriterOptions{})

	t.Logf("one page changed: %d of %d chunks new", second.NewChunks, len(second.Chunks))
	// Usually exactly the chunk holding the page; rarely the edit adds or
	// removes a boundary, which touches a neighbour too.
	if second.NewChunks < 1 || second.NewChunks > 3 {
		t.Errorf("one page changed uploaded %d chunks; want 1 to 3", second.NewChunks)
	}
	if second.DedupBytes < int64(len(data))-8<<20 {
		t.Errorf("DedupBytes = %d of %d; want all but a few chunks", second.DedupBytes, len(data))
	}
	got, err := read(t, v, second.Chunks)
	if err != nil || !bytes.Equal(got, changed) {
		t.Errorf("changed stream read back wrong (%d bytes, %v)", len(got), err)
	}
	if first.Checksum == second.Checksum {
		t.Errorf("checksum did not change")
	}
}

// testConcurrentWriters writes the same stream twice at once: each writer
// stores a chunk at most once (two writers at once may each store it: a
// writer's chunks are known to others once its index is written), both
// read back, and a writer after them stores nothing.
func testConcurrentWriters(t *testing.T, newStore newStoreFunc) {
	v := initVault(t, newStore(t))
	data := sqlPages(4, 0, 12<<20/8192)
	var wg sync.WaitGroup
	results := make([]vault.Result, 2)
	for i := range results {
		wg.Go(func() { results[i] = write(t, v, data, vault.WriterOptions{PackSize: 4 << 20}) })
	}
	wg.Wait()
	for i, r := range results {
		if r.NewChunks > len(r.Chunks) {
			t.Errorf("writer %d stored %d chunks of its %d", i, r.NewChunks, len(r.Chunks))
		}
		if got, err := read(t, v, r.Chunks); err != nil || !bytes.Equal(got, data) {
			t.Errorf("writer %d's stream read back wrong (%d bytes, %v)", i, len(got), err)
		}
	}
	if !slices.Equal(results[0].Chunks, results[1].Chunks) {
		t.Errorf("concurrent writers' chunks differ")
	}
	if after := write(t, v, data, vault.WriterOptions{}); after.NewChunks != 0 {
		t.Errorf("a writer after them stored %d chunks; want none", after.NewChunks)
	}
}

// testWriteSizes checks that chunks do not depend on how the stream is cut
// into writes.
func testWriteSizes(t *testing.T, newStore newStoreFunc) {
	v := initVault(t, newStore(t))
	data := sqlPages(5, 0, 6<<20/8192)
	want := write(t, v, data, vault.WriterOptions{})
	w := v.NewWriter(t.Context(), vault.WriterOptions{Workers: 3, InFlight: 3})
	sizes := []int{1, 100, 8191, 65536, 3 << 20, 7}
	for i, p := 0, data; len(p) > 0; i++ {
		n := min(len(p), sizes[i%len(sizes)])
		if m, err := w.Write(p[:n]); err != nil || m != n {
			t.Fatalf("Write(%d bytes) = %d, %v", n, m, err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := w.Result()
	if !slices.Equal(got.Chunks, want.Chunks) || got.Checksum != want.Checksum {
		t.Errorf("writes of mixed sizes gave other chunks than 1 MiB writes")
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Errorf("Write after Close succeeded")
	}
}

func testEmptyStream(t *testing.T, newStore newStoreFunc) {
	v := initVault(t, newStore(t))
	res := write(t, v, nil, vault.WriterOptions{})
	sum := blake3.Sum256(nil)
	if len(res.Chunks) != 0 || res.Size != 0 || res.Checksum != "blake3:"+hex.EncodeToString(sum[:]) {
		t.Errorf("empty stream: %+v", res)
	}
	got, err := read(t, v, res.Chunks)
	if err != nil || len(got) != 0 {
		t.Errorf("reading an empty stream: %d bytes, %v", len(got), err)
	}
	if err := v.PutManifest(t.Context(), "empty", &vault.Manifest{Size: 0, Checksum: res.Checksum}); err != nil {
		t.Errorf("PutManifest of an empty stream: %v", err)
	}
}

// The sealed header's flags byte, and its bits, as vault.go lays them out.
const (
	flagsByte = 1
	flagZstd  = 1 << 0
	flagS2    = 1 << 1
)

// flagOf is the flag a chunk compressed with c carries.
func flagOf(c vault.Compression) byte {
	switch c {
	case vault.Zstd, "":
		return flagZstd
	case vault.S2:
		return flagS2
	}
	return 0
}

// testIncompressible writes data that compresses and data that does not
// with every Compression, each into a vault of its own (so that nothing
// deduplicates against another case): a chunk that shrinks is stored
// compressed as asked, one that does not is stored as it is, and every
// stream reads back exactly from a freshly opened vault, sequentially and
// at offsets.
func testIncompressible(t *testing.T, newStore newStoreFunc) {
	random := make([]byte, 8<<20)
	r := rand.New(rand.NewPCG(6, 6))
	for i := 0; i < len(random); i += 8 {
		binary.LittleEndian.PutUint64(random[i:], r.Uint64())
	}
	// The sealed overhead: 22 bytes of header and a 16-byte tag.
	const overhead = 38
	data := []struct {
		name         string
		data         []byte
		compressible bool
	}{
		{"random", random, false},
		{"zeros, in chunks of the maximum size", make([]byte, 12<<20), true},
		{"pages", sqlPages(7, 0, 1024), true},
	}
	for _, comp := range []vault.Compression{"", vault.Zstd, vault.S2, vault.Uncompressed} {
		name := string(comp)
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			store := newStore(t)
			v := initVault(t, store)
			for _, tt := range data {
				t.Run(tt.name, func(t *testing.T) {
					res := write(t, v, tt.data, vault.WriterOptions{Compression: comp})
					want := byte(0)
					if tt.compressible {
						want = flagOf(comp)
					}
					for i, c := range res.Chunks {
						raw := getChunk(t, v, store, c.ID)
						if got := raw[flagsByte]; got != want {
							t.Errorf("chunk %d flags %#x; want %#x", i, got, want)
						}
						if want == 0 && c.StoredSize != c.Size+overhead {
							t.Errorf("uncompressed chunk %d stored in %d bytes; want %d", i, c.StoredSize, c.Size+overhead)
						}
						if want != 0 && c.StoredSize >= c.Size {
							t.Errorf("compressed chunk %d stored in %d bytes; want fewer than its %d", i, c.StoredSize, c.Size)
						}
						if int64(len(raw)) != c.StoredSize {
							t.Errorf("chunk %d object is %d bytes; ChunkRef says %d", i, len(raw), c.StoredSize)
						}
					}
					fresh := openVault(t, store)
					got, err := read(t, fresh, res.Chunks)
					if err != nil || !bytes.Equal(got, tt.data) {
						t.Errorf("read back wrong (%d bytes, %v)", len(got), err)
					}
					ra := fresh.NewReaderAt(t.Context(), res.Chunks, vault.ReaderAtOptions{})
					defer ra.Close()
					off := len(tt.data) / 3
					buf := make([]byte, len(tt.data)/2)
					if n, err := ra.ReadAt(buf, int64(off)); err != nil || !bytes.Equal(buf[:n], tt.data[off:off+len(buf)]) {
						t.Errorf("ReadAt(%d) read %d bytes wrong, %v", off, n, err)
					}
				})
			}
		})
	}
}

// testDedupAcrossCompressions: a chunk is named by its plaintext, so the
// same data written with another compression adds nothing to the vault,
// and its chunks stay as first stored; both streams read back.
func testDedupAcrossCompressions(t *testing.T, newStore newStoreFunc) {
	for _, tt := range []struct{ first, second vault.Compression }{
		{vault.Zstd, vault.S2},
		{vault.S2, vault.Zstd},
		{vault.Uncompressed, vault.S2},
	} {
		t.Run(string(tt.first)+" then "+string(tt.second), func(t *testing.T) {
			store := newStore(t)
			v := initVault(t, store)
			data := sqlPages(12, 0, 8<<20/8192)
			first := write(t, v, data, vault.WriterOptions{Compression: tt.first})
			// a chunk the compression does not shrink is stored as it is:
			// which ones depends on where the vault's key cuts them
			stored := make([]byte, len(first.Chunks))
			for i, c := range first.Chunks {
				stored[i] = getChunk(t, v, store, c.ID)[flagsByte]
				if stored[i] != flagOf(tt.first) && stored[i] != 0 {
					t.Fatalf("chunk %d stored with flags %#x; want %#x or none", i, stored[i], flagOf(tt.first))
				}
			}
			again := write(t, v, data, vault.WriterOptions{Compression: tt.second})
			if again.NewChunks != 0 || again.StoredBytes != 0 || again.DedupBytes != int64(len(data)) {
				t.Errorf("second write: %d new chunks, %d bytes stored, %d deduplicated; want 0, 0, %d",
					again.NewChunks, again.StoredBytes, again.DedupBytes, len(data))
			}
			if !slices.Equal(again.Chunks, first.Chunks) {
				t.Errorf("second write's chunks differ from the first's")
			}
			for i, c := range first.Chunks {
				if got, want := getChunk(t, v, store, c.ID)[flagsByte], stored[i]; got != want {
					t.Errorf("chunk %d flags %#x after the second write; want %#x, as first stored", i, got, want)
				}
			}
			for _, res := range []vault.Result{first, again} {
				if got, err := read(t, openVault(t, store), res.Chunks); err != nil || !bytes.Equal(got, data) {
					t.Errorf("read back wrong (%d bytes, %v)", len(got), err)
				}
			}
		})
	}
}

func testCorruptChunk(t *testing.T, newStore newStoreFunc) {
	store := newStore(t)
	v := initVault(t, store)
	data := sqlPages(9, 0, 8<<20/8192)
	res := write(t, v, data, vault.WriterOptions{})
	if len(res.Chunks) < 4 {
		t.Fatalf("only %d chunks; the test needs 4", len(res.Chunks))
	}
	const victim = 2
	id, other := res.Chunks[victim].ID, res.Chunks[victim+1].ID
	orig := getChunk(t, v, store, id)
	origObject := getRaw(t, store, chunkKey(id)) // the pack, header and all
	flip := func(i int) func([]byte) []byte {
		return func(b []byte) []byte { b = slices.Clone(b); b[i] ^= 0x01; return b }
	}
	tests := []struct {
		name   string
		tamper func([]byte) []byte
	}{
		{"flipped byte in ciphertext", flip(len(orig) / 2)},
		{"flipped byte in tag", flip(len(orig) - 1)},
		{"flipped flag", flip(1)},
		{"flipped key id", flip(5)},
		{"flipped nonce", flip(15)},
		{"flipped version", flip(0)},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		{"empty", func([]byte) []byte { return nil }},
		{"swapped with another chunk", func([]byte) []byte { return getChunk(t, v, store, other) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			putChunk(t, v, store, id, tt.tamper(orig))
			defer putRaw(t, store, chunkKey(id), origObject)

			got, err := read(t, v, res.Chunks)
			wantChunkError(t, err, id, vault.ErrCorrupt)
			// Everything before the bad chunk, and nothing after it.
			if want := data[:offsetOf(res.Chunks, victim)]; !bytes.Equal(got, want) {
				t.Errorf("read %d bytes before the error; want the %d before the bad chunk", len(got), len(want))
			}
			wantChunkError(t, v.VerifyChunk(t.Context(), id), id, vault.ErrCorrupt)
		})
	}
	// The same swap, checked without the stored size from the ChunkRef.
	t.Run("swapped, sizes unknown", func(t *testing.T) {
		putChunk(t, v, store, id, getChunk(t, v, store, other))
		defer putRaw(t, store, chunkKey(id), origObject)
		refs := slices.Clone(res.Chunks)
		for i := range refs {
			refs[i].StoredSize = 0
		}
		_, err := read(t, v, refs)
		wantChunkError(t, err, id, vault.ErrCorrupt)
	})
	if err := v.VerifyChunk(t.Context(), id); err != nil {
		t.Errorf("VerifyChunk after restoring the chunk: %v", err)
	}
}

func testMissingChunk(t *testing.T, newStore newStoreFunc) {
	store := newStore(t)
	v := initVault(t, store)
	data := sqlPages(10, 0, 4<<20/8192)
	res := write(t, v, data, vault.WriterOptions{})
	last := len(res.Chunks) - 1
	id := res.Chunks[last].ID
	if err := store.Delete(t.Context(), chunkKey(id)); err != nil {
		t.Fatal(err)
	}
	got, err := read(t, v, res.Chunks)
	wantChunkError(t, err, id, blob.ErrNotExist)
	if errors.Is(err, vault.ErrCorrupt) {
		t.Errorf("missing chunk reported as corrupt: %v", err)
	}
	if !strings.Contains(err.Error(), "missing") {
		t.Errorf("error %q does not say the chunk is missing", err)
	}
	if want := data[:offsetOf(res.Chunks, last)]; !bytes.Equal(got, want) {
		t.Errorf("read %d bytes before the error; want %d", len(got), len(want))
	}
	wantChunkError(t, v.VerifyChunk(t.Context(), id), id, blob.ErrNotExist)
}

func testManifests(t *testing.T, newStore newStoreFunc) {
	store := newStore(t)
	v := initVault(t, store)
	ctx := t.Context()
	data := sqlPages(11, 0, 3<<20/8192)
	res := write(t, v, data, vault.WriterOptions{})
	meta := json.RawMessage(`{"type":"full","database":"Sales","first_lsn":"42000000012300001","server":"sql01"}`)
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ids := []string{"sales-20260102-full", "a.log.1", "Z_diff"}
	for _, id := range ids {
		m := &vault.Manifest{CreatedAt: created, Chunks: res.Chunks, Size: res.Size, Checksum: res.Checksum, Meta: meta}
		if err := v.PutManifest(ctx, id, m); err != nil {
			t.Fatalf("PutManifest(%s): %v", id, err)
		}
		if m.ID != "" {
			t.Errorf("PutManifest changed the caller's manifest")
		}
	}
	// Idempotent: the same commit again is fine.
	if err := v.PutManifest(ctx, ids[0], &vault.Manifest{ID: ids[0], CreatedAt: created, Chunks: res.Chunks, Size: res.Size, Checksum: res.Checksum, Meta: meta}); err != nil {
		t.Errorf("PutManifest again: %v", err)
	}

	m, err := openVault(t, store).GetManifest(ctx, ids[0])
	if err != nil {
		t.Fatalf("GetManifest: %v", err)
	}
	if m.ID != ids[0] || !m.CreatedAt.Equal(created) || m.Size != res.Size || m.Checksum != res.Checksum || !slices.Equal(m.Chunks, res.Chunks) || !bytes.Equal(m.Meta, meta) {
		t.Errorf("GetManifest = %+v; want what was put", m)
	}
	got, err := read(t, v, m.Chunks)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("stream of the manifest read back wrong (%d bytes, %v)", len(got), err)
	}

	var listed []string
	if err := v.ListManifests(ctx, func(id string) error { listed = append(listed, id); return nil }); err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(listed, want) {
		t.Errorf("ListManifests = %q; want %q", listed, want)
	}

	for range 2 {
		if err := v.DeleteManifest(ctx, ids[1]); err != nil {
			t.Errorf("DeleteManifest: %v", err)
		}
	}
	if _, err := v.GetManifest(ctx, ids[1]); !errors.Is(err, blob.ErrNotExist) {
		t.Errorf("GetManifest of a deleted manifest: %v; want blob.ErrNotExist", err)
	}

	// a striped recovery point: two streams, each read back as written
	other := sqlPages(13, 0, 2<<20/8192)
	res2 := write(t, v, other, vault.WriterOptions{})
	striped := &vault.Manifest{Chunks: slices.Concat(res.Chunks, res2.Chunks), Size: res.Size + res2.Size,
		Stripes: []vault.Stripe{{Chunks: len(res.Chunks), Size: res.Size, Checksum: res.Checksum}, {Chunks: len(res2.Chunks), Size: res2.Size, Checksum: res2.Checksum}}}
	if err := v.PutManifest(ctx, "striped", striped); err != nil {
		t.Fatalf("PutManifest of a striped recovery point: %v", err)
	}
	m, err = openVault(t, store).GetManifest(ctx, "striped")
	if err != nil {
		t.Fatal(err)
	}
	streams := m.Streams()
	if len(streams) != 2 {
		t.Fatalf("a striped manifest has %d streams; want 2", len(streams))
	}
	for k, want := range [][]byte{data, other} {
		got, err := read(t, v, streams[k].Chunks)
		if err != nil || !bytes.Equal(got, want) || streams[k].Size != int64(len(want)) || streams[k].Checksum != []string{res.Checksum, res2.Checksum}[k] {
			t.Errorf("stripe %d read back wrong (%d bytes, %v, %+v)", k+1, len(got), err, streams[k])
		}
	}
	if one := (&vault.Manifest{Chunks: res.Chunks, Size: res.Size, Checksum: res.Checksum}).Streams(); len(one) != 1 || one[0].Checksum != res.Checksum || len(one[0].Chunks) != len(res.Chunks) {
		t.Errorf("an unstriped manifest's streams: %+v; want its one stream", one)
	}
	if err := v.DeleteManifest(ctx, "striped"); err != nil {
		t.Fatal(err)
	}

	bad := []struct {
		name string
		id   string
		m    *vault.Manifest
	}{
		{"invalid id", "../x", &vault.Manifest{}},
		{"id with slash", "a/b", &vault.Manifest{}},
		{"id mismatch", "one", &vault.Manifest{ID: "two"}},
		{"sizes do not add up", "sizes", &vault.Manifest{Chunks: res.Chunks, Size: res.Size + 1}},
		{"invalid chunk id", "chunkid", &vault.Manifest{Chunks: []vault.ChunkRef{{ID: "xyz", Size: 1}}, Size: 1}},
		{"one stripe", "onestripe", &vault.Manifest{Chunks: res.Chunks, Size: res.Size, Stripes: []vault.Stripe{{Chunks: len(res.Chunks), Size: res.Size}}}},
		{"stripes short of the chunks", "short", &vault.Manifest{Chunks: res.Chunks, Size: res.Size,
			Stripes: []vault.Stripe{{Chunks: 1, Size: res.Chunks[0].Size}, {Chunks: 1, Size: res.Chunks[1].Size}}}},
		{"stripe sizes wrong", "stripesize", &vault.Manifest{Chunks: res.Chunks, Size: res.Size,
			Stripes: []vault.Stripe{{Chunks: 1, Size: res.Chunks[0].Size + 1}, {Chunks: len(res.Chunks) - 1, Size: res.Size - res.Chunks[0].Size - 1}}}},
	}
	for _, tt := range bad {
		if err := v.PutManifest(ctx, tt.id, tt.m); err == nil {
			t.Errorf("PutManifest with %s succeeded", tt.name)
		}
	}
}

func testTamperedManifest(t *testing.T, newStore newStoreFunc) {
	store := newStore(t)
	v := initVault(t, store)
	ctx := t.Context()
	res := write(t, v, sqlPages(12, 0, 64), vault.WriterOptions{})
	for _, id := range []string{"m1", "m2"} {
		if err := v.PutManifest(ctx, id, &vault.Manifest{Chunks: res.Chunks, Size: res.Size, Checksum: res.Checksum, Meta: json.RawMessage(`{"n":"` + id + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	orig := getRaw(t, store, "manifests/m1")
	tests := []struct {
		name   string
		tamper func([]byte) []byte
	}{
		{"flipped byte", func(b []byte) []byte { b = slices.Clone(b); b[len(b)/2] ^= 0x80; return b }},
		{"flipped header", func(b []byte) []byte { b = slices.Clone(b); b[3] ^= 0x01; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-5] }},
		{"garbage", func(b []byte) []byte { return []byte("{\"id\":\"m1\"}") }},
		{"swapped with another manifest", func([]byte) []byte { return getRaw(t, store, "manifests/m2") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			putRaw(t, store, "manifests/m1", tt.tamper(orig))
			defer putRaw(t, store, "manifests/m1", orig)
			_, err := v.GetManifest(ctx, "m1")
			if !errors.Is(err, vault.ErrCorrupt) {
				t.Errorf("GetManifest of a tampered manifest: %v; want ErrCorrupt", err)
			}
			if err != nil && !strings.Contains(err.Error(), "m1") {
				t.Errorf("error %q does not name the manifest", err)
			}
		})
	}
}

func testPutManifestChecksChunks(t *testing.T, newStore newStoreFunc) {
	store := newStore(t)
	v := initVault(t, store)
	ctx := t.Context()
	res := write(t, v, sqlPages(13, 0, 4<<20/8192), vault.WriterOptions{})
	id := res.Chunks[1].ID
	if err := store.Delete(ctx, chunkKey(id)); err != nil {
		t.Fatal(err)
	}
	err := v.PutManifest(ctx, "incomplete", &vault.Manifest{Chunks: res.Chunks, Size: res.Size, Checksum: res.Checksum})
	wantChunkError(t, err, id, blob.ErrNotExist)
	if _, err := store.Stat(ctx, "manifests/incomplete"); !errors.Is(err, blob.ErrNotExist) {
		t.Errorf("a refused manifest was stored anyway: %v", err)
	}

	// A chunk whose stored size differs from what the writer recorded.
	refs := slices.Clone(res.Chunks)
	refs[0].StoredSize++
	err = v.PutManifest(ctx, "wrongsize", &vault.Manifest{Chunks: refs[:1], Size: refs[0].Size})
	wantChunkError(t, err, refs[0].ID, vault.ErrCorrupt)
}

func testListAndDeleteChunks(t *testing.T, newStore newStoreFunc) {
	store := newStore(t)
	v := initVault(t, store)
	ctx := t.Context()
	data := sqlPages(14, 0, 6<<20/8192)
	res := write(t, v, data, vault.WriterOptions{})
	// Something in chunks/ that is not a chunk must not be listed.
	putRaw(t, store, "chunks/zz/not-a-chunk", []byte("x"))

	var listed []string
	err := v.ListChunks(ctx, func(c vault.ChunkInfo) error {
		listed = append(listed, c.ID)
		if c.StoredSize <= 0 || c.ModTime.IsZero() {
			t.Errorf("ListChunks info for %s: %+v", c.ID, c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range res.Chunks {
		want = append(want, c.ID)
	}
	slices.Sort(want)
	want = slices.Compact(want)
	slices.Sort(listed)
	if !slices.Equal(listed, want) {
		t.Errorf("ListChunks = %d ids; want the %d of the stream", len(listed), len(want))
	}

	id := res.Chunks[0].ID
	if err := v.DeleteChunk(ctx, id); err == nil {
		t.Errorf("DeleteChunk of a chunk in a pack succeeded; packs are collected whole")
	}
	// a pack lost: collection drops it from the index
	if err := v.PutManifest(ctx, "m", &vault.Manifest{Chunks: res.Chunks, Size: res.Size}); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, chunkKey(id)); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Collect(ctx, vault.CollectOptions{}); err != nil {
		t.Errorf("Collect: %v", err)
	}
	wantChunkError(t, v.VerifyChunk(ctx, id), id, blob.ErrNotExist)
	// Writing the stream again puts the deleted chunk back, and only it.
	again := write(t, v, data, vault.WriterOptions{})
	if again.NewChunks != 1 {
		t.Errorf("after deleting one chunk, rewriting uploaded %d; want 1", again.NewChunks)
	}
	if err := v.DeleteChunk(ctx, "../../etc/passwd"); err == nil {
		t.Errorf("DeleteChunk with an invalid id succeeded")
	}
}

func testKeys(t *testing.T, newStore newStoreFunc) {
	ctx := t.Context()
	store := newStore(t)
	if _, err := vault.Open(ctx, store, testMaster); !errors.Is(err, vault.ErrNotInitialized) {
		t.Errorf("Open of an empty store: %v; want ErrNotInitialized", err)
	}
	v := initVault(t, store)
	res := write(t, v, sqlPages(15, 0, 64), vault.WriterOptions{})
	if _, err := vault.Init(ctx, store, testMaster); !errors.Is(err, vault.ErrInitialized) {
		t.Errorf("second Init: %v; want ErrInitialized", err)
	}

	wrong := bytes.Repeat([]byte{0x43}, vault.MasterKeySize)
	_, err := vault.Open(ctx, store, wrong)
	if !errors.Is(err, vault.ErrWrongKey) {
		t.Errorf("Open with the wrong master key: %v; want ErrWrongKey", err)
	} else if !strings.Contains(err.Error(), "master key does not match this vault") {
		t.Errorf("wrong-key error %q does not say so plainly", err)
	}
	if _, err := vault.Open(ctx, store, testMaster[:16]); err == nil || errors.Is(err, vault.ErrWrongKey) {
		t.Errorf("Open with a 16-byte master key: %v; want a key-length error", err)
	}

	// A damaged key record is corruption, not a wrong key.
	var keyName string
	store.List(ctx, "keys/", func(i blob.Info) error { keyName = i.Key; return nil })
	orig := getRaw(t, store, keyName)
	var rec map[string]any
	if err := json.Unmarshal(orig, &rec); err != nil {
		t.Fatalf("key record is not JSON: %v", err)
	}
	sealed := rec["sealed"].(string)
	rec["sealed"] = "A" + sealed[1:]
	if sealed[0] == 'A' {
		rec["sealed"] = "B" + sealed[1:]
	}
	tampered, _ := json.Marshal(rec)
	putRaw(t, store, keyName, tampered)
	if _, err := vault.Open(ctx, store, testMaster); !errors.Is(err, vault.ErrCorrupt) || errors.Is(err, vault.ErrWrongKey) {
		t.Errorf("Open with a tampered key record: %v; want ErrCorrupt", err)
	}
	putRaw(t, store, keyName, orig)
	if strings.Contains(string(orig), hex.EncodeToString(testMaster)) {
		t.Errorf("key record contains the master key")
	}

	got, err := read(t, openVault(t, store), res.Chunks)
	if err != nil || len(got) != int(res.Size) {
		t.Errorf("read after reopening: %d bytes, %v", len(got), err)
	}
}

func testKeyRotation(t *testing.T, newStore newStoreFunc) {
	ctx := t.Context()
	store := newStore(t)
	v := initVault(t, store)
	before := sqlPages(16, 0, 4<<20/8192)
	res1 := write(t, v, before, vault.WriterOptions{})
	oldKey := hex.EncodeToString(getChunk(t, v, store, res1.Chunks[0].ID)[2:10])

	if _, err := v.AddKey(ctx, bytes.Repeat([]byte{1}, vault.MasterKeySize)); !errors.Is(err, vault.ErrWrongKey) {
		t.Errorf("AddKey with another master key: %v; want ErrWrongKey", err)
	}
	newKey, err := v.AddKey(ctx, testMaster)
	if err != nil {
		t.Fatalf("AddKey: %v", err)
	}
	if newKey == oldKey {
		t.Fatalf("AddKey returned the old key id")
	}
	after := sqlPages(17, 0, 4<<20/8192)
	res2 := write(t, v, after, vault.WriterOptions{})
	if err := v.PutManifest(ctx, "after", &vault.Manifest{Chunks: res2.Chunks, Size: res2.Size}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		res  vault.Result
		want string
	}{{res1, oldKey}, {res2, newKey}} {
		for _, c := range tt.res.Chunks {
			if got := hex.EncodeToString(getChunk(t, v, store, c.ID)[2:10]); got != tt.want {
				t.Errorf("chunk %s sealed with key %s; want %s", c.ID, got, tt.want)
			}
		}
	}
	if got := hex.EncodeToString(getRaw(t, store, "manifests/after")[2:10]); got != newKey {
		t.Errorf("manifest sealed with key %s; want %s", got, newKey)
	}

	// A vault opened later reads both, seals with the new key, and still
	// deduplicates against data sealed with the old one.
	v2 := openVault(t, store)
	for _, tt := range []struct {
		res  vault.Result
		data []byte
	}{{res1, before}, {res2, after}} {
		if got, err := read(t, v2, tt.res.Chunks); err != nil || !bytes.Equal(got, tt.data) {
			t.Errorf("read after rotation: %d bytes, %v", len(got), err)
		}
	}
	if again := write(t, v2, before, vault.WriterOptions{}); again.NewChunks != 0 {
		t.Errorf("rewriting pre-rotation data uploaded %d chunks; want 0", again.NewChunks)
	}
	res3 := write(t, v2, sqlPages(18, 0, 64), vault.WriterOptions{})
	if got := hex.EncodeToString(getChunk(t, v2, store, res3.Chunks[0].ID)[2:10]); got != newKey {
		t.Errorf("reopened vault seals with key %s; want the newest, %s", got, newKey)
	}
}

// TestWriterErrors checks that a failing store aborts the stream with its
// error, from Write or Close, and leaves no goroutine behind.
func TestWriterErrors(t *testing.T) {
	data := sqlPages(20, 0, 24<<20/8192)
	tests := []struct {
		name  string
		store func(blob.Store) *faultStore
	}{
		{"first put fails", func(s blob.Store) *faultStore { return &faultStore{Store: s, failPutsAfter: 0} }},
		{"later put fails", func(s blob.Store) *faultStore { return &faultStore{Store: s, failPutsAfter: 5} }},
		{"index put fails", func(s blob.Store) *faultStore { return &faultStore{Store: s, failPutsAfter: -1, failIndex: true} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			fs := tt.store(newDirStore(t))
			v := initVault(t, fs)
			// packs of 1 MiB: several puts
			w := v.NewWriter(t.Context(), vault.WriterOptions{Workers: 2, PackSize: 1 << 20})
			var err error
			for p := data; len(p) > 0 && err == nil; {
				n := min(len(p), 256<<10)
				_, err = w.Write(p[:n])
				p = p[n:]
			}
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if !errors.Is(err, errInjected) {
				t.Errorf("stream error = %v; want the store's", err)
			}
			if again := w.Close(); !errors.Is(again, errInjected) {
				t.Errorf("second Close = %v; want the same error", again)
			}
			if res := w.Result(); res.Size != 0 || res.Chunks != nil {
				t.Errorf("Result after a failed stream = %+v; want zero", res)
			}
		})
	}
}

// TestWriterUnknownCompression: a Compression the vault does not know
// fails the stream at once, naming it, and stores nothing.
func TestWriterUnknownCompression(t *testing.T) {
	checkGoroutines(t)
	store := newDirStore(t)
	v := initVault(t, store)
	w := v.NewWriter(t.Context(), vault.WriterOptions{Compression: "lz4"})
	_, err := w.Write(sqlPages(21, 0, 16))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil || !strings.Contains(err.Error(), `unknown compression "lz4"`) {
		t.Errorf("stream error = %v; want the unknown compression named", err)
	}
	var chunks int
	if err := v.ListChunks(t.Context(), func(vault.ChunkInfo) error { chunks++; return nil }); err != nil {
		t.Fatal(err)
	}
	if chunks != 0 {
		t.Errorf("%d chunks stored; want none", chunks)
	}
}

func TestParseCompression(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    vault.Compression
		wantErr bool
	}{
		{"", vault.Zstd, false},
		{"zstd", vault.Zstd, false},
		{"s2", vault.S2, false},
		{"none", vault.Uncompressed, false},
		{"ZSTD", "", true},
		{"lz4", "", true},
		{"true", "", true},
	} {
		got, err := vault.ParseCompression(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseCompression(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestWriterCancel cancels streams while uploads hang, and while writing.
func TestWriterCancel(t *testing.T) {
	t.Run("uploads hang", func(t *testing.T) {
		checkGoroutines(t)
		fs := &faultStore{Store: newDirStore(t), stallPuts: true, stalled: make(chan struct{}, 16)}
		v := initVault(t, fs)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		// a pack per chunk, two stored at once
		w := v.NewWriter(ctx, vault.WriterOptions{Workers: 2, InFlight: 3, PackSize: 1, Uploads: 2})
		errc := make(chan error, 1)
		go func() {
			data := sqlPages(21, 0, 64<<20/8192)
			_, err := w.Write(data) // blocks: at most 3 chunks in flight
			errc <- err
		}()
		<-fs.stalled
		<-fs.stalled // both uploads are stuck, and the workers wait for them
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("Write while cancelled = %v; want context.Canceled", err)
		}
		if err := w.Close(); !errors.Is(err, context.Canceled) {
			t.Errorf("Close = %v; want context.Canceled", err)
		}
	})
	t.Run("between writes", func(t *testing.T) {
		checkGoroutines(t)
		v := initVault(t, newDirStore(t))
		ctx, cancel := context.WithCancel(t.Context())
		w := v.NewWriter(ctx, vault.WriterOptions{})
		if _, err := w.Write(sqlPages(22, 0, 1024)); err != nil {
			t.Fatal(err)
		}
		cancel()
		_, werr := w.Write(sqlPages(22, 1024, 1024))
		cerr := w.Close()
		if !errors.Is(werr, context.Canceled) && !errors.Is(cerr, context.Canceled) {
			t.Errorf("after cancel: Write = %v, Close = %v; want context.Canceled", werr, cerr)
		}
		if !errors.Is(cerr, context.Canceled) {
			t.Errorf("Close = %v; want context.Canceled", cerr)
		}
	})
}

// TestReaderStops checks that closing a reader early, or cancelling it,
// stops its read-ahead.
func TestReaderStops(t *testing.T) {
	v := initVault(t, newDirStore(t))
	data := sqlPages(23, 0, 16<<20/8192)
	res := write(t, v, data, vault.WriterOptions{})

	t.Run("close early", func(t *testing.T) {
		checkGoroutines(t)
		r := v.NewReader(t.Context(), res.Chunks)
		buf := make([]byte, 100)
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, data[:100]) {
			t.Errorf("first bytes differ")
		}
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if _, err := r.Read(buf); err == nil {
			t.Errorf("Read after Close succeeded")
		}
	})
	t.Run("cancel", func(t *testing.T) {
		checkGoroutines(t)
		ctx, cancel := context.WithCancel(t.Context())
		r := v.NewReader(ctx, res.Chunks)
		defer r.Close()
		buf := make([]byte, 1<<20)
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
		cancel()
		var err error
		for err == nil {
			_, err = r.Read(buf)
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Read after cancel = %v; want context.Canceled", err)
		}
	})
	t.Run("invalid id", func(t *testing.T) {
		_, err := read(t, v, []vault.ChunkRef{{ID: "../../x", Size: 1}})
		var ce *vault.ChunkError
		if !errors.As(err, &ce) {
			t.Errorf("reading an invalid chunk id: %v; want a ChunkError", err)
		}
	})
}

// TestStreamReader reads streams with NewStreamReader, which checks the
// stream's length and checksum at its end rather than each chunk's id:
// whole streams come back exactly, and anything that does not add up to
// the manifest's stream fails at the end with ErrCorrupt.
func TestStreamReader(t *testing.T) {
	v := initVault(t, newDirStore(t))
	// pages, then zeros (the same chunk over and over, in one group), then
	// pages again, in packs that hold many chunks
	data := slices.Concat(sqlPages(31, 0, 6<<20/8192), make([]byte, 5<<20), sqlPages(31, 1000, 6<<20/8192))
	res := write(t, v, data, vault.WriterOptions{PackSize: 8 << 20})
	st := vault.Stream{Chunks: res.Chunks, Size: res.Size, Checksum: res.Checksum}
	readStream := func(st vault.Stream) ([]byte, error) {
		r := v.NewStreamReader(t.Context(), st)
		defer r.Close()
		var buf bytes.Buffer
		_, err := io.Copy(&buf, r)
		return buf.Bytes(), err
	}
	got, err := readStream(st)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("whole stream: %d bytes, %v; want the %d bytes written", len(got), err, len(data))
	}
	if len(res.Chunks) < 4 || res.Chunks[0].ID == res.Chunks[1].ID {
		t.Fatalf("%d chunks; the test needs distinct first chunks", len(res.Chunks))
	}
	swapped := slices.Clone(res.Chunks)
	swapped[0], swapped[1] = swapped[1], swapped[0]
	noSum := st
	noSum.Checksum = ""
	for _, c := range []struct {
		name string
		st   vault.Stream
		want string // in the error; "" for no error
	}{
		{"another checksum", vault.Stream{Chunks: res.Chunks, Size: res.Size, Checksum: "blake3:" + strings.Repeat("0", 64)}, "checksum"},
		{"another size", vault.Stream{Chunks: res.Chunks, Size: res.Size + 1, Checksum: res.Checksum}, "manifest says"},
		{"chunks swapped", vault.Stream{Chunks: swapped, Size: res.Size, Checksum: res.Checksum}, "checksum"},
		{"a chunk left out", vault.Stream{Chunks: res.Chunks[1:], Size: res.Size, Checksum: res.Checksum}, "manifest says"},
		{"no checksum: read as NewReader reads", noSum, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := readStream(c.st)
			if c.want == "" {
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("%d bytes, %v; want the %d bytes written", len(got), err, len(data))
				}
				return
			}
			if !errors.Is(err, vault.ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v; want ErrCorrupt saying %q", err, c.want)
			}
		})
	}
}

func TestParseMasterKey(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i * 7)
	}
	hexKey := hex.EncodeToString(key)
	tests := []struct {
		name, in string
		wantErr  bool
	}{
		{"hex", hexKey, false},
		{"upper hex", strings.ToUpper(hexKey), false},
		{"hex with newline", hexKey + "\n", false},
		{"base64", "AAcOFRwjKjE4P0ZNVFtiaXB3foWMk5qhqK+2vcTL0tk=", false},
		{"raw base64", "AAcOFRwjKjE4P0ZNVFtiaXB3foWMk5qhqK+2vcTL0tk", false},
		{"url base64", "AAcOFRwjKjE4P0ZNVFtiaXB3foWMk5qhqK-2vcTL0tk=", false},
		{"empty", "", true},
		{"short hex", hexKey[:62], true},
		{"long hex", hexKey + "00", true},
		{"not hex", strings.Repeat("g", 64), true},
		{"base64 of 31 bytes", "AAcOFRwjKjE4P0ZNVFtiaXB3foWMk5qhqK+2vcTL0g==", true},
		{"passphrase", "correct horse battery staple", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := vault.ParseMasterKey(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseMasterKey(%q) succeeded; want an error", tt.in)
				}
				if tt.in != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.in)) {
					t.Errorf("error %q repeats the secret", err)
				}
				if !strings.Contains(err.Error(), "64 hexadecimal") {
					t.Errorf("error %q does not say what is expected", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, key) {
				t.Errorf("ParseMasterKey(%q) = %x, %v; want %x", tt.in, got, err, key)
			}
		})
	}
	k1, k2 := vault.GenerateMasterKey(), vault.GenerateMasterKey()
	if len(k1) != vault.MasterKeySize || bytes.Equal(k1, k2) {
		t.Errorf("GenerateMasterKey gave %x and %x", k1, k2)
	}
	if back, err := vault.ParseMasterKey(hex.EncodeToString(k1)); err != nil || !bytes.Equal(back, k1) {
		t.Errorf("generated key does not round-trip through hex: %v", err)
	}
}

// TestInitRace: two processes initialising one empty store at the same
// moment (two committers starting together) both succeed or one is told
// the vault exists, and whatever either writes the other reads.
func TestInitRace(t *testing.T) {
	for round := range 10 {
		store, err := dirstore.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		var vs [2]*vault.Vault
		var errs [2]error
		var wg sync.WaitGroup
		for k := range vs {
			wg.Go(func() { vs[k], errs[k] = vault.Init(t.Context(), store, testMaster) })
		}
		wg.Wait()
		for k := range vs {
			if errors.Is(errs[k], vault.ErrInitialized) {
				if vs[k], errs[k] = vault.Open(t.Context(), store, testMaster); errs[k] != nil {
					t.Fatalf("round %d: open after losing the race: %v", round, errs[k])
				}
			} else if errs[k] != nil {
				t.Fatalf("round %d: Init %d: %v", round, k, errs[k])
			}
		}
		res := write(t, vs[0], sqlPages(3, round, 16), vault.WriterOptions{})
		r := vs[1].NewReader(t.Context(), res.Chunks)
		n, err := io.Copy(io.Discard, r)
		r.Close()
		if err != nil || n != res.Size {
			t.Fatalf("round %d: the other vault read %d of %d bytes: %v", round, n, res.Size, err)
		}
		if _, err := vault.Open(t.Context(), store, testMaster); err != nil {
			t.Fatalf("round %d: a later Open: %v", round, err)
		}
	}
}
