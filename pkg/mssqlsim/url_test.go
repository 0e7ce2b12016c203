package mssqlsim

import (
	"context"
	"crypto/x509"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cofferhq/coffer/pkg/miniotest"
)

// TestBackupToURL backs up to a real MinIO over TLS as SQL Server 2022
// does (multipart, parts of MAXTRANSFERSIZE), striped over two URLs, and
// restores from it.
func TestBackupToURL(t *testing.T) {
	s3 := miniotest.Start(t)
	s3.MakeBucket(t, "sql")
	clk := newFakeClock()
	inst, db := startInstance(t, Config{Now: clk.Now, TrustedCAs: s3.CertPool(), DefaultPages: 3000})
	exec(t, db, "CREATE DATABASE [Sales]")
	for k := 0; k < 50; k++ {
		if _, err := inst.Commit("Sales", 8); err != nil {
			t.Fatal(err)
		}
	}
	base := fmt.Sprintf("s3://%s/sql", s3.Endpoint)
	exec(t, db, fmt.Sprintf("CREATE CREDENTIAL [%s] WITH IDENTITY = 'S3 Access Key', SECRET = '%s:%s'", base, s3.AccessKey, s3.SecretKey))

	u1, u2 := base+"/sales/full-1.bak", base+"/sales/full-2.bak"
	exec(t, db, "BACKUP DATABASE [Sales] TO URL = @p1, URL = @p2 WITH FORMAT, CHECKSUM", u1, u2)
	want := queryHash(t, db, "Sales", zeroTime)

	// each stripe is a multipart object of 10 MiB parts (MAXTRANSFERSIZE's
	// default): 24 MB over two stripes gives two parts each
	for _, key := range []string{"sales/full-1.bak", "sales/full-2.bak"} {
		info, err := s3.Client(t).StatObject(t.Context(), "sql", key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatalf("stat %s: %v", key, err)
		}
		_, n, ok := strings.Cut(info.ETag, "-")
		if parts, _ := strconv.Atoi(n); !ok || parts < 2 || int64(parts) != (info.Size+10<<20-1)/(10<<20) {
			t.Errorf("%s: ETag %q for %d bytes; want a multipart ETag of 10 MiB parts, two or more", key, info.ETag, info.Size)
		}
	}

	var count int
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM msdb.dbo.backupmediafamily WHERE physical_device_name LIKE 's3://%'").Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != 2 {
		t.Errorf("backupmediafamily URL rows: got %d, want 2", count)
	}

	dir := t.TempDir()
	exec(t, db, "RESTORE DATABASE [Sales_copy] FROM URL = @p1, URL = @p2 WITH MOVE 'Sales' TO @p3, MOVE 'Sales_log' TO @p4",
		u1, u2, filepath.Join(dir, "c.mdf"), filepath.Join(dir, "c.ldf"))
	if got := queryHash(t, db, "Sales_copy", zeroTime); got != want {
		t.Fatalf("restored from URL: hash %s, want %s", got, want)
	}
	// a stripe missing
	wantErr(t, db, 3132, "RESTORE VERIFYONLY FROM URL = @p1", u1)
	exec(t, db, "RESTORE VERIFYONLY FROM URL = @p1, URL = @p2 WITH CHECKSUM", u1, u2)
}

