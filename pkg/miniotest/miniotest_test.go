package miniotest_test

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/cofferhq/coffer/pkg/miniotest"
)

func TestPutGet(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "plain")
	client := srv.Client(t)
	ctx := t.Context()

	want := []byte("hello, coffer")
	if _, err := client.PutObject(ctx, "plain", "greeting.txt", bytes.NewReader(want), int64(len(want)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	got := getObject(t, client, "plain", "greeting.txt")
	if !bytes.Equal(got, want) {
		t.Errorf("GetObject = %q; want %q", got, want)
	}
}

func TestMultipartUpload(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "multi")
	core := srv.Core(t)
	ctx := t.Context()

	const partSize = 5 << 20 // S3's minimum for every part but the last
	parts := [][]byte{make([]byte, partSize), make([]byte, partSize)}
	for _, p := range parts {
		rand.Read(p)
	}

	id, err := core.NewMultipartUpload(ctx, "multi", "big.bin", minio.PutObjectOptions{})
	if err != nil {
		t.Fatalf("NewMultipartUpload: %v", err)
	}
	var done []minio.CompletePart
	for i, p := range parts {
		op, err := core.PutObjectPart(ctx, "multi", "big.bin", id, i+1, bytes.NewReader(p), int64(len(p)), minio.PutObjectPartOptions{})
		if err != nil {
			t.Fatalf("PutObjectPart %d: %v", i+1, err)
		}
		done = append(done, minio.CompletePart{PartNumber: op.PartNumber, ETag: op.ETag})
	}
	info, err := core.CompleteMultipartUpload(ctx, "multi", "big.bin", id, done, minio.PutObjectOptions{})
	if err != nil {
		t.Fatalf("CompleteMultipartUpload: %v", err)
	}
	want := bytes.Join(parts, nil)
	if info.Size != 0 && info.Size != int64(len(want)) {
		t.Errorf("completed size = %d; want %d", info.Size, len(want))
	}

	got := getObject(t, srv.Client(t), "multi", "big.bin")
	if !bytes.Equal(got, want) {
		t.Errorf("read back %d bytes, differing from the %d uploaded", len(got), len(want))
	}
}

// TestServersAreIndependent checks that servers started side by side have
// their own ports, credentials, certificates and data.
func TestServersAreIndependent(t *testing.T) {
	t.Parallel()
	a, b := miniotest.Start(t), miniotest.Start(t)
	if a.Endpoint == b.Endpoint {
		t.Fatalf("both servers at %s", a.Endpoint)
	}
	if a.AccessKey == b.AccessKey || bytes.Equal(a.CAPEM, b.CAPEM) {
		t.Errorf("servers share credentials or CA")
	}
	a.MakeBucket(t, "only-in-a")
	ok, err := b.Client(t).BucketExists(t.Context(), "only-in-a")
	if err != nil {
		t.Fatalf("BucketExists on b: %v", err)
	}
	if ok {
		t.Errorf("bucket made on %s visible on %s", a.Endpoint, b.Endpoint)
	}
}

// TestTLS checks that the server is reachable with its CA, by pool and by
// file, and that a client not trusting that CA is refused.
func TestTLS(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	url := srv.URL() + "/minio/health/live"

	pem, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatalf("read CA file: %v", err)
	}
	if !bytes.Equal(pem, srv.CAPEM) {
		t.Errorf("CAFile content differs from CAPEM")
	}

	resp, err := (&http.Client{Transport: srv.Transport()}).Get(url)
	if err != nil {
		t.Fatalf("GET %s trusting the CA: %v", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: status %s; want 200 OK", url, resp.Status)
	}

	untrusting := &http.Client{Transport: &http.Transport{}}
	_, err = untrusting.Get(url)
	var unknownCA x509.UnknownAuthorityError
	if !errors.As(err, &unknownCA) {
		t.Errorf("GET %s with system roots: err = %v; want x509.UnknownAuthorityError", url, err)
	}
}

func getObject(t *testing.T, c *minio.Client, bucket, name string) []byte {
	t.Helper()
	obj, err := c.GetObject(t.Context(), bucket, name, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("GetObject %s/%s: %v", bucket, name, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("read %s/%s: %v", bucket, name, err)
	}
	return b
}

// TestKillRestart kills a server, sees requests fail, and restarts it on
// the same address with its data.
func TestKillRestart(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "kept")
	client := srv.Client(t)
	ctx := t.Context()
	want := []byte("still here")
	if _, err := client.PutObject(ctx, "kept", "k", bytes.NewReader(want), int64(len(want)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	srv.Kill()
	if _, err := client.StatObject(ctx, "kept", "k", minio.StatObjectOptions{}); err == nil {
		t.Fatal("StatObject on a killed server succeeded")
	}
	srv.Restart(t)
	if got := getObject(t, srv.Client(t), "kept", "k"); !bytes.Equal(got, want) {
		t.Errorf("after restart GetObject = %q; want %q", got, want)
	}
}
