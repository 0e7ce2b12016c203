package s3endpoint

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Key is an access key the endpoint accepts, and what it may reach: the
// objects of Bucket whose names begin with Prefix, until Expires.
type Key struct {
	ID, Secret string
	Bucket     string
	Prefix     string
	Expires    time.Time
}

// Keys finds access keys. Lookup reports false for a key it does not
// know.
type Keys interface {
	Lookup(ctx context.Context, id string) (Key, bool, error)
}

// ErrNotExist is what a Store returns for an object it does not have.
var ErrNotExist = errors.New("no such object")

// Store is where uploads go and objects come from.
type Store interface {
	// NewUpload starts writing object bucket/key; the parts follow in
	// order through the Upload.
	NewUpload(ctx context.Context, bucket, key string) (Upload, error)
	// Open opens an object for reading, or returns ErrNotExist.
	Open(ctx context.Context, bucket, key string) (Object, error)
	// List returns the objects of bucket whose names begin with prefix.
	List(ctx context.Context, bucket, prefix string) ([]ObjectInfo, error)
}

// Upload receives one object's bytes, part after part, in order.
type Upload interface {
	io.Writer
	// Complete is called once every part is written: the object is
	// whole.
	Complete(ctx context.Context) error
	// Abort is called when the client aborts the upload or it cannot go
	// on; the object never exists.
	Abort(err error)
}

// Object is a readable object.
type Object interface {
	io.ReaderAt
	Info() ObjectInfo
	Close() error
}

// Sectioner is an Object that serves a ranged GET better when it knows
// the range: Section returns a reader of the n bytes from off, which the
// server reads in order to the end, or until the client goes, and then
// closes.
type Sectioner interface {
	Section(off, n int64) io.ReadCloser
}

// ObjectInfo describes an object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Config configures a Server.
type Config struct {
	Keys  Keys
	Store Store
	// Domain, when set, is the host name under which virtual-host
	// addressing (bucket.Domain) is recognised; path-style addressing
	// always works.
	Domain string
	// MaxPartSize refuses larger parts (EntityTooLarge). Default 64 MiB:
	// SQL Server sends at most 20 MB.
	MaxPartSize int64
	// MaxWaitingParts bounds the parts held while they wait for earlier
	// ones, across uploads (SlowDown beyond). Default 256.
	MaxWaitingParts int
	// MaxQueuedParts is how many parts may be answered before their
	// Uploads have written them, across the uploads of one access key (a
	// backup striped over several URLs shares them). Default 8.
	MaxQueuedParts int
	Now            func() time.Time
	Logger         *slog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxPartSize == 0 {
		c.MaxPartSize = 64 << 20
	}
	if c.MaxWaitingParts == 0 {
		c.MaxWaitingParts = 256
	}
	if c.MaxQueuedParts == 0 {
		c.MaxQueuedParts = 8
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server is the S3 endpoint: an http.Handler.
type Server struct {
	cfg Config

	mu      sync.Mutex
	uploads map[string]*upload
	budgets map[string]*budget // by access key, while it has uploads
	seq     int
	waiting int
}

// budget is the room for queued parts that the uploads of one access key
// share: a token per part queued and not yet written.
type budget struct {
	tokens  chan struct{}
	uploads int
}

// addLocked registers upload u; s.mu must be held.
func (s *Server) addLocked(u *upload) {
	s.uploads[u.id] = u
	s.budgets[u.accessKey].uploads++
}

// dropLocked forgets upload id; s.mu must be held. Its queued parts keep
// their tokens until they are written or thrown away.
func (s *Server) dropLocked(id string) {
	u := s.uploads[id]
	if u == nil {
		return
	}
	delete(s.uploads, id)
	if len(s.uploads) == 0 {
		bodies.drain()
	}
	if b := s.budgets[u.accessKey]; b != nil {
		if b.uploads--; b.uploads <= 0 {
			delete(s.budgets, u.accessKey)
		}
	}
}

// budgetLocked returns the budget of accessKey; s.mu must be held.
func (s *Server) budgetLocked(accessKey string) chan struct{} {
	b := s.budgets[accessKey]
	if b == nil {
		b = &budget{tokens: make(chan struct{}, s.cfg.MaxQueuedParts)}
		s.budgets[accessKey] = b
	}
	return b.tokens
}

var _ http.Handler = (*Server)(nil)

// New returns a Server.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if cfg.Keys == nil || cfg.Store == nil {
		return nil, errors.New("s3endpoint: Keys and Store are required")
	}
	return &Server{cfg: cfg, uploads: map[string]*upload{}, budgets: map[string]*budget{}}, nil
}

