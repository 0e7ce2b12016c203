package vault

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/blob/dirstore"
)

// The fuzz targets of the decoders of what the vault reads from its store:
// sealed chunks, manifests and drafts, index objects, condemned generations
// and key records. Anyone who can write to the store can put any bytes
// there; the vault must refuse them with an error, never panic, never
// allocate what a header claims, and never return anything but what was
// sealed.

var fuzzMaster = bytes.Repeat([]byte{0x5a}, MasterKeySize)

// fuzzVault returns a new vault on a directory, for a fuzz target's seeds
// and inputs.
func fuzzVault(f *testing.F) *Vault {
	f.Helper()
	store, err := dirstore.New(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	v, err := Init(f.Context(), store, fuzzMaster)
	if err != nil {
		f.Fatal(err)
	}
	return v
}

// sealChunk seals plain as the vault would store it, compressed as comp
// says (0 none, 1 zstd, 2 s2), and returns its id and the sealed object.
func sealChunk(v *Vault, plain []byte, comp byte) (string, []byte) {
	sum := v.chunkID(v.idHasher.Clone(), plain)
	id := hex.EncodeToString(sum[:])
	payload, flags := plain, byte(0)
	switch comp % 3 {
	case 1:
		payload, flags = v.compress(Zstd, nil, plain)
	case 2:
		payload, flags = v.compress(S2, nil, plain)
	}
	sealed, _ := sealTo(make([]byte, 0, len(payload)+sealOverhead), v.keys.activeKey(), kindChunk, flags, payload, "chunk/"+id, nil)
	return id, sealed
}

// FuzzSealedChunk seals a chunk, then opens it intact, with one byte
// altered, cut short, and replaced by other bytes: only the intact chunk
// opens, and to exactly its plaintext; everything else fails as corrupt.
func FuzzSealedChunk(f *testing.F) {
	v := fuzzVault(f)
	f.Add([]byte("a chunk"), byte(0), uint32(0), byte(1), []byte(nil))
	f.Add(bytes.Repeat([]byte("compresses well "), 100), byte(1), uint32(1), byte(0x80), []byte{sealFormat})
	f.Add(bytes.Repeat([]byte{0}, 4096), byte(2), uint32(40), byte(0xff), make([]byte, sealOverhead))
	_, other := sealChunk(v, []byte("another chunk"), 1)
	f.Add([]byte("x"), byte(1), uint32(1<<31), byte(2), other)
	f.Fuzz(func(t *testing.T, plain []byte, comp byte, pos uint32, xor byte, garbage []byte) {
		// a chunk of any size seals alike: large ones only slow the search
		if len(plain) == 0 || len(plain) > 64<<10 {
			return
		}
		id, sealed := sealChunk(v, plain, comp)
		open := func(raw []byte, wantSize, storedSize int64) ([]byte, error) {
			return v.openSealedChunk(id, wantSize, storedSize, &chunkBufs{raw: bytes.Clone(raw)})
		}
		got, err := open(sealed, int64(len(plain)), int64(len(sealed)))
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("intact chunk: got %d bytes, %v; want its %d bytes", len(got), err, len(plain))
		}
		bad := func(what string, raw []byte) {
			t.Helper()
			got, err := open(raw, -1, 0)
			if err == nil {
				t.Fatalf("%s: opened to %d bytes; want an error", what, len(got))
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: %v; want an error matching ErrCorrupt", what, err)
			}
		}
		flipped := bytes.Clone(sealed)
		flipped[int(pos%uint32(len(flipped)))] ^= max(xor, 1)
		bad("one byte altered", flipped)
		bad("cut short", sealed[:int(pos%uint32(len(sealed)))])
		if !bytes.Equal(garbage, sealed) {
			bad("other bytes", garbage)
		}
	})
}

