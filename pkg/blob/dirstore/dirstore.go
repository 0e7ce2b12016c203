package dirstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/internal/exact"
)

const (
	// dirPerm is the mode of the directories the store creates; files are
	// created by os.CreateTemp, mode 0600.
	dirPerm = 0o700
	// copyBufSize is the write size for Put: large enough that a 4 MiB
	// chunk is a handful of system calls.
	copyBufSize = 512 << 10
)

// Store is a [blob.Store] in a local directory. Create one with [New].
type Store struct {
	root    string
	bufPool sync.Pool // of *[]byte, copyBufSize long
}

var (
	_ blob.Store   = (*Store)(nil)
	_ blob.Creator = (*Store)(nil)
)

// New returns a Store rooted at dir, creating dir (mode 0700) if it does not
// exist. Files are created with mode 0600.
func New(dir string) (*Store, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open directory store %s: %w", dir, err)
	}
	if err := os.MkdirAll(root, dirPerm); err != nil {
		return nil, fmt.Errorf("open directory store: %w", err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("open directory store: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open directory store: %s is not a directory", root)
	}
	s := &Store{root: root}
	s.bufPool.New = func() any {
		b := make([]byte, copyBufSize)
		return &b
	}
	return s, nil
}

// Root returns the absolute path of the store's directory.
func (s *Store) Root() string { return s.root }

// path returns the file path of key, which must be valid.
func (s *Store) path(key string) (string, error) {
	if err := blob.ValidateKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Put implements [blob.Store].
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := s.put(ctx, key, r, size, false); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// Create implements [blob.Creator]: the object's file is written aside,
// then linked to its name, which fails if the name is taken. It needs a
// file system with hard links (any local one; not FAT).
func (s *Store) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := s.put(ctx, key, r, size, true); err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	return nil
}

// put writes the object into a temporary file and moves it to its name:
// renamed over any object there, or, if exclusive, linked only if there is
// none.
func (s *Store) put(ctx context.Context, key string, r io.Reader, size int64, exclusive bool) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("negative size %d", size)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := s.mkdirs(dir); err != nil {
		return err
	}
	tmp, err := s.writeTemp(ctx, dir, r, size)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		os.Remove(tmp)
		return err
	}
	if exclusive {
		err = os.Link(tmp, p)
		os.Remove(tmp)
		if errors.Is(err, fs.ErrExist) {
			if fi, serr := os.Lstat(p); serr == nil && !fi.IsDir() {
				return blob.ErrExist
			}
		}
	} else if err = os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
	}
	if err != nil {
		return err
	}
	return syncDir(dir)
}

// writeTemp writes exactly size bytes from r into a new temporary file in
// dir, synced and closed, and returns its path. On failure it leaves no
// file.
func (s *Store) writeTemp(ctx context.Context, dir string, r io.Reader, size int64) (_ string, err error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bp := s.bufPool.Get().(*[]byte)
	// Hide the file's ReadFrom so that CopyBuffer uses our larger buffer.
	_, err = io.CopyBuffer(struct{ io.Writer }{f}, exact.NewReader(ctx, r, size), *bp)
	s.bufPool.Put(bp)
	if err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return tmp, nil
}

// mkdirs creates dir and any missing parents below the root, syncing each
// parent whose entries changed so that the new directories survive a crash.
func (s *Store) mkdirs(dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	rel, err := filepath.Rel(s.root, dir)
	if err != nil {
		return err
	}
	cur := s.root
	for part := range strings.SplitSeq(rel, string(filepath.Separator)) {
		parent := cur
		cur = filepath.Join(cur, part)
		err := os.Mkdir(cur, dirPerm)
		switch {
		case err == nil:
			if err := syncDir(parent); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
			fi, serr := os.Stat(cur)
			if serr != nil {
				return serr
			}
			if !fi.IsDir() {
				return fmt.Errorf("%s is an object, so it cannot also be a key prefix", filepath.ToSlash(mustRel(s.root, cur)))
			}
		default:
			return err
		}
	}
	return nil
}

func mustRel(root, p string) string {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return p
	}
	return rel
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// isNotExist reports whether err from a file operation means that no object
// is stored at the path: it is missing, or a path element is a file.
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// Get implements [blob.Store].
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	f, err := os.Open(p)
	if isNotExist(err) {
		return nil, fmt.Errorf("get %s: %w", key, blob.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, blob.ErrNotExist)
	}
	return &fileReader{ctx: ctx, f: f, key: key}, nil
}