// upload is a multipart upload in progress.
//
// Parts are taken in order into a queue that one goroutine writes to the
// Upload, so that a part is answered as soon as it is queued and SQL
// Server goes on producing while the vault stores: the queue is the only
// memory between the two, and a part enters it only with one of its
// access key's MaxQueuedParts tokens, given back once it is written.
// Complete waits for the queue to be written.
type upload struct {
	id, bucket, key, accessKey string
	w                          Upload

	mu       sync.Mutex
	next     int            // the part number to take next
	taking   bool           // part next is being queued
	etags    map[int]string // parts taken
	sizes    map[int]int64  // their sizes
	advance  chan struct{}  // closed and replaced whenever next moves
	queue    chan []byte    // parts taken, to write in order
	tokens   chan struct{}  // the access key's budget: one held per part queued
	queued   int            // parts put in the queue
	written  int            // parts the writer has written
	wrote    chan struct{}  // closed and replaced whenever written moves
	failed   error          // the upload is dead: a write failed, or it was aborted
	dead     chan struct{}  // closed when failed is set
	stop     chan struct{}  // closed when the upload ends: the writer returns
	finished bool           // stop is closed
}

func newUpload(id, bucket, key, accessKey string, w Upload, tokens chan struct{}) *upload {
	u := &upload{id: id, bucket: bucket, key: key, accessKey: accessKey, w: w, next: 1,
		etags: map[int]string{}, sizes: map[int]int64{}, advance: make(chan struct{}),
		queue: make(chan []byte, cap(tokens)), tokens: tokens, wrote: make(chan struct{}), dead: make(chan struct{}), stop: make(chan struct{})}
	go u.writeLoop()
	return u
}

// writeLoop writes the queued parts in order, until the upload ends.
// After a failure it only gives the buffers back. The queue is never
// closed: a handler may be sending to it when the upload ends.
func (u *upload) writeLoop() {
	for {
		var body []byte
		select {
		case body = <-u.queue:
		case <-u.stop:
			for {
				select {
				case b := <-u.queue:
					release(b)
					<-u.tokens
				default:
					return
				}
			}
		}
		u.mu.Lock()
		dead := u.failed != nil
		u.mu.Unlock()
		var err error
		if !dead {
			_, err = u.w.Write(body)
		}
		release(body)
		<-u.tokens
		u.mu.Lock()
		if err != nil {
			u.failLocked(fmt.Errorf("store part %d: %w", u.written+1, err))
		}
		u.written++
		close(u.wrote)
		u.wrote = make(chan struct{})
		u.mu.Unlock()
	}
}

// failLocked kills the upload; u.mu must be held.
func (u *upload) failLocked(err error) {
	if u.failed == nil {
		u.failed = err
		close(u.dead)
	}
}

// finishLocked ends the writer once; u.mu must be held.
func (u *upload) finishLocked() {
	if !u.finished {
		u.finished = true
		close(u.stop)
	}
}

// s3Error is an S3 error document.
type s3Error struct {
	XMLName  xml.Name `xml:"Error"`
	Code     string   `xml:"Code"`
	Message  string   `xml:"Message"`
	Resource string   `xml:"Resource,omitempty"`
	status   int
}

