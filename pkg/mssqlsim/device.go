package mssqlsim

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"unicode/utf16"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cofferhq/coffer/pkg/tlsbatch"
)

// device is one backup device named in a BACKUP or RESTORE statement.
type device struct {
	spec string // as written: a path, NUL, or an s3:// URL
	url  bool
	nul  bool
	path string // resolved file path for DISK

	host, bucket, key string // for URL
	cred              *credential
}

// String names the device as SQL Server's messages do.
func (d *device) String() string { return d.spec }

func (i *Instance) diskDevice(spec string) *device {
	if strings.EqualFold(spec, "NUL") || strings.EqualFold(spec, "NUL:") {
		return &device{spec: spec, nul: true}
	}
	p := spec
	if !filepath.IsAbs(p) {
		p = filepath.Join(i.cfg.BackupDir, p)
	}
	return &device{spec: spec, path: p}
}

// maxDeviceName is the longest backup device name SQL Server takes, in
// characters; for a URL the whole string counts, s3:// included.
const maxDeviceName = 259

// urlDevice parses s3://host:port/bucket/key and finds its credential as
// SQL Server 2022's S3 connector does. SQL Server 2019 has no S3
// connector: it refuses the scheme as it refuses any URL it cannot open.
func (i *Instance) urlDevice(spec, credName string) (*device, *Error) {
	if n := len(utf16.Encode([]rune(spec))); n > maxDeviceName {
		return nil, newErr(3057, 16, "Invalid device name. The length of the device name provided exceeds supported limit (maximum length is:%d). Reissue the BACKUP statement with a valid device name.", maxDeviceName)
	}
	u, err := url.Parse(spec)
	if err != nil || !strings.EqualFold(u.Scheme, "s3") || u.Host == "" || i.cfg.MajorVersion < 16 {
		return nil, newErr(3201, 16, "Cannot open backup device '%s'. Operating system error 50(The request is not supported.).", spec)
	}
	parts := strings.SplitN(strings.TrimPrefix(u.Path, "/"), "/", 2)
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return nil, newErr(3201, 16, "Cannot open backup device '%s'. Operating system error 123(The filename, directory name, or volume label syntax is incorrect.).", spec)
	}
	d := &device{spec: spec, url: true, host: u.Host, bucket: parts[0], key: parts[1]}
	i.mu.Lock()
	defer i.mu.Unlock()
	if credName != "" {
		for _, c := range i.credentials {
			if strings.EqualFold(c.name, credName) {
				d.cred = c
			}
		}
	} else {
		d.cred = i.urlCredential(spec, len(u.Scheme)+len("://")+len(u.Host)+len("/")+len(d.bucket))
	}
	if d.cred == nil {
		return nil, newErr(3201, 16, "Cannot open backup device '%s'. Operating system error 50(The request is not supported.). No credential matches the URL: create one with CREATE CREDENTIAL [s3://host:port/bucket] WITH IDENTITY = 'S3 Access Key', SECRET = 'key:secret'.", spec)
	}
	if !strings.EqualFold(d.cred.identity, "S3 Access Key") {
		return nil, newErr(3201, 16, "Cannot open backup device '%s'. Operating system error 5(Access is denied.). The credential's identity must be 'S3 Access Key'.", spec)
	}
	return d, nil
}

// urlCredential finds the credential of a URL the way SQL Server's
// troubleshooting guide describes: the credential named by the whole URL,
// else by the URL cut at each '/' in turn, most specific first, down to
// the bucket (bucketEnd is where the bucket's name ends). A name that
// matches only part of a path segment, or with a trailing '/', matches
// nothing. The caller holds i.mu.
func (i *Instance) urlCredential(spec string, bucketEnd int) *credential {
	for name := spec; ; {
		for _, c := range i.credentials {
			if strings.EqualFold(c.name, name) {
				return c
			}
		}
		k := strings.LastIndexByte(name, '/')
		if k < bucketEnd {
			return nil
		}
		name = name[:k]
	}
}