// fileReader reads an object's file, failing once ctx is done.
type fileReader struct {
	ctx context.Context
	f   *os.File
	key string
}

func (r *fileReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", r.key, err)
	}
	return r.f.Read(p)
}

// WriteTo lets io.Copy and io.ReadAll-like callers skip an intermediate
// buffer; it still checks ctx before starting.
func (r *fileReader) WriteTo(w io.Writer) (int64, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", r.key, err)
	}
	return r.f.WriteTo(w)
}

func (r *fileReader) Close() error { return r.f.Close() }

// GetRange implements [blob.Store]. The open file keeps the version it
// was opened on, since Put renames a new file over the old one.
func (s *Store) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := s.getRange(ctx, key, off, length)
	if err != nil {
		return nil, fmt.Errorf("get %s range %d+%d: %w", key, off, length, err)
	}
	return rc, nil
}

func (s *Store) getRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	if err := blob.CheckRange(off, length); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if isNotExist(err) {
		return nil, blob.ErrNotExist
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, blob.ErrNotExist
	}
	if size := fi.Size(); off > size || length > size-off {
		f.Close()
		return nil, fmt.Errorf("%w: object is %d bytes", blob.ErrRange, size)
	}
	// The section stops at the range's end; exact turns a file that ends
	// sooner (truncated behind the store's back) into an error.
	r := exact.NewReader(ctx, io.NewSectionReader(f, off, length), length)
	return &rangeReader{r: r, f: f, key: key}, nil
}

// rangeReader reads a range of an object's file, failing if the file ends
// before the range does or once ctx is done.
type rangeReader struct {
	r   *exact.Reader
	f   *os.File
	key string
}

func (r *rangeReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("read %s: %w", r.key, err)
	}
	return n, err
}

func (r *rangeReader) Close() error { return r.f.Close() }

// Stat implements [blob.Store].
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	p, err := s.path(key)
	if err != nil {
		return blob.Info{}, fmt.Errorf("stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	fi, err := os.Stat(p)
	if isNotExist(err) || (err == nil && !fi.Mode().IsRegular()) {
		return blob.Info{}, fmt.Errorf("stat %s: %w", key, blob.ErrNotExist)
	}
	if err != nil {
		return blob.Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return blob.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete implements [blob.Store].
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	fi, err := os.Lstat(p)
	if isNotExist(err) || (err == nil && fi.IsDir()) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := os.Remove(p); err != nil && !isNotExist(err) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// List implements [blob.Store]. It walks only the directories that can hold
// keys with the prefix, and visits each directory's entries in an order that
// yields keys in lexical order without collecting them first: a
// subdirectory "a" sorts as "a/", the common start of all its keys.
func (s *Store) List(ctx context.Context, prefix string, fn func(blob.Info) error) error {
	if err := blob.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if err := s.list(ctx, "", prefix, fn); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	return nil
}

func (s *Store) list(ctx context.Context, dirKey, prefix string, fn func(blob.Info) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(s.root, filepath.FromSlash(dirKey)))
	if err != nil {
		if isNotExist(err) {
			return nil // removed while we walked
		}
		return err
	}
	type item struct {
		sortKey string
		key     string
		entry   fs.DirEntry
	}
	items := make([]item, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		key := dirKey + name
		if blob.ValidateKey(key) != nil {
			continue // temporary files and foreign names
		}
		if e.IsDir() {
			sub := key + "/"
			if !strings.HasPrefix(sub, prefix) && !strings.HasPrefix(prefix, sub) {
				continue
			}
			items = append(items, item{sortKey: sub, key: sub, entry: e})
			continue
		}
		if !e.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
			continue
		}
		items = append(items, item{sortKey: key, key: key, entry: e})
	}
	slices.SortFunc(items, func(a, b item) int { return cmp.Compare(a.sortKey, b.sortKey) })
	for _, it := range items {
		if it.entry.IsDir() {
			if err := s.list(ctx, it.key, prefix, fn); err != nil {
				return err
			}
			continue
		}
		fi, err := it.entry.Info()
		if isNotExist(err) {
			continue // deleted while we walked
		}
		if err != nil {
			return err
		}
		if err := fn(blob.Info{Key: it.key, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}