func (e *s3Error) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, format string, args ...any) *s3Error {
	return &s3Error{status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// request is what a handler needs of an authenticated request.
type request struct {
	bucket, key string
	accessKey   string
	body        []byte // read and checked against the signed payload hash
	// handedOff is set when the body's buffer went to an upload's writer,
	// which gives it back once written
	handedOff *bool
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := s.authenticate(r)
	handedOff := false
	req.handedOff = &handedOff
	defer func() {
		if !handedOff {
			release(req.body)
		}
	}()
	if err == nil {
		err = s.route(w, r, req)
	}
	if err != nil {
		var e *s3Error
		if !errors.As(err, &e) {
			s.cfg.Logger.ErrorContext(r.Context(), "s3 request failed", slog.String("method", r.Method),
				slog.String("path", r.URL.Path), slog.Any("error", err))
			e = errorf(http.StatusInternalServerError, "InternalError", "%v", err)
		}
		e.Resource = r.URL.Path
		writeXML(w, e.status, e)
	}
}

// address splits a request's bucket and key from path-style or
// virtual-host addressing.
func (s *Server) address(r *http.Request) (bucket, key string) {
	host := r.Host
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	if d := s.cfg.Domain; d != "" && strings.HasSuffix(host, "."+d) {
		return strings.TrimSuffix(host, "."+d), strings.TrimPrefix(r.URL.Path, "/")
	}
	bucket, key, _ = strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	return bucket, key
}

// authenticate checks the request's signature, date, key and scope, and
// reads its body (bounded), checking it against the signed payload hash.
func (s *Server) authenticate(r *http.Request) (request, error) {
	var req request
	req.bucket, req.key = s.address(r)
	a, err := parseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return req, errorf(http.StatusForbidden, "AccessDenied", "%v", err)
	}
	k, ok, err := s.cfg.Keys.Lookup(r.Context(), a.accessKey)
	if err != nil {
		return req, err
	}
	if !ok {
		return req, errorf(http.StatusForbidden, "InvalidAccessKeyId", "the access key %q is not known here", a.accessKey)
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse(amzDateForm, amzDate)
	if err != nil || !strings.HasPrefix(amzDate, a.date) {
		return req, errorf(http.StatusForbidden, "AccessDenied", "X-Amz-Date %q is missing or does not match the credential's date", amzDate)
	}
	now := s.cfg.Now()
	if d := now.Sub(t); d > maxSkew || d < -maxSkew {
		return req, errorf(http.StatusForbidden, "RequestTimeTooSkewed", "the request's time %s is too far from the server's %s", t.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload == "" {
		return req, errorf(http.StatusBadRequest, "InvalidRequest", "the request has no x-amz-content-sha256 header")
	}
	if strings.HasPrefix(payload, "STREAMING-") {
		return req, errorf(http.StatusNotImplemented, "NotImplemented", "chunked payload signing (%s) is not served; send the request over TLS with UNSIGNED-PAYLOAD", payload)
	}
	want := signature(r, a, k.Secret, amzDate, payload)
	if subtle.ConstantTimeCompare([]byte(want), []byte(a.signature)) != 1 {
		return req, errorf(http.StatusForbidden, "SignatureDoesNotMatch", "the request signature does not match the one calculated with the key's secret")
	}
	if !k.Expires.IsZero() && !now.Before(k.Expires) {
		return req, errorf(http.StatusForbidden, "AccessDenied", "the access key %q expired at %s", a.accessKey, k.Expires.UTC().Format(time.RFC3339))
	}
	if req.bucket != k.Bucket || !strings.HasPrefix(scopeOf(r, req), k.Prefix) {
		return req, errorf(http.StatusForbidden, "AccessDenied", "the access key %q does not reach %s/%s", a.accessKey, req.bucket, scopeOf(r, req))
	}
	req.accessKey = a.accessKey
	body, err := s.readBody(r)
	if err != nil {
		return req, err
	}
	if payload != unsignedPayload {
		sum := sha256.Sum256(body)
		if hex.EncodeToString(sum[:]) != strings.ToLower(payload) {
			return req, errorf(http.StatusBadRequest, "XAmzContentSHA256Mismatch", "the body does not hash to the signed x-amz-content-sha256")
		}
	}
	req.body = body
	return req, nil
}

// bodies recycles request bodies: a backup sends thousands of parts of
// the same size, and a buffer grown anew for each would cost more than
// the rest of the request. A free list rather than a sync.Pool, which
// every garbage collection empties (and a fresh 10 MB buffer costs its
// page faults); emptied when a server has no upload left, so that an
// idle endpoint holds no buffer.
var bodies = &bodyList{max: 16}

type bodyList struct {
	mu   sync.Mutex
	free [][]byte
	max  int
}

// get returns a buffer of n bytes, recycled if one is big enough.
func (l *bodyList) get(n int64) []byte {
	l.mu.Lock()
	for i := len(l.free) - 1; i >= 0; i-- {
		if b := l.free[i]; int64(cap(b)) >= n {
			l.free = append(l.free[:i], l.free[i+1:]...)
			l.mu.Unlock()
			return b[:n]
		}
	}
	l.mu.Unlock()
	return make([]byte, n)
}

// put keeps b for a later request, if it is worth keeping and there is
// room.
func (l *bodyList) put(b []byte) {
	if cap(b) < 1<<20 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.free) < l.max {
		l.free = append(l.free, b)
	}
}

// drain lets every kept buffer go.
func (l *bodyList) drain() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.free = nil
}

// readBody reads a request's body, at most MaxPartSize bytes, into a
// buffer of its announced length when it has one. release gives the
// buffer back once nothing uses the body.
func (s *Server) readBody(r *http.Request) ([]byte, error) {
	tooLarge := errorf(http.StatusBadRequest, "EntityTooLarge", "the request body exceeds %d bytes", s.cfg.MaxPartSize)
	if n := r.ContentLength; n >= 0 {
		if n > s.cfg.MaxPartSize {
			return nil, tooLarge
		}
		buf := bodies.get(n)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, fmt.Errorf("read the request body: %w", err)
		}
		return buf, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxPartSize+1))
	if err != nil {
		return nil, fmt.Errorf("read the request body: %w", err)
	}
	if int64(len(body)) > s.cfg.MaxPartSize {
		return nil, tooLarge
	}
	return body, nil
}