// FuzzManifest seals arbitrary bytes as a manifest, so that they pass
// authentication as a bug of a writer's would, and decodes them: a
// manifest that decodes holds the id it is stored under, its streams cut
// its chunks exactly, and it stores and decodes again to the same
// manifest.
func FuzzManifest(f *testing.F) {
	v := fuzzVault(f)
	seal := func(payload []byte, zstd bool, name string) []byte {
		flags := byte(0)
		if zstd {
			payload, flags = v.enc.EncodeAll(payload, nil), flagZstd
		}
		sealed, _ := sealTo(make([]byte, 0, len(payload)+sealOverhead), v.keys.activeKey(), kindManifest, flags, payload, name, nil)
		return sealed
	}
	id := strings.Repeat("ab", 32)
	m := Manifest{ID: "rp1", CreatedAt: time.Date(2026, 12, 1, 2, 3, 4, 5, time.UTC), Size: 30, Checksum: "c",
		Chunks:  []ChunkRef{{ID: id, Size: 10, StoredSize: 38}, {ID: id, Size: 20, StoredSize: 48}},
		Stripes: []Stripe{{Chunks: 1, Size: 10, Checksum: "a"}, {Chunks: 1, Size: 20, Checksum: "b"}},
		Meta:    json.RawMessage(`{"type":"full"}`)}
	one, _ := json.Marshal(m)
	f.Add(one, false)
	f.Add(one, true)
	f.Add([]byte(`{"id":"rp1","chunks":[],"stripes":[{"chunks":1},{"chunks":-1}]}`), false)
	f.Add([]byte(`{"id":"rp1","stripes":[{"chunks":1},{"chunks":9223372036854775807}]}`), false)
	f.Add([]byte(`{"id":"rp1","meta": { "a" : [1, 2] } }`), true)
	f.Add([]byte(`null`), false)
	f.Fuzz(func(t *testing.T, payload []byte, zstd bool) {
		m, err := v.decodeManifest(seal(payload, zstd, manifestName("rp1")), manifestName("rp1"), "rp1")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode: %v; want an error matching ErrCorrupt", err)
			}
			return
		}
		if m.ID != "rp1" {
			t.Fatalf("decoded manifest %q from the object of rp1", m.ID)
		}
		n := 0
		for _, s := range m.Streams() {
			n += len(s.Chunks)
		}
		if n != len(m.Chunks) {
			t.Fatalf("streams hold %d chunks; the manifest %d", n, len(m.Chunks))
		}
		again, err := json.Marshal(m)
		if err != nil {
			return // a Meta json.Marshal refuses: nothing to compare
		}
		m2, err := v.decodeManifest(seal(again, !zstd, manifestName("rp1")), manifestName("rp1"), "rp1")
		if err != nil {
			t.Fatalf("a decoded manifest, stored again, does not decode: %v", err)
		}
		if again2, _ := json.Marshal(m2); !bytes.Equal(again, again2) {
			t.Fatalf("stored again, decodes to\n%s\nwant\n%s", again2, again)
		}
		// under another name it never opens
		if _, err := v.decodeManifest(seal(payload, zstd, manifestName("rp1")), draftName("rp1"), "rp1"); err == nil {
			t.Fatal("a manifest opened as a draft")
		}
	})
}

// FuzzDecodeIndex decodes arbitrary bytes as an index object's payload:
// what decodes encodes back to the same bytes, and every chunk it lists
// lies within its pack.
func FuzzDecodeIndex(f *testing.F) {
	var id [32]byte
	id[0] = 7
	packs := []packInfo{
		{id: strings.Repeat("0f", 32), size: 200, entries: []packEntry{
			{id: id, offset: 0, length: sealOverhead + 10, size: 10},
			{id: id, offset: 100, length: sealOverhead + 50, size: 60}}},
		{id: strings.Repeat("f0", 32), size: 0},
	}
	f.Add(encodeIndex(packs))
	f.Add(encodeIndex(nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(append(encodeIndex(packs[1:]), 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		packs, err := decodeIndex(b)
		if err != nil {
			return
		}
		if got := encodeIndex(packs); !bytes.Equal(got, b) {
			t.Fatalf("decoded index encodes to %x; want %x", got, b)
		}
		for _, p := range packs {
			for _, e := range p.entries {
				if int64(e.offset)+int64(e.length) > p.size {
					t.Fatalf("pack %s of %d bytes lists a chunk at %d+%d", p.id, p.size, e.offset, e.length)
				}
			}
		}
	})
}

// FuzzDecodeGeneration decodes arbitrary bytes as a condemned
// generation's payload: what decodes encodes back to the same bytes.
func FuzzDecodeGeneration(f *testing.F) {
	var id [32]byte
	id[31] = 1
	g := &generation{
		locs:     []condemnedLoc{{id: id}, {id: id, pack: strings.Repeat("ab", 32)}, {id: [32]byte{}, pack: strings.Repeat("ab", 32)}},
		unlisted: []string{strings.Repeat("cd", 32)},
	}
	f.Add(encodeGeneration(g))
	f.Add(encodeGeneration(&generation{}))
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0})
	f.Add(append(encodeGeneration(g), 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		locs, unlisted, err := decodeGeneration(b)
		if err != nil {
			return
		}
		if got := encodeGeneration(&generation{locs: locs, unlisted: unlisted}); !bytes.Equal(got, b) {
			t.Fatalf("decoded generation encodes to %x; want %x", got, b)
		}
	})
}

// FuzzKeyRecord opens arbitrary bytes as the key record of the vault's
// primary key: a record opens only to the key that was sealed, whatever
// else in it changed.
func FuzzKeyRecord(f *testing.F) {
	// the same in every fuzzing process, each of which runs this anew
	want := newPrimaryKeySecret(fuzzMaster)
	want.Key = deriveKey("coffer vault fuzz: primary key", fuzzMaster)
	want.Created = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	rec, err := sealKeyRecord(fuzzMaster, want)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rec)
	var compact bytes.Buffer
	if err := json.Compact(&compact, rec); err != nil {
		f.Fatal(err)
	}
	f.Add(compact.Bytes())
	f.Add(bytes.Replace(rec, []byte(`"format": 1`), []byte(`"format": 2`), 1))
	f.Add([]byte(`{"format":1,"id":"` + want.ID + `"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := openKeyRecord(fuzzMaster, want.ID, raw)
		if err != nil {
			return
		}
		if !got.Created.Equal(want.Created) || got.ID != want.ID || got.Seq != want.Seq || !bytes.Equal(got.Key, want.Key) {
			t.Fatalf("record opened to %+v; want %+v", got, want)
		}
		if _, err := newVaultKey(got); err != nil {
			t.Fatalf("the sealed key is refused: %v", err)
		}
	})
}
