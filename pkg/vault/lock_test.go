package vault_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/s3store"
	"github.com/cofferhq/coffer/pkg/miniotest"
	"github.com/cofferhq/coffer/pkg/vault"
)

var lockedBuckets atomic.Int64

// newLockedStore returns a store, with coffer's credentials, in a new
// bucket with Object Lock, below the prefix "coffer".
func newLockedStore(t *testing.T, srv *miniotest.Server) (*s3store.Store, string) {
	t.Helper()
	bucket := fmt.Sprintf("locked-%d", lockedBuckets.Add(1))
	s, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint, Bucket: bucket, Prefix: "coffer",
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, RootCAs: srv.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MakeBucket(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	return s, bucket
}

// lockedVault creates an immutable vault in store.
func lockedVault(t *testing.T, store blob.Store, mode blob.RetentionMode) *vault.Vault {
	t.Helper()
	initVault(t, store)
	if err := vault.EnableObjectLock(t.Context(), store, mode); err != nil {
		t.Fatalf("EnableObjectLock: %v", err)
	}
	v := openVault(t, store)
	if v.ObjectLock() != mode {
		t.Fatalf("ObjectLock() = %q; want %q", v.ObjectLock(), mode)
	}
	return v
}

// commit writes data as a recovery point id locked until until.
func commit(t *testing.T, v *vault.Vault, id string, data []byte, opts vault.WriterOptions, until time.Time) vault.Result {
	t.Helper()
	res := write(t, v, data, opts)
	if err := v.PutManifest(t.Context(), id, &vault.Manifest{Chunks: res.Chunks, Size: res.Size, Checksum: res.Checksum}); err != nil {
		t.Fatal(err)
	}
	if err := v.RetainManifest(t.Context(), id, until); err != nil {
		t.Fatalf("RetainManifest %s: %v", id, err)
	}
	return res
}

// packsOf returns the objects holding chunks.
func packsOf(t *testing.T, v *vault.Vault, chunks []vault.ChunkRef) []string {
	t.Helper()
	seen := map[string]bool{}
	var keys []string
	for _, c := range chunks {
		loc, ok := v.Locate(c.ID)
		if !ok {
			t.Fatalf("chunk %s not located", c.ID)
		}
		if !seen[loc.Key] {
			seen[loc.Key] = true
			keys = append(keys, loc.Key)
		}
	}
	return keys
}

func wantRetained(t *testing.T, l blob.Locker, key string, until time.Time) {
	t.Helper()
	got, err := l.Retention(t.Context(), key)
	if err != nil || got.Before(until) {
		t.Errorf("%s is locked until %v (%v); want at least %v", key, got, err, until)
	}
}

// TestImmutableVault: a recovery point in an immutable vault, its packs,
// the key records and the config are locked until it expires; with
// coffer's own credentials (the server's root, here), deletes are refused
// or only hide objects, which Recover brings back; a new recovery point
// that reuses chunks extends their packs' locks, and nothing shortens one.
func TestImmutableVault(t *testing.T) {
	srv := miniotest.Start(t)
	store, bucket := newLockedStore(t, srv)
	v := lockedVault(t, store, blob.Compliance)
	ctx := t.Context()
	vault.SetSmallChunks(v)
	first := sqlPages(41, 0, 2<<20/8192)
	until := time.Now().Add(time.Hour)
	a := commit(t, v, "a", first, vault.WriterOptions{PackSize: 256 << 10}, until)
	packsA := packsOf(t, v, a.Chunks)
	if len(packsA) < 2 {
		t.Fatalf("the stream is in %d packs; want several", len(packsA))
	}
	wantRetained(t, store, "manifests/a", until)
	for _, k := range packsA {
		wantRetained(t, store, k, until)
	}
	wantRetained(t, store, "config", until)
	var keys []string
	store.List(ctx, "keys/", func(i blob.Info) error { keys = append(keys, i.Key); return nil })
	for _, k := range keys {
		wantRetained(t, store, k, until)
	}

	// the vault's own deletes are refused
	if err := v.DeleteManifest(ctx, "a"); !errors.Is(err, blob.ErrLocked) {
		t.Fatalf("DeleteManifest of a locked recovery point = %v; want ErrLocked", err)
	}
	if err := store.Purge(ctx, packsA[0]); !errors.Is(err, blob.ErrLocked) {
		t.Fatalf("Purge of a locked pack = %v; want ErrLocked", err)
	}
	// a plain delete of each locked object, the version delete of the
	// manifest, even asking to bypass governance, then a delete of the
	// index objects, which are not locked
	for _, k := range append([]string{"manifests/a", "config"}, append(keys, packsA...)...) {
		if err := store.Delete(ctx, k); err != nil {
			t.Fatalf("Delete %s: %v", k, err)
		}
	}
	client := srv.Client(t)
	for oi := range client.ListObjectsIter(ctx, bucket, minio.ListObjectsOptions{Prefix: "coffer/manifests/a", WithVersions: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		if oi.IsDeleteMarker {
			continue
		}
		err := client.RemoveObject(ctx, bucket, oi.Key, minio.RemoveObjectOptions{VersionID: oi.VersionID, GovernanceBypass: true})
		if err == nil {
			t.Fatalf("the store deleted version %s of the locked manifest", oi.VersionID)
		}
	}
	var index []string
	store.List(ctx, "index/", func(i blob.Info) error { index = append(index, i.Key); return nil })
	for _, k := range index {
		if err := store.Purge(ctx, k); err != nil {
			t.Fatalf("Purge %s (not locked): %v", k, err)
		}
	}
	if _, err := vault.Open(ctx, store, testMaster); !errors.Is(err, vault.ErrNotInitialized) {
		t.Fatalf("Open with every key record hidden = %v; want ErrNotInitialized", err)
	}
	back, err := store.Undelete(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	r := openVault(t, store)
	rep, err := r.Recover(ctx)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	t.Logf("undeleted %d objects, then %d; listed %d packs again", len(back), len(rep.Undeleted), rep.Reindexed)
	if want := 2 + len(keys) + len(packsA); len(back) != want || rep.Reindexed != len(packsA) {
		t.Errorf("recovered %d objects and %d packs; want %d and %d", len(back), rep.Reindexed, want, len(packsA))
	}
	m, err := r.GetManifest(ctx, "a")
	if err != nil {
		t.Fatalf("GetManifest after Recover: %v", err)
	}
	if got, err := read(t, r, m.Chunks); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("the recovery point after Recover: %d bytes, %v; want it whole", len(got), err)
	}

	// a later recovery point reusing most chunks extends their packs
	vault.SetSmallChunks(r)
	later := time.Now().Add(3 * time.Hour)
	second := append(append([]byte(nil), first...), sqlPages(42, 0, 64)...)
	b := commit(t, r, "b", second, vault.WriterOptions{PackSize: 256 << 10}, later)
	if b.NewChunks >= len(b.Chunks)/2 {
		t.Fatalf("the second stream stored %d of %d chunks; want most deduplicated", b.NewChunks, len(b.Chunks))
	}
	for _, k := range packsOf(t, r, b.Chunks) {
		wantRetained(t, store, k, later)
	}
	// never shortened
	if err := r.RetainManifest(ctx, "b", until); err != nil {
		t.Fatal(err)
	}
	wantRetained(t, store, "manifests/b", later)
	for _, k := range packsOf(t, r, b.Chunks) {
		wantRetained(t, store, k, later)
	}
}

// TestImmutableCollect: garbage collection leaves the locked packs of a
// recovery point deleted when its lock passed, while they are still
// locked (a later recovery point that reused them extended their lock;
// the test extends it directly), keeps them condemned, and deletes them
// once their lock passes. Short governance retentions; nothing bypasses
// them.
func TestImmutableCollect(t *testing.T) {
	srv := miniotest.Start(t)
	store, _ := newLockedStore(t, srv)
	v := lockedVault(t, store, blob.Governance)
	ctx := t.Context()
	kept := commit(t, v, "kept", sqlPages(51, 0, 1<<20/8192), vault.WriterOptions{}, time.Now().Add(time.Hour))
	dropped := commit(t, v, "dropped", sqlPages(52, 0, 1<<20/8192), vault.WriterOptions{}, time.Now().Add(2*time.Second))
	packs := packsOf(t, v, dropped.Chunks)
	for _, k := range packs {
		if err := store.Retain(ctx, k, blob.Governance, time.Now().Add(8*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.DeleteManifest(ctx, "dropped"); !errors.Is(err, blob.ErrLocked) {
		t.Fatalf("DeleteManifest before its lock passed = %v; want ErrLocked", err)
	}
	poll(t, "the manifest's lock to pass", func() bool {
		err := v.DeleteManifest(ctx, "dropped")
		if err != nil && !errors.Is(err, blob.ErrLocked) {
			t.Fatal(err)
		}
		return err == nil
	})
	collect := func() vault.CollectStats {
		t.Helper()
		st, err := v.Collect(ctx, vault.CollectOptions{})
		if err != nil {
			t.Fatalf("Collect: %v", err)
		}
		return st
	}
	if st := collect(); st.Condemned != len(uniq(dropped.Chunks)) {
		t.Fatalf("first collection: %+v; want the %d chunks of the deleted point condemned", st, len(uniq(dropped.Chunks)))
	}
	st := collect()
	if st.Locked != len(packs) || st.Chunks != 0 || st.Processed != 1 {
		t.Fatalf("collection while the packs are locked: %+v; want %d packs left locked, nothing deleted", st, len(packs))
	}
	for _, k := range packs {
		if _, err := store.Stat(ctx, k); err != nil {
			t.Fatalf("locked pack %s: %v", k, err)
		}
	}
	if st := collect(); st.Condemned != len(uniq(dropped.Chunks)) {
		t.Fatalf("the collection after: %+v; want the locked garbage condemned again", st)
	}
	deleted := 0
	poll(t, "the packs' lock to pass and a collection to delete them", func() bool {
		st := collect()
		deleted += st.Deleted
		return deleted == len(packs)
	})
	for _, k := range packs {
		if _, err := store.Stat(ctx, k); !errors.Is(err, blob.ErrNotExist) {
			t.Errorf("pack %s after its lock passed and a collection: %v; want it deleted", k, err)
		}
	}
	if got, err := read(t, v, kept.Chunks); err != nil || !bytes.Equal(got, sqlPages(51, 0, 1<<20/8192)) {
		t.Errorf("the kept recovery point: %d bytes, %v", len(got), err)
	}
	if r, err := v.Check(ctx, vault.CheckOptions{Mode: vault.CheckFull}); err != nil || !r.OK() {
		t.Errorf("full check: %+v, %v", r, err)
	}
}

// TestImmutableCollectLockedPack: a locked pack holding chunks no
// recovery point needs beside ones a kept point needs is not repacked
// (that would only store the live chunks twice, since the pack cannot be
// deleted): its dead chunks stay condemned.
func TestImmutableCollectLockedPack(t *testing.T) {
	srv := miniotest.Start(t)
	store, _ := newLockedStore(t, srv)
	v := lockedVault(t, store, blob.Governance)
	ctx := t.Context()
	kept, dropped := sqlPages(61, 0, 1<<20/8192), sqlPages(62, 0, 1<<20/8192)
	// one writer, one pack: both streams' chunks
	both := write(t, v, append(append([]byte(nil), kept...), dropped...), vault.WriterOptions{PackSize: 16 << 20})
	if n := len(packsOf(t, v, both.Chunks)); n != 1 {
		t.Fatalf("the streams are in %d packs; want one", n)
	}
	k := commit(t, v, "kept", kept, vault.WriterOptions{}, time.Now().Add(time.Hour))
	if k.NewChunks > 2 {
		t.Fatalf("the kept stream stored %d chunks; want it deduplicated but for the seam", k.NewChunks)
	}
	packs := countObjects(t, store, "packs/")
	for i := range 3 {
		st, err := v.Collect(ctx, vault.CollectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && (st.Locked != 1 || st.Repacked != 0 || st.Chunks != 0 || st.Condemned == 0) {
			t.Errorf("collection %d: %+v; want the locked pack left as it is, its dead chunks condemned again", i+1, st)
		}
	}
	if n := countObjects(t, store, "packs/"); n != packs {
		t.Errorf("%d packs after collecting; want the %d there were", n, packs)
	}
	if got, err := read(t, v, k.Chunks); err != nil || !bytes.Equal(got, kept) {
		t.Errorf("the kept recovery point: %d bytes, %v", len(got), err)
	}
}

// TestImmutableConfig: a vault whose config says it is immutable is
// refused by a store that cannot lock, rather than written unlocked; a
// mode once set is not changed; a directory cannot be made immutable.
func TestImmutableConfig(t *testing.T) {
	ctx := t.Context()
	dir := newDirStore(t)
	initVault(t, dir)
	if err := vault.EnableObjectLock(ctx, dir, blob.Compliance); !errors.Is(err, blob.ErrUnsupported) {
		t.Errorf("EnableObjectLock in a directory = %v; want ErrUnsupported", err)
	}
	putRaw(t, dir, "config", []byte(`{"format":3,"chunking":"fastcdc-256k","object_lock":"COMPLIANCE"}`))
	if _, err := vault.Open(ctx, dir, testMaster); err == nil || !strings.Contains(err.Error(), "Object Lock") {
		t.Errorf("Open of an immutable vault in a directory = %v; want it refused", err)
	}
	srv := miniotest.Start(t)
	store, _ := newLockedStore(t, srv)
	if err := vault.EnableObjectLock(ctx, store, blob.Governance); !errors.Is(err, vault.ErrNotInitialized) {
		t.Errorf("EnableObjectLock with no vault = %v; want ErrNotInitialized", err)
	}
	lockedVault(t, store, blob.Governance)
	if err := vault.EnableObjectLock(ctx, store, blob.Governance); err != nil {
		t.Errorf("EnableObjectLock again, same mode: %v", err)
	}
	if err := vault.EnableObjectLock(ctx, store, blob.Compliance); err == nil {
		t.Error("EnableObjectLock changed the mode")
	}
	// a vault without a lock does nothing
	plain := initVault(t, newDirStore(t))
	if err := plain.RetainManifest(ctx, "none", time.Now()); err != nil {
		t.Errorf("RetainManifest without Object Lock: %v", err)
	}
}

// poll waits up to 30 s for cond.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(context.Cause(t.Context()))
		case <-time.After(250 * time.Millisecond):
		}
	}
}
