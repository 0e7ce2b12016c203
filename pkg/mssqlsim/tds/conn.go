package tds

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"
)

// errLoginRefused ends a connection whose login the handler refused.
var errLoginRefused = errors.New("login refused")

// activeReq is a request between its arrival and the end of its response.
// finished and attn are guarded by conn.mu.
type activeReq struct {
	msg      message
	ctx      context.Context
	cancel   context.CancelFunc
	finished bool // the response is being or has been ended
	attn     bool // an attention arrived before finished
}

// conn is one client connection. A reader goroutine reads messages so that
// it sees an attention while the worker (the connection's own goroutine)
// runs the request before it.
type conn struct {
	srv    *Server
	nc     net.Conn
	log    *slog.Logger
	spid   uint16
	ctx    context.Context
	cancel context.CancelFunc
	pr     packetReader

	wmu sync.Mutex
	pw  packetWriter

	mu     sync.Mutex
	cur    *activeReq
	events chan *activeReq // nil for an attention outside a request

	closeOnce sync.Once
	tranID    uint64 // active transaction descriptor, 0 if none
	tranCount uint64
}

func newConn(s *Server, nc net.Conn, spid uint16) *conn {
	c := &conn{
		srv:    s,
		nc:     nc,
		spid:   spid,
		log:    s.log.With("remote", nc.RemoteAddr().String(), "spid", spid),
		events: make(chan *activeReq, 4),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.pr = packetReader{r: bufio.NewReaderSize(deadlineReader{c}, 16<<10), retry: c.busy}
	c.pw = packetWriter{w: nc, packetSize: s.cfg.PacketSize, spid: spid, seq: 1}
	return c
}

// deadlineReader renews the idle deadline before each read.
type deadlineReader struct{ c *conn }

func (d deadlineReader) Read(p []byte) (int, error) {
	if t := d.c.srv.cfg.IdleTimeout; t > 0 {
		_ = d.c.nc.SetReadDeadline(time.Now().Add(t))
	}
	return d.c.nc.Read(p)
}

// busy reports whether a request is running, so that an idle read timeout
// does not count.
func (c *conn) busy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil && !c.cur.finished
}

// close drops the connection; it is safe to call more than once and from
// any goroutine.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.cancel()
		_ = c.nc.Close()
	})
}

func (c *conn) write(typ byte, data []byte, eom bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.pw.write(typ, data, eom)
}

// serve runs the connection until it ends.
func (c *conn) serve() {
	defer c.close()
	sess, err := c.handshake()
	if err != nil {
		if !errors.Is(err, io.EOF) && !errors.Is(err, errLoginRefused) && c.ctx.Err() == nil {
			c.log.Warn("tds login failed", "err", err)
		}
		return
	}
	defer sess.Close()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		c.readLoop()
	}()
	for r := range c.events {
		if err := c.handle(sess, r); err != nil {
			if !errors.Is(err, errAborted) && c.ctx.Err() == nil {
				c.log.Warn("tds connection closed", "err", err)
			}
			break
		}
	}
	c.close()
	<-readerDone
}

// handshake answers PRELOGIN and LOGIN7 and returns the new session.
func (c *conn) handshake() (Session, error) {
	msg, err := c.pr.readMessage()
	if err != nil {
		return nil, err
	}
	if msg.typ == pktPrelogin {
		enc, err := parsePrelogin(msg.data)
		if err != nil {
			return nil, err
		}
		if enc != encryptNotSup {
			c.log.Debug("client asked for encryption, answering not supported", "encryption", enc)
		}
		if err := c.write(pktReply, preloginResponse(&c.srv.cfg, c.spid), true); err != nil {
			return nil, err
		}
		if msg, err = c.pr.readMessage(); err != nil {
			return nil, err
		}
	}
	if msg.typ != pktLogin7 {
		return nil, fmt.Errorf("message type %d instead of login7: %w", msg.typ, errMalformed)
	}
	l, err := parseLogin7(msg.data)
	if err != nil {
		return nil, err
	}
	log := c.log.With("user", l.User, "app", l.AppName, "host", l.HostName, "database", l.Database)
	version, err := negotiateVersion(l.tdsVersion)
	if err != nil {
		c.refuseLogin(&Error{Number: 4002, State: 1, Severity: 16, Message: "The incoming tabular data stream (TDS) protocol stream is incorrect."})
		return nil, err
	}
	l.Login.Kill = c.close
	sess, err := c.srv.h.Login(c.ctx, l.Login)
	if err == nil && sess == nil {
		err = errors.New("handler returned no session")
	}
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Number: 18456, State: 1, Severity: 14, Message: "Login failed for user '" + l.User + "'."}
		}
		log.Info("tds login refused", "number", e.Number, "err", err)
		c.refuseLogin(e)
		return nil, errLoginRefused
	}
	size := negotiatePacketSize(l.packetSize, c.srv.cfg.PacketSize)
	c.pw.packetSize = size
	if err := c.write(pktReply, loginResponse(&c.srv.cfg, version, l.Database, size), true); err != nil {
		sess.Close()
		return nil, err
	}
	log.Debug("tds login", "tds_version", fmt.Sprintf("0x%08X", version), "packet_size", size)
	return sess, nil
}

