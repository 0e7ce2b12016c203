package s3store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/internal/exact"
	"github.com/cofferhq/coffer/pkg/tlsbatch"
)

// Config says where a Store keeps its objects and how it reaches them.
type Config struct {
	// Endpoint is the S3 API address as host or host:port, without a
	// scheme, e.g. "s3.eu-west-1.amazonaws.com" or "10.0.0.5:9000".
	Endpoint string
	// Bucket is the bucket the objects live in. It must exist.
	Bucket string
	// Prefix, if set, is put before every key, so that several stores can
	// share a bucket. A trailing slash is added if missing.
	Prefix string
	// AccessKey and SecretKey are the static credentials to sign with.
	AccessKey, SecretKey string
	// Region is the bucket's region; empty means "us-east-1", which MinIO
	// accepts, and spares a bucket-location request.
	Region string

	// TLSConfig, if set, is the TLS configuration for the connection, for
	// instance to present a client certificate. It is cloned.
	TLSConfig *tls.Config
	// RootCAs, if set and TLSConfig is nil, is the pool of certificate
	// authorities trusted to sign the server's certificate. Nil (with a nil
	// TLSConfig) means the system pool.
	RootCAs *x509.CertPool
	// PlainHTTP turns TLS off. Only for a server on loopback or a trusted
	// network: credentials are still never sent, but data is, in the clear.
	PlainHTTP bool

	// Proxy, if set, is the HTTP proxy every request goes through, as
	// "http://host:port" or "https://host:port", with its credentials, if
	// it asks for them, as the URL's user and password (sent as Basic
	// proxy authentication). Nil means the proxy the environment names
	// (HTTPS_PROXY, NO_PROXY), as for any Go program.
	Proxy *url.URL

	// MaxIdleConns bounds idle connections kept to the endpoint; it should be
	// at least the number of concurrent callers. Zero means 64.
	MaxIdleConns int
}

func (c *Config) setDefaults() {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.MaxIdleConns == 0 {
		c.MaxIdleConns = 64
	}
	if c.Prefix != "" && !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Endpoint == "" {
		errs = append(errs, errors.New("endpoint is required"))
	} else if strings.Contains(c.Endpoint, "://") {
		errs = append(errs, fmt.Errorf("endpoint %q must not include a scheme", c.Endpoint))
	}
	if c.Bucket == "" {
		errs = append(errs, errors.New("bucket is required"))
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		errs = append(errs, errors.New("access key and secret key are required"))
	}
	if c.Prefix != "" {
		if strings.HasPrefix(c.Prefix, "/") {
			errs = append(errs, fmt.Errorf("prefix %q must not start with a slash", c.Prefix))
		} else if err := blob.ValidateKey(strings.TrimSuffix(c.Prefix, "/")); err != nil {
			errs = append(errs, fmt.Errorf("prefix: %w", err))
		}
	}
	if c.PlainHTTP && (c.TLSConfig != nil || c.RootCAs != nil) {
		errs = append(errs, errors.New("TLS settings given with plain HTTP"))
	}
	if p := c.Proxy; p != nil {
		switch {
		case p.Scheme != "http" && p.Scheme != "https":
			errs = append(errs, fmt.Errorf("proxy %s: want an http:// or https:// URL", p.Redacted()))
		case p.Host == "" || p.Path != "" && p.Path != "/" || p.RawQuery != "":
			errs = append(errs, fmt.Errorf("proxy %s: want a scheme, host and port, nothing after them", p.Redacted()))
		}
	}
	if c.MaxIdleConns < 0 {
		errs = append(errs, fmt.Errorf("max idle connections %d is negative", c.MaxIdleConns))
	}
	return errors.Join(errs...)
}

// Store is a [blob.Store] in an S3 bucket. Create one with [New].
type Store struct {
	client *minio.Client
	core   minio.Core
	bucket string
	prefix string
	secure bool
}

var (
	_ blob.Store   = (*Store)(nil)
	_ blob.Creator = (*Store)(nil)
)

