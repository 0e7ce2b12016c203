package vault_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/dirstore"
	"github.com/cofferhq/coffer/pkg/testproc"
	"github.com/cofferhq/coffer/pkg/vault"
)

// newMaster is the master key the rekey tests change to.
var newMaster = bytes.Repeat([]byte{0x17}, vault.MasterKeySize)

// errHalted is what haltStore answers once it has halted.
var errHalted = errors.New("halted: the process died here")

// haltStore is a process that dies after limit mutating calls (Put,
// Create, Delete): every later one fails and changes nothing. It records
// the keys the calls before changed.
type haltStore struct {
	blob.Store
	limit int
	// pause, if set, is called instead of failing the first call past
	// the limit: a process killed there
	pause func()
	// changed, if set, is told of each change made
	onChange func(key string)

	mu      sync.Mutex
	calls   int
	changed []string
}

func (h *haltStore) mutate(key string, fn func() error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.calls >= h.limit {
		if h.pause != nil {
			h.pause()
		}
		return errHalted
	}
	h.calls++
	err := fn()
	if err == nil {
		h.changed = append(h.changed, key)
		if h.onChange != nil {
			h.onChange(key)
		}
	}
	return err
}

func (h *haltStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return h.mutate(key, func() error { return h.Store.Put(ctx, key, r, size) })
}

func (h *haltStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return h.mutate(key, func() error { return blob.Create(ctx, h.Store, key, r, size) })
}

func (h *haltStore) Delete(ctx context.Context, key string) error {
	return h.mutate(key, func() error { return h.Store.Delete(ctx, key) })
}

var _ blob.Creator = (*haltStore)(nil)

// didChange reports whether a call before the halt changed key.
func (h *haltStore) didChange(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Contains(h.changed, key)
}

