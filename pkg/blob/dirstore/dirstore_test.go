package dirstore_test

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/blobtest"
	"github.com/cofferhq/coffer/pkg/blob/dirstore"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := dirstore.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestStaysInRoot checks that keys that try to leave the root are refused
// before touching the file system, with a real file waiting outside.
func TestStaysInRoot(t *testing.T) {
	parent := t.TempDir()
	secret := filepath.Join(parent, "secret")
	if err := os.WriteFile(secret, []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := dirstore.New(filepath.Join(parent, "root"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, key := range []string{"../secret", "a/../../secret", secret, "/" + secret, "..\\secret"} {
		if _, err := s.Get(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Get(%q) error = %v; want blob.ErrInvalidKey", key, err)
		}
		if _, err := s.GetRange(ctx, key, 0, 1); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("GetRange(%q) error = %v; want blob.ErrInvalidKey", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Delete(%q) error = %v; want blob.ErrInvalidKey", key, err)
		}
		if err := s.Put(ctx, key, strings.NewReader("x"), 1); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Put(%q) error = %v; want blob.ErrInvalidKey", key, err)
		}
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != "outside" {
		t.Errorf("file outside the root changed: %q, %v", b, err)
	}
}

// TestGetRangeTruncated checks that a range whose file is truncated behind
// the store's back, after GetRange checked its size, fails to read rather
// than coming up short.
func TestGetRangeTruncated(t *testing.T) {
	root := t.TempDir()
	s, err := dirstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "k", strings.NewReader("0123456789"), 10); err != nil {
		t.Fatal(err)
	}
	rc, err := s.GetRange(t.Context(), "k", 2, 6)
	if err != nil {
		t.Fatalf("GetRange: %v", err)
	}
	defer rc.Close()
	if err := os.Truncate(filepath.Join(root, "k"), 5); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read of a range cut short: %q, error %v; want io.ErrUnexpectedEOF", got, err)
	}
}

// TestLayout checks the on-disk layout, which operators see, and that the
// temporary files of failed puts are gone.
func TestLayout(t *testing.T) {
	root := t.TempDir()
	s, err := dirstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Put(ctx, "chunks/ab/abc", strings.NewReader("data"), 4); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "chunks/ab/short", strings.NewReader("da"), 4); err == nil {
		t.Fatal("short Put succeeded")
	}
	b, err := os.ReadFile(filepath.Join(root, "chunks", "ab", "abc"))
	if err != nil || string(b) != "data" {
		t.Fatalf("object file: %q, %v; want %q", b, err, "data")
	}
	var files []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0] != "chunks/ab/abc" {
		t.Errorf("files under root = %q; want [chunks/ab/abc]", files)
	}
	fi, err := os.Stat(filepath.Join(root, "chunks", "ab", "abc"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("object mode = %v; want 0600", perm)
	}
}

// TestListSkipsForeign checks that files a key could not name, such as the
// temporary file of a crashed Put, are not listed.
func TestListSkipsForeign(t *testing.T) {
	root := t.TempDir()
	s, err := dirstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{".tmp-123", "a/.tmp-456", "a/ok"} {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	if err := s.List(t.Context(), "", func(i blob.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "a/ok" {
		t.Errorf("List = %q; want [a/ok]", keys)
	}
}

func TestNewOnFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := dirstore.New(f); err == nil {
		t.Error("New on a regular file succeeded; want an error")
	}
}