// TestBackupToURLRules covers the S3 connector's rules on the statement:
// MAXTRANSFERSIZE and COMPRESSION, the device name's length, the number
// of URLs, and FORMAT to overwrite.
func TestBackupToURLRules(t *testing.T) {
	s3 := miniotest.Start(t)
	s3.MakeBucket(t, "sql")
	_, db := startInstance(t, Config{TrustedCAs: s3.CertPool()})
	exec(t, db, "CREATE DATABASE [d]")
	base := fmt.Sprintf("s3://%s/sql", s3.Endpoint)
	exec(t, db, fmt.Sprintf("CREATE CREDENTIAL [%s] WITH IDENTITY = 'S3 Access Key', SECRET = '%s:%s'", base, s3.AccessKey, s3.SecretKey))

	n := 0
	fresh := func() string { n++; return fmt.Sprintf("%s/rules/%d.bak", base, n) }
	long := func(length int) string {
		u := base + "/"
		return u + strings.Repeat("k", length-len(u))
	}
	for _, c := range []struct {
		name string
		q    string
		url  string
		want []int32 // nil: succeeds
	}{
		{"default part size", "BACKUP DATABASE [d] TO URL = @p1", fresh(), nil},
		{"10 MB named", "BACKUP DATABASE [d] TO URL = @p1 WITH MAXTRANSFERSIZE = 10485760", fresh(), nil},
		{"5 MB without COMPRESSION", "BACKUP DATABASE [d] TO URL = @p1 WITH MAXTRANSFERSIZE = 5242880", fresh(), []int32{3250, 3013}},
		{"20 MB without COMPRESSION", "BACKUP DATABASE [d] TO URL = @p1 WITH MAXTRANSFERSIZE = 20971520, NO_COMPRESSION", fresh(), []int32{3250, 3013}},
		{"5 MB with COMPRESSION", "BACKUP DATABASE [d] TO URL = @p1 WITH MAXTRANSFERSIZE = 5242880, COMPRESSION", fresh(), nil},
		{"20 MB with COMPRESSION", "BACKUP DATABASE [d] TO URL = @p1 WITH MAXTRANSFERSIZE = 20971520, COMPRESSION", fresh(), nil},
		{"below 5 MB", "BACKUP DATABASE [d] TO URL = @p1 WITH MAXTRANSFERSIZE = 4194304, COMPRESSION", fresh(), []int32{3250, 3013}},
		{"above 20 MB", "BACKUP DATABASE [d] TO URL = @p1 WITH MAXTRANSFERSIZE = 22020096, COMPRESSION", fresh(), []int32{3250, 3013}},
		{"not a multiple of 64 KB", "BACKUP DATABASE [d] TO URL = @p1 WITH MAXTRANSFERSIZE = 5300000, COMPRESSION", fresh(), []int32{3250, 3013}},
		{"BUFFERCOUNT 0", "BACKUP DATABASE [d] TO URL = @p1 WITH BUFFERCOUNT = 0", fresh(), []int32{3250, 3013}},
		{"URL of 259 characters", "BACKUP DATABASE [d] TO URL = @p1", long(259), nil},
		{"URL of 260 characters", "BACKUP DATABASE [d] TO URL = @p1", long(260), []int32{3057, 3013}},
		{"existing object", "BACKUP DATABASE [d] TO URL = @p1", base + "/rules/1.bak", []int32{3201, 3013}},
		{"existing object, INIT", "BACKUP DATABASE [d] TO URL = @p1 WITH INIT", base + "/rules/1.bak", []int32{3201, 3013}},
		{"existing object, NOINIT", "BACKUP DATABASE [d] TO URL = @p1 WITH NOINIT", base + "/rules/1.bak", []int32{3201, 3013}},
		{"existing object, FORMAT", "BACKUP DATABASE [d] TO URL = @p1 WITH FORMAT", base + "/rules/1.bak", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := db.ExecContext(t.Context(), c.q, c.url)
			if got := allNumbers(err); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("got errors %v (%v), want %v", got, err, c.want)
			}
		})
	}

	t.Run("65 URLs", func(t *testing.T) {
		q, args := "BACKUP DATABASE [d] TO ", []any{}
		for k := range 65 {
			if k > 0 {
				q += ", "
			}
			q += fmt.Sprintf("URL = @p%d", k+1)
			args = append(args, fmt.Sprintf("%s/many/%d.bak", base, k))
		}
		_, err := db.ExecContext(t.Context(), q, args...)
		if got := allNumbers(err); fmt.Sprint(got) != "[3205 3013]" {
			t.Fatalf("got errors %v (%v), want [3205 3013]", got, err)
		}
	})
	t.Run("MAXTRANSFERSIZE over 4 MB to disk", func(t *testing.T) {
		wantErr(t, db, 3250, "BACKUP DATABASE [d] TO DISK = 'd.bak' WITH MAXTRANSFERSIZE = 5242880, COMPRESSION")
		exec(t, db, "BACKUP DATABASE [d] TO DISK = 'd.bak' WITH MAXTRANSFERSIZE = 4194304")
	})
}

