package streamer

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/pkg/s3endpoint"
	"github.com/cofferhq/coffer/pkg/tlsbatch"
	"github.com/cofferhq/coffer/pkg/tlsca"
	"github.com/cofferhq/coffer/pkg/vault"
)

// URL mode. SQL Server 2022 writes a backup with BACKUP ... TO URL and
// reads one with RESTORE ... FROM URL from any S3-compatible endpoint; the
// streamer is that endpoint (pkg/s3endpoint), so that a backup flows from
// SQL Server into the vault's chunk pipeline, and a restore out of the
// vault, with no staging disk in between. Each job has its own access
// key, scoped to its own prefix (bucket/<job id>/) and known only while
// the job runs, and the instance gets a credential for that prefix that
// the job drops when it ends.

// Endpoint configures the streamer's S3 endpoint. URL mode is on when TLS
// is set: SQL Server talks to an S3 endpoint over HTTPS only, and trusts
// the certificate only if its host trusts the CA that issued it.
type Endpoint struct {
	// Addr is where the endpoint listens, such as ":9443" or
	// "127.0.0.1:0". Listener, when set, is used instead.
	Addr     string
	Listener net.Listener
	// Advertise is the host:port SQL Server reaches the endpoint at.
	// Default: the listener's address.
	Advertise string
	// TLS holds the endpoint's certificate.
	TLS *tls.Config
	// Bucket is the bucket name in the URLs. Default "coffer".
	Bucket string
	// CAFile is the path of the certificate of the CA that issued TLS's
	// certificate, named in what the URL check tells an operator to copy
	// to SQL Server's host. NewEndpoint sets it.
	CAFile string
	// StripeBytes is how much of a database's size one URL carries
	// before a backup is striped over another: a database of 120 GB is
	// backed up to three URLs at once. Default 50 GB: SQL Server sends at
	// most 10,000 parts of MAXTRANSFERSIZE (10 MB, as coffer sends it) to
	// one URL, about 100 GB, and half of that leaves room for a database
	// that grows during its backup.
	StripeBytes int64
}

// defaultStripeBytes is Endpoint.StripeBytes's default.
const defaultStripeBytes = 50_000_000_000

// maxStripes is the most URLs one backup goes to (SQL Server's limit).
const maxStripes = 64

func (e Endpoint) enabled() bool { return e.TLS != nil }

// NewEndpoint makes the Endpoint that listens on listen and that SQL
// Server reaches at advertise (default: the listening address), with a
// certificate for the advertised host issued by the CA kept in caDir
// (created there on first use; an operator's CA placed there is used as
// it is). The CA is returned for the operator's instructions.
func NewEndpoint(listen, advertise, caDir string) (Endpoint, *tlsca.CA, error) {
	ca, err := tlsca.Ensure(caDir)
	if err != nil {
		return Endpoint{}, nil, fmt.Errorf("coffer's CA: %w", err)
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return Endpoint{}, nil, fmt.Errorf("listen for SQL Server's backups on %s: %w", listen, err)
	}
	if advertise == "" {
		advertise = l.Addr().String()
	}
	host, _, err := net.SplitHostPort(advertise)
	if err != nil {
		l.Close()
		return Endpoint{}, nil, fmt.Errorf("advertised address %q: want host:port", advertise)
	}
	cert, err := ca.Issue([]string{host}, 2*365*24*time.Hour)
	if err != nil {
		l.Close()
		return Endpoint{}, nil, err
	}
	return Endpoint{Listener: l, Advertise: advertise, CAFile: filepath.Join(caDir, tlsca.CertFile),
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}, ca, nil
}

// urlEndpoint is the running endpoint: the keys of the jobs that run, and
// the objects each job writes or reads.
type urlEndpoint struct {
	cfg    Endpoint
	vault  *vault.Vault
	log    *slog.Logger
	server *s3endpoint.Server

	mu   sync.Mutex
	jobs map[string]*urlJob // by job id, which is also the access key id
}