// release returns a body's buffer for another request.
func release(body []byte) { bodies.put(body) }

// scopeOf is the object name a request reaches: its key, or for a listing
// the prefix it asks for.
func scopeOf(r *http.Request, req request) string {
	if req.key == "" && r.Method == http.MethodGet {
		return r.URL.Query().Get("prefix")
	}
	return req.key
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, req request) error {
	q := r.URL.Query()
	switch {
	case req.key == "" && r.Method == http.MethodGet && q.Get("list-type") == "2":
		return s.list(w, r, req)
	case req.key == "":
		return errorf(http.StatusNotImplemented, "NotImplemented", "%s on a bucket is not served", r.Method)
	case r.Method == http.MethodPost && q.Has("uploads"):
		return s.createUpload(w, r, req)
	case r.Method == http.MethodPut && q.Has("uploadId") && q.Has("partNumber"):
		return s.uploadPart(w, r, req, q.Get("uploadId"), q.Get("partNumber"))
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return s.completeUpload(w, r, req, q.Get("uploadId"))
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return s.abortUpload(w, req, q.Get("uploadId"))
	case r.Method == http.MethodHead || r.Method == http.MethodGet:
		return s.get(w, r, req)
	}
	return errorf(http.StatusNotImplemented, "NotImplemented", "%s %s is not served: the endpoint takes multipart uploads and serves reads", r.Method, r.URL.RawQuery)
}

func writeXML(w http.ResponseWriter, status int, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(b)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, xml.Header)
	_, _ = w.Write(b)
}

