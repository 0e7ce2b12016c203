package s3store_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/blobtest"
	"github.com/cofferhq/coffer/pkg/blob/s3store"
	"github.com/cofferhq/coffer/pkg/miniotest"
)

// TestConformance runs the suite against one MinIO server: each subtest gets
// a fresh bucket, and the suite runs both at the bucket's root and below a
// prefix, beside foreign objects the store must not see.
func TestConformance(t *testing.T) {
	srv := miniotest.Start(t)
	var n atomic.Int64
	for _, prefix := range []string{"", "tenant/a"} {
		t.Run(fmt.Sprintf("prefix=%q", prefix), func(t *testing.T) {
			blobtest.Run(t, func(t *testing.T) blob.Store {
				bucket := fmt.Sprintf("conformance-%d", n.Add(1))
				srv.MakeBucket(t, bucket)
				if prefix != "" {
					// Neighbours sharing the prefix's start, outside the store.
					client := srv.Client(t)
					for _, name := range []string{"tenant/ab", "tenant/a-x/obj", "tenant/b/obj"} {
						if _, err := client.PutObject(t.Context(), bucket, name, strings.NewReader("foreign"), 7, minio.PutObjectOptions{}); err != nil {
							t.Fatalf("put foreign object: %v", err)
						}
					}
				}
				return newStore(t, srv, bucket, prefix)
			})
		})
	}
}

func newStore(t *testing.T, srv *miniotest.Server, bucket, prefix string) *s3store.Store {
	t.Helper()
	s, err := s3store.New(s3store.Config{
		Endpoint:  srv.Endpoint,
		Bucket:    bucket,
		Prefix:    prefix,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
		RootCAs:   srv.CertPool(),
	})
	if err != nil {
		t.Fatalf("s3store.New: %v", err)
	}
	return s
}

