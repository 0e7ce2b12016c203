package tds

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"
)

// rawClient speaks TDS by hand to test what database/sql cannot reach.
type rawClient struct {
	t  *testing.T
	nc net.Conn
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, nc: nc}
}

// send writes data as one packet per element of parts; the last carries
// status (which should include EOM).
func (c *rawClient) send(typ byte, status byte, parts ...[]byte) {
	c.t.Helper()
	if len(parts) == 0 {
		parts = [][]byte{nil}
	}
	for i, p := range parts {
		st := byte(0)
		if i == len(parts)-1 {
			st = status
		}
		hdr := []byte{typ, st, 0, 0, 0, 0, byte(i + 1), 0}
		binary.BigEndian.PutUint16(hdr[2:], uint16(len(p)+headerSize))
		if _, err := c.nc.Write(append(hdr, p...)); err != nil {
			c.t.Fatal(err)
		}
	}
}

// recv reads one server message.
func (c *rawClient) recv() ([]byte, error) {
	pr := packetReader{r: c.nc} // no read-ahead, so calls can follow one another
	m, err := pr.readMessage()
	if err == nil && m.typ != pktReply {
		err = errors.New("not a reply")
	}
	return m.data, err
}

// login7Bytes builds a minimal LOGIN7 message.
func login7Bytes(user, pw, db string) []byte {
	const fixed = 94
	var tail []byte
	hdr := make([]byte, fixed)
	binary.LittleEndian.PutUint32(hdr[4:], tdsVersion74)
	binary.LittleEndian.PutUint32(hdr[8:], 4096)
	put := func(pos int, b []byte, chars int) {
		binary.LittleEndian.PutUint16(hdr[pos:], uint16(fixed+len(tail)))
		binary.LittleEndian.PutUint16(hdr[pos+2:], uint16(chars))
		tail = append(tail, b...)
	}
	mangled := ucs2(pw)
	for i, b := range mangled {
		mangled[i] = (b<<4 | b>>4) ^ 0xA5
	}
	put(l7HostName, ucs2("h"), 1)
	put(l7UserName, ucs2(user), len(user))
	put(l7Password, mangled, len(pw))
	put(l7AppName, ucs2("raw"), 3)
	put(l7Database, ucs2(db), len(db))
	msg := append(hdr, tail...)
	binary.LittleEndian.PutUint32(msg, uint32(len(msg)))
	return msg
}

// login performs PRELOGIN and LOGIN7.
func (c *rawClient) login() {
	c.t.Helper()
	c.send(pktPrelogin, statusEOM, []byte{preTerminator})
	if _, err := c.recv(); err != nil {
		c.t.Fatalf("prelogin: %v", err)
	}
	c.send(pktLogin7, statusEOM, login7Bytes("sa", "pw", "msdb"))
	resp, err := c.recv()
	if err != nil || !bytes.Contains(resp, []byte{tokLoginAck}) {
		c.t.Fatalf("login: %x, %v", resp, err)
	}
}

// batchBytes is a SQL batch with an ALL_HEADERS block.
func batchBytes(sql string) []byte {
	hdrs := []byte{22, 0, 0, 0, 18, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}
	return append(hdrs, ucs2(sql)...)
}

func lastDone(t *testing.T, resp []byte) (status uint16) {
	t.Helper()
	if len(resp) < 13 || resp[len(resp)-13] != tokDone {
		t.Fatalf("response does not end with DONE: %x", resp)
	}
	return binary.LittleEndian.Uint16(resp[len(resp)-12:])
}

func TestRawProtocol(t *testing.T) {
	_, addr, h := startServer(t)
	c := dialRaw(t, addr)
	c.login()
	h.mu.Lock()
	if l := h.lastLogin; l.Database != "msdb" || l.Password != "pw" || l.AppName != "raw" {
		t.Errorf("login decoded as %+v", l)
	}
	h.mu.Unlock()

	// An attention outside a request is acknowledged.
	c.send(pktAttention, statusEOM)
	resp, err := c.recv()
	if err != nil || len(resp) != 13 || lastDone(t, resp) != doneAttn {
		t.Fatalf("attention: %x, %v", resp, err)
	}

	// A request in three packets, with the reset-connection status bit.
	sql := batchBytes("select 1")
	c.send(pktSQLBatch, statusEOM|0x08, sql[:5], sql[5:20], sql[20:])
	resp, err = c.recv()
	if err != nil || lastDone(t, resp) != doneCount {
		t.Fatalf("select 1: %x, %v", resp, err)
	}

	// An unknown message type closes the connection.
	c.send(0x55, statusEOM, []byte{1, 2, 3})
	if resp, err := c.recv(); err == nil {
		t.Fatalf("got %x after a bad message type", resp)
	}

	// The server still serves others.
	c = dialRaw(t, addr)
	c.login()
}

func TestIdleTimeout(t *testing.T) {
	_, addr, _ := startServerConfig(t, Config{IdleTimeout: 150 * time.Millisecond})
	c := dialRaw(t, addr)
	c.login()
	// A request that runs longer than the idle timeout is not cut.
	c.send(pktSQLBatch, statusEOM, batchBytes("waitfor delay"))
	if resp, err := c.recv(); err != nil || lastDone(t, resp) != 0 {
		t.Fatalf("waitfor delay: %x, %v", resp, err)
	}
	start := time.Now()
	if _, err := c.recv(); err == nil {
		t.Fatal("idle connection not closed")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle close took %v", d)
	}
}