func (s *Server) createUpload(w http.ResponseWriter, r *http.Request, req request) error {
	up, err := s.cfg.Store.NewUpload(r.Context(), req.bucket, req.key)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.seq++
	id := fmt.Sprintf("%s-%d", strconv.FormatInt(s.cfg.Now().UnixNano(), 36), s.seq)
	s.addLocked(newUpload(id, req.bucket, req.key, req.accessKey, up, s.budgetLocked(req.accessKey)))
	s.mu.Unlock()
	writeXML(w, http.StatusOK, struct {
		XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
		Bucket   string   `xml:"Bucket"`
		Key      string   `xml:"Key"`
		UploadID string   `xml:"UploadId"`
	}{Bucket: req.bucket, Key: req.key, UploadID: id})
	return nil
}

// lookup finds an upload of the request's object.
func (s *Server) lookup(req request, id string) (*upload, error) {
	s.mu.Lock()
	u := s.uploads[id]
	s.mu.Unlock()
	if u == nil || u.bucket != req.bucket || u.key != req.key {
		return nil, errorf(http.StatusNotFound, "NoSuchUpload", "no upload %q of %s/%s", id, req.bucket, req.key)
	}
	return u, nil
}

// maxParts is S3's limit of parts in an upload.
const maxParts = 10000

func partETag(b []byte) string {
	return fmt.Sprintf("%q", fmt.Sprintf("%08x%08x", crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)), len(b)))
}

// uploadPart writes a part when its turn comes: parts are handed to the
// Upload in order, each once. A part that arrives again after it was
// written (a client's retry) is answered with the first one's ETag.
func (s *Server) uploadPart(w http.ResponseWriter, r *http.Request, req request, id, number string) error {
	n, err := strconv.Atoi(number)
	if err != nil || n < 1 || n > maxParts {
		return errorf(http.StatusBadRequest, "InvalidArgument", "part number %q: want 1 to %d", number, maxParts)
	}
	u, err := s.lookup(req, id)
	if err != nil {
		return err
	}
	etag := partETag(req.body)
	s.mu.Lock()
	if s.waiting >= s.cfg.MaxWaitingParts {
		s.mu.Unlock()
		return errorf(http.StatusServiceUnavailable, "SlowDown", "too many parts are waiting for earlier ones")
	}
	s.waiting++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.waiting--
		s.mu.Unlock()
	}()
	for {
		u.mu.Lock()
		switch {
		case u.failed != nil:
			err := u.failed
			u.mu.Unlock()
			return errorf(http.StatusInternalServerError, "InternalError", "the upload failed: %v", err)
		case n < u.next:
			prev := u.etags[n]
			u.mu.Unlock()
			if prev != etag {
				return errorf(http.StatusBadRequest, "InvalidPart", "part %d was already received with other content", n)
			}
			w.Header().Set("ETag", prev)
			w.WriteHeader(http.StatusOK)
			return nil
		case n == u.next && !u.taking && !u.finished:
			// its turn: queue it, waiting for a token while the
			// writers work; the body is the writer's from now on
			u.taking = true
			u.mu.Unlock()
			var err error
			select {
			case u.tokens <- struct{}{}:
				// the queue has room for every token
				u.queue <- req.body
				*req.handedOff = true
				select {
				case <-u.stop:
					// the writer may have drained the queue and gone:
					// take back a part it will not write
					select {
					case b := <-u.queue:
						release(b)
						<-u.tokens
					default:
					}
				default:
				}
			case <-u.dead:
				err = errors.New("the upload failed")
			case <-u.stop:
				err = errors.New("the upload is over")
			case <-r.Context().Done():
				err = r.Context().Err()
			}
			u.mu.Lock()
			u.taking = false
			if err != nil {
				u.mu.Unlock()
				return err
			}
			u.etags[n], u.sizes[n] = etag, int64(len(req.body))
			u.queued++
			u.next++
			close(u.advance)
			u.advance = make(chan struct{})
			u.mu.Unlock()
			w.Header().Set("ETag", etag)
			w.WriteHeader(http.StatusOK)
			return nil
		}
		wait := u.advance
		u.mu.Unlock()
		select {
		case <-wait:
		case <-u.dead:
		case <-r.Context().Done():
			return r.Context().Err()
		}
	}
}