// TestURLCredential: the credential of a URL is the one named by the URL
// or by the URL cut at a '/', the most specific first, down to the
// bucket; a name that matches part of a segment, carries a trailing '/',
// or stops above the bucket is no match.
func TestURLCredential(t *testing.T) {
	s3 := miniotest.Start(t)
	s3.MakeBucket(t, "sql")
	base := fmt.Sprintf("s3://%s/sql", s3.Endpoint)
	good := s3.AccessKey + ":" + s3.SecretKey
	const bad = "nobody:wrongsecret1"
	for _, c := range []struct {
		name  string
		creds map[string]string // name: secret
		url   string
		with  string // WITH CREDENTIAL
		want  []int32
	}{
		{"the bucket's", map[string]string{base: good}, base + "/a/1.bak", "", nil},
		{"the longest prefix wins", map[string]string{base: bad, base + "/a": good}, base + "/a/1.bak", "", nil},
		{"the whole URL", map[string]string{base + "/a": bad, base + "/a/2.bak": good}, base + "/a/2.bak", "", nil},
		{"the longest prefix, wrong key", map[string]string{base: good, base + "/a": bad}, base + "/a/3.bak", "", []int32{3201, 3013}},
		{"part of a segment is no prefix", map[string]string{base: good, base + "/a": bad}, base + "/ab/1.bak", "", nil},
		{"a trailing slash matches nothing", map[string]string{base + "/a/": good}, base + "/a/4.bak", "", []int32{3201, 3013}},
		{"the host alone matches nothing", map[string]string{"s3://" + s3.Endpoint: good}, base + "/a/5.bak", "", []int32{3201, 3013}},
		{"WITH CREDENTIAL wins", map[string]string{base: bad, "mine": good}, base + "/a/6.bak", "mine", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, db := startInstance(t, Config{TrustedCAs: s3.CertPool()})
			exec(t, db, "CREATE DATABASE [d]")
			for name, secret := range c.creds {
				exec(t, db, fmt.Sprintf("CREATE CREDENTIAL [%s] WITH IDENTITY = 'S3 Access Key', SECRET = '%s'", name, secret))
			}
			q := "BACKUP DATABASE [d] TO URL = @p1 WITH FORMAT"
			if c.with != "" {
				q += ", CREDENTIAL = '" + c.with + "'"
			}
			_, err := db.ExecContext(t.Context(), q, c.url)
			if got := allNumbers(err); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("got errors %v (%v), want %v", got, err, c.want)
			}
		})
	}
}

