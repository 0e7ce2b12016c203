package retry_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/retry"
	"github.com/cofferhq/coffer/pkg/blob/s3store"
	"github.com/cofferhq/coffer/pkg/miniotest"
)

// TestLocker: the decorator forwards Object Lock to a store that has it,
// answers a refusal to delete a locked object at once rather than trying
// again until it gives up, and says a directory cannot lock.
func TestLocker(t *testing.T) {
	ctx := t.Context()
	dir := wrap(t, newDir(t), fast)
	if _, err := dir.ObjectLock(ctx); !errors.Is(err, blob.ErrUnsupported) {
		t.Errorf("ObjectLock of a directory = %v; want ErrUnsupported", err)
	}
	if err := dir.Retain(ctx, "a", blob.Compliance, time.Now().Add(time.Hour)); !errors.Is(err, blob.ErrUnsupported) {
		t.Errorf("Retain in a directory = %v; want ErrUnsupported", err)
	}

	srv := miniotest.Start(t)
	s3, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint, Bucket: "locked", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		RootCAs: srv.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.MakeBucket(ctx, true); err != nil {
		t.Fatal(err)
	}
	s := wrap(t, s3, retry.Config{First: 50 * time.Millisecond, Max: time.Second, For: time.Minute})
	if ok, err := s.ObjectLock(ctx); err != nil || !ok {
		t.Fatalf("ObjectLock = %v, %v; want true", ok, err)
	}
	if err := s.Put(ctx, "k", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour)
	if err := s.Retain(ctx, "k", blob.Governance, until); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Retention(ctx, "k"); err != nil || got.Before(until) {
		t.Fatalf("Retention = %v, %v; want at least %v", got, err, until)
	}
	start := time.Now()
	err = s.Purge(ctx, "k")
	if !errors.Is(err, blob.ErrLocked) || strings.Contains(err.Error(), "gave up") {
		t.Fatalf("Purge of a locked object = %v; want ErrLocked, answered", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Purge took %v: the refusal was tried again", d)
	}
}
