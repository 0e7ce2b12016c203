package s3endpoint

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The fuzz targets of what the endpoint reads from SQL Server: the
// Authorization and Range headers, and requests that pass authentication
// with any method, query and body (the XML part list of
// CompleteMultipartUpload among them).

// FuzzHeaders parses arbitrary Authorization and Range headers: an
// authorization that parses names a key and signs the host, and a range
// that parses lies within the object.
func FuzzHeaders(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AK/20261201/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc", "bytes=0-99", int64(100))
	f.Add("AWS4-HMAC-SHA256 Credential=AK/a/b/c/aws4_request,SignedHeaders=,Signature=", "bytes=-5", int64(3))
	f.Add("AWS4-HMAC-SHA256 ", "bytes=5-", int64(0))
	f.Add("AWS4-HMAC-SHA256 Credential=//////, =", "bytes=9223372036854775807-", int64(9223372036854775807))
	f.Add("", "bytes=-9223372036854775808", int64(-1))
	f.Fuzz(func(t *testing.T, auth, rng string, size int64) {
		if a, err := parseAuthorization(auth); err == nil {
			if a.accessKey == "" || a.signature == "" || !contains(a.signedHeaders, "host") {
				t.Fatalf("parseAuthorization(%q) = %+v: no key, signature or signed host", auth, a)
			}
		}
		from, to, err := parseRange(rng, size)
		if err != nil {
			var e *s3Error
			if !errors.As(err, &e) || e.status != http.StatusRequestedRangeNotSatisfiable {
				t.Fatalf("parseRange(%q, %d): %v; want InvalidRange", rng, size, err)
			}
			return
		}
		if from < 0 || from > to || to >= size {
			t.Fatalf("parseRange(%q, %d) = %d-%d: outside the object", rng, size, from, to)
		}
	})
}

// fuzzStore takes uploads and throws them away.
type fuzzStore struct{}

func (fuzzStore) NewUpload(context.Context, string, string) (Upload, error) { return fuzzUpload{}, nil }
func (fuzzStore) Open(context.Context, string, string) (Object, error) {
	return fuzzObject{bytes.NewReader([]byte("the object"))}, nil
}
func (fuzzStore) List(_ context.Context, _, prefix string) ([]ObjectInfo, error) {
	return []ObjectInfo{{Key: prefix + "x", Size: 10, ModTime: time.Unix(1, 0)}}, nil
}

type fuzzUpload struct{}

func (fuzzUpload) Write(p []byte) (int, error)    { return len(p), nil }
func (fuzzUpload) Complete(context.Context) error { return nil }
func (fuzzUpload) Abort(error)                    {}

type fuzzObject struct{ *bytes.Reader }

func (o fuzzObject) Info() ObjectInfo {
	return ObjectInfo{Key: "k", Size: o.Size(), ModTime: time.Unix(1, 0)}
}
func (fuzzObject) Close() error { return nil }

type fuzzKeys struct{}

func (fuzzKeys) Lookup(_ context.Context, id string) (Key, bool, error) {
	return Key{ID: "AK", Secret: "secret", Bucket: "b", Prefix: "db/"}, id == "AK", nil
}

// signedRequest is a request as a client with the key AK signs it.
func signedRequest(now time.Time, method, query string, body []byte) *http.Request {
	r := &http.Request{
		Method: method, Host: "s3.test", Header: http.Header{},
		URL:  &url.URL{Path: "/b/db/full.bak", RawQuery: query},
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
	}
	r = r.WithContext(context.Background())
	amzDate := now.UTC().Format(amzDateForm)
	sum := sha256.Sum256(body)
	r.Header.Set("X-Amz-Date", amzDate)
	r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	a := authorization{accessKey: "AK", date: amzDate[:8], region: "us-east-1", service: "s3",
		signedHeaders: []string{"host", "x-amz-content-sha256", "x-amz-date"}}
	a.signature = signature(r, a, "secret", amzDate, hex.EncodeToString(sum[:]))
	r.Header.Set("Authorization", sigAlgorithm+" Credential=AK/"+a.date+"/us-east-1/s3/aws4_request, SignedHeaders="+
		strings.Join(a.signedHeaders, ";")+", Signature="+a.signature)
	return r
}

// FuzzRequest sends the endpoint a request signed with a valid key, with
// an arbitrary method, query and body, then a multipart upload of one
// part completed with an arbitrary part list: no request makes it fail
// (500), and the upload completes only when the list names exactly the
// part received.
func FuzzRequest(f *testing.F) {
	f.Add("PUT", "partNumber=1&uploadId=x", []byte("part"), []byte(`<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>ETAG</ETag></Part></CompleteMultipartUpload>`))
	f.Add("GET", "list-type=2&prefix=db%2F", []byte(nil), []byte(`<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"ETAG"</ETag></Part><Part><PartNumber>2</PartNumber><ETag>ETAG</ETag></Part></CompleteMultipartUpload>`))
	f.Add("POST", "uploads", []byte{}, []byte(`<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>ETAG</ETag></Part></CompleteMultipartUpload>`))
	f.Add("DELETE", "uploadId=%zz", []byte("x"), []byte(`<Part><PartNumber>1</PartNumber></Part`))
	f.Add("HEAD", "", []byte(nil), []byte(`<!DOCTYPE x [<!ENTITY a "aaaaaaaa">]><CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&a;</ETag></Part></CompleteMultipartUpload>`))
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, method, query string, body, list []byte) {
		s, err := New(Config{Keys: fuzzKeys{}, Store: fuzzStore{}, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Abort("AK", errors.New("fuzz input done"))
		do := func(method, query string, body []byte) *httptest.ResponseRecorder {
			w := httptest.NewRecorder()
			s.ServeHTTP(w, signedRequest(now, method, query, body))
			if w.Code == http.StatusInternalServerError {
				t.Fatalf("%s ?%s with %q: %d %s", method, query, body, w.Code, w.Body)
			}
			return w
		}
		if len(body) <= 1<<20 {
			do(method, query, body)
		}

		w := do("POST", "uploads", nil)
		var created struct {
			UploadID string `xml:"UploadId"`
		}
		if err := xml.Unmarshal(w.Body.Bytes(), &created); err != nil || created.UploadID == "" {
			t.Fatalf("create upload: %d %s", w.Code, w.Body)
		}
		id := url.QueryEscape(created.UploadID)
		w = do("PUT", "partNumber=1&uploadId="+id, []byte("the only part"))
		etag := w.Header().Get("ETag")
		if w.Code != http.StatusOK || etag == "" {
			t.Fatalf("upload part: %d %s", w.Code, w.Body)
		}
		list = bytes.ReplaceAll(list, []byte("ETAG"), []byte(strings.Trim(etag, `"`)))
		w = do("POST", "uploadId="+id, list)
		var parsed struct {
			Parts []struct {
				PartNumber int
				ETag       string
			} `xml:"Part"`
		}
		exact := xml.Unmarshal(list, &parsed) == nil && len(parsed.Parts) == 1 &&
			parsed.Parts[0].PartNumber == 1 && strings.Trim(parsed.Parts[0].ETag, `"`) == strings.Trim(etag, `"`)
		if (w.Code == http.StatusOK) != exact {
			t.Fatalf("complete with %q: %d %s; the list names exactly the part received: %v", list, w.Code, w.Body, exact)
		}
	})
}
