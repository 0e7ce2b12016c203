package vault

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/blob/dirstore"
)

// TestCompressProbe: compression is tried on every chunk until probeRun
// in a row do not shrink, then on one in probeEvery, and on every chunk
// again once one shrinks.
func TestCompressProbe(t *testing.T) {
	var p compressProbe
	tried := func(n int, shrinks bool) int {
		k := 0
		for range n {
			if p.try() {
				k++
				p.result(shrinks)
			}
		}
		return k
	}
	if k := tried(probeRun, false); k != probeRun {
		t.Fatalf("tried %d of the first %d chunks; want all", k, probeRun)
	}
	if k := tried(10*probeEvery, false); k != 10 {
		t.Errorf("incompressible stream: tried %d of %d chunks; want 10", k, 10*probeEvery)
	}
	// a sampled chunk that shrinks brings compression back for every chunk
	for !p.try() {
	}
	p.result(true)
	if k := tried(5, true); k != 5 {
		t.Errorf("after a chunk shrank: tried %d of 5; want all", k)
	}
}

// TestChunkFlags reseals a stored zstd chunk, under the vault's own key
// (so that it authenticates), with each value of the flags byte: a reader
// decodes what the flags say, and refuses, as corrupt and naming the
// chunk, flags it does not know or that name two compressions.
func TestChunkFlags(t *testing.T) {
	store, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, err := Init(t.Context(), store, bytes.Repeat([]byte{7}, MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	w := v.NewWriter(t.Context(), WriterOptions{PackSize: 1})
	data := []byte(strings.Repeat("a row of a table that compresses well; ", 4000))
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	id := w.Result().Chunks[0].ID
	loc, ok := v.Locate(id)
	if !ok {
		t.Fatalf("chunk %s not in the index", id)
	}
	rc, err := store.Get(t.Context(), loc.Key)
	if err != nil {
		t.Fatal(err)
	}
	pack, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	sealed := pack[loc.Offset : loc.Offset+loc.Length]
	name := "chunk/" + id
	payload, flags, err := v.open(slices.Clone(sealed), kindChunk, name)
	if err != nil || flags != flagZstd {
		t.Fatalf("stored chunk: flags %#x, %v; want zstd", flags, err)
	}
	reseal := func(t *testing.T, flags byte) {
		t.Helper()
		out, _ := sealTo(make([]byte, 0, len(sealed)), v.keys.activeKey(), kindChunk, flags, payload, name, nil)
		p := slices.Clone(pack)
		copy(p[loc.Offset:loc.Offset+loc.Length], out)
		if err := store.Put(t.Context(), loc.Key, bytes.NewReader(p), int64(len(p))); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		flags byte
		want  string // in the error; empty: the chunk reads
	}{
		{flagZstd, ""},
		{flagZstd | flagS2, "name two compressions"},
		{flagS2, "decompress s2"},
		{0, "content does not match its id"},
		{1 << 2, "unknown flags"},
		{flagZstd | 1<<7, "unknown flags"},
	} {
		t.Run(fmt.Sprintf("%#x", tt.flags), func(t *testing.T) {
			reseal(t, tt.flags)
			err := v.VerifyChunk(t.Context(), id)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("VerifyChunk = %v; want nil", err)
				}
				return
			}
			var ce *ChunkError
			if !errors.As(err, &ce) || ce.ID != id || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("VerifyChunk = %v; want chunk %s corrupt: %s", err, id, tt.want)
			}
		})
	}
}

// TestManifestFlags: manifests and indexes are compressed with zstd only;
// a sealed one claiming s2 is refused.
func TestManifestFlags(t *testing.T) {
	store, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, err := Init(t.Context(), store, bytes.Repeat([]byte{7}, MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	for _, flags := range []byte{0, flagZstd, flagS2} {
		sealed, _ := sealTo(make([]byte, 0, 64), v.keys.activeKey(), kindManifest, flags, []byte("{}"), "manifest/m", nil)
		_, got, err := v.open(sealed, kindManifest, "manifest/m")
		if flags == flagS2 {
			if err == nil || !strings.Contains(err.Error(), "unknown flags") {
				t.Errorf("manifest sealed with the s2 flag: %v; want unknown flags", err)
			}
			continue
		}
		if err != nil || got != flags {
			t.Errorf("manifest sealed with flags %#x: flags %#x, %v", flags, got, err)
		}
	}
}