// TestBackupToURLFailures covers endpoints SQL Server will not talk to
// (untrusted certificate, no TLS), a missing credential, an upload that
// fails half-way and a stripe that needs more than 10,000 parts.
func TestBackupToURLFailures(t *testing.T) {
	s3 := miniotest.Start(t)
	s3.MakeBucket(t, "sql")
	base := fmt.Sprintf("s3://%s/sql", s3.Endpoint)
	cred := fmt.Sprintf("CREATE CREDENTIAL [%s] WITH IDENTITY = 'S3 Access Key', SECRET = '%s:%s'", base, s3.AccessKey, s3.SecretKey)

	t.Run("untrusted CA", func(t *testing.T) {
		_, db := startInstance(t, Config{})
		exec(t, db, "CREATE DATABASE [d]")
		exec(t, db, cred)
		err := wantErr(t, db, 3201, "BACKUP DATABASE [d] TO URL = @p1", base+"/untrusted.bak")
		if !strings.Contains(err.Error(), "Operating system error 12175(") {
			t.Errorf("error %q is not WinHTTP's secure failure 12175", err)
		}
		if got := allNumbers(err); fmt.Sprint(got) != "[3201 3013]" {
			t.Errorf("got errors %v, want [3201 3013]", got)
		}
	})
	t.Run("endpoint without TLS", func(t *testing.T) {
		var requests sync.Map
		plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Store(r.Method+" "+r.URL.String(), true)
			w.WriteHeader(http.StatusOK)
		}))
		t.Cleanup(plain.Close)
		_, db := startInstance(t, Config{TrustedCAs: s3.CertPool()})
		exec(t, db, "CREATE DATABASE [d]")
		u := "s3://" + plain.Listener.Addr().String() + "/sql"
		exec(t, db, fmt.Sprintf("CREATE CREDENTIAL [%s] WITH IDENTITY = 'S3 Access Key', SECRET = 'k:s'", u))
		err := wantErr(t, db, 3201, "BACKUP DATABASE [d] TO URL = @p1", u+"/plain.bak")
		if !strings.Contains(err.Error(), "Operating system error 12175(") {
			t.Errorf("error %q is not WinHTTP's secure failure 12175", err)
		}
		requests.Range(func(k, _ any) bool {
			t.Errorf("a plain HTTP request reached the endpoint: %s", k)
			return true
		})
	})
	t.Run("http URL", func(t *testing.T) {
		_, db := startInstance(t, Config{TrustedCAs: s3.CertPool()})
		exec(t, db, "CREATE DATABASE [d]")
		exec(t, db, cred)
		wantErr(t, db, 3201, "BACKUP DATABASE [d] TO URL = @p1", "http://"+s3.Endpoint+"/sql/http.bak")
	})
	t.Run("no credential", func(t *testing.T) {
		_, db := startInstance(t, Config{TrustedCAs: s3.CertPool()})
		exec(t, db, "CREATE DATABASE [d]")
		wantErr(t, db, 3201, "BACKUP DATABASE [d] TO URL = @p1", base+"/nocred.bak")
	})
	t.Run("no bucket", func(t *testing.T) {
		_, db := startInstance(t, Config{TrustedCAs: s3.CertPool()})
		exec(t, db, "CREATE DATABASE [d]")
		exec(t, db, fmt.Sprintf("CREATE CREDENTIAL [s3://%s/nobucket] WITH IDENTITY = 'S3 Access Key', SECRET = '%s:%s'", s3.Endpoint, s3.AccessKey, s3.SecretKey))
		err := wantErr(t, db, 3201, "BACKUP DATABASE [d] TO URL = @p1", "s3://"+s3.Endpoint+"/nobucket/x.bak")
		if !strings.Contains(err.Error(), "Operating system error 50(") {
			t.Errorf("error %q: want operating system error 50, as SQL Server gives for a bucket that does not exist", err)
		}
	})
	t.Run("upload fails", func(t *testing.T) {
		inst, db := startInstance(t, Config{TrustedCAs: s3.CertPool(), DefaultPages: 2048})
		exec(t, db, "CREATE DATABASE [d]")
		exec(t, db, cred)
		remove := inst.InjectFault(Fault{Kind: FaultUploadFailure, AfterBytes: 12 << 20})
		defer remove()
		_, err := db.ExecContext(t.Context(), "BACKUP DATABASE [d] TO URL = @p1", base+"/failed.bak")
		if got := allNumbers(err); fmt.Sprint(got) != "[3202 3013]" {
			t.Fatalf("got errors %v (%v), want [3202 3013]", got, err)
		}
		wantUnfinished(t, s3, "failed.bak")
		var n int
		if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM msdb.dbo.backupset").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("msdb.dbo.backupset rows after a failed backup: got %d, want 0", n)
		}
	})
	t.Run("the endpoint refuses a part", func(t *testing.T) {
		p := newS3Proxy(t, s3)
		p.refuse = func(r *http.Request) bool { return r.URL.Query().Get("partNumber") == "2" }
		_, db := startInstance(t, Config{TrustedCAs: p.pool(), DefaultPages: 3000})
		exec(t, db, "CREATE DATABASE [d]")
		exec(t, db, p.credential("sql", s3))
		_, err := db.ExecContext(t.Context(), "BACKUP DATABASE [d] TO URL = @p1", p.url("sql", "refused.bak"))
		if got := allNumbers(err); fmt.Sprint(got) != "[3202 3013]" {
			t.Fatalf("got errors %v (%v), want [3202 3013]", got, err)
		}
		wantUnfinished(t, s3, "refused.bak")
	})
	t.Run("more than 10,000 parts", func(t *testing.T) {
		inst, db := startInstance(t, Config{TrustedCAs: s3.CertPool(), DefaultPages: 3000})
		inst.maxURLParts.Store(2) // 24 MB in 10 MB parts needs three
		exec(t, db, "CREATE DATABASE [d]")
		exec(t, db, cred)
		_, err := db.ExecContext(t.Context(), "BACKUP DATABASE [d] TO URL = @p1", base+"/huge.bak")
		if got := allNumbers(err); fmt.Sprint(got) != "[3202 3013]" || !strings.Contains(err.Error(), "failed: 87(The parameter is incorrect.)") {
			t.Fatalf("got errors %v (%v), want [3202 3013] with operating system error 87", got, err)
		}
		wantUnfinished(t, s3, "huge.bak")
	})
}

