package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cofferhq/coffer/pkg/blob"
)

// Run runs the conformance suite against the stores newStore returns.
// newStore is called once per subtest and must return an empty store that
// no other subtest uses; it should register any cleanup with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store)
	}{
		{"PutGet", testPutGet},
		{"Overwrite", testOverwrite},
		{"Missing", testMissing},
		{"GetRange", testGetRange},
		{"GetRangeCancel", testGetRangeCancel},
		{"Delete", testDelete},
		{"List", testList},
		{"ListStop", testListStop},
		{"ListEmpty", testListEmpty},
		{"Large", testLarge},
		{"ConcurrentPuts", testConcurrentPuts},
		{"AtomicOverwrite", testAtomicOverwrite},
		{"BadReader", testBadReader},
		{"ContextCancelled", testContextCancelled},
		{"CancelDuringPut", testCancelDuringPut},
		{"HostileKeys", testHostileKeys},
		{"Create", testCreate},
		{"CreateRace", testCreateRace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// randBytes returns n pseudo-random bytes that depend only on seed.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func put(t *testing.T, s blob.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

func get(t *testing.T, s blob.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b
}

// getRange reads length bytes at off of key, or returns the error of
// GetRange or of reading.
func getRange(ctx context.Context, s blob.Store, key string, off, length int64) ([]byte, error) {
	rc, err := s.GetRange(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func listKeys(t *testing.T, s blob.Store, prefix string) []string {
	t.Helper()
	var keys []string
	err := s.List(t.Context(), prefix, func(i blob.Info) error {
		keys = append(keys, i.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return keys
}

func wantNotExist(t *testing.T, s blob.Store, key string) {
	t.Helper()
	if rc, err := s.Get(t.Context(), key); !errors.Is(err, blob.ErrNotExist) {
		if err == nil {
			rc.Close()
		}
		t.Errorf("Get(%q) error = %v; want blob.ErrNotExist", key, err)
	}
	for _, length := range []int64{1, 0} {
		if rc, err := s.GetRange(t.Context(), key, 0, length); !errors.Is(err, blob.ErrNotExist) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("GetRange(%q, 0, %d) error = %v; want blob.ErrNotExist", key, length, err)
		}
	}
	if _, err := s.Stat(t.Context(), key); !errors.Is(err, blob.ErrNotExist) {
		t.Errorf("Stat(%q) error = %v; want blob.ErrNotExist", key, err)
	}
}

func testPutGet(t *testing.T, s blob.Store) {
	tests := []struct {
		name string
		key  string
		data []byte
	}{
		{"empty", "empty", nil},
		{"one byte", "one", []byte{0}},
		{"text", "greeting.txt", []byte("hello, coffer")},
		{"nested", "chunks/ab/abcdef0123", randBytes(1, 4096)},
		{"odd size", "a/b/c/d/e", randBytes(2, 64<<10+1)},
		{"unicode", "données/été-日本", []byte("x")},
		{"punctuation", "a b/c~d!e@f$g(h)i+j=k,l;m'n", []byte("y")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			put(t, s, tt.key, tt.data)
			if got := get(t, s, tt.key); !bytes.Equal(got, tt.data) {
				t.Errorf("Get(%q) = %d bytes differing from the %d put", tt.key, len(got), len(tt.data))
			}
			info, err := s.Stat(t.Context(), tt.key)
			if err != nil {
				t.Fatalf("Stat(%q): %v", tt.key, err)
			}
			if info.Key != tt.key || info.Size != int64(len(tt.data)) {
				t.Errorf("Stat(%q) = key %q size %d; want key %q size %d", tt.key, info.Key, info.Size, tt.key, len(tt.data))
			}
			if info.ModTime.IsZero() {
				t.Errorf("Stat(%q).ModTime is zero", tt.key)
			}
		})
	}
}

func testOverwrite(t *testing.T, s blob.Store) {
	long, short := randBytes(3, 10000), []byte("short")
	put(t, s, "k", long)
	put(t, s, "k", short)
	if got := get(t, s, "k"); !bytes.Equal(got, short) {
		t.Errorf("after overwrite Get = %q; want %q", got, short)
	}
	info, err := s.Stat(t.Context(), "k")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Size != int64(len(short)) {
		t.Errorf("after overwrite Stat size = %d; want %d", info.Size, len(short))
	}
	if got := listKeys(t, s, ""); !slices.Equal(got, []string{"k"}) {
		t.Errorf("after overwrite List = %q; want [k]", got)
	}
}

func testMissing(t *testing.T, s blob.Store) {
	put(t, s, "dir/sub/obj", []byte("x"))
	put(t, s, "gone", []byte("x"))
	if err := s.Delete(t.Context(), "gone"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, key := range []string{
		"never",
		"missing/dir/obj",
		"dir",      // only a prefix of stored keys
		"dir/sub",  // likewise
		"dir/subx", // a sibling
		"dir/sub/obj/below",
		"gone",
	} {
		wantNotExist(t, s, key)
	}
}

func testGetRange(t *testing.T, s blob.Store) {
	const n = 1000
	data := randBytes(11, n)
	put(t, s, "obj", data)
	put(t, s, "empty", nil)
	tests := []struct {
		name        string
		key         string
		off, length int64
		wantErr     error // nil: want data[off:off+length]
	}{
		{"whole", "obj", 0, n, nil},
		{"middle", "obj", 100, 200, nil},
		{"first byte", "obj", 0, 1, nil},
		{"last byte", "obj", n - 1, 1, nil},
		{"tail", "obj", 600, n - 600, nil},
		{"nothing at start", "obj", 0, 0, nil},
		{"nothing inside", "obj", 500, 0, nil},
		{"nothing at end", "obj", n, 0, nil},
		{"nothing of empty", "empty", 0, 0, nil},
		{"past end by one", "obj", 0, n + 1, blob.ErrRange},
		{"tail past end", "obj", n - 10, 11, blob.ErrRange},
		{"offset at end", "obj", n, 1, blob.ErrRange},
		{"offset past end", "obj", n + 100, 10, blob.ErrRange},
		{"nothing past end", "obj", n + 1, 0, blob.ErrRange},
		{"byte of empty", "empty", 0, 1, blob.ErrRange},
		{"negative offset", "obj", -1, 10, blob.ErrRange},
		{"negative length", "obj", 0, -1, blob.ErrRange},
		{"overflowing end", "obj", 1, math.MaxInt64, blob.ErrRange},
		{"huge offset", "obj", math.MaxInt64, 1, blob.ErrRange},
		{"missing", "never", 0, 1, blob.ErrNotExist},
		{"nothing of missing", "never", 0, 0, blob.ErrNotExist},
		{"negative of missing", "never", -1, 1, blob.ErrRange}, // checked first
		{"invalid key", "../obj", 0, 1, blob.ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := getRange(t.Context(), s, tt.key, tt.off, tt.length)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("GetRange(%q, %d, %d) error = %v (after %d bytes); want %v", tt.key, tt.off, tt.length, err, len(got), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("GetRange(%q, %d, %d): %v", tt.key, tt.off, tt.length, err)
			}
			if want := data[tt.off : tt.off+tt.length]; !bytes.Equal(got, want) {
				t.Errorf("GetRange(%q, %d, %d) = %d bytes differing from the %d stored there", tt.key, tt.off, tt.length, len(got), len(want))
			}
		})
	}
}

// testGetRangeCancel checks that reading a range fails once the context of
// its GetRange ends.
func testGetRangeCancel(t *testing.T, s blob.Store) {
	data := randBytes(12, 256<<10)
	put(t, s, "k", data)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	rc, err := s.GetRange(ctx, "k", 1, int64(len(data))-2)
	if err != nil {
		t.Fatalf("GetRange: %v", err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
		t.Fatalf("read before cancel: %v", err)
	}
	cancel()
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: error = %v; want context.Canceled", err)
	}
}

func testDelete(t *testing.T, s blob.Store) {
	put(t, s, "a/x", []byte("1"))
	put(t, s, "a/y", []byte("2"))
	for i := range 2 {
		if err := s.Delete(t.Context(), "a/x"); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	wantNotExist(t, s, "a/x")
	for _, key := range []string{"never", "no/such/dir/key", "a"} {
		if err := s.Delete(t.Context(), key); err != nil {
			t.Errorf("Delete(%q) of a missing key: %v; want nil", key, err)
		}
	}
	if got := get(t, s, "a/y"); string(got) != "2" {
		t.Errorf("neighbour a/y = %q after delete; want %q", got, "2")
	}
	if got := listKeys(t, s, ""); !slices.Equal(got, []string{"a/y"}) {
		t.Errorf("List after delete = %q; want [a/y]", got)
	}
}

func testList(t *testing.T, s blob.Store) {
	// Keys chosen so that a directory walk in name order differs from
	// lexical key order: '-' (0x2d) and '.' (0x2e) sort before '/' (0x2f).
	keys := []string{
		"x/a/1", "x/a/2", "x/a-b", "x/a.c", "x/ab", "x/b/c/d/e", "x/a/z/deep",
		"y", "y0/z", "z/9", "z/10", "Z/upper",
	}
	sizes := map[string]int64{}
	for i, k := range keys {
		data := randBytes(uint64(i), i*7)
		put(t, s, k, data)
		sizes[k] = int64(len(data))
	}
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	filter := func(prefix string) []string {
		var out []string
		for _, k := range sorted {
			if strings.HasPrefix(k, prefix) {
				out = append(out, k)
			}
		}
		return out
	}
	for _, prefix := range []string{"", "x", "x/", "x/a", "x/a/", "x/a/z", "x/b/c/", "y", "y/", "z/1", "nothing", "nothing/", "Z"} {
		t.Run(fmt.Sprintf("prefix=%q", prefix), func(t *testing.T) {
			var got []string
			err := s.List(t.Context(), prefix, func(i blob.Info) error {
				got = append(got, i.Key)
				if i.Size != sizes[i.Key] {
					t.Errorf("List info for %q: size %d; want %d", i.Key, i.Size, sizes[i.Key])
				}
				if i.ModTime.IsZero() {
					t.Errorf("List info for %q: zero ModTime", i.Key)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("List(%q): %v", prefix, err)
			}
			if want := filter(prefix); !slices.Equal(got, want) {
				t.Errorf("List(%q) = %q; want %q", prefix, got, want)
			}
		})
	}
}

func testListStop(t *testing.T, s blob.Store) {
	for _, k := range []string{"a", "b", "c"} {
		put(t, s, k, []byte(k))
	}
	stop := errors.New("stop here")
	var calls int
	err := s.List(t.Context(), "", func(blob.Info) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		t.Errorf("List error = %v; want the callback's error", err)
	}
	if calls != 1 {
		t.Errorf("callback called %d times after returning an error; want 1", calls)
	}
}

func testListEmpty(t *testing.T, s blob.Store) {
	for _, prefix := range []string{"", "a", "a/"} {
		if got := listKeys(t, s, prefix); len(got) != 0 {
			t.Errorf("List(%q) on an empty store = %q; want none", prefix, got)
		}
	}
}

func testLarge(t *testing.T, s blob.Store) {
	const size = 20 << 20
	data := randBytes(42, size)
	want := sha256.Sum256(data)
	put(t, s, "large/object", data)
	rc, err := s.Get(t.Context(), "large/object")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if n != size || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Errorf("read back %d bytes with a different SHA-256 than the %d put", n, size)
	}
	info, err := s.Stat(t.Context(), "large/object")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Size != size {
		t.Errorf("Stat size = %d; want %d", info.Size, size)
	}
	// Ranges at the end and across 16 MiB, where a multipart upload's
	// first part ends.
	for _, r := range []struct{ off, length int64 }{{16<<20 - 1000, 2000}, {size - 3<<20, 3 << 20}} {
		got, err := getRange(t.Context(), s, "large/object", r.off, r.length)
		if err != nil {
			t.Fatalf("GetRange(%d, %d): %v", r.off, r.length, err)
		}
		if !bytes.Equal(got, data[r.off:r.off+r.length]) {
			t.Errorf("GetRange(%d, %d) = %d bytes differing from the %d stored there", r.off, r.length, len(got), r.length)
		}
	}
}

func testConcurrentPuts(t *testing.T, s blob.Store) {
	const writers, perWriter = 8, 4
	contents := make([][]byte, writers)
	var wg sync.WaitGroup
	errs := make(chan error, writers*(perWriter+1))
	for w := range writers {
		contents[w] = randBytes(uint64(100+w), 32<<10)
		wg.Go(func() {
			for i := range perWriter {
				// Distinct keys, some sharing new directories.
				key := fmt.Sprintf("c/%d/%d", i, w)
				if err := s.Put(t.Context(), key, bytes.NewReader(contents[w]), int64(len(contents[w]))); err != nil {
					errs <- err
				}
			}
			// And all writers on one key.
			if err := s.Put(t.Context(), "same", bytes.NewReader(contents[w]), int64(len(contents[w]))); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Put: %v", err)
	}
	for w := range writers {
		for i := range perWriter {
			key := fmt.Sprintf("c/%d/%d", i, w)
			if got := get(t, s, key); !bytes.Equal(got, contents[w]) {
				t.Errorf("Get(%q) differs from what was put", key)
			}
		}
	}
	got := get(t, s, "same")
	if !slices.ContainsFunc(contents, func(c []byte) bool { return bytes.Equal(c, got) }) {
		t.Errorf("key written concurrently holds %d bytes matching none of the writes", len(got))
	}
	if n := len(listKeys(t, s, "")); n != writers*perWriter+1 {
		t.Errorf("List found %d keys; want %d", n, writers*perWriter+1)
	}
}

// testAtomicOverwrite reads a key, whole and by range, while it is being
// overwritten: every read must see one complete version.
func testAtomicOverwrite(t *testing.T, s blob.Store) {
	const size = 1 << 20
	const off, length = 1000, size - 2000
	versions := [][]byte{randBytes(7, size), randBytes(8, size)}
	sums := [][32]byte{sha256.Sum256(versions[0]), sha256.Sum256(versions[1])}
	rangeSums := [][32]byte{sha256.Sum256(versions[0][off : off+length]), sha256.Sum256(versions[1][off : off+length])}
	put(t, s, "flip", versions[0])

	var done atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for !done.Load() {
				rc, err := s.Get(t.Context(), "flip")
				if err != nil {
					t.Errorf("Get during overwrite: %v", err)
					return
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Errorf("read during overwrite: %v", err)
					return
				}
				if sum := sha256.Sum256(b); sum != sums[0] && sum != sums[1] {
					t.Errorf("read %d bytes during overwrite matching neither version", len(b))
					return
				}
				b, err = getRange(t.Context(), s, "flip", off, length)
				if err != nil {
					t.Errorf("ranged read during overwrite: %v", err)
					return
				}
				if sum := sha256.Sum256(b); sum != rangeSums[0] && sum != rangeSums[1] {
					t.Errorf("ranged read of %d bytes during overwrite matching neither version", len(b))
					return
				}
				reads.Add(1)
			}
		})
	}
	for i := range 8 {
		put(t, s, "flip", versions[(i+1)%2])
	}
	done.Store(true)
	wg.Wait()
	t.Logf("%d reads during 8 overwrites", reads.Load())
}

// failingReader yields data then fails.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func testBadReader(t *testing.T, s blob.Store) {
	data := randBytes(9, 100<<10)
	boom := errors.New("source failed")
	tests := []struct {
		name    string
		r       io.Reader
		size    int64
		wantErr error // matched with errors.Is when set
	}{
		{"short", bytes.NewReader(data[:1000]), int64(len(data)), nil},
		{"long", bytes.NewReader(data), 1000, nil},
		{"long by one", bytes.NewReader(data[:1001]), 1000, nil},
		{"empty but sized", bytes.NewReader(nil), 10, nil},
		{"sized zero but not empty", bytes.NewReader(data[:1]), 0, nil},
		{"reader error", &failingReader{data: data[:5000], err: boom}, int64(len(data)), boom},
		{"negative size", bytes.NewReader(data), -1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, prior := range []bool{false, true} {
				key := "bad/" + strings.ReplaceAll(tt.name, " ", "-")
				if prior {
					key += "-over"
					put(t, s, key, []byte("previous"))
				}
				if seeker, ok := tt.r.(io.Seeker); ok {
					seeker.Seek(0, io.SeekStart)
				}
				err := s.Put(t.Context(), key, tt.r, tt.size)
				if err == nil {
					t.Fatalf("Put(%q) with %s reader succeeded; want an error", key, tt.name)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("Put error = %v; want it to wrap %v", err, tt.wantErr)
				}
				if prior {
					if got := get(t, s, key); string(got) != "previous" {
						t.Errorf("failed Put replaced the object: got %d bytes; want the previous one", len(got))
					}
				} else {
					wantNotExist(t, s, key)
				}
			}
		})
	}
}

func testContextCancelled(t *testing.T, s blob.Store) {
	put(t, s, "k", []byte("v"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ops := []struct {
		name string
		fn   func() error
	}{
		{"Put", func() error { return s.Put(ctx, "new", strings.NewReader("v"), 1) }},
		{"Get", func() error {
			rc, err := s.Get(ctx, "k")
			if err == nil {
				defer rc.Close()
				_, err = io.ReadAll(rc)
			}
			return err
		}},
		{"GetRange", func() error { _, err := getRange(ctx, s, "k", 0, 1); return err }},
		{"GetRange nothing", func() error { _, err := getRange(ctx, s, "k", 0, 0); return err }},
		{"Stat", func() error { _, err := s.Stat(ctx, "k"); return err }},
		{"List", func() error { return s.List(ctx, "", func(blob.Info) error { return nil }) }},
		{"Delete", func() error { return s.Delete(ctx, "k") }},
	}
	for _, op := range ops {
		if err := op.fn(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: error = %v; want context.Canceled", op.name, err)
		}
	}
	wantNotExist(t, s, "new")
	if got := get(t, s, "k"); string(got) != "v" {
		t.Errorf("after cancelled calls k = %q; want %q", got, "v")
	}
}

// cancellingReader cancels its context once it has yielded half its data,
// then goes on yielding the rest.
type cancellingReader struct {
	data   []byte
	half   int
	off    int
	cancel context.CancelFunc
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	if r.off >= r.half {
		r.cancel()
	}
	end := len(r.data)
	if r.off < r.half {
		end = r.half
	}
	end = min(end, r.off+len(p))
	n := copy(p, r.data[r.off:end])
	r.off += n
	return n, nil
}

func testCancelDuringPut(t *testing.T, s blob.Store) {
	for _, size := range []int{256 << 10, 20 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			key := fmt.Sprintf("cancel/%d", size)
			put(t, s, key, []byte("previous"))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			data := randBytes(10, size)
			err := s.Put(ctx, key, &cancellingReader{data: data, half: size / 2, cancel: cancel}, int64(size))
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Put cancelled midway: error = %v; want context.Canceled", err)
			}
			if got := get(t, s, key); string(got) != "previous" {
				t.Errorf("cancelled Put replaced the object (%d bytes)", len(got))
			}
			if got := listKeys(t, s, key); !slices.Equal(got, []string{key}) {
				t.Errorf("List after cancelled Put = %q; want [%s]", got, key)
			}
		})
	}
}

func testHostileKeys(t *testing.T, s blob.Store) {
	put(t, s, "a/ok", []byte("ok"))
	hostile := []string{
		"", "/", "/abs", "/etc/passwd", "../x", "..", ".", "a/..", "a/../../x",
		"a/./b", "./a", "a//b", "a/", "//", "a\\b", "..\\x", "a\x00b", "a\nb",
		"a\x7fb", "\xff\xfe", ".hidden", "a/.tmp-1", strings.Repeat("k", blob.MaxKeyLen+1),
	}
	for _, key := range hostile {
		t.Run(fmt.Sprintf("%q", key), func(t *testing.T) {
			ctx := t.Context()
			if err := s.Put(ctx, key, strings.NewReader("evil"), 4); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("Put error = %v; want blob.ErrInvalidKey", err)
			}
			if rc, err := s.Get(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
				if err == nil {
					rc.Close()
				}
				t.Errorf("Get error = %v; want blob.ErrInvalidKey", err)
			}
			if rc, err := s.GetRange(ctx, key, 0, 1); !errors.Is(err, blob.ErrInvalidKey) {
				if err == nil {
					rc.Close()
				}
				t.Errorf("GetRange error = %v; want blob.ErrInvalidKey", err)
			}
			if _, err := s.Stat(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("Stat error = %v; want blob.ErrInvalidKey", err)
			}
			if err := s.Delete(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("Delete error = %v; want blob.ErrInvalidKey", err)
			}
		})
	}
	for _, prefix := range []string{"../", "/", "..", ".", "./", "a/../", "a/.", "a//", "a\\", "a\x00"} {
		var calls int
		err := s.List(t.Context(), prefix, func(blob.Info) error { calls++; return nil })
		if !errors.Is(err, blob.ErrInvalidKey) || calls > 0 {
			t.Errorf("List(%q) error = %v after %d calls; want blob.ErrInvalidKey and none", prefix, err, calls)
		}
	}
	if got := listKeys(t, s, ""); !slices.Equal(got, []string{"a/ok"}) {
		t.Errorf("after hostile calls List = %q; want [a/ok]", got)
	}
}

// creator returns s as a [blob.Creator], skipping the test if it is not
// one.
func creator(t *testing.T, s blob.Store) blob.Creator {
	t.Helper()
	c, ok := s.(blob.Creator)
	if !ok {
		t.Skip("not a blob.Creator")
	}
	return c
}

// testCreate: Create stores where there is nothing, refuses a key taken
// with ErrExist and leaves its object alone, and stores nothing when it
// fails otherwise.
func testCreate(t *testing.T, s blob.Store) {
	c := creator(t, s)
	ctx := t.Context()
	first, second := randBytes(11, 70<<10), []byte("second")
	if err := c.Create(ctx, "c/k", bytes.NewReader(first), int64(len(first))); err != nil {
		t.Fatalf("Create of a new key: %v", err)
	}
	if got := get(t, s, "c/k"); !bytes.Equal(got, first) {
		t.Fatalf("after Create Get = %d bytes differing from the %d created", len(got), len(first))
	}
	err := c.Create(ctx, "c/k", bytes.NewReader(second), int64(len(second)))
	if !errors.Is(err, blob.ErrExist) {
		t.Errorf("Create of a key taken: %v; want blob.ErrExist", err)
	}
	if got := get(t, s, "c/k"); !bytes.Equal(got, first) {
		t.Errorf("a refused Create replaced the object with %d bytes", len(got))
	}
	if err := s.Delete(ctx, "c/k"); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, "c/k", bytes.NewReader(second), int64(len(second))); err != nil {
		t.Errorf("Create of a key deleted: %v", err)
	}
	if got := get(t, s, "c/k"); !bytes.Equal(got, second) {
		t.Errorf("Create after Delete stored %q; want %q", got, second)
	}

	// failures other than a key taken store nothing, and are not ErrExist
	boom := errors.New("source failed")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for _, tt := range []struct {
		name string
		ctx  context.Context
		r    io.Reader
		size int64
	}{
		{"short", ctx, bytes.NewReader(first[:100]), 1000},
		{"reader error", ctx, &failingReader{data: first[:5000], err: boom}, int64(len(first))},
		{"cancelled", cancelled, bytes.NewReader(first), int64(len(first))},
	} {
		key := "c/" + strings.ReplaceAll(tt.name, " ", "-")
		err := c.Create(tt.ctx, key, tt.r, tt.size)
		if err == nil || errors.Is(err, blob.ErrExist) {
			t.Errorf("Create with %s: %v; want a failure other than blob.ErrExist", tt.name, err)
		}
		wantNotExist(t, s, key)
	}
	if err := c.Create(ctx, "../x", strings.NewReader("x"), 1); !errors.Is(err, blob.ErrInvalidKey) {
		t.Errorf("Create of an invalid key: %v; want blob.ErrInvalidKey", err)
	}
	if got := listKeys(t, s, ""); !slices.Equal(got, []string{"c/k"}) {
		t.Errorf("after Create List = %q; want [c/k]", got)
	}
}

// testCreateRace: of Creates racing on one key, exactly one succeeds and
// its object is the one stored; the others get ErrExist.
func testCreateRace(t *testing.T, s blob.Store) {
	c := creator(t, s)
	const writers, rounds = 8, 5
	for round := range rounds {
		key := fmt.Sprintf("race/%d", round)
		contents := make([][]byte, writers)
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for w := range writers {
			contents[w] = randBytes(uint64(200+round*writers+w), 16<<10)
			wg.Go(func() { errs[w] = c.Create(t.Context(), key, bytes.NewReader(contents[w]), int64(len(contents[w]))) })
		}
		wg.Wait()
		winner := -1
		for w, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: writers %d and %d both created %s", round, winner, w, key)
			case err == nil:
				winner = w
			case !errors.Is(err, blob.ErrExist):
				t.Fatalf("round %d: writer %d: %v; want success or blob.ErrExist", round, w, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer created %s", round, key)
		}
		if got := get(t, s, key); !bytes.Equal(got, contents[winner]) {
			t.Fatalf("round %d: %s holds %d bytes other than the winner's", round, key, len(got))
		}
	}
}