// urlJob is one job's view of the endpoint.
type urlJob struct {
	key s3endpoint.Key
	// stripes, for a backup or a URL check: the objects SQL Server
	// uploads, by name under the job's prefix, each into its own writer
	stripes map[string]*stripe
	// objects the job lets SQL Server read, by name under its prefix: the
	// backup it just wrote (for RESTORE HEADERONLY), or the recovery
	// points a restore applies
	objects map[string][]vault.ChunkRef
	// from is the vault each object is in; the endpoint's own (the
	// default) when it names none
	from map[string]*vault.Vault
	// stripes of the backup each object belongs to, which SQL Server
	// reads at once and whose readers share readerCacheBytes
	siblings map[string]int
	// readers serve the objects: one per object for the whole job, so
	// that the ranged GETs SQL Server sends share its cache and read-ahead
	readers map[string]*vault.ReaderAt
	// readErr is the first damage a read met, for the job's reason
	readErr error
}

func newURLEndpoint(cfg Endpoint, v *vault.Vault, log *slog.Logger, now func() time.Time) (*urlEndpoint, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = "coffer"
	}
	if cfg.StripeBytes <= 0 {
		cfg.StripeBytes = defaultStripeBytes
	}
	e := &urlEndpoint{cfg: cfg, vault: v, log: log, jobs: map[string]*urlJob{}}
	// SQL Server uploads a few parts at once (BUFFERCOUNT), each held
	// whole until its turn; two parts queued keep the vault's writer fed
	// while SQL Server sends the next, and no more, so that the
	// streamer's memory stays small
	srv, err := s3endpoint.New(s3endpoint.Config{Keys: e, Store: e, Now: now, Logger: log, MaxQueuedParts: 2})
	if err != nil {
		return nil, err
	}
	e.server = srv
	return e, nil
}

// listen opens the endpoint's listener, so that its address is known
// before any job names it in a URL.
func (e *urlEndpoint) listen() error {
	if e.cfg.Listener == nil {
		l, err := net.Listen("tcp", e.cfg.Addr)
		if err != nil {
			return fmt.Errorf("listen for SQL Server's backups on %s: %w", e.cfg.Addr, err)
		}
		e.cfg.Listener = l
	}
	if e.cfg.Advertise == "" {
		e.cfg.Advertise = e.cfg.Listener.Addr().String()
	}
	return nil
}