// wantUnfinished checks that a failed backup left its multipart upload
// behind and no object, as SQL Server 2022 does.
func wantUnfinished(t *testing.T, s3 *miniotest.Server, key string) {
	t.Helper()
	if _, err := s3.Client(t).StatObject(t.Context(), "sql", key, minio.StatObjectOptions{}); err == nil {
		t.Errorf("%s: a failed backup left a complete object", key)
	}
	uploads := 0
	for u := range s3.Client(t).ListIncompleteUploads(context.Background(), "sql", key, true) {
		if u.Err == nil && u.Key == key {
			uploads++
		}
	}
	if uploads != 1 {
		t.Errorf("%s: unfinished multipart uploads: got %d, want 1 (SQL Server 2022 leaves one behind)", key, uploads)
	}
}

// TestBackupToURLConcurrentParts: parts are uploaded several at once, up
// to BUFFERCOUNT, so the endpoint sees a later part while an earlier one
// is still in flight, and the upload completes in part order. The proxy
// holds part 1 back until part 2 has arrived: an uploader that sends one
// part at a time would never send part 2.
func TestBackupToURLConcurrentParts(t *testing.T) {
	s3 := miniotest.Start(t)
	s3.MakeBucket(t, "sql")
	for _, c := range []struct {
		name        string
		opts        string
		hold        bool
		maxInFlight int // the most parts in flight at once; 0: two or more
	}{
		{"default BUFFERCOUNT", "", true, 0},
		{"BUFFERCOUNT 2", ", BUFFERCOUNT = 2", true, 2},
		{"BUFFERCOUNT 1", ", BUFFERCOUNT = 1", false, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newS3Proxy(t, s3)
			if c.hold {
				p.holdUntil(
					func(r *http.Request) bool { return r.URL.Query().Get("partNumber") == "1" },
					func(r *http.Request) bool { return r.URL.Query().Get("partNumber") == "2" })
			}
			inst, db := startInstance(t, Config{TrustedCAs: p.pool(), DefaultPages: 5000})
			exec(t, db, "CREATE DATABASE [d]")
			if _, err := inst.Commit("d", 100); err != nil {
				t.Fatal(err)
			}
			exec(t, db, p.credential("sql", s3))
			u := p.url("sql", "parts.bak")
			exec(t, db, "BACKUP DATABASE [d] TO URL = @p1 WITH FORMAT"+c.opts, u)

			p.mu.Lock()
			parts, most, timedOut := append([]partRequest(nil), p.parts...), p.maxInFlight, p.timedOut
			p.mu.Unlock()
			if timedOut {
				t.Error("part 2 never came while part 1 was held: parts are sent one at a time")
			}
			if c.maxInFlight > 0 && most != c.maxInFlight || c.maxInFlight == 0 && most < 2 {
				t.Errorf("parts in flight at once: got %d, want %d (0: two or more)", most, c.maxInFlight)
			}
			// 40 MB of pages: three full parts of 10 MiB and a last one
			if len(parts) < 4 {
				t.Fatalf("got %d parts, want 4 or more", len(parts))
			}
			sizes := map[int]int64{}
			for _, pr := range parts {
				sizes[pr.num] = pr.size
			}
			for num := 1; num < len(parts); num++ {
				if sizes[num] != 10<<20 {
					t.Errorf("part %d: %d bytes, want MAXTRANSFERSIZE's default, 10 MB", num, sizes[num])
				}
			}

			want := queryHash(t, db, "d", zeroTime)
			dir := t.TempDir()
			exec(t, db, "RESTORE DATABASE [copy] FROM URL = @p1 WITH MOVE 'd' TO @p2, MOVE 'd_log' TO @p3",
				u, filepath.Join(dir, "c.mdf"), filepath.Join(dir, "c.ldf"))
			if got := queryHash(t, db, "copy", zeroTime); got != want {
				t.Errorf("restored: hash %s, want %s", got, want)
			}
		})
	}
}