// copyStore copies every object of src into dst.
func copyStore(t *testing.T, dst, src blob.Store) {
	t.Helper()
	err := src.List(t.Context(), "", func(i blob.Info) error {
		putRaw(t, dst, i.Key, getRaw(t, src, i.Key))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// snapshot returns the hash of every object of store but the key records,
// staged or not.
func snapshot(t *testing.T, store blob.Store) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := store.List(t.Context(), "", func(i blob.Info) error {
		if !strings.HasPrefix(i.Key, "keys/") && !strings.HasPrefix(i.Key, "rekey/") {
			out[i.Key] = sha256.Sum256(getRaw(t, store, i.Key))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// keyFixture is a vault to rekey: its store, and the stream each of its
// recovery points holds.
type keyFixture struct {
	store  blob.Store
	points map[string][]byte
}

// newKeyFixture returns a vault with two vault keys and a recovery point
// sealed with each: one made by Init (or, given a testdata directory,
// one written by an earlier coffer, whose first key is derived from the
// master key), then a key added by AddKey.
func newKeyFixture(t *testing.T, fromTestdata string) keyFixture {
	t.Helper()
	f := keyFixture{store: newDirStore(t), points: map[string][]byte{}}
	var v *vault.Vault
	if fromTestdata != "" {
		dir := t.TempDir()
		if err := os.CopyFS(dir, os.DirFS(fromTestdata)); err != nil {
			t.Fatal(err)
		}
		old, err := dirstore.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		copyStore(t, f.store, old)
		v = openVault(t, f.store)
		f.points["v1-full"] = sqlPages(21, 0, 640)
	} else {
		v = initVault(t, f.store)
		f.addPoint(t, v, "first", sqlPages(31, 0, 48))
	}
	if _, err := v.AddKey(t.Context(), testMaster); err != nil {
		t.Fatal(err)
	}
	f.addPoint(t, v, "rotated", sqlPages(32, 0, 48))
	return f
}

func (f keyFixture) addPoint(t *testing.T, v *vault.Vault, id string, data []byte) {
	t.Helper()
	res := write(t, v, data, vault.WriterOptions{PackSize: 4 << 20})
	if err := v.PutManifest(t.Context(), id, &vault.Manifest{Chunks: res.Chunks, Size: res.Size, Checksum: res.Checksum}); err != nil {
		t.Fatal(err)
	}
	f.points[id] = data
}

// wantOpens checks that master opens store, that every recovery point
// reads back whole and that a full check finds nothing wrong, and that
// refused is refused with ErrWrongKey.
func (f keyFixture) wantOpens(t *testing.T, store blob.Store, master, refused []byte) {
	t.Helper()
	ctx := t.Context()
	if _, err := vault.Open(ctx, store, refused); !errors.Is(err, vault.ErrWrongKey) {
		t.Fatalf("Open with the master key that should be refused: %v; want ErrWrongKey", err)
	}
	v, err := vault.Open(ctx, store, master)
	if err != nil {
		t.Fatalf("Open with the master key that should open it: %v", err)
	}
	for id, want := range f.points {
		m, err := v.GetManifest(ctx, id)
		if err != nil {
			t.Fatalf("manifest %s: %v", id, err)
		}
		if got, err := read(t, v, m.Chunks); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("recovery point %s read back %d bytes (%v); want its %d", id, len(got), err, len(want))
		}
	}
	rep, err := v.Check(ctx, vault.CheckOptions{Mode: vault.CheckFull})
	if err != nil || !rep.OK() || rep.Manifests != len(f.points) {
		t.Fatalf("full check: %v, %+v; want %d sound recovery points", err, rep, len(f.points))
	}
}

// TestRekeyCrash rekeys a vault with a process that dies after each of
// the rekey's changes to the store in turn: whenever it dies, exactly one
// master key opens the vault, the old one until the rekey commits and the
// new one from then on, every recovery point reads back, and running the
// rekey again finishes it. Nothing but key records is rewritten. Both for
// a new vault and for one written by an earlier coffer.
func TestRekeyCrash(t *testing.T) {
	forEachBackend(t, func(t *testing.T, newStore newStoreFunc) {
		for _, tt := range []struct{ name, testdata string }{{"new", ""}, {"format1", v1Fixture}} {
			t.Run(tt.name, func(t *testing.T) {
				ctx := t.Context()
				f := newKeyFixture(t, tt.testdata)
				before := snapshot(t, f.store)
				for n := 0; ; n++ {
					store := newStore(t)
					copyStore(t, store, f.store)
					h := &haltStore{Store: store, limit: n}
					keys, err := vault.Rekey(ctx, h, testMaster, newMaster)
					if err == nil {
						if keys != 2 {
							t.Errorf("Rekey wrapped %d keys; want 2", keys)
						}
						f.wantOpens(t, store, newMaster, testMaster)
						t.Logf("%d changes to the store; a death after each of the first %d checked", h.calls, n)
						break
					}
					if !errors.Is(err, errHalted) {
						t.Fatalf("death after %d changes: Rekey: %v; want errHalted", n, err)
					}
					if h.didChange("rekey/commit") {
						f.wantOpens(t, store, newMaster, testMaster)
					} else {
						f.wantOpens(t, store, testMaster, newMaster)
					}
					// The operator runs the same command again.
					if keys, err := vault.Rekey(ctx, store, testMaster, newMaster); err != nil || keys != 2 {
						t.Fatalf("death after %d changes: Rekey again: %d keys, %v; want 2", n, keys, err)
					}
					f.wantOpens(t, store, newMaster, testMaster)
					if got := snapshot(t, store); !maps.Equal(got, before) {
						t.Fatalf("death after %d changes: objects other than key records changed", n)
					}
					var left []string
					store.List(ctx, "rekey/", func(i blob.Info) error { left = append(left, i.Key); return nil })
					if len(left) > 0 {
						t.Fatalf("death after %d changes: the rekey left %q", n, left)
					}
				}
			})
		}
	})
}

// TestRekey: a rekey done once does nothing when run again; the vault
// can be rekeyed back; a key added after it is wrapped by the new master
// key; a rekey with a key that opens nothing, or with the same key twice,
// is refused and changes nothing.
func TestRekey(t *testing.T) {
	ctx := t.Context()
	f := newKeyFixture(t, "")
	store := f.store
	wrong := bytes.Repeat([]byte{0x99}, vault.MasterKeySize)
	if _, err := vault.Rekey(ctx, store, wrong, newMaster); !errors.Is(err, vault.ErrWrongKey) {
		t.Errorf("Rekey with a wrong current key: %v; want ErrWrongKey", err)
	}
	if _, err := vault.Rekey(ctx, store, testMaster, testMaster); err == nil {
		t.Errorf("Rekey to the same key succeeded")
	}
	f.wantOpens(t, store, testMaster, newMaster)
	for range 2 {
		if n, err := vault.Rekey(ctx, store, testMaster, newMaster); err != nil || n != 2 {
			t.Fatalf("Rekey: %d, %v; want 2 keys", n, err)
		}
	}
	f.wantOpens(t, store, newMaster, testMaster)
	v, err := vault.Open(ctx, store, newMaster)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.AddKey(ctx, testMaster); !errors.Is(err, vault.ErrWrongKey) {
		t.Errorf("AddKey with the old master key: %v; want ErrWrongKey", err)
	}
	if _, err := v.AddKey(ctx, newMaster); err != nil {
		t.Fatal(err)
	}
	f.addPoint(t, v, "third", sqlPages(33, 0, 48))
	if n, err := vault.Rekey(ctx, store, newMaster, testMaster); err != nil || n != 3 {
		t.Fatalf("Rekey back: %d, %v; want 3 keys", n, err)
	}
	f.wantOpens(t, store, testMaster, newMaster)
}

// TestRekeyUnfinished: while a committed rekey is not
// finished, a third master key is refused by Open and by Rekey, and a
// key added with the new master key is kept when the rekey finishes.
func TestRekeyUnfinished(t *testing.T) {
	ctx := t.Context()
	f := newKeyFixture(t, "")
	store := f.store
	// die right after the commit: two staged records, then the marker
	h := &haltStore{Store: store, limit: 3}
	if _, err := vault.Rekey(ctx, h, testMaster, newMaster); !errors.Is(err, errHalted) || !h.didChange("rekey/commit") {
		t.Fatalf("Rekey dying after the commit: %v, changed %q", err, h.changed)
	}
	third := bytes.Repeat([]byte{0x99}, vault.MasterKeySize)
	if _, err := vault.Open(ctx, store, third); !errors.Is(err, vault.ErrWrongKey) {
		t.Errorf("Open with a third key: %v; want ErrWrongKey", err)
	}
	if _, err := vault.Rekey(ctx, store, third, newMaster); !errors.Is(err, vault.ErrWrongKey) {
		t.Errorf("Rekey from a third key: %v; want ErrWrongKey", err)
	}
	v, err := vault.Open(ctx, store, newMaster)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.AddKey(ctx, newMaster); err != nil {
		t.Fatalf("AddKey during the unfinished rekey: %v", err)
	}
	f.addPoint(t, v, "during", sqlPages(34, 0, 48))
	if n, err := vault.Rekey(ctx, store, testMaster, newMaster); err != nil || n != 3 {
		t.Fatalf("finishing Rekey: %d, %v; want 3 keys, 2 staged and the one added", n, err)
	}
	f.wantOpens(t, store, newMaster, testMaster)
}

// TestAddKeyCrash: a key rotation that dies before its one change leaves
// the vault with the keys it had; either way every recovery point reads.
func TestAddKeyCrash(t *testing.T) {
	ctx := t.Context()
	f := newKeyFixture(t, "")
	for n := range 2 {
		store := newDirStore(t)
		copyStore(t, store, f.store)
		h := &haltStore{Store: store, limit: n}
		v, err := vault.Open(ctx, h, testMaster)
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.AddKey(ctx, testMaster)
		if (err == nil) != (n == 1) {
			t.Fatalf("AddKey after %d changes allowed: %v", n, err)
		}
		f.wantOpens(t, store, testMaster, newMaster)
		material, err := openVault(t, store).KeyMaterial(ctx, testMaster)
		if err != nil {
			t.Fatal(err)
		}
		// the wrapping key, the chunk-id key, and three per vault key
		if keys := (len(material) - 2) / 3; keys != 2+n {
			t.Errorf("AddKey after %d changes allowed: the vault has %d keys; want %d", n, keys, 2+n)
		}
	}
}

// TestPrimaryKeyRandom: two vaults made with one master key have
// different keys: the same data gets other chunk ids.
func TestPrimaryKeyRandom(t *testing.T) {
	data := sqlPages(35, 0, 16)
	a := write(t, initVault(t, newDirStore(t)), data, vault.WriterOptions{})
	b := write(t, initVault(t, newDirStore(t)), data, vault.WriterOptions{})
	if a.Chunks[0].ID == b.Chunks[0].ID {
		t.Errorf("two vaults made with one master key name a chunk alike: their keys derive from it")
	}
}

// TestInitRaceBackends: Inits racing on one empty store all end with the
// same vault, on each backend: one key record, and what one writes every
// other reads.
func TestInitRaceBackends(t *testing.T) {
	forEachBackend(t, func(t *testing.T, newStore newStoreFunc) {
		for round := range 3 {
			store := newStore(t)
			const n = 4
			var vs [n]*vault.Vault
			var errs [n]error
			var wg sync.WaitGroup
			for k := range n {
				wg.Go(func() { vs[k], errs[k] = vault.Init(t.Context(), store, testMaster) })
			}
			wg.Wait()
			for k := range n {
				if errors.Is(errs[k], vault.ErrInitialized) {
					vs[k], errs[k] = vault.Open(t.Context(), store, testMaster)
				}
				if errs[k] != nil {
					t.Fatalf("round %d: Init %d: %v", round, k, errs[k])
				}
			}
			var records int
			store.List(t.Context(), "keys/", func(blob.Info) error { records++; return nil })
			if records != 1 {
				t.Fatalf("round %d: %d key records; want 1", round, records)
			}
			res := write(t, vs[0], sqlPages(36, round, 16), vault.WriterOptions{})
			for k := 1; k < n; k++ {
				if got, err := read(t, vs[k], res.Chunks); err != nil || int64(len(got)) != res.Size {
					t.Fatalf("round %d: vault %d read %d of %d bytes: %v", round, k, len(got), res.Size, err)
				}
			}
		}
	})
}

// TestKeyAddedElsewhere: a vault open in one process reads what another
// process sealed with a key it added since, and seals with that key from
// then on.
func TestKeyAddedElsewhere(t *testing.T) {
	ctx := t.Context()
	store := newDirStore(t)
	a := initVault(t, store)
	b := openVault(t, store)
	added, err := b.AddKey(ctx, testMaster)
	if err != nil {
		t.Fatal(err)
	}
	data := sqlPages(37, 0, 48)
	res := write(t, b, data, vault.WriterOptions{})
	if err := b.PutManifest(ctx, "b", &vault.Manifest{Chunks: res.Chunks, Size: res.Size, Checksum: res.Checksum}); err != nil {
		t.Fatal(err)
	}
	m, err := a.GetManifest(ctx, "b")
	if err != nil {
		t.Fatalf("the other process's manifest, sealed with the key it added: %v", err)
	}
	if got, err := read(t, a, m.Chunks); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v); want %d", len(got), err, len(data))
	}
	res = write(t, a, sqlPages(38, 0, 16), vault.WriterOptions{})
	if sealedWith := hex.EncodeToString(getChunk(t, a, store, res.Chunks[0].ID)[2:10]); sealedWith != added {
		t.Errorf("a new chunk is sealed with key %s; want the one added, %s", sealedWith, added)
	}
}

// TestRekeyKilled runs the rekey in a process of its own, killed with
// SIGKILL as it is about to make each of its changes in turn: the vault
// then opens with exactly one of the master keys, the new one once the
// rekey committed, and the same rekey run again finishes it.
func TestRekeyKilled(t *testing.T) {
	if dir := os.Getenv("COFFER_REKEY_KILL_DIR"); dir != "" {
		rekeyUntilKilled(t, dir, os.Getenv("COFFER_REKEY_KILL_AT"))
		return
	}
	ctx := t.Context()
	f := newKeyFixture(t, "")
	for n := 0; ; n++ {
		dir := t.TempDir()
		store, err := dirstore.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		copyStore(t, store, f.store)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestRekeyKilled$", "-test.count=1")
		cmd.Env = append(os.Environ(), "COFFER_REKEY_KILL_DIR="+dir, fmt.Sprintf("COFFER_REKEY_KILL_AT=%d", n))
		cmd.SysProcAttr = testproc.SysProcAttr()
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var changed []string
		killed := false
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			if key, ok := strings.CutPrefix(lines.Text(), "changed "); ok {
				changed = append(changed, key)
			}
			if lines.Text() == "about to change" {
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				killed = true
				break
			}
		}
		err = cmd.Wait()
		if !killed {
			if err != nil {
				t.Fatalf("the rekey process, to be killed after %d changes, failed: %v", n, err)
			}
			f.wantOpens(t, store, newMaster, testMaster)
			t.Logf("%d changes; the process killed before each checked", len(changed))
			return
		}
		if len(changed) != n {
			t.Fatalf("the process made %d changes before it was killed; want %d", len(changed), n)
		}
		if slices.Contains(changed, "rekey/commit") {
			f.wantOpens(t, store, newMaster, testMaster)
		} else {
			f.wantOpens(t, store, testMaster, newMaster)
		}
		if _, err := vault.Rekey(ctx, store, testMaster, newMaster); err != nil {
			t.Fatalf("killed after %d changes: Rekey again: %v", n, err)
		}
		f.wantOpens(t, store, newMaster, testMaster)
	}
}

// rekeyUntilKilled is TestRekeyKilled's child process: it rekeys the
// vault in dir, printing each change it makes, and when about to make
// the change after at many, says so and waits to be killed.
func rekeyUntilKilled(t *testing.T, dir, at string) {
	limit, err := strconv.Atoi(at)
	if err != nil {
		t.Fatal(err)
	}
	store, err := dirstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := &haltStore{Store: store, limit: limit,
		onChange: func(key string) { fmt.Printf("changed %s\n", key) },
		pause: func() {
			fmt.Println("about to change")
			<-t.Context().Done() // never: the parent kills this process
		},
	}
	if _, err := vault.Rekey(t.Context(), h, testMaster, newMaster); err != nil {
		t.Fatal(err)
	}
}