func TestServerCloseCancelsRequests(t *testing.T) {
	srv, addr, h := startServer(t)
	c := dialRaw(t, addr)
	c.login()
	c.send(pktSQLBatch, statusEOM, batchBytes("waitfor cancel"))
	<-h.started
	done := make(chan struct{})
	go func() {
		_ = srv.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not return")
	}
	if _, err := c.recv(); err == nil {
		t.Fatal("connection open after close")
	}
}

// TestMalformedInput feeds truncated and corrupted messages to the parsers,
// which must fail cleanly rather than panic.
func TestMalformedInput(t *testing.T) {
	rpc := []byte{22, 0, 0, 0, 18, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xFF, 0xFF, 10, 0, 0, 0}
	param := func(name string, ti ...byte) {
		rpc = appendBVarChar(rpc, name)
		rpc = append(append(rpc, 0), ti...)
	}
	stmt := ucs2("select params")
	param("", append([]byte{typNVarChar, 0xFF, 0xFF, 9, 4, 0xD0, 0, 0x34}, appendPLP(nil, stmt)...)...)
	param("", append([]byte{typNVarChar, 20, 0, 9, 4, 0xD0, 0, 0x34, 4, 0}, ucs2("@a")...)...)
	param("@p1", typIntN, 8, 8, 1, 2, 3, 4, 5, 6, 7, 8)
	param("@p2", typDateTimeOffset, 7, 10, 0, 0, 0, 0, 0, 1, 2, 3, 0, 0)
	param("@p3", typDecimalN, 17, 38, 2, 5, 1, 0x39, 0x30, 0, 0)
	param("@p4", typMoneyN, 8, 8, 0, 0, 0, 0, 0x10, 0x27, 0, 0)
	param("@p5", typGUID, 16, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
	param("@p6", typDateTimeN, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0)
	param("@p7", typNull)

	req, err := parseRPC(rpc)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{int64(0x0807060504030201), nil, "123.45", "1.0000", nil, nil, nil}
	if len(req.params) != len(want) || req.sql != "select params" {
		t.Fatalf("parsed %q %+v", req.sql, req.params)
	}
	for i, w := range want {
		if w != nil && req.params[i].Value != w {
			t.Errorf("param %d = %#v, want %#v", i, req.params[i].Value, w)
		}
	}
	if v := req.params[6].Value; v != nil {
		t.Errorf("null param = %#v", req.params[6].Value)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	login := login7Bytes("sa", "pw", "master")
	pre := preloginResponse(&Config{}, 1)
	for i := range 20000 {
		var src []byte
		switch i % 3 {
		case 0:
			src = rpc
		case 1:
			src = login
		default:
			src = pre
		}
		b := append([]byte(nil), src[:rng.IntN(len(src)+1)]...)
		for range rng.IntN(4) {
			if len(b) > 0 {
				b[rng.IntN(len(b))] = byte(rng.Uint32())
			}
		}
		_, _ = parseRPC(b)
		_, _ = parseLogin7(b)
		_, _ = parsePrelogin(b)
		_ = parseBatch(b)
	}
}

// TestValueCodec checks that values the server encodes decode to the same
// value with the parameter decoder.
func TestValueCodec(t *testing.T) {
	cases := []struct {
		col  Column
		in   any
		ti   typeInfo
		want any
	}{
		{Column{Type: DateTime2}, time.Date(9999, 12, 31, 23, 59, 59, 999999900, time.UTC),
			typeInfo{id: typDateTime2N, scale: 7}, time.Date(9999, 12, 31, 23, 59, 59, 999999900, time.UTC)},
		{Column{Type: DateTime2}, time.Date(1, 1, 1, 0, 0, 0, 100, time.UTC),
			typeInfo{id: typDateTime2N, scale: 7}, time.Date(1, 1, 1, 0, 0, 0, 100, time.UTC)},
		{Column{Type: DateTime}, time.Date(1753, 1, 1, 0, 0, 0, 0, time.UTC),
			typeInfo{id: typDateTimeN}, time.Date(1753, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Column{Type: DateTime}, time.Date(2000, 2, 29, 23, 59, 59, 999e6, time.UTC),
			typeInfo{id: typDateTimeN}, time.Date(2000, 3, 1, 0, 0, 0, 0, time.UTC)},
		{Column{Type: Numeric}, "-9999999999999999999999999", typeInfo{id: typNumericN}, "-9999999999999999999999999"},
		{Column{Type: Numeric}, 0, typeInfo{id: typNumericN}, "0"},
		{Column{Type: BigInt}, int64(-1) << 63, typeInfo{id: typIntN}, int64(-1) << 63},
		{Column{Type: GUID}, "{00112233-4455-6677-8899-AABBCCDDEEFF}", typeInfo{id: typGUID},
			[16]byte{0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF}},
	}
	for _, tc := range cases {
		b, err := appendValue(nil, tc.col, tc.in)
		if err != nil {
			t.Errorf("%v: %v", tc.in, err)
			continue
		}
		got, err := decodeValue(tc.ti, b[1:])
		if g, ok := got.(time.Time); ok && g.Equal(tc.want.(time.Time)) {
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: decoded %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []struct {
		col Column
		v   any
	}{
		{Column{Type: TinyInt}, 256}, {Column{Type: Int}, int64(1) << 31}, {Column{Type: Numeric}, "1e5"},
		{Column{Type: Numeric}, strings.Repeat("9", 26)}, {Column{Type: NVarChar, Size: 2}, "abc"},
		{Column{Type: Bit}, 1}, {Column{Type: GUID}, "nope"}, {Column{Type: DateTime}, time.Time{}},
	} {
		if _, err := appendValue(nil, bad.col, bad.v); err == nil {
			t.Errorf("%v in %v: no error", bad.v, bad.col.Type)
		}
	}
}