// refuseLogin sends an error and a final DONE with the error flag.
func (c *conn) refuseLogin(e *Error) {
	b := appendMessage(nil, e, c.srv.cfg.ServerName)
	_ = c.write(pktReply, appendDone(b, doneError, 0, 0), true)
}

// readLoop reads client messages until the connection fails. Requests go to
// the worker; an attention cancels the running request.
func (c *conn) readLoop() {
	defer close(c.events)
	for {
		msg, err := c.pr.readMessage()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF) || c.ctx.Err() != nil:
			case errors.As(err, &ne) && ne.Timeout():
				c.log.Info("tds connection idle, closing", "idle_timeout", c.srv.cfg.IdleTimeout)
			default:
				c.log.Warn("tds read failed", "err", err)
			}
			c.close()
			return
		}
		var r *activeReq
		switch msg.typ {
		case pktAttention:
			c.mu.Lock()
			if cur := c.cur; cur != nil && !cur.finished {
				cur.attn = true
				cur.cancel()
				c.mu.Unlock()
				continue
			}
			c.mu.Unlock()
		case pktSQLBatch, pktRPC, pktTransMgr:
			r = &activeReq{msg: msg}
			r.ctx, r.cancel = context.WithCancel(c.ctx)
			c.mu.Lock()
			c.cur = r
			c.mu.Unlock()
		default:
			c.log.Warn("tds unexpected message type, closing", "type", msg.typ)
			c.close()
			return
		}
		select {
		case c.events <- r:
		case <-c.ctx.Done():
			return
		}
	}
}

// handle answers one request, or an attention outside a request (r nil).
func (c *conn) handle(sess Session, r *activeReq) error {
	if r == nil {
		return c.write(pktReply, appendDone(nil, doneAttn, 0, 0), true)
	}
	defer r.cancel()
	if rs, ok := sess.(Resetter); ok && r.msg.reset {
		rs.Reset()
	}
	w := newResultWriter(c, r.ctx)
	switch r.msg.typ {
	case pktTransMgr:
		if err := c.transaction(r.msg.data, w); err != nil {
			return err
		}
	case pktSQLBatch:
		c.run(sess, r.ctx, parseBatch(r.msg.data), w)
	case pktRPC:
		req, err := parseRPC(r.msg.data)
		if err != nil {
			return err
		}
		c.run(sess, r.ctx, req, w)
	}
	c.mu.Lock()
	r.finished = true
	attn := r.attn
	if c.cur == r {
		c.cur = nil
	}
	c.mu.Unlock()
	return w.finish(attn)
}

// run calls the handler. A panic drops the connection rather than the
// server.
func (c *conn) run(sess Session, ctx context.Context, req request, w *resultWriter) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("tds handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			w.Abort()
		}
	}()
	sess.Batch(ctx, req.sql, req.params, w)
}

// Transaction manager request types.
const (
	tmBegin    = 5
	tmCommit   = 7
	tmRollback = 8
	tmFlagNew  = 1 // commit or rollback begins a new transaction
)

// transaction answers a transaction manager request. Begin, commit and
// rollback only maintain the transaction descriptor; other requests, and a
// commit without a transaction, succeed without effect.
func (c *conn) transaction(data []byte, w *resultWriter) error {
	cur := &cursor{b: stripAllHeaders(data)}
	typ := cur.u16()
	end := typ == tmCommit || typ == tmRollback
	begin := typ == tmBegin
	if end {
		cur.bVarChar() // transaction name
		begin = cur.u8()&tmFlagNew != 0
	}
	if cur.err != nil {
		return fmt.Errorf("transaction request: %w", cur.err)
	}
	desc := func() []byte { return envBytes(binary.LittleEndian.AppendUint64(nil, c.tranID)) }
	if end && c.tranID != 0 {
		env := envCommitTran
		if typ == tmRollback {
			env = envRollbackTran
		}
		w.buf = appendEnvChange(w.buf, env, envBytes(nil), desc())
		c.tranID = 0
	}
	if begin {
		c.tranCount++
		c.tranID = c.tranCount
		w.buf = appendEnvChange(w.buf, envBeginTran, desc(), envBytes(nil))
	}
	return nil
}