// TestRestoreFromURLRanged: every form of RESTORE reads a URL with ranged
// GETs, several in flight, never one GET of the whole object. The proxy
// holds the first GET back until a second has arrived.
func TestRestoreFromURLRanged(t *testing.T) {
	s3 := miniotest.Start(t)
	s3.MakeBucket(t, "sql")
	p := newS3Proxy(t, s3)
	inst, db := startInstance(t, Config{TrustedCAs: p.pool(), DefaultPages: 5000})
	exec(t, db, "CREATE DATABASE [d]")
	if _, err := inst.Commit("d", 100); err != nil {
		t.Fatal(err)
	}
	exec(t, db, p.credential("sql", s3))
	u := p.url("sql", "ranged.bak")
	exec(t, db, "BACKUP DATABASE [d] TO URL = @p1 WITH FORMAT", u)
	want := queryHash(t, db, "d", zeroTime)
	dir := t.TempDir()
	for k, q := range []string{
		"RESTORE HEADERONLY FROM URL = @p1",
		"RESTORE FILELISTONLY FROM URL = @p1",
		"RESTORE LABELONLY FROM URL = @p1",
		"RESTORE VERIFYONLY FROM URL = @p1",
		fmt.Sprintf("RESTORE DATABASE [copy] FROM URL = @p1 WITH MOVE 'd' TO '%s', MOVE 'd_log' TO '%s'",
			filepath.Join(dir, "c.mdf"), filepath.Join(dir, "c.ldf")),
	} {
		t.Run(strings.Fields(q)[1], func(t *testing.T) {
			p.reset()
			if k == 0 {
				// the first GET waits for another: reads are concurrent
				p.holdUntil(
					func(r *http.Request) bool { return r.Method == http.MethodGet },
					func(r *http.Request) bool { return r.Method == http.MethodGet })
			}
			exec(t, db, q, u)
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.timedOut {
				t.Error("no second GET came while the first was held: reads are not concurrent")
			}
			if len(p.gets) == 0 {
				t.Fatal("no GET reached the endpoint")
			}
			for _, g := range p.gets {
				first, last, ok := parseRange(g)
				if !ok {
					t.Errorf("GET with Range %q: want bytes=first-last", g)
					continue
				}
				if n := last - first + 1; n > 10<<20 {
					t.Errorf("GET of %d bytes (%s): want ranges of at most 10 MB", n, g)
				}
			}
		})
	}
	if got := queryHash(t, db, "copy", zeroTime); got != want {
		t.Errorf("restored: hash %s, want %s", got, want)
	}
}