// s3 returns a minio client for the device, over TLS with the instance's
// trusted CAs, as SQL Server's S3 connector requires: s3:// always means
// https, and the endpoint's certificate must chain to a trusted CA.
func (i *Instance) s3(d *device) (*minio.Core, error) {
	access, secret, ok := strings.Cut(d.cred.secret, ":")
	if !ok {
		return nil, errors.New("credential secret must be 'access_key:secret_key'")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: i.cfg.TrustedCAs, MinVersion: tls.VersionTLS12}
	// each Write's TLS records in one system call: a quarter less CPU on
	// both ends (see tlsbatch), which share the machine in tests
	tlsbatch.UseWith(tr)
	c, err := minio.NewCore(d.host, &minio.Options{
		Creds:     credentials.NewStaticV4(access, secret, ""),
		Secure:    true,
		Transport: tr,
		// SQL Server signs for REGION, us-east-1 unless BACKUP_OPTIONS
		// says otherwise, and never asks the endpoint for a location
		Region: "us-east-1",
		// SQL Server's connector reports a failed request at once;
		// retrying here would hide from a test an endpoint that fails
		MaxRetries: 1,
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// urlOSError renders a failed request to an S3 endpoint as the operating
// system error SQL Server reports for it (its connector is WinHTTP): 12175
// for a TLS failure (an untrusted or wrong certificate, or an endpoint
// that does not speak TLS), 5 for a refused signature or key, 50 for a
// bucket that does not exist, as SQL Server's troubleshooting guide shows.
func urlOSError(err error) string {
	var (
		verify  *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		record  tls.RecordHeaderError
		alert   tls.AlertError
		resp    minio.ErrorResponse
		op      *net.OpError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &host), errors.As(err, &invalid),
		errors.As(err, &record), errors.As(err, &alert),
		// net/http's words for a TLS handshake answered in plain HTTP
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return "12175(failed to retrieve text for this error. Reason: 15105)"
	case errors.As(err, &resp) && (resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized):
		return "5(Access is denied.)"
	case errors.As(err, &resp) && resp.Code == "NoSuchBucket":
		return "50(The request is not supported.)"
	case errors.Is(err, fs.ErrNotExist):
		return "2(The system cannot find the file specified.)"
	case errors.As(err, &op) && op.Op == "dial":
		return "12029(A connection with the server could not be established)"
	}
	return fmt.Sprintf("12002(%v)", err)
}

// osError renders an OS error the way SQL Server's device messages do.
func osError(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "3(The system cannot find the path specified.)"
	case errors.Is(err, fs.ErrPermission):
		return "5(Access is denied.)"
	case errors.Is(err, syscall.ENOSPC):
		return "112(There is not enough space on the disk.)"
	case errors.Is(err, syscall.EISDIR):
		return "5(Access is denied.)"
	}
	return fmt.Sprintf("1117(The request could not be performed because of an I/O device error: %v.)", err)
}

func errOpenDevice(d *device, err error) *Error {
	if d.url {
		return newErr(3201, 16, "Cannot open backup device '%s'. Operating system error %s.", d.spec, urlOSError(err))
	}
	return newErr(3201, 16, "Cannot open backup device '%s'. Operating system error %s.", d.spec, osError(err))
}

func errWriteDevice(d *device, err error) *Error {
	return newErr(3202, 16, "Write on \"%s\" failed: %s", d.spec, osError(err))
}

// deviceWriter is where one stripe of a backup goes. Abort discards a
// failed backup where the device allows (a file keeps what was written, as
// SQL Server's does; an upload is left unfinished, as SQL Server 2022
// leaves it).
type deviceWriter interface {
	io.Writer
	Commit() error
	Abort()
}

// readSets scans a device for its media header and backup sets. A missing
// file is reported as such; a device that is not a backup as 3241.
func (i *Instance) readSets(ctx context.Context, d *device) (mediaHeader, []backupSet, int64, *Error) {
	if d.url {
		if m, sets, end, ok := i.urlSets(ctx, d); ok {
			return m, sets, end, nil
		}
	}
	r, err := i.openReader(ctx, d, 0, 0)
	if err != nil {
		return mediaHeader{}, nil, 0, errOpenDevice(d, err)
	}
	defer r.Close()
	m, sets, end, err := scanSets(r)
	if err != nil && len(sets) == 0 {
		return m, nil, 0, newErr(3241, 16, "The media family on device '%s' is incorrectly formed. SQL Server cannot process this media family.", d.spec)
	}
	return m, sets, end, nil
}

// urlSets reads the one backup set of a URL device (a URL is never
// appended to) from its ends, as SQL Server reads its headers: the media
// and set headers from the start, the trailer from the end, without
// reading the body between. ok is false when the object does not read
// that way; the caller then scans it whole.
func (i *Instance) urlSets(ctx context.Context, d *device) (mediaHeader, []backupSet, int64, bool) {
	c, err := i.s3(d)
	if err != nil {
		return mediaHeader{}, nil, 0, false
	}
	info, err := c.StatObject(ctx, d.bucket, d.key, minio.StatObjectOptions{})
	if err != nil {
		return mediaHeader{}, nil, 0, false
	}
	size := info.Size
	get := func(from, to int64) ([]byte, error) {
		opts := minio.GetObjectOptions{}
		if err := opts.SetRange(from, to-1); err != nil {
			return nil, err
		}
		body, _, _, err := c.GetObject(ctx, d.bucket, d.key, opts)
		if err != nil {
			return nil, err
		}
		defer body.Close()
		buf := make([]byte, to-from)
		_, err = io.ReadFull(body, buf)
		return buf, err
	}
	// the head and the tail are read at once, as the connector keeps
	// several ranges in flight
	const tailSize = 64 << 10
	var tail []byte
	var tailErr error
	tailDone := make(chan struct{})
	go func() {
		defer close(tailDone)
		tail, tailErr = get(max(0, size-tailSize), size)
	}()
	head, err := get(0, min(size, 1<<20))
	<-tailDone
	if err != nil || tailErr != nil {
		return mediaHeader{}, nil, 0, false
	}
	hr := bytes.NewReader(head)
	var m mediaHeader
	var set backupSet
	if readJSONFrame(hr, frameMedia, &m) != nil || readJSONFrame(hr, frameSet, &set.setHeader) != nil {
		return mediaHeader{}, nil, 0, false
	}
	set.Position, set.bodyOffset = 1, int64(len(head))-int64(hr.Len())
	if start := size - int64(len(tail)); start < set.bodyOffset {
		tail = tail[set.bodyOffset-start:]
	}
	// the trailer is the last frame: the one that parses and ends at the
	// object's end
	for off := len(tail) - 9; off >= 0; off-- {
		if tail[off] != frameTrailer {
			continue
		}
		tr := bytes.NewReader(tail[off:])
		var t setTrailer
		if readJSONFrame(tr, frameTrailer, &t) == nil && tr.Len() == 0 {
			set.setTrailer = t
			return m, []backupSet{set}, size, true
		}
	}
	return mediaHeader{}, nil, 0, false
}

// openReader opens a device for reading from offset. A URL is read with
// ranged GETs of chunk bytes (0: 10 MB), several in flight.
func (i *Instance) openReader(ctx context.Context, d *device, offset int64, chunk int) (io.ReadCloser, error) {
	switch {
	case d.nul:
		return nil, fs.ErrNotExist
	case d.url:
		return i.openRangeReader(ctx, d, offset, chunk)
	default:
		f, err := os.Open(d.path)
		if err != nil {
			return nil, err
		}
		if st, err := f.Stat(); err == nil && st.IsDir() {
			f.Close()
			return nil, syscall.EISDIR
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
}

// fileWriter writes a stripe to a file.
type fileWriter struct {
	f *os.File
}

func (w *fileWriter) Write(p []byte) (int, error) { return w.f.Write(p) }
func (w *fileWriter) Commit() error {
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		return err
	}
	return w.f.Close()
}
func (w *fileWriter) Abort() { w.f.Close() }

type nulWriter struct{}

func (nulWriter) Write(p []byte) (int, error) { return len(p), nil }
func (nulWriter) Commit() error               { return nil }
func (nulWriter) Abort()                      {}

// openFileWriter opens a file to write at offset, truncating what follows.
func openFileWriter(path string, offset int64) (*fileWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(offset); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return &fileWriter{f: f}, nil
}

// uploadWriter writes a stripe as a multipart upload with parts of
// MAXTRANSFERSIZE, as SQL Server 2022's S3 connector does: each full part
// is sent at once while the next fills, up to BUFFERCOUNT parts in flight
// across the backup's URLs, so parts may reach the endpoint in any order;
// the upload is completed with the parts in part-number order.
type uploadWriter struct {
	ctx      context.Context
	cancel   context.CancelFunc
	c        *minio.Core
	d        *device
	uploadID string
	partSize int
	maxParts int
	slots    chan struct{} // one per part in flight, shared by the backup's URLs
	buf      []byte        // the part being filled
	sent     int           // parts started

	wg    sync.WaitGroup
	mu    sync.Mutex
	parts []minio.CompletePart // uploaded, in the order they finished
	err   error                // the first part that failed
	spare [][]byte             // buffers of parts sent, for the next parts
}

// maxURLParts is the most parts SQL Server writes to one URL.
const maxURLParts = 10000

// errPartLimit is what SQL Server reports for a stripe that would need
// more than maxURLParts parts: "Write on ... failed: 87(The parameter is
// incorrect.)", as its troubleshooting guide shows.
var errPartLimit = errors.New("87(The parameter is incorrect.)")

// deviceError is a write failure on one device, so that the error names
// the stripe that failed rather than the first.
type deviceError struct {
	d   *device
	err error
}

func (e *deviceError) Error() string { return e.err.Error() }
func (e *deviceError) Unwrap() error { return e.err }

func (i *Instance) openUploadWriter(ctx context.Context, d *device, partSize int, slots chan struct{}) (*uploadWriter, error) {
	c, err := i.s3(d)
	if err != nil {
		return nil, err
	}
	id, err := c.NewMultipartUpload(ctx, d.bucket, d.key, minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	return &uploadWriter{ctx: ctx, cancel: cancel, c: c, d: d, uploadID: id, partSize: partSize,
		maxParts: int(i.maxURLParts.Load()), slots: slots}, nil
}

func (w *uploadWriter) Write(p []byte) (int, error) {
	if err := w.failed(); err != nil {
		return 0, err
	}
	n := len(p)
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = w.spareBuf()
		}
		k := min(w.partSize-len(w.buf), len(p))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == w.partSize {
			if err := w.send(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// spareBuf returns an empty buffer for a part: one a sent part is done
// with, as SQL Server cycles through its BUFFERCOUNT buffers, or a new
// one while all are in flight.
func (w *uploadWriter) spareBuf() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	if k := len(w.spare); k > 0 {
		b := w.spare[k-1]
		w.spare = w.spare[:k-1]
		return b[:0]
	}
	return make([]byte, 0, w.partSize)
}

// failed returns the first part failure, if any.
func (w *uploadWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// send starts uploading the part filled so far once a buffer is free.
func (w *uploadWriter) send() error {
	if len(w.buf) == 0 {
		return nil
	}
	if w.sent >= w.maxParts {
		return &deviceError{w.d, errPartLimit}
	}
	select {
	case w.slots <- struct{}{}:
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
	if err := w.failed(); err != nil {
		<-w.slots
		return err
	}
	w.sent++
	num, body := w.sent, w.buf
	w.buf = nil
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() { <-w.slots }()
		part, err := w.c.PutObjectPart(w.ctx, w.d.bucket, w.d.key, w.uploadID, num,
			bytes.NewReader(body), int64(len(body)), minio.PutObjectPartOptions{})
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil {
			if w.err == nil {
				w.err = &deviceError{w.d, fmt.Errorf("upload of part %d failed: %w", num, err)}
			}
			return
		}
		w.parts = append(w.parts, minio.CompletePart{PartNumber: num, ETag: part.ETag})
		// the server answered once it had the whole part: nothing reads
		// the buffer any more (a failed request's transport still may,
		// so its buffer is left to the collector)
		w.spare = append(w.spare, body)
	}()
	return nil
}

func (w *uploadWriter) Commit() error {
	if err := w.send(); err != nil {
		w.Abort()
		return err
	}
	w.wg.Wait()
	if err := w.failed(); err != nil {
		w.cancel()
		return err
	}
	// parts finish in any order; S3 wants them listed in ascending order
	slices.SortFunc(w.parts, func(a, b minio.CompletePart) int { return cmp.Compare(a.PartNumber, b.PartNumber) })
	_, err := w.c.CompleteMultipartUpload(w.ctx, w.d.bucket, w.d.key, w.uploadID, w.parts, minio.PutObjectOptions{})
	w.cancel()
	if err != nil {
		return &deviceError{w.d, err}
	}
	return nil
}

// Abort stops the parts in flight and leaves the unfinished upload
// behind, as SQL Server does: cleaning it up is the endpoint's business.
func (w *uploadWriter) Abort() {
	w.cancel()
	w.wg.Wait()
}

// rangeReader reads an object from an offset with ranged GETs of chunk
// bytes, up to depth of them in flight ahead of the reader, as SQL
// Server's S3 connector reads a backup: never one GET of the whole object.
type rangeReader struct {
	ctx    context.Context
	cancel context.CancelFunc
	c      *minio.Core
	d      *device
	size   int64 // of the object
	chunk  int64
	depth  int
	next   int64              // where the next range starts
	queue  []chan rangeResult // ranges requested, in offset order
	cur    []byte
	buf    []byte   // the whole range cur is the rest of
	spare  [][]byte // buffers of ranges read, for the next ranges
	wg     sync.WaitGroup
}

type rangeResult struct {
	data []byte
	err  error
}

// urlReadAhead is how many ranges a restore from URL has in flight.
const urlReadAhead = 4

func (i *Instance) openRangeReader(ctx context.Context, d *device, offset int64, chunk int) (*rangeReader, error) {
	c, err := i.s3(d)
	if err != nil {
		return nil, err
	}
	info, err := c.StatObject(ctx, d.bucket, d.key, minio.StatObjectOptions{})
	if err != nil {
		if isNotFound(err) {
			return nil, fs.ErrNotExist
		}
		return nil, err
	}
	if chunk <= 0 {
		chunk = defaultURLTransfer
	}
	ctx, cancel := context.WithCancel(ctx)
	return &rangeReader{ctx: ctx, cancel: cancel, c: c, d: d, size: info.Size, chunk: int64(chunk),
		depth: urlReadAhead, next: offset}, nil
}

// fill requests ranges until depth are in flight or the object is covered.
func (r *rangeReader) fill() {
	for len(r.queue) < r.depth && r.next < r.size {
		start, end := r.next, min(r.next+r.chunk, r.size)
		r.next = end
		ch := make(chan rangeResult, 1)
		r.queue = append(r.queue, ch)
		// a buffer of a range read before: ranges are all chunk bytes
		// but the last, and making one per range costs more than the GET
		var buf []byte
		if n := len(r.spare); n > 0 {
			buf, r.spare = r.spare[n-1], r.spare[:n-1]
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			ch <- r.fetch(start, end, buf)
		}()
	}
}

// fetch GETs bytes [start, end) of the object, into buf if it is large
// enough.
func (r *rangeReader) fetch(start, end int64, buf []byte) rangeResult {
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(start, end-1); err != nil {
		return rangeResult{err: err}
	}
	body, _, _, err := r.c.GetObject(r.ctx, r.d.bucket, r.d.key, opts)
	if err != nil {
		return rangeResult{err: err}
	}
	defer body.Close()
	// the range's length is known: one buffer of it, not one grown by
	// doubling (which costs more than the request)
	data := buf[:0]
	if int64(cap(data)) < end-start {
		data = make([]byte, end-start)
	}
	data = data[:end-start]
	n, err := io.ReadFull(body, data)
	if err != nil {
		err = fmt.Errorf("range %d-%d: got %d bytes: %w", start, end-1, n, err)
	} else if extra, _ := body.Read(make([]byte, 1)); extra > 0 {
		err = fmt.Errorf("range %d-%d: the endpoint sent more than asked", start, end-1)
	}
	return rangeResult{data: data, err: err}
}

func (r *rangeReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.buf != nil {
			r.spare = append(r.spare, r.buf)
			r.buf = nil
		}
		r.fill()
		if len(r.queue) == 0 {
			return 0, io.EOF
		}
		res := <-r.queue[0]
		r.queue = r.queue[1:]
		if res.err != nil {
			return 0, res.err
		}
		r.cur, r.buf = res.data, res.data
		r.fill()
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (r *rangeReader) servesFromMemory() {}

// Close stops the ranges in flight.
func (r *rangeReader) Close() error {
	r.cancel()
	r.wg.Wait()
	return nil
}

func isNotFound(err error) bool {
	var er minio.ErrorResponse
	return errors.As(err, &er) && (er.StatusCode == http.StatusNotFound || er.Code == "NoSuchKey")
}

// objectExists reports whether a URL device's object exists.
func (i *Instance) objectExists(ctx context.Context, d *device) (bool, error) {
	c, err := i.s3(d)
	if err != nil {
		return false, err
	}
	_, err = c.StatObject(ctx, d.bucket, d.key, minio.StatObjectOptions{})
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		return false, nil
	}
	return false, err
}
