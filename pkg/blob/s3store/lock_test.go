package s3store_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/s3store"
	"github.com/cofferhq/coffer/pkg/miniotest"
)

// lockedStore returns a store in a new bucket with Object Lock, made by
// MakeBucket.
func lockedStore(t *testing.T, srv *miniotest.Server, bucket, prefix string) *s3store.Store {
	t.Helper()
	s := newStore(t, srv, bucket, prefix)
	if err := s.MakeBucket(t.Context(), true); err != nil {
		t.Fatalf("MakeBucket with object lock: %v", err)
	}
	return s
}

func put(t *testing.T, s blob.Store, key, data string) {
	t.Helper()
	if err := s.Put(t.Context(), key, bytes.NewReader([]byte(data)), int64(len(data))); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func TestMakeBucketObjectLock(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := t.Context()
	s := lockedStore(t, srv, "locked", "")
	if ok, err := s.ObjectLock(ctx); err != nil || !ok {
		t.Fatalf("ObjectLock of a bucket made with it = %v, %v; want true", ok, err)
	}
	// again: the bucket exists and has it
	if err := s.MakeBucket(ctx, true); err != nil {
		t.Fatalf("MakeBucket again: %v", err)
	}
	srv.MakeBucket(t, "plain")
	p := newStore(t, srv, "plain", "")
	if ok, err := p.ObjectLock(ctx); err != nil || ok {
		t.Fatalf("ObjectLock of a plain bucket = %v, %v; want false", ok, err)
	}
	if err := p.MakeBucket(ctx, true); err == nil {
		t.Fatal("MakeBucket with object lock accepted an existing bucket without it")
	}
	if err := p.MakeBucket(ctx, false); err != nil {
		t.Fatalf("MakeBucket without object lock on an existing bucket: %v", err)
	}
}

// TestLockedObjectSurvivesDelete: with the store's own credentials (the
// server's root, here), neither a delete, nor a purge, nor a delete of the
// version itself, even asking to bypass a governance retention, removes an
// object in compliance mode; Undelete brings it back whole.
func TestLockedObjectSurvivesDelete(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := t.Context()
	s := lockedStore(t, srv, "vault", "v1")
	put(t, s, "manifests/a", "recovery point a")
	put(t, s, "manifests/b", "recovery point b")
	if got, err := s.Retention(ctx, "manifests/a"); err != nil || !got.IsZero() {
		t.Fatalf("Retention before Retain = %v, %v; want zero", got, err)
	}
	until := time.Now().Add(time.Hour)
	if err := s.Retain(ctx, "manifests/a", blob.Compliance, until); err != nil {
		t.Fatalf("Retain: %v", err)
	}
	got, err := s.Retention(ctx, "manifests/a")
	if err != nil || got.Before(until) {
		t.Fatalf("Retention = %v, %v; want at least %v", got, err, until)
	}
	// never shortened; extended
	if err := s.Retain(ctx, "manifests/a", blob.Compliance, until.Add(-30*time.Minute)); err != nil {
		t.Fatalf("Retain to an earlier date: %v", err)
	}
	if again, _ := s.Retention(ctx, "manifests/a"); !again.Equal(got) {
		t.Fatalf("Retention after Retain to an earlier date = %v; want %v unchanged", again, got)
	}
	later := until.Add(time.Hour)
	if err := s.Retain(ctx, "manifests/a", blob.Compliance, later); err != nil {
		t.Fatalf("Retain later: %v", err)
	}
	if got, _ := s.Retention(ctx, "manifests/a"); got.Before(later) {
		t.Fatalf("Retention after extending = %v; want at least %v", got, later)
	}
	if err := s.Retain(ctx, "manifests/none", blob.Compliance, until); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("Retain of a missing object = %v; want ErrNotExist", err)
	}

	if err := s.Purge(ctx, "manifests/a"); !errors.Is(err, blob.ErrLocked) {
		t.Fatalf("Purge of a locked object = %v; want ErrLocked", err)
	}
	// a delete only hides it
	if err := s.Delete(ctx, "manifests/a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Stat(ctx, "manifests/a"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("Stat after Delete = %v; want ErrNotExist (a delete marker)", err)
	}
	client := srv.Client(t)
	var versions []string
	for oi := range client.ListObjectsIter(ctx, "vault", minio.ListObjectsOptions{Prefix: "v1/manifests/a", WithVersions: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		if !oi.IsDeleteMarker {
			versions = append(versions, oi.VersionID)
		}
	}
	if len(versions) != 1 {
		t.Fatalf("versions of the locked object: %v; want one", versions)
	}
	err = client.RemoveObject(ctx, "vault", "v1/manifests/a", minio.RemoveObjectOptions{VersionID: versions[0], GovernanceBypass: true})
	if err == nil {
		t.Fatal("the store deleted a version in compliance mode")
	}
	// an unlocked object is purged, versions and all
	if err := s.Delete(ctx, "manifests/b"); err != nil {
		t.Fatal(err)
	}
	back, err := s.Undelete(ctx, "manifests/")
	if err != nil || len(back) != 1 || back[0] != "manifests/a" {
		t.Fatalf("Undelete = %v, %v; want [manifests/a] (b is not kept by the store)", back, err)
	}
	rc, err := s.Get(ctx, "manifests/a")
	if err != nil {
		t.Fatalf("Get after Undelete: %v", err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(data) != "recovery point a" {
		t.Fatalf("Get after Undelete = %q, %v", data, err)
	}
	put(t, s, "manifests/b", "again")
	if err := s.Purge(ctx, "manifests/b"); err != nil {
		t.Fatalf("Purge of an unlocked object: %v", err)
	}
	n := 0
	for oi := range client.ListObjectsIter(ctx, "vault", minio.ListObjectsOptions{Prefix: "v1/manifests/b", WithVersions: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		n++
	}
	if n != 0 {
		t.Fatalf("%d versions or markers left after Purge; want 0", n)
	}
	if err := s.Purge(ctx, "manifests/none"); err != nil {
		t.Fatalf("Purge of nothing: %v", err)
	}
}

// TestRetentionPasses: once a short governance retention passes, a purge
// that was refused succeeds. The test polls; nothing bypasses the lock.
func TestRetentionPasses(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := t.Context()
	s := lockedStore(t, srv, "short", "")
	put(t, s, "packs/ab/abc", "pack")
	if err := s.Retain(ctx, "packs/ab/abc", blob.Governance, time.Now().Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, "packs/ab/abc"); !errors.Is(err, blob.ErrLocked) {
		t.Fatalf("Purge before the date = %v; want ErrLocked", err)
	}
	if _, err := s.Stat(ctx, "packs/ab/abc"); err != nil {
		t.Fatalf("a refused Purge lost the object: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.Purge(ctx, "packs/ab/abc")
		if err == nil {
			break
		}
		if !errors.Is(err, blob.ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("Purge after the date: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if _, err := s.Stat(ctx, "packs/ab/abc"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("Stat after Purge = %v; want ErrNotExist", err)
	}
}