// minPartSize is S3's smallest part but the last.
const minPartSize = 5 << 20

func (s *Server) completeUpload(w http.ResponseWriter, r *http.Request, req request, id string) error {
	u, err := s.lookup(req, id)
	if err != nil {
		return err
	}
	var body struct {
		Parts []struct {
			PartNumber int    `xml:"PartNumber"`
			ETag       string `xml:"ETag"`
		} `xml:"Part"`
	}
	if err := xml.Unmarshal(req.body, &body); err != nil {
		return errorf(http.StatusBadRequest, "MalformedXML", "the part list does not parse: %v", err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	// every part taken must be written before the object is whole
	for u.written < u.queued && u.failed == nil {
		wrote := u.wrote
		u.mu.Unlock()
		select {
		case <-wrote:
		case <-u.dead:
		case <-r.Context().Done():
			u.mu.Lock()
			return r.Context().Err()
		}
		u.mu.Lock()
	}
	if u.failed != nil {
		return errorf(http.StatusInternalServerError, "InternalError", "the upload failed: %v", u.failed)
	}
	if len(body.Parts) == 0 || len(body.Parts) != u.next-1 {
		return errorf(http.StatusBadRequest, "InvalidPart", "the list names %d parts; %d were received in order", len(body.Parts), u.next-1)
	}
	for k, p := range body.Parts {
		if p.PartNumber != k+1 || strings.Trim(p.ETag, `"`) != strings.Trim(u.etags[k+1], `"`) {
			return errorf(http.StatusBadRequest, "InvalidPart", "part %d of the list (number %d, ETag %s) is not the part received", k+1, p.PartNumber, p.ETag)
		}
		if k+1 < len(body.Parts) && u.sizes[k+1] < minPartSize {
			return errorf(http.StatusBadRequest, "EntityTooSmall", "part %d is %d bytes; every part but the last must be at least %d", k+1, u.sizes[k+1], minPartSize)
		}
	}
	u.finishLocked()
	if err := u.w.Complete(r.Context()); err != nil {
		u.failLocked(err)
		return fmt.Errorf("complete %s/%s: %w", req.bucket, req.key, err)
	}
	s.mu.Lock()
	s.dropLocked(id)
	s.mu.Unlock()
	writeXML(w, http.StatusOK, struct {
		XMLName xml.Name `xml:"CompleteMultipartUploadResult"`
		Bucket  string   `xml:"Bucket"`
		Key     string   `xml:"Key"`
		ETag    string   `xml:"ETag"`
	}{Bucket: req.bucket, Key: req.key, ETag: fmt.Sprintf(`"%s-%d"`, id, len(body.Parts))})
	return nil
}

func (s *Server) abortUpload(w http.ResponseWriter, req request, id string) error {
	u, err := s.lookup(req, id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.dropLocked(id)
	s.mu.Unlock()
	u.mu.Lock()
	u.failLocked(errors.New("aborted by the client"))
	u.finishLocked()
	u.mu.Unlock()
	u.w.Abort(errors.New("the client aborted the upload"))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Waiting returns how many parts are held waiting for earlier parts of
// their upload (a metric of how far a client's parallel parts run ahead).
func (s *Server) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

// Abort ends every upload in progress whose key id is accessKey (a job
// that ended, or a key withdrawn), so that no part of it is stored.
func (s *Server) Abort(accessKey string, reason error) {
	s.mu.Lock()
	var ups []*upload
	for id, u := range s.uploads {
		if u.accessKey == accessKey {
			ups = append(ups, u)
			s.dropLocked(id)
		}
	}
	s.mu.Unlock()
	for _, u := range ups {
		u.mu.Lock()
		u.failLocked(reason)
		u.finishLocked()
		u.mu.Unlock()
		u.w.Abort(reason)
	}
}

func etagOf(info ObjectInfo) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%d", info.Key, info.Size, info.ModTime.UnixNano())))
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// get answers HEAD and GET of an object, with a single byte range.
func (s *Server) get(w http.ResponseWriter, r *http.Request, req request) error {
	obj, err := s.cfg.Store.Open(r.Context(), req.bucket, req.key)
	if errors.Is(err, ErrNotExist) {
		return errorf(http.StatusNotFound, "NoSuchKey", "no object %s/%s", req.bucket, req.key)
	}
	if err != nil {
		return err
	}
	defer obj.Close()
	info := obj.Info()
	from, to := int64(0), info.Size-1
	status := http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" {
		f, t, err := parseRange(rg, info.Size)
		if err != nil {
			return err
		}
		from, to, status = f, t, http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, to, info.Size))
	}
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(to-from+1, 10))
	h.Set("ETag", etagOf(info))
	h.Set("Last-Modified", info.ModTime.UTC().Format(http.TimeFormat))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	var body io.Reader = io.NewSectionReader(obj, from, to-from+1)
	if so, ok := obj.(Sectioner); ok {
		sr := so.Section(from, to-from+1)
		defer sr.Close()
		body = sr
	}
	if _, err := io.Copy(w, body); err != nil {
		// the status is sent: all that is left is to drop the connection
		s.cfg.Logger.WarnContext(r.Context(), "s3 read failed mid-response", slog.String("object", req.bucket+"/"+req.key), slog.Any("error", err))
		panic(http.ErrAbortHandler)
	}
	return nil
}

