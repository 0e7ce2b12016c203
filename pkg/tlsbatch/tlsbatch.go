// Package tlsbatch is TLS that sends the records of one Write in one
// system call.
//
// crypto/tls writes each record of at most 16 KiB to the connection by
// itself: a gigabyte sent is 65,536 write calls, and on loopback each
// one also carries the receiver's TCP work. Measured on a two-core
// machine, sending 1 GiB over TLS on loopback took 1.24 CPU-seconds (both
// ends) that way, and 0.92 with each Write's records sent together.
//
// A Conn is a *tls.Conn whose Write collects the records it makes and
// sends them together, 256 KiB at a time, before it returns, and whose ReadFrom (used by
// io.Copy, net/http's server for a response body with a length, and
// net/http's client for a request body) moves 256 KiB per Write. Anything
// else crypto/tls sends (the handshake, alerts, close_notify, a key
// update) goes out as crypto/tls sends it. What a Conn reads is
// crypto/tls's own reading: buffering reads saved nothing.
//
// net/http treats a Conn as a plain net.Conn: a server's Request.TLS is
// nil, and neither side negotiates HTTP/2 (ALPN happens only when the
// tls.Config asks for it).
package tlsbatch

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// copySize is how much ReadFrom reads for each Write.
const copySize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copySize); return &b }}

// Conn is a TLS connection that sends each Write's records together.
type Conn struct {
	*tls.Conn
	raw *batchConn
	wmu sync.Mutex // one Write at a time, so that one batch is one Write's
}

// Server returns the server side of a TLS connection over raw.
func Server(raw net.Conn, cfg *tls.Config) *Conn {
	b := &batchConn{Conn: raw}
	return &Conn{Conn: tls.Server(b, cfg), raw: b}
}

// Client returns the client side of a TLS connection over raw.
func Client(raw net.Conn, cfg *tls.Config) *Conn {
	b := &batchConn{Conn: raw}
	return &Conn{Conn: tls.Client(b, cfg), raw: b}
}

// Write encrypts p and sends its records in one write to the connection.
// It completes the handshake first, whose messages go out as they are
// made.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.raw.begin()
	n, err := c.Conn.Write(p)
	if ferr := c.raw.end(); err == nil {
		err = ferr
	}
	return n, err
}

// ReadFrom writes what it reads from r, up to 256 KiB per Write, until
// r ends.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m, werr := c.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return total, nil
		case err != nil:
			return total, err
		}
	}
}

// batchConn is the connection under the TLS one: between begin and end
// it holds what it is given, and end sends it in one write.
type batchConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      []byte
}

func (b *batchConn) begin() {
	b.mu.Lock()
	b.batching = true
	b.mu.Unlock()
}

// end sends what the batch holds, and stops batching.
func (b *batchConn) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = false
	return b.flushLocked()
}

func (b *batchConn) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// Write holds p while a batch is open (crypto/tls reuses the record it
// passed), sending what it holds whenever that reaches 256 KiB, and sends
// p at once otherwise, after anything still held.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batching {
		b.buf = append(b.buf, p...)
		if len(b.buf) >= copySize {
			if err := b.flushLocked(); err != nil {
				return 0, err
			}
		}
		return len(p), nil
	}
	if err := b.flushLocked(); err != nil {
		return 0, err
	}
	return b.Conn.Write(p)
}

// listener accepts TLS connections that batch their writes.
type listener struct {
	net.Listener
	cfg *tls.Config
}

// NewListener returns a listener whose Accept wraps each connection inner
// accepts in a server-side Conn, as tls.NewListener does.
func NewListener(inner net.Listener, cfg *tls.Config) net.Listener {
	return &listener{Listener: inner, cfg: cfg}
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Server(c, l.cfg), nil
}

// Dialer dials TLS connections that batch their writes, as
// http.Transport's DialTLSContext: the connection it returns has
// completed its handshake. Config's ServerName, when empty, is taken from
// the address dialed. (A Transport with DialTLSContext ignores its
// TLSClientConfig and TLSHandshakeTimeout: give them here.)
type Dialer struct {
	Net    net.Dialer
	Config *tls.Config
	// HandshakeTimeout, if not zero, bounds the TLS handshake.
	HandshakeTimeout time.Duration
}

// DialContext dials addr on network and completes the TLS handshake.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	raw, err := d.Net.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cfg := d.Config.Clone()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg.ServerName = host
	}
	c := Client(raw, cfg)
	if d.HandshakeTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.HandshakeTimeout)
		defer cancel()
	}
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

// UseWith makes tr dial its HTTPS connections as batching Conns, with its
// own TLSClientConfig and TLSHandshakeTimeout, and the dial timeout and
// keep-alive of net/http's default transport. Through a proxy, tr makes
// its own TLS connections, which do not batch.
func UseWith(tr *http.Transport) {
	tr.DialTLSContext = (&Dialer{
		Net:              net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second},
		Config:           tr.TLSClientConfig,
		HandshakeTimeout: tr.TLSHandshakeTimeout,
	}).DialContext
}