// New returns a Store for cfg. It does not contact the server; the first
// operation does.
func New(cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("s3 store config: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = cfg.MaxIdleConns
	tr.MaxIdleConnsPerHost = cfg.MaxIdleConns
	tr.DisableCompression = true // objects must arrive as stored
	if cfg.Proxy != nil {
		tr.Proxy = http.ProxyURL(cfg.Proxy)
	}
	switch {
	case cfg.PlainHTTP:
	case cfg.TLSConfig != nil:
		tr.TLSClientConfig = cfg.TLSConfig.Clone()
	default:
		tr.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	}
	if tr.TLSClientConfig != nil {
		// a pack's upload goes out in 256 KiB writes, not one system call
		// per 16 KiB TLS record (see tlsbatch); through a proxy the
		// Transport makes its own TLS connection from TLSClientConfig
		tlsbatch.UseWith(tr)
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:    !cfg.PlainHTTP,
		Transport: tr,
		Region:    cfg.Region,
		// Lets uploads carry a CRC32C trailer instead of an MD5 or a
		// signed SHA-256 of the payload.
		TrailingHeaders: true,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 store for %s: %w", cfg.Endpoint, err)
	}
	return &Store{
		client: client,
		core:   minio.Core{Client: client},
		bucket: cfg.Bucket,
		prefix: cfg.Prefix,
		secure: !cfg.PlainHTTP,
	}, nil
}

func (s *Store) object(key string) (string, error) {
	if err := blob.ValidateKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

// isNoSuchKey reports whether err says the object is missing. A missing
// bucket is a different, configuration, error and is not mapped.
func isNoSuchKey(err error) bool {
	code := minio.ToErrorResponse(err).Code
	return code == minio.NoSuchKey || code == "NotFound"
}

// S3's limit on a single PUT, and the part size minio-go uses when
// none is set.
const (
	maxSinglePut    = 5 << 30
	defaultPartSize = 16 << 20
)

// Put implements [blob.Store].
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	name, err := s.object(key)
	if err != nil {
		return fmt.Errorf("put: %w", err)
	}
	if err := s.put(ctx, name, r, size, false); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// Create implements [blob.Creator] with a conditional PUT (If-None-Match:
// *), which S3 and MinIO refuse with 412 Precondition Failed when the
// object exists. It stores objects up to 5 GiB, in one request: the
// condition of a multipart upload would only be checked at its end.
func (s *Store) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	name, err := s.object(key)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	err = s.put(ctx, name, r, size, true)
	if isPreconditionFailed(err) {
		err = blob.ErrExist
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	return nil
}

// isPreconditionFailed reports whether err is S3's refusal of a
// conditional request.
func isPreconditionFailed(err error) bool {
	if err == nil {
		return false
	}
	resp := minio.ToErrorResponse(err)
	return resp.Code == minio.PreconditionFailed || resp.StatusCode == http.StatusPreconditionFailed
}

// put stores the object named name; if exclusive, only where there is
// none.
func (s *Store) put(ctx context.Context, name string, r io.Reader, size int64, exclusive bool) error {
	if size < 0 {
		return fmt.Errorf("negative size %d", size)
	}
	if exclusive && size > maxSinglePut {
		return fmt.Errorf("%d bytes is more than one request stores (%d)", size, int64(maxSinglePut))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	er := exact.NewReader(ctx, r, size)
	if size == 0 {
		// minio-go sends an empty body without reading r at all.
		if _, err := er.Read(nil); err != io.EOF {
			return err
		}
	}
	// One PUT for anything S3 takes in one: minio-go would cut an object
	// over 16 MiB (a vault's pack) into parts, buffering each, and each
	// part is a request the store must assemble.
	var partSize uint64
	if size <= maxSinglePut {
		partSize = uint64(max(size, defaultPartSize))
	}
	opts := minio.PutObjectOptions{
		PartSize:       partSize,
		ContentType:    "application/octet-stream",
		SendContentMd5: false,
		// Over TLS the transport protects the payload and the CRC32C
		// trailer checks it end to end; hashing it for the signature too
		// would cost a SHA-256 pass for nothing.
		DisableContentSha256: s.secure,
		Checksum:             minio.ChecksumCRC32C,
	}
	if exclusive {
		opts.SetMatchETagExcept("*")
	}
	_, err := s.client.PutObject(ctx, s.bucket, name, er, size, opts)
	return err
}

// Get implements [blob.Store].
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	name, err := s.object(key)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	// Core.GetObject sends the request now, so a missing object is
	// reported here rather than at the first Read.
	body, _, _, err := s.core.GetObject(ctx, s.bucket, name, minio.GetObjectOptions{})
	if isNoSuchKey(err) {
		return nil, fmt.Errorf("get %s: %w", key, blob.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return body, nil
}

// GetRange implements [blob.Store]. It asks for the range in one GET, so
// the bytes come from one version of the object, and checks the range the
// response says it holds: S3 answers a range that starts inside the object
// and ends past it with the bytes there are, which GetRange refuses.
func (s *Store) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := s.getRange(ctx, key, off, length)
	if err != nil {
		return nil, fmt.Errorf("get %s range %d+%d: %w", key, off, length, err)
	}
	return rc, nil
}

func (s *Store) getRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	name, err := s.object(key)
	if err != nil {
		return nil, err
	}
	if err := blob.CheckRange(off, length); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if length == 0 {
		// No Range header asks for nothing (and minio-go would turn
		// SetRange(0, -1) into "the last byte"), so look at the size.
		oi, err := s.client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
		if isNoSuchKey(err) {
			return nil, blob.ErrNotExist
		}
		if err != nil {
			return nil, err
		}
		if off > oi.Size {
			return nil, fmt.Errorf("%w: object is %d bytes", blob.ErrRange, oi.Size)
		}
		return &rangeReader{r: exact.NewReader(ctx, http.NoBody, 0), c: http.NoBody, key: key}, nil
	}
	var opts minio.GetObjectOptions
	if err := opts.SetRange(off, off+length-1); err != nil {
		return nil, err
	}
	body, oi, h, err := s.core.GetObject(ctx, s.bucket, name, opts)
	switch {
	case isNoSuchKey(err):
		return nil, blob.ErrNotExist
	case isInvalidRange(err):
		return nil, blob.ErrRange
	case err != nil:
		return nil, err
	}
	r, err := rangeBody(body, h.Get("Content-Range"), oi.Size, off, length)
	if err != nil {
		body.Close()
		return nil, err
	}
	return &rangeReader{r: exact.NewReader(ctx, r, length), c: body, key: key}, nil
}

// isInvalidRange reports whether err is S3's answer to a range that starts
// at or past the end of the object.
func isInvalidRange(err error) bool {
	resp := minio.ToErrorResponse(err)
	return resp.Code == minio.InvalidRange || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable
}

// rangeBody returns the reader of the length bytes at off in the response
// to a ranged GET, whose Content-Range header is cr and Content-Length n
// (-1 if not sent), after checking that the response holds those bytes. If
// the server sent the whole object instead, as HTTP allows, it skips to the
// range.
func rangeBody(body io.Reader, cr string, n, off, length int64) (io.Reader, error) {
	if cr == "" {
		if n < 0 {
			return nil, errors.New("server ignored the range and sent no length")
		}
		if off > n || length > n-off {
			return nil, fmt.Errorf("%w: object is %d bytes", blob.ErrRange, n)
		}
		if _, err := io.CopyN(io.Discard, body, off); err != nil {
			return nil, fmt.Errorf("skip to the range in the whole object: %w", err)
		}
		return io.LimitReader(body, length), nil
	}
	first, last, size, err := parseContentRange(cr)
	if err != nil {
		return nil, err
	}
	if off > size || length > size-off {
		return nil, fmt.Errorf("%w: object is %d bytes", blob.ErrRange, size)
	}
	if first != off || last != off+length-1 {
		return nil, fmt.Errorf("response holds bytes %d-%d; asked for %d-%d", first, last, off, off+length-1)
	}
	return body, nil
}

// parseContentRange parses a Content-Range header of a response that holds
// part of an object of known size, "bytes first-last/size".
func parseContentRange(cr string) (first, last, size int64, err error) {
	bad := func() (int64, int64, int64, error) {
		return 0, 0, 0, fmt.Errorf("response Content-Range %q is not bytes first-last/size", cr)
	}
	spec, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return bad()
	}
	span, total, ok := strings.Cut(spec, "/")
	if !ok {
		return bad()
	}
	a, b, ok := strings.Cut(span, "-")
	if !ok {
		return bad()
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	size, err3 := strconv.ParseInt(total, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || first < 0 || last < first || size <= last {
		return bad()
	}
	return first, last, size, nil
}

// rangeReader reads a range from a response body, failing if fewer or more
// bytes than the range's length arrive, or once ctx is done.
type rangeReader struct {
	r   *exact.Reader
	c   io.Closer
	key string
}

func (r *rangeReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("read %s: %w", r.key, err)
	}
	return n, err
}

func (r *rangeReader) Close() error { return r.c.Close() }

// Stat implements [blob.Store].
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	name, err := s.object(key)
	if err != nil {
		return blob.Info{}, fmt.Errorf("stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	oi, err := s.client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if isNoSuchKey(err) {
		return blob.Info{}, fmt.Errorf("stat %s: %w", key, blob.ErrNotExist)
	}
	if err != nil {
		return blob.Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return blob.Info{Key: key, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// Delete implements [blob.Store].
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.object(key)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	err = s.client.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{})
	if err != nil && !isNoSuchKey(err) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// List implements [blob.Store].
func (s *Store) List(ctx context.Context, prefix string, fn func(blob.Info) error) error {
	if err := s.list(ctx, prefix, fn); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	return nil
}

func (s *Store) list(ctx context.Context, prefix string, fn func(blob.Info) error) error {
	if err := blob.ValidatePrefix(prefix); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Stopping early must cancel the listing, as minio-go asks.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	noOwner := false
	objects := s.client.ListObjectsIter(lctx, s.bucket, minio.ListObjectsOptions{
		Prefix:     s.prefix + prefix,
		Recursive:  true,
		FetchOwner: &noOwner,
	})
	for oi := range objects {
		if oi.Err != nil {
			return oi.Err
		}
		key, ok := strings.CutPrefix(oi.Key, s.prefix)
		if !ok || blob.ValidateKey(key) != nil {
			continue // not ours
		}
		if err := fn(blob.Info{Key: key, Size: oi.Size, ModTime: oi.LastModified}); err != nil {
			return err
		}
	}
	// The iterator ends quietly when its context is cancelled.
	return ctx.Err()
}
