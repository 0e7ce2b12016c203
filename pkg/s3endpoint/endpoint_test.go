package s3endpoint_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cofferhq/coffer/pkg/s3endpoint"
)

// memStore keeps objects in memory: a Store for the endpoint's tests.
type memStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	aborted int
}

func (m *memStore) NewUpload(_ context.Context, bucket, key string) (s3endpoint.Upload, error) {
	return &memUpload{m: m, name: bucket + "/" + key}, nil
}

func (m *memStore) Open(_ context.Context, bucket, key string) (s3endpoint.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objects[bucket+"/"+key]
	if !ok {
		return nil, s3endpoint.ErrNotExist
	}
	return memObject{Reader: bytes.NewReader(b), info: s3endpoint.ObjectInfo{Key: key, Size: int64(len(b)), ModTime: time.Unix(1, 0)}}, nil
}

func (m *memStore) List(_ context.Context, bucket, prefix string) ([]s3endpoint.ObjectInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []s3endpoint.ObjectInfo
	for name, b := range m.objects {
		if key, ok := strings.CutPrefix(name, bucket+"/"); ok && strings.HasPrefix(key, prefix) {
			out = append(out, s3endpoint.ObjectInfo{Key: key, Size: int64(len(b)), ModTime: time.Unix(1, 0)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

type memUpload struct {
	m    *memStore
	name string
	buf  bytes.Buffer
}

func (u *memUpload) Write(p []byte) (int, error) { return u.buf.Write(p) }

func (u *memUpload) Complete(context.Context) error {
	u.m.mu.Lock()
	defer u.m.mu.Unlock()
	if u.m.objects == nil {
		u.m.objects = map[string][]byte{}
	}
	u.m.objects[u.name] = u.buf.Bytes()
	return nil
}

func (u *memUpload) Abort(error) {
	u.m.mu.Lock()
	defer u.m.mu.Unlock()
	u.m.aborted++
}

type memObject struct {
	*bytes.Reader
	info s3endpoint.ObjectInfo
}

func (o memObject) Info() s3endpoint.ObjectInfo { return o.info }
func (o memObject) Close() error                { return nil }

// keys is a fixed set of access keys.
type keys map[string]s3endpoint.Key

func (k keys) Lookup(_ context.Context, id string) (s3endpoint.Key, bool, error) {
	key, ok := k[id]
	return key, ok, nil
}

// endpoint serves a Server over TLS on loopback and returns it with its
// store and host:port.
func endpoint(t *testing.T, k keys) (*httptest.Server, *memStore, *s3endpoint.Server) {
	t.Helper()
	store := &memStore{}
	srv, err := s3endpoint.New(s3endpoint.Config{Keys: k, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	return newTLSServer(t, srv), store, srv
}

func newTLSServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewTLSServer(h)
	t.Cleanup(ts.Close)
	return ts
}

func client(t *testing.T, ts *httptest.Server, id, secret string) *minio.Core {
	t.Helper()
	u, _ := url.Parse(ts.URL)
	c, err := minio.NewCore(u.Host, &minio.Options{Creds: credentials.NewStaticV4(id, secret, ""), Secure: true,
		Transport: ts.Client().Transport})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMultipartOutOfOrder: parts sent at once and in any order reach the
// store in order, each once; the object then reads back whole and by
// ranges, and is listed.
func TestMultipartOutOfOrder(t *testing.T) {
	ts, store, _ := endpoint(t, keys{"job1": {ID: "job1", Secret: "s3cret", Bucket: "coffer", Prefix: "job1/"}})
	c := client(t, ts, "job1", "s3cret")
	ctx := t.Context()
	const partSize, parts = 5 << 20, 4
	data := random(t, partSize*parts-12345)
	id, err := c.NewMultipartUpload(ctx, "coffer", "job1/db.bak", minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := make([]minio.CompletePart, parts)
	var wg sync.WaitGroup
	errs := make(chan error, parts+1)
	for _, n := range []int{3, 1, 4, 2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			chunk := data[(n-1)*partSize : min(n*partSize, len(data))]
			p, err := c.PutObjectPart(ctx, "coffer", "job1/db.bak", id, n, bytes.NewReader(chunk), int64(len(chunk)), minio.PutObjectPartOptions{})
			if err != nil {
				errs <- fmt.Errorf("part %d: %w", n, err)
				return
			}
			done[n-1] = minio.CompletePart{PartNumber: n, ETag: p.ETag}
		}()
	}
	wg.Wait()
	// a part sent again (a retry) is stored once
	p2, err := c.PutObjectPart(ctx, "coffer", "job1/db.bak", id, 2, bytes.NewReader(data[partSize:2*partSize]), partSize, minio.PutObjectPartOptions{})
	if err != nil || p2.ETag != done[1].ETag {
		errs <- fmt.Errorf("part 2 again: %v, ETag %s, want %s", err, p2.ETag, done[1].ETag)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := c.CompleteMultipartUpload(ctx, "coffer", "job1/db.bak", id, done, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := store.objects["coffer/job1/db.bak"]; !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes, not the %d uploaded", len(got), len(data))
	}

	info, err := c.StatObject(ctx, "coffer", "job1/db.bak", minio.StatObjectOptions{})
	if err != nil || info.Size != int64(len(data)) {
		t.Fatalf("stat: %+v, %v; want %d bytes", info, err, len(data))
	}
	for _, r := range [][2]int64{{0, 99}, {int64(len(data)) - 10, int64(len(data)) - 1}, {partSize - 3, partSize + 3}} {
		opts := minio.GetObjectOptions{}
		if err := opts.SetRange(r[0], r[1]); err != nil {
			t.Fatal(err)
		}
		rc, _, _, err := c.GetObject(ctx, "coffer", "job1/db.bak", opts)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data[r[0]:r[1]+1]) {
			t.Errorf("range %v: %d bytes (%v), not the object's", r, len(got), err)
		}
	}
	res, err := c.ListObjectsV2("coffer", "job1/", "", "", "", 1000)
	if err != nil || len(res.Contents) != 1 || res.Contents[0].Key != "job1/db.bak" {
		t.Errorf("list: %+v, %v; want the one object", res.Contents, err)
	}
}

// TestRefusals: a wrong secret, an unknown key, a key outside its prefix
// or past its expiry, and an operation the endpoint does not serve, each
// get S3's error and change nothing.
func TestRefusals(t *testing.T) {
	ts, store, _ := endpoint(t, keys{
		"job1": {ID: "job1", Secret: "s3cret", Bucket: "coffer", Prefix: "job1/"},
		"old":  {ID: "old", Secret: "s3cret", Bucket: "coffer", Prefix: "old/", Expires: time.Now().Add(-time.Minute)},
	})
	ctx := t.Context()
	for _, c := range []struct {
		name, id, secret, key string
		code                  string
	}{
		{"wrong secret", "job1", "guess", "job1/x.bak", "SignatureDoesNotMatch"},
		{"unknown key", "nobody", "s3cret", "job1/x.bak", "InvalidAccessKeyId"},
		{"outside its prefix", "job1", "s3cret", "job2/x.bak", "AccessDenied"},
		{"expired", "old", "s3cret", "old/x.bak", "AccessDenied"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := client(t, ts, c.id, c.secret).NewMultipartUpload(ctx, "coffer", c.key, minio.PutObjectOptions{})
			var er minio.ErrorResponse
			if !errors.As(err, &er) || er.StatusCode != http.StatusForbidden || er.Code != c.code {
				t.Errorf("got %v; want 403 %s", err, c.code)
			}
		})
	}
	_, err := client(t, ts, "job1", "s3cret").PutObject(ctx, "coffer", "job1/single.bak", bytes.NewReader([]byte("x")), 1, "", "", minio.PutObjectOptions{})
	var er minio.ErrorResponse
	if !errors.As(err, &er) || er.StatusCode != http.StatusNotImplemented {
		t.Errorf("a single PUT: %v; want 501", err)
	}
	if len(store.objects) != 0 {
		t.Errorf("objects stored: %v", store.objects)
	}
}

// TestAbort: an upload the client aborts, or whose job ends, never
// becomes an object, and a part waiting for an earlier one is released.
func TestAbort(t *testing.T) {
	ts, store, srv := endpoint(t, keys{"job1": {ID: "job1", Secret: "s3cret", Bucket: "coffer", Prefix: "job1/"}})
	c := client(t, ts, "job1", "s3cret")
	ctx := t.Context()
	id, err := c.NewMultipartUpload(ctx, "coffer", "job1/a.bak", minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AbortMultipartUpload(ctx, "coffer", "job1/a.bak", id); err != nil {
		t.Fatal(err)
	}
	id, err = c.NewMultipartUpload(ctx, "coffer", "job1/b.bak", minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		// part 2 waits for part 1, which never comes
		_, err := c.PutObjectPart(ctx, "coffer", "job1/b.bak", id, 2, bytes.NewReader([]byte("late")), 4, minio.PutObjectPartOptions{})
		waiting <- err
	}()
	poll(t, "part 2 to wait for part 1", func() bool { return srv.Waiting() == 1 })
	srv.Abort("job1", errors.New("the job ended"))
	select {
	case err := <-waiting:
		if err == nil {
			t.Error("a part of an aborted upload was accepted")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a waiting part was not released by the abort")
	}
	if len(store.objects) != 0 || store.aborted != 2 {
		t.Errorf("objects %d, aborted uploads %d; want none and 2", len(store.objects), store.aborted)
	}
}

// poll waits until cond holds, failing the test after 30 s.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// gatedStore is a memStore whose uploads block in Write until the gate
// opens, telling entered each time a Write begins.
type gatedStore struct {
	memStore
	gate    chan struct{}
	entered chan string
}

func (g *gatedStore) NewUpload(ctx context.Context, bucket, key string) (s3endpoint.Upload, error) {
	up, _ := g.memStore.NewUpload(ctx, bucket, key)
	return &gatedUpload{Upload: up, g: g, name: key}, nil
}

type gatedUpload struct {
	s3endpoint.Upload
	g    *gatedStore
	name string
}

func (u *gatedUpload) Write(p []byte) (int, error) {
	u.g.entered <- u.name
	<-u.g.gate
	return u.Upload.Write(p)
}

// TestQueuedPartsShared: the parts answered ahead of the store are shared
// by the uploads of one key (a backup striped over several URLs), so
// memory does not grow with the stripes: with room for one, a part of a
// second upload waits until the first upload's part is written.
func TestQueuedPartsShared(t *testing.T) {
	store := &gatedStore{gate: make(chan struct{}), entered: make(chan string, 4)}
	srv, err := s3endpoint.New(s3endpoint.Config{Keys: keys{"job1": {ID: "job1", Secret: "s3cret", Bucket: "coffer", Prefix: "job1/"}},
		Store: store, MaxQueuedParts: 1})
	if err != nil {
		t.Fatal(err)
	}
	ts := newTLSServer(t, srv)
	c := client(t, ts, "job1", "s3cret")
	ctx := t.Context()
	part := random(t, 5<<20)
	ids := map[string]string{}
	for _, key := range []string{"job1/s1.bak", "job1/s2.bak"} {
		id, err := c.NewMultipartUpload(ctx, "coffer", key, minio.PutObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids[key] = id
	}
	// the first stripe's part is answered and its write begins (and
	// blocks): it holds the key's one token
	if _, err := c.PutObjectPart(ctx, "coffer", "job1/s1.bak", ids["job1/s1.bak"], 1, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := <-store.entered; got != "job1/s1.bak" {
		t.Fatalf("write of %s began; want job1/s1.bak", got)
	}
	second := make(chan error, 1)
	go func() {
		_, err := c.PutObjectPart(ctx, "coffer", "job1/s2.bak", ids["job1/s2.bak"], 1, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{})
		second <- err
	}()
	poll(t, "the second stripe's part to arrive", func() bool { return srv.Waiting() == 1 || len(second) > 0 })
	select {
	case err := <-second:
		t.Fatalf("the second stripe's part was answered (%v) while the first's held the only room", err)
	case name := <-store.entered:
		t.Fatalf("the write of %s began while the first stripe's part held the only room", name)
	case <-time.After(300 * time.Millisecond):
		// a negative: nothing to poll for
	}
	close(store.gate)
	if err := <-second; err != nil {
		t.Fatalf("the second stripe's part, once there was room: %v", err)
	}
	if got := <-store.entered; got != "job1/s2.bak" {
		t.Fatalf("write of %s began; want job1/s2.bak", got)
	}
}