// TestTLSConfig checks that a caller-given TLS configuration is used, and
// that the system roots alone do not trust the test CA.
func TestTLSConfig(t *testing.T) {
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "tls")
	tests := []struct {
		name    string
		cfg     func(c *s3store.Config)
		wantErr bool
	}{
		{"tls config", func(c *s3store.Config) { c.TLSConfig = srv.TLSConfig() }, false},
		{"ca pool", func(c *s3store.Config) { c.RootCAs = srv.CertPool() }, false},
		{"system roots", func(c *s3store.Config) {}, true},
		{"other CA", func(c *s3store.Config) { c.TLSConfig = &tls.Config{RootCAs: miniotest.Start(t).CertPool()} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s3store.Config{Endpoint: srv.Endpoint, Bucket: "tls", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
			tt.cfg(&cfg)
			s, err := s3store.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Put(t.Context(), "k", bytes.NewReader([]byte("v")), 1)
			if (err != nil) != tt.wantErr {
				t.Errorf("Put error = %v; want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestMissingBucketIsNotNotExist(t *testing.T) {
	srv := miniotest.Start(t)
	s := newStore(t, srv, "no-such-bucket", "")
	_, err := s.Stat(t.Context(), "k")
	if err == nil || errors.Is(err, blob.ErrNotExist) {
		t.Errorf("Stat in a missing bucket: error = %v; want an error other than ErrNotExist", err)
	}
	if _, err := s.Get(t.Context(), "k"); err == nil || errors.Is(err, blob.ErrNotExist) {
		t.Errorf("Get in a missing bucket: error = %v; want an error other than ErrNotExist", err)
	}
	for _, length := range []int64{1, 0} {
		if _, err := s.GetRange(t.Context(), "k", 0, length); err == nil || errors.Is(err, blob.ErrNotExist) {
			t.Errorf("GetRange(0, %d) in a missing bucket: error = %v; want an error other than ErrNotExist", length, err)
		}
	}
}

// TestGetRangeResponses checks GetRange against responses MinIO does not
// give but an S3-compatible server or a broken connection may: each must
// give the range's bytes or an error, never a short or wrong read.
func TestGetRangeResponses(t *testing.T) {
	const object = "0123456789"
	tests := []struct {
		name        string
		off, length int64
		// respond answers the GET, whose Range header asks for bytes
		// first-last of object.
		respond func(w http.ResponseWriter, first, last int)
		want    string
		wantErr error // matched with errors.Is when set; else any error unless want is set
	}{
		{"partial content", 2, 5, func(w http.ResponseWriter, first, last int) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, len(object)))
			w.WriteHeader(http.StatusPartialContent)
			io.WriteString(w, object[first:last+1])
		}, "23456", nil},
		{"range ignored", 2, 5, func(w http.ResponseWriter, first, last int) {
			io.WriteString(w, object)
		}, "23456", nil},
		{"range ignored past end", 8, 5, func(w http.ResponseWriter, first, last int) {
			io.WriteString(w, object)
		}, "", blob.ErrRange},
		{"range cut at end", 8, 5, func(w http.ResponseWriter, first, last int) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, len(object)-1, len(object)))
			w.WriteHeader(http.StatusPartialContent)
			io.WriteString(w, object[first:])
		}, "", blob.ErrRange},
		{"other range", 2, 5, func(w http.ResponseWriter, first, last int) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first+1, last+1, len(object)))
			w.WriteHeader(http.StatusPartialContent)
			io.WriteString(w, object[first+1:last+2])
		}, "", nil},
		{"unknown size", 2, 5, func(w http.ResponseWriter, first, last int) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/*", first, last))
			w.WriteHeader(http.StatusPartialContent)
			io.WriteString(w, object[first:last+1])
		}, "", nil},
		{"short body", 2, 5, func(w http.ResponseWriter, first, last int) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, len(object)))
			w.WriteHeader(http.StatusPartialContent)
			io.WriteString(w, object[first:last])
			w.(http.Flusher).Flush() // chunked, so the body ends cleanly
		}, "", io.ErrUnexpectedEOF},
		{"long body", 2, 5, func(w http.ResponseWriter, first, last int) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, len(object)))
			w.WriteHeader(http.StatusPartialContent)
			io.WriteString(w, object[first:])
			w.(http.Flusher).Flush()
		}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var first, last int
				if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &first, &last); err != nil || r.URL.Path != "/bucket/k" {
					http.Error(w, "unexpected request", http.StatusBadRequest)
					return
				}
				w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
				tt.respond(w, first, last)
			}))
			t.Cleanup(srv.Close)
			s, err := s3store.New(s3store.Config{
				Endpoint:  srv.Listener.Addr().String(),
				Bucket:    "bucket",
				AccessKey: "access",
				SecretKey: "secret",
				PlainHTTP: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			rc, err := s.GetRange(t.Context(), "k", tt.off, tt.length)
			if err == nil {
				got, err = io.ReadAll(rc)
				rc.Close()
			}
			switch {
			case tt.want != "":
				if err != nil || string(got) != tt.want {
					t.Errorf("GetRange(%d, %d) = %q, %v; want %q", tt.off, tt.length, got, err, tt.want)
				}
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("GetRange(%d, %d) = %q, error %v; want %v", tt.off, tt.length, got, err, tt.wantErr)
			case err == nil:
				t.Errorf("GetRange(%d, %d) = %q; want an error", tt.off, tt.length, got)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	good := s3store.Config{Endpoint: "127.0.0.1:9000", Bucket: "b", AccessKey: "a", SecretKey: "s"}
	tests := []struct {
		name    string
		mod     func(c *s3store.Config)
		wantErr string
	}{
		{"good", func(*s3store.Config) {}, ""},
		{"good prefix", func(c *s3store.Config) { c.Prefix = "coffer/prod/" }, ""},
		{"no endpoint", func(c *s3store.Config) { c.Endpoint = "" }, "endpoint is required"},
		{"scheme", func(c *s3store.Config) { c.Endpoint = "https://x" }, "scheme"},
		{"no bucket", func(c *s3store.Config) { c.Bucket = "" }, "bucket is required"},
		{"no secret", func(c *s3store.Config) { c.SecretKey = "" }, "secret key"},
		{"absolute prefix", func(c *s3store.Config) { c.Prefix = "/x" }, "slash"},
		{"dotted prefix", func(c *s3store.Config) { c.Prefix = "a/../b" }, "invalid"},
		{"tls with plain", func(c *s3store.Config) { c.PlainHTTP = true; c.TLSConfig = &tls.Config{} }, "plain HTTP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			_, err := s3store.New(c)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: %v; want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New error = %v; want one mentioning %q", err, tt.wantErr)
			}
		})
	}
	// All problems are reported at once.
	err := (s3store.Config{}).Validate()
	for _, want := range []string{"endpoint", "bucket", "access key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate of an empty config = %v; want it to mention %q", err, want)
		}
	}
}