func parseRange(h string) (first, last int64, ok bool) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, 0, false
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	return first, last, err1 == nil && err2 == nil && last >= first
}

// s3Proxy is a TLS reverse proxy in front of MinIO that records what the
// simulator sends (parts, ranges, requests in flight), can hold a request
// back until another arrives, and can refuse requests.
type s3Proxy struct {
	srv    *httptest.Server
	refuse func(*http.Request) bool // set before use

	mu          sync.Mutex
	inFlight    int
	maxInFlight int
	parts       []partRequest
	gets        []string // Range headers of GETs of an object
	// holdUntil's state: the first request matching first waits until
	// one matching second arrives, before or after it
	first, second func(*http.Request) bool
	picked        bool
	released      chan struct{}
	timedOut      bool
}

type partRequest struct {
	num  int
	size int64
}

func newS3Proxy(t *testing.T, s3 *miniotest.Server) *s3Proxy {
	t.Helper()
	target, err := url.Parse(s3.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := &s3Proxy{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // the client signed the host it dialled
		},
		Transport: s3.Transport(),
	}
	p.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hold := p.enter(r)
		defer p.leave()
		if p.refuse != nil && p.refuse(r) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, "<Error><Code>InternalError</Code><Message>refused by the test</Message></Error>")
			return
		}
		if hold != nil {
			select {
			case <-hold:
			case <-time.After(10 * time.Second):
				p.mu.Lock()
				p.timedOut = true
				p.mu.Unlock()
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// holdUntil makes the first request matching first wait until one
// matching second has arrived (at most 10 s, then timedOut is set).
func (p *s3Proxy) holdUntil(first, second func(*http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.first, p.second, p.picked, p.released = first, second, false, make(chan struct{})
}

// reset forgets what was recorded and any hold.
func (p *s3Proxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maxInFlight, p.parts, p.gets, p.timedOut = 0, nil, nil, false
	p.first, p.second = nil, nil
}

// enter records r and returns what it must wait for, if anything.
func (p *s3Proxy) enter(r *http.Request) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight++
	p.maxInFlight = max(p.maxInFlight, p.inFlight)
	q := r.URL.Query()
	if n, err := strconv.Atoi(q.Get("partNumber")); err == nil && r.Method == http.MethodPut {
		p.parts = append(p.parts, partRequest{num: n, size: r.ContentLength})
	}
	if r.Method == http.MethodGet && len(strings.Split(strings.Trim(r.URL.Path, "/"), "/")) > 1 && !q.Has("uploadId") {
		p.gets = append(p.gets, r.Header.Get("Range"))
	}
	if p.first == nil {
		return nil
	}
	if !p.picked && p.first(r) {
		p.picked = true
		return p.released
	}
	if p.second(r) {
		select {
		case <-p.released:
		default:
			close(p.released)
		}
	}
	return nil
}

func (p *s3Proxy) leave() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight--
}

// pool returns the CAs an instance needs to trust the proxy.
func (p *s3Proxy) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.srv.Certificate())
	return pool
}

// url returns the s3:// URL of key in bucket through the proxy.
func (p *s3Proxy) url(bucket, key string) string {
	return "s3://" + p.srv.Listener.Addr().String() + "/" + bucket + "/" + key
}

// credential returns the CREATE CREDENTIAL for bucket through the proxy.
func (p *s3Proxy) credential(bucket string, s3 *miniotest.Server) string {
	return fmt.Sprintf("CREATE CREDENTIAL [s3://%s/%s] WITH IDENTITY = 'S3 Access Key', SECRET = '%s:%s'",
		p.srv.Listener.Addr().String(), bucket, s3.AccessKey, s3.SecretKey)
}

