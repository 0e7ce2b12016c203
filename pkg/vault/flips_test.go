package vault_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/vault"
)

var (
	flipCount = flag.Int("flips", 1000, "single-byte flips TestThousandFlips makes (200 with -short)")
	flipSeed  = flag.Uint64("flips.seed", 0, "TestThousandFlips's random seed (0: from the clock, logged)")
)

// flipTarget is an object of the vault a flip may land in, and the range
// of its bytes that holds what the flip is meant to damage.
type flipTarget struct {
	kind string // "chunk", "manifest" or "key"
	// name is how a report must name the damage: the chunk's id, the
	// manifest's id, the key record's id
	name     string
	key      string // the object in the store
	off, len int64  // the bytes of that object that belong to name
}

// TestThousandFlips flips one byte at a time, at random positions in the
// sealed chunks (inside their packs), the manifests and the key records of
// a vault with three recovery points sealed under two vault keys. After
// each flip it restores every recovery point from a vault opened anew, as
// a restore does, and runs a full check. Every flip must be detected by
// both, by name (the chunk, manifest or key record it hit), and no restore
// may ever return a byte that differs from what was backed up. Then the
// byte is put back.
func TestThousandFlips(t *testing.T) {
	n := *flipCount
	if testing.Short() && n > 200 {
		n = 200
	}
	seed := *flipSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("%d flips, seed %d (-flips.seed to repeat)", n, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ctx := t.Context()

	store := newDirStore(t)
	v := initVault(t, store)
	base := sqlPages(61, 0, 384)
	streams := map[string][]byte{"rp-a": base}
	// rp-b shares most of rp-a's chunks; rp-b and rp-c are sealed under a
	// second vault key
	changed := slices.Clone(base)
	for _, p := range []int{5, 100, 250, 383} {
		copy(changed[p*8192:(p+1)*8192], sqlPages(62, p, 1))
	}
	streams["rp-b"] = changed
	streams["rp-c"] = sqlPages(63, 0, 256)
	refs := map[string][]vault.ChunkRef{}
	refs["rp-a"] = write(t, v, streams["rp-a"], vault.WriterOptions{PackSize: 1 << 20}).Chunks
	if _, err := v.AddKey(ctx, testMaster); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"rp-b", "rp-c"} {
		refs[id] = write(t, v, streams[id], vault.WriterOptions{PackSize: 1 << 20}).Chunks
	}
	ids := []string{"rp-a", "rp-b", "rp-c"}
	for _, id := range ids {
		m := &vault.Manifest{Size: int64(len(streams[id])), Chunks: refs[id]}
		if err := v.PutManifest(ctx, id, m); err != nil {
			t.Fatal(err)
		}
	}

	targets := map[string][]flipTarget{}
	seen := map[string]bool{}
	for _, id := range ids {
		for _, c := range refs[id] {
			if seen[c.ID] {
				continue
			}
			seen[c.ID] = true
			loc, ok := v.Locate(c.ID)
			if !ok {
				t.Fatalf("chunk %s not located", c.ID)
			}
			targets["chunk"] = append(targets["chunk"], flipTarget{"chunk", c.ID, loc.Key, loc.Offset, loc.Length})
		}
	}
	for _, prefix := range []string{"manifests/", "keys/"} {
		err := store.List(ctx, prefix, func(i blob.Info) error {
			kind := map[string]string{"manifests/": "manifest", "keys/": "key"}[prefix]
			targets[kind] = append(targets[kind], flipTarget{kind, strings.TrimPrefix(i.Key, prefix), i.Key, 0, i.Size})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// about 24 chunks, by the vault's random key (its chunker's table):
	// 19 in one run
	if len(targets["manifest"]) != 3 || len(targets["key"]) != 2 || len(targets["chunk"]) < 12 {
		t.Fatalf("the vault holds %d chunks, %d manifests, %d key records; want at least 12, 3, 2",
			len(targets["chunk"]), len(targets["manifest"]), len(targets["key"]))
	}
	t.Logf("%d chunks in %d bytes of packs, %d manifests, %d key records", len(targets["chunk"]), sumLen(targets["chunk"]), len(targets["manifest"]), len(targets["key"]))

	kinds := []string{"chunk", "manifest", "key"}
	detected := map[string]int{}
	for i := range n {
		kind := kinds[rng.IntN(len(kinds))]
		tg := targets[kind][rng.IntN(len(targets[kind]))]
		pos := tg.off + rng.Int64N(tg.len)
		mask := byte(1 + rng.IntN(255))
		orig := flipByte(t, store, tg.key, pos, mask)
		what := func() string {
			return fmt.Sprintf("flip %d, %s %s (%s byte %d ^ %#02x)", i, kind, tg.name, tg.key, pos, mask)
		}

		// restore: the vault is opened anew, every recovery point read
		restoreSaw, checkSaw := false, false
		rv, err := vault.Open(ctx, store, testMaster)
		switch {
		case err != nil:
			if kind != "key" || !strings.Contains(err.Error(), tg.name) {
				t.Fatalf("%s: opening the vault failed without naming it: %v", what(), err)
			}
			// a restore and a check both open the vault first: both
			// stop here, naming the key record
			restoreSaw, checkSaw = true, true
		default:
			for _, id := range ids {
				got, err := restore(ctx, rv, id)
				if !bytes.HasPrefix(streams[id], got) {
					t.Fatalf("%s: restoring %s returned bytes that differ from the backup (%d bytes read, error %v)", what(), id, len(got), err)
				}
				if err == nil {
					if len(got) != len(streams[id]) {
						t.Fatalf("%s: restoring %s returned %d bytes of %d without an error", what(), id, len(got), len(streams[id]))
					}
					continue
				}
				if !errors.Is(err, vault.ErrCorrupt) || !strings.Contains(err.Error(), tg.name) {
					t.Fatalf("%s: restoring %s failed with an error that does not name the damage as corrupt: %v", what(), id, err)
				}
				restoreSaw = true
			}
			rep, err := rv.Check(ctx, vault.CheckOptions{Mode: vault.CheckFull})
			if err != nil {
				t.Fatalf("%s: check: %v", what(), err)
			}
			for _, d := range rep.Damaged {
				if d.Chunk == tg.name || d.Manifest == tg.name {
					checkSaw = true
				} else {
					t.Errorf("%s: check reports damage elsewhere: %+v", what(), d)
				}
			}
		}
		if !restoreSaw || !checkSaw {
			t.Fatalf("%s: not detected (by a restore: %v, by a full check: %v)", what(), restoreSaw, checkSaw)
		}
		detected[kind]++
		putBack(t, store, tg.key, pos, orig)
	}
	t.Logf("detected by a restore and by a full check, each naming what was hit, with no wrong byte returned: %d of %d flips (%d in chunks, %d in manifests, %d in key records)",
		detected["chunk"]+detected["manifest"]+detected["key"], n, detected["chunk"], detected["manifest"], detected["key"])

	// the vault is whole again
	rep, err := openVault(t, store).Check(ctx, vault.CheckOptions{Mode: vault.CheckFull})
	if err != nil || !rep.OK() {
		t.Fatalf("after the flips were undone: check %+v, %v", rep, err)
	}
}

// restore reads recovery point id the way a restore does: its manifest,
// then its chunks in order. It returns what it read before any error.
func restore(ctx context.Context, v *vault.Vault, id string) ([]byte, error) {
	m, err := v.GetManifest(ctx, id)
	if err != nil {
		return nil, err
	}
	r := v.NewReader(ctx, m.Chunks)
	defer r.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, r)
	return buf.Bytes(), err
}

// flipByte XORs the byte at pos of the object key with mask and returns
// the byte it was.
func flipByte(t *testing.T, store blob.Store, key string, pos int64, mask byte) byte {
	t.Helper()
	b := getRaw(t, store, key)
	orig := b[pos]
	b[pos] ^= mask
	putRaw(t, store, key, b)
	return orig
}

func putBack(t *testing.T, store blob.Store, key string, pos int64, orig byte) {
	t.Helper()
	b := getRaw(t, store, key)
	b[pos] = orig
	putRaw(t, store, key, b)
}

func sumLen(ts []flipTarget) int64 {
	var n int64
	for _, t := range ts {
		n += t.len
	}
	return n
}

// TestKeyRecordAltered makes the changes to a key record that a JSON
// reader alone would not notice, or would take for a wrong master key:
// each must be reported as damage to that record.
func TestKeyRecordAltered(t *testing.T) {
	ctx := t.Context()
	store := newDirStore(t)
	initVault(t, store)
	var key string
	store.List(ctx, "keys/", func(i blob.Info) error { key = i.Key; return nil })
	orig := getRaw(t, store, key)
	id := strings.TrimPrefix(key, "keys/")
	for _, tc := range []struct{ name, old, new string }{
		{"field name's case", `"format"`, `"Format"`},
		{"white space", "\n  \"id\"", "\n\t\"id\""},
		{"a final newline", "\n}", "\n}\n"},
		{"the master key's fingerprint", `"master_check": "`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := bytes.Index(orig, []byte(tc.old))
			if at < 0 {
				t.Fatalf("the record does not hold %q:\n%s", tc.old, orig)
			}
			altered := bytes.Replace(orig, []byte(tc.old), []byte(tc.new), 1)
			if tc.new == "" {
				// the fingerprint's first hex digit, changed
				altered = slices.Clone(orig)
				altered[at+len(tc.old)] ^= 1
			}
			putRaw(t, store, key, altered)
			_, err := vault.Open(ctx, store, testMaster)
			if !errors.Is(err, vault.ErrCorrupt) || errors.Is(err, vault.ErrWrongKey) || !strings.Contains(err.Error(), id) {
				t.Fatalf("Open: %v; want ErrCorrupt naming key record %s", err, id)
			}
		})
	}
	putRaw(t, store, key, orig)
	openVault(t, store)
}
