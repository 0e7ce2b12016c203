package mssqlsim

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/pkg/mssqlsim/tds"
)

// Serve answers TDS clients on l until Close. It returns nil after Close.
func (i *Instance) Serve(l net.Listener) error {
	p := i.cfg.product()
	srv := tds.NewServer(tds.Config{
		ServerName:   i.cfg.ServerName,
		VersionMajor: uint8(p.major), VersionMinor: 0, VersionBuild: uint16(p.build),
	}, &handler{inst: i}, i.log)
	i.mu.Lock()
	if i.closed {
		i.mu.Unlock()
		return errors.New("instance closed")
	}
	i.servers = append(i.servers, srv)
	i.mu.Unlock()
	return srv.Serve(l)
}

// Listen starts serving on addr (such as 127.0.0.1:0) in the background
// and returns the address it listens on.
func (i *Instance) Listen(addr string) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	i.wg.Add(1)
	go func() {
		defer i.wg.Done()
		if err := i.Serve(l); err != nil {
			i.log.Error("tds server stopped", "addr", l.Addr().String(), "err", err)
		}
	}()
	return l.Addr().String(), nil
}

// Close stops every server and workload.
func (i *Instance) Close() error {
	i.mu.Lock()
	i.closed = true
	srvs := i.servers
	i.servers = nil
	i.mu.Unlock()
	var errs []error
	for _, s := range srvs {
		errs = append(errs, s.Close())
	}
	i.wg.Wait()
	i.stopWorkloads()
	return errors.Join(errs...)
}

type handler struct {
	inst *Instance
	spid atomic.Int32
}

var _ tds.Handler = (*handler)(nil)

func (h *handler) Login(ctx context.Context, l tds.Login) (tds.Session, error) {
	i := h.inst
	i.mu.Lock()
	lg, ok := i.logins[strings.ToLower(l.User)]
	i.mu.Unlock()
	if !ok || lg.password != l.Password {
		return nil, &tds.Error{Number: 18456, Severity: 14, State: 1, Message: "Login failed for user '" + l.User + "'."}
	}
	sess := &session{user: l.User, database: "master", spid: int(51 + h.spid.Add(1)), language: i.cfg.Language}
	if l.Database != "" {
		d, e := i.lookup(l.Database)
		if e == nil {
			e = i.enter(sess, d)
		}
		if e != nil {
			return nil, &tds.Error{Number: 4060, Severity: 11, State: 1, Message: "Cannot open database \"" + l.Database + "\" requested by the login. The login failed."}
		}
	}
	i.addSession(sess, l.Kill)
	return &tdsSession{inst: i, sess: sess, loginDB: sess.database}, nil
}

// tdsSession runs batches for one connection.
type tdsSession struct {
	inst    *Instance
	mu      sync.Mutex
	sess    *session
	loginDB string // the database a reset returns the session to
}

var _ tds.Resetter = (*tdsSession)(nil)

func (s *tdsSession) Batch(ctx context.Context, sql string, params []tds.Param, w tds.ResultWriter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pm map[string]any
	if len(params) > 0 {
		pm = make(map[string]any, len(params))
		var unicode map[string]bool
		for _, p := range params {
			pm[strings.ToLower(p.Name)] = p.Value
			if p.Unicode {
				if unicode == nil {
					unicode = map[string]bool{}
				}
				unicode[strings.ToLower(p.Name)] = true
			}
		}
		if unicode != nil {
			pm[unicodeParamsKey] = unicode
		}
	}
	s.inst.runBatch(ctx, s.sess, sql, pm, &tdsOutput{w: w, server: s.inst.cfg.ServerName})
}

// Close forgets the session: it no longer uses its database.
func (s *tdsSession) Close() {
	s.inst.removeSession(s.sess)
	s.mu.Lock()
	s.sess.endTx() // rolled back with the connection
	s.mu.Unlock()
	// AUTO_CLOSE can shut down the database it was using
	s.inst.closeIdle()
}

// Reset returns the session to its login's database and language, as
// sp_reset_connection does when a client pool reuses the connection.
func (s *tdsSession) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inst.mu.Lock()
	s.sess.database = s.loginDB
	s.inst.mu.Unlock()
	s.sess.language = s.inst.cfg.Language
	s.sess.inTran, s.sess.markName = false, ""
	s.sess.endTx()
}

// tdsOutput writes results as TDS tokens.
type tdsOutput struct {
	w      tds.ResultWriter
	server string
	cols   []column
}

func (o *tdsOutput) columns(cols []column) error {
	o.cols = cols
	tc := make([]tds.Column, len(cols))
	for k, c := range cols {
		tc[k] = tds.Column{Name: c.name, Nullable: true, Size: c.size}
		switch c.typ {
		case ctInt:
			tc[k].Type = tds.Int
		case ctBigInt:
			tc[k].Type = tds.BigInt
		case ctBit:
			tc[k].Type = tds.Bit
		case ctTinyInt:
			tc[k].Type = tds.TinyInt
		case ctSmallInt:
			tc[k].Type = tds.SmallInt
		case ctDateTime:
			tc[k].Type = tds.DateTime2
		case ctDateTime1:
			tc[k].Type = tds.DateTime
		case ctNumeric:
			tc[k].Type = tds.Numeric
		case ctGUID:
			tc[k].Type = tds.GUID
		case ctVarBinary:
			tc[k].Type = tds.VarBinary
		default:
			tc[k].Type = tds.NVarChar
			if c.size > 4000 {
				tc[k].Size = 0
			}
		}
	}
	return o.w.Columns(tc)
}

func (o *tdsOutput) row(vals []any) error {
	out := make([]any, len(vals))
	for k, v := range vals {
		if v == nil {
			continue
		}
		switch o.cols[k].typ {
		case ctInt:
			n, _ := toInt(v)
			out[k] = int32(n)
		case ctBigInt:
			n, _ := toInt(v)
			out[k] = n
		case ctSmallInt:
			n, _ := toInt(v)
			out[k] = int16(n)
		case ctTinyInt:
			n, _ := toInt(v)
			out[k] = uint8(n)
		case ctBit:
			n, _ := toInt(v)
			out[k] = n != 0
		case ctNumeric:
			switch x := v.(type) {
			case numeric:
				out[k] = uint64(x)
			default:
				n, _ := toInt(v)
				out[k] = uint64(n)
			}
		case ctGUID:
			s, _ := toStr(v)
			out[k] = strings.ToLower(s)
		case ctDateTime, ctDateTime1:
			if t, ok := v.(time.Time); ok {
				out[k] = t.UTC()
			} else {
				s, _ := toStr(v)
				t, _ := parseDateTime(s)
				out[k] = t
			}
		case ctVarBinary:
			out[k] = v
		default:
			s, _ := toStr(v)
			out[k] = s
		}
	}
	return o.w.Row(out...)
}

func (o *tdsOutput) done(count int64) error { return o.w.Done(count) }

func (o *tdsOutput) message(e *Error) error {
	return o.w.Message(&tds.Error{Number: e.Number, State: e.State, Severity: e.Severity, Message: e.Message,
		Server: o.server, Line: max(e.Line, 1)})
}

func (o *tdsOutput) flush() error { return o.w.Flush() }
func (o *tdsOutput) abort()       { o.w.Abort() }