// parseRange reads one "bytes=a-b", "bytes=a-" or "bytes=-n" range.
func parseRange(h string, size int64) (from, to int64, err error) {
	bad := errorf(http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "range %q does not fit an object of %d bytes", h, size)
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, 0, bad
	}
	a, b, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, 0, bad
	}
	switch {
	case a == "":
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return 0, 0, bad
		}
		from, to = max(size-n, 0), size-1
	default:
		if from, err = strconv.ParseInt(a, 10, 64); err != nil {
			return 0, 0, bad
		}
		to = size - 1
		if b != "" {
			if to, err = strconv.ParseInt(b, 10, 64); err != nil {
				return 0, 0, bad
			}
			to = min(to, size-1)
		}
	}
	if from < 0 || from > to || from >= size {
		return 0, 0, bad
	}
	return from, to, nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, req request) error {
	prefix := r.URL.Query().Get("prefix")
	objs, err := s.cfg.Store.List(r.Context(), req.bucket, prefix)
	if err != nil {
		return err
	}
	type content struct {
		Key          string `xml:"Key"`
		LastModified string `xml:"LastModified"`
		ETag         string `xml:"ETag"`
		Size         int64  `xml:"Size"`
		StorageClass string `xml:"StorageClass"`
	}
	res := struct {
		XMLName     xml.Name  `xml:"ListBucketResult"`
		Name        string    `xml:"Name"`
		Prefix      string    `xml:"Prefix"`
		KeyCount    int       `xml:"KeyCount"`
		MaxKeys     int       `xml:"MaxKeys"`
		IsTruncated bool      `xml:"IsTruncated"`
		Contents    []content `xml:"Contents"`
	}{Name: req.bucket, Prefix: prefix, KeyCount: len(objs), MaxKeys: max(1000, len(objs))}
	for _, o := range objs {
		res.Contents = append(res.Contents, content{Key: o.Key, LastModified: o.ModTime.UTC().Format("2006-01-02T15:04:05.000Z"),
			ETag: etagOf(o), Size: o.Size, StorageClass: "STANDARD"})
	}
	writeXML(w, http.StatusOK, res)
	return nil
}