// serve runs the HTTPS endpoint until ctx ends.
func (e *urlEndpoint) serve(ctx context.Context) error {
	l := e.cfg.Listener
	hs := &http.Server{Handler: e.server, TLSConfig: e.cfg.TLS, ReadHeaderTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(e.log.Handler(), slog.LevelWarn)}
	done := make(chan error, 1)
	// each Write's TLS records in one system call: a quarter less CPU
	// for a restore's bodies on both ends (see tlsbatch)
	go func() { done <- hs.Serve(tlsbatch.NewListener(l, e.cfg.TLS)) }()
	e.log.InfoContext(ctx, "S3 endpoint for SQL Server serving", slog.String("advertise", e.cfg.Advertise))
	select {
	case err := <-done:
		return fmt.Errorf("S3 endpoint: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}

// prefix is the URL prefix of a job: its credential's name.
func (e *urlEndpoint) prefix(jid string) string {
	return "s3://" + e.cfg.Advertise + "/" + e.cfg.Bucket + "/" + jid
}

// url is the URL of object name of a job.
func (e *urlEndpoint) url(jid, name string) string { return e.prefix(jid) + "/" + name }

// credentialPrefix is what every credential of this endpoint begins with.
func (e *urlEndpoint) credentialPrefix() string {
	return "s3://" + e.cfg.Advertise + "/" + e.cfg.Bucket + "/"
}

// open gives job jid an access key, valid until it is closed, and
// returns it with its secret.
func (e *urlEndpoint) open(jid string) (*urlJob, error) {
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	j := &urlJob{key: s3endpoint.Key{ID: jid, Secret: hex.EncodeToString(secret), Bucket: e.cfg.Bucket, Prefix: jid + "/"},
		stripes: map[string]*stripe{}, objects: map[string][]vault.ChunkRef{}, from: map[string]*vault.Vault{}, siblings: map[string]int{},
		readers: map[string]*vault.ReaderAt{}}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.jobs[jid]; ok {
		return nil, fmt.Errorf("job %s is already using the S3 endpoint", jid)
	}
	e.jobs[jid] = j
	return j, nil
}

// close withdraws a job's key: its uploads still running are aborted and
// its objects can no longer be read.
func (e *urlEndpoint) close(jid string) {
	e.mu.Lock()
	j := e.jobs[jid]
	delete(e.jobs, jid)
	e.mu.Unlock()
	e.server.Abort(jid, errors.New("the job ended"))
	if j != nil {
		for _, r := range j.readers {
			r.Close()
		}
	}
}

func (e *urlEndpoint) job(id string) *urlJob {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.jobs[id]
}

// Lookup finds the key of a running job (s3endpoint.Keys).
func (e *urlEndpoint) Lookup(_ context.Context, id string) (s3endpoint.Key, bool, error) {
	j := e.job(id)
	if j == nil {
		return s3endpoint.Key{}, false, nil
	}
	return j.key, true, nil
}

// jobOf splits an object name into its job and the name under the job's
// prefix; the key's scope has already made sure the job is the caller's.
func (e *urlEndpoint) jobOf(bucket, key string) (*urlJob, string, error) {
	jid, name, ok := strings.Cut(key, "/")
	j := e.job(jid)
	if bucket != e.cfg.Bucket || !ok || j == nil {
		return nil, "", s3endpoint.ErrNotExist
	}
	return j, name, nil
}

// stripe is one URL of a backup: the writer its upload feeds (a vault
// writer, or io.Discard for a URL check), and what became of the upload.
type stripe struct {
	writer    io.Writer
	uploading bool
	completed bool
	aborted   error
}

// NewUpload starts SQL Server's upload of one of a job's stripes into the
// stripe's writer (s3endpoint.Store). Each stripe takes one upload.
func (e *urlEndpoint) NewUpload(_ context.Context, bucket, key string) (s3endpoint.Upload, error) {
	j, name, err := e.jobOf(bucket, key)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st := j.stripes[name]
	if st == nil {
		return nil, fmt.Errorf("job %s takes no backup to %q", j.key.ID, name)
	}
	if st.uploading || st.completed {
		return nil, fmt.Errorf("job %s already has its upload to %q", j.key.ID, name)
	}
	st.uploading = true
	return &stripeUpload{e: e, st: st}, nil
}

// stripeUpload feeds an upload, part after part, into its stripe's
// writer.
type stripeUpload struct {
	e  *urlEndpoint
	st *stripe
}

func (u *stripeUpload) Write(p []byte) (int, error) { return u.st.writer.Write(p) }

func (u *stripeUpload) Complete(context.Context) error {
	u.e.mu.Lock()
	defer u.e.mu.Unlock()
	u.st.completed = true
	return nil
}

func (u *stripeUpload) Abort(err error) {
	u.e.mu.Lock()
	defer u.e.mu.Unlock()
	if u.st.aborted == nil {
		u.st.aborted = err
	}
}

// Open serves an object a job may read (s3endpoint.Store): its chunks are
// read from the vault and authenticated as they are served.
func (e *urlEndpoint) Open(ctx context.Context, bucket, key string) (s3endpoint.Object, error) {
	j, name, err := e.jobOf(bucket, key)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	refs, ok := j.objects[name]
	if !ok {
		return nil, s3endpoint.ErrNotExist
	}
	r := j.readers[name]
	if r == nil {
		// SQL Server reads a chain's backups one after the other: the
		// readers of those it has read keep no cache
		for _, other := range j.readers {
			other.Trim()
		}
		v := j.from[name]
		if v == nil {
			v = e.vault
		}
		r = v.NewReaderAt(context.WithoutCancel(ctx), refs, readerOptions(refs, j.siblings[name]))
		j.readers[name] = r
	}
	return &jobObject{r: r, e: e, j: j, info: s3endpoint.ObjectInfo{Key: key, Size: r.Size(), ModTime: time.Unix(0, 0)}}, nil
}

// readerCacheBytes is the plaintext the readers of a backup's objects
// (one per stripe, read at once) keep cached between them, for the reads
// their sequential reader does not serve (see ReaderAtOptions.Forward):
// a backup's tail, a range read again, reads at random.
//
// SQL Server reads a restore forward, a few ranges of MAXTRANSFERSIZE in
// flight (the simulator: 4 of 10 MB). Served from this cache alone, with
// less room than the ranges in flight, read-ahead found one or two places
// free at a time and fetched chunks one or two per GET:
// BenchmarkBackup1GiB/url's restore made 1008 GETs where disk mode makes
// 107, and MinIO, at about a millisecond of CPU a GET on the benchmark's
// machine, spent 2.6 CPU-seconds a GiB (290 MB/s). Doubling the cache
// brought 218 GETs and 358 MB/s, for a peak RSS of 245 MiB; the ranges
// taking their turns on one sequential reader with this cache, 152 GETs
// (disk mode: 114), 355 MB/s (median of three runs) and 179 MiB.
const readerCacheBytes = 32 << 20

// readerOptions sizes the cache and read-ahead of the reader of refs, one
// of stripes objects read at once, by their chunks' mean size.
func readerOptions(refs []vault.ChunkRef, stripes int) vault.ReaderAtOptions {
	var size int64
	for _, c := range refs {
		size += c.Size
	}
	mean := max(size/int64(max(len(refs), 1)), 1)
	n := int(readerCacheBytes / int64(max(stripes, 1)) / mean)
	n = max(n, 16)
	return vault.ReaderAtOptions{CacheChunks: n, ReadAhead: max(n/3, 4), Forward: true}
}

// List lists the objects a job may read (s3endpoint.Store).
func (e *urlEndpoint) List(_ context.Context, bucket, prefix string) ([]s3endpoint.ObjectInfo, error) {
	jid, _, _ := strings.Cut(prefix, "/")
	j := e.job(jid)
	if j == nil || bucket != e.cfg.Bucket {
		return nil, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []s3endpoint.ObjectInfo
	for name, refs := range j.objects {
		var size int64
		for _, c := range refs {
			size += c.Size
		}
		if key := jid + "/" + name; strings.HasPrefix(key, prefix) {
			out = append(out, s3endpoint.ObjectInfo{Key: key, Size: size, ModTime: time.Unix(0, 0)})
		}
	}
	return out, nil
}

// jobObject is an object served to SQL Server; the first damage it meets
// is kept for the job's reason.
type jobObject struct {
	r    *vault.ReaderAt
	e    *urlEndpoint
	j    *urlJob
	info s3endpoint.ObjectInfo
}

func (o *jobObject) ReadAt(p []byte, off int64) (int, error) {
	n, err := o.r.ReadAt(p, off)
	o.failed(err)
	return n, err
}

// Section serves a ranged GET (s3endpoint.Sectioner): its reader, made
// with ReaderAtOptions.Forward, lets the ranges SQL Server has in flight
// take their turns on one sequential read of the backup.
func (o *jobObject) Section(off, n int64) io.ReadCloser {
	return &jobSection{ReadCloser: o.r.Section(off, n), o: o}
}

// failed keeps err, the first damage met, for the job's reason.
func (o *jobObject) failed(err error) {
	if err != nil && !errors.Is(err, io.EOF) {
		o.e.mu.Lock()
		if o.j.readErr == nil {
			o.j.readErr = err
		}
		o.e.mu.Unlock()
	}
}

// jobSection is a jobObject's section.
type jobSection struct {
	io.ReadCloser
	o *jobObject
}

func (s *jobSection) Read(p []byte) (int, error) {
	n, err := s.ReadCloser.Read(p)
	s.o.failed(err)
	return n, err
}

func (o *jobObject) Info() s3endpoint.ObjectInfo { return o.info }

// Close leaves the reader open for the job's next request; the job's end
// closes it.
func (o *jobObject) Close() error { return nil }