// TestVersion2019: an instance configured as SQL Server 2019 says so, has
// no S3 connector (an s3:// URL is refused as 2019 refuses a URL it
// cannot open, and nothing reaches the endpoint), and cannot restore a
// backup SQL Server 2022 wrote.
func TestVersion2019(t *testing.T) {
	s3 := miniotest.Start(t)
	s3.MakeBucket(t, "sql")
	p := newS3Proxy(t, s3)
	_, db19 := startInstance(t, Config{MajorVersion: 15, TrustedCAs: p.pool()})
	_, db22 := startInstance(t, Config{TrustedCAs: p.pool()})

	for _, c := range []struct {
		db                   *sql.DB
		version, major, year string
	}{
		{db19, "15.0.4385.2", "15", "Microsoft SQL Server 2019 "},
		{db22, Version, "16", "Microsoft SQL Server 2022 "},
	} {
		var version, major, full string
		if err := c.db.QueryRowContext(t.Context(), "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)), CAST(SERVERPROPERTY('ProductMajorVersion') AS nvarchar(128)), @@VERSION").Scan(&version, &major, &full); err != nil {
			t.Fatal(err)
		}
		if version != c.version || major != c.major || !strings.HasPrefix(full, c.year) {
			t.Errorf("got ProductVersion %q, ProductMajorVersion %q, @@VERSION %q; want %q, %q, %q...", version, major, full, c.version, c.major, c.year)
		}
	}

	exec(t, db19, "CREATE DATABASE [d]")
	exec(t, db19, p.credential("sql", s3))
	_, err := db19.ExecContext(t.Context(), "BACKUP DATABASE [d] TO URL = @p1", p.url("sql", "2019.bak"))
	if got := allNumbers(err); fmt.Sprint(got) != "[3201 3013]" || !strings.Contains(err.Error(), "Operating system error 50(") {
		t.Fatalf("BACKUP TO s3:// on 2019: got errors %v (%v), want [3201 3013] with operating system error 50", got, err)
	}
	wantErr(t, db19, 3201, "RESTORE HEADERONLY FROM URL = @p1", p.url("sql", "2019.bak"))
	p.mu.Lock()
	if p.maxInFlight != 0 {
		t.Error("SQL Server 2019 sent a request to the S3 endpoint")
	}
	p.mu.Unlock()

	// a 2022 backup does not restore on 2019; a 2019 backup restores on 2022
	dir := t.TempDir()
	f22, f19 := filepath.Join(dir, "22.bak"), filepath.Join(dir, "19.bak")
	exec(t, db22, "CREATE DATABASE [n]")
	exec(t, db22, "BACKUP DATABASE [n] TO DISK = @p1", f22)
	_, err = db19.ExecContext(t.Context(), "RESTORE DATABASE [n] FROM DISK = @p1 WITH MOVE 'n' TO @p2, MOVE 'n_log' TO @p3",
		f22, filepath.Join(dir, "n19.mdf"), filepath.Join(dir, "n19.ldf"))
	if got := allNumbers(err); fmt.Sprint(got) != "[3169 3013]" {
		t.Errorf("RESTORE of a 2022 backup on 2019: got errors %v (%v), want [3169 3013]", got, err)
	}
	exec(t, db19, "BACKUP DATABASE [d] TO DISK = @p1", f19)
	exec(t, db22, "RESTORE DATABASE [d19] FROM DISK = @p1 WITH MOVE 'd' TO @p2, MOVE 'd_log' TO @p3",
		f19, filepath.Join(dir, "d22.mdf"), filepath.Join(dir, "d22.ldf"))
	for path, want := range map[string]int{f19: 15, f22: 16} {
		if h := headerOnly(t, db22, path); len(h) != 1 || h[0].SoftwareMajor != want {
			t.Errorf("HEADERONLY of %s: %+v, want one set with SoftwareVersionMajor %d", path, h, want)
		}
	}
}
