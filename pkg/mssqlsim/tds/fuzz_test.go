package tds

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"unicode/utf8"
)

// The fuzz targets of what the simulator reads from a client: packets,
// PRELOGIN, LOGIN7, SQL batches and RPCs. TestMalformedInput mutates the
// same messages at random; these let the fuzzer search.

// FuzzReadMessage reads arbitrary bytes as a client's packets, and a
// payload split into packets of the fuzzed size by the server's own
// writer: the payload reassembles exactly, and arbitrary bytes never give
// a message longer than what was read.
func FuzzReadMessage(f *testing.F) {
	packets := func(typ byte, size int, data []byte) []byte {
		var buf bytes.Buffer
		pw := packetWriter{w: &buf, packetSize: size, seq: 1}
		if err := pw.write(typ, data, true); err != nil {
			f.Fatal(err)
		}
		return buf.Bytes()
	}
	batch := batchBytes("SELECT 1")
	f.Add(packets(pktSQLBatch, minPacketSize, bytes.Repeat(batch, 100)), batch, uint16(minPacketSize), pktSQLBatch)
	f.Add(packets(pktLogin7, defaultPktSize, login7Bytes("sa", "pw", "master")), []byte(nil), uint16(0), pktRPC)
	f.Add([]byte{pktSQLBatch, 0, 0, 7}, []byte{1}, uint16(maxPacketSize), pktAttention)
	f.Add([]byte{pktSQLBatch, 0, 0, 9, 0, 0, 1, 0, 'x', pktRPC, 1, 0, 8, 0, 0, 2, 0}, []byte{}, uint16(1), byte(0))
	f.Fuzz(func(t *testing.T, stream, payload []byte, size uint16, typ byte) {
		pr := packetReader{r: bytes.NewReader(stream)}
		read := 0
		for {
			m, err := pr.readMessage()
			if err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errMalformed) {
					break
				}
				t.Fatalf("readMessage: %v; want EOF or an error matching errMalformed", err)
			}
			if read += len(m.data); read > len(stream) {
				t.Fatalf("read %d bytes of messages from %d bytes", read, len(stream))
			}
		}
		n := min(max(int(size), minPacketSize), maxPacketSize)
		pr = packetReader{r: bytes.NewReader(packets(typ, n, payload))}
		m, err := pr.readMessage()
		if err != nil || m.typ != typ || !bytes.Equal(m.data, payload) {
			t.Fatalf("%d bytes in %d-byte packets read back as type %d, %d bytes, %v; want type %d", len(payload), n, m.typ, len(m.data), err, typ)
		}
	})
}

// login7For builds a LOGIN7 message as a client does, whatever the
// characters of its fields.
func login7For(user, pw, db string) []byte {
	const fixed = 94
	var tail []byte
	hdr := make([]byte, fixed)
	binary.LittleEndian.PutUint32(hdr[4:], tdsVersion74)
	binary.LittleEndian.PutUint32(hdr[8:], 4096)
	put := func(pos int, b []byte) {
		binary.LittleEndian.PutUint16(hdr[pos:], uint16(fixed+len(tail)))
		binary.LittleEndian.PutUint16(hdr[pos+2:], uint16(len(b)/2))
		tail = append(tail, b...)
	}
	mangled := ucs2(pw)
	for i, b := range mangled {
		mangled[i] = (b<<4 | b>>4) ^ 0xA5
	}
	put(l7HostName, ucs2("h"))
	put(l7UserName, ucs2(user))
	put(l7Password, mangled)
	put(l7AppName, ucs2("fuzz"))
	put(l7Database, ucs2(db))
	msg := append(hdr, tail...)
	binary.LittleEndian.PutUint32(msg, uint32(len(msg)))
	return msg
}

// FuzzLogin parses arbitrary bytes as PRELOGIN and LOGIN7, and LOGIN7
// messages built from fuzzed names and passwords: parsing fails only with
// errMalformed, and a built login reads back exactly.
func FuzzLogin(f *testing.F) {
	f.Add(preloginResponse(&Config{}, 1), "sa", "pw", "master")
	f.Add(login7For("sa", "Pa55w0rd!", "msdb"), "日本", "🐘\x00", "")
	f.Add([]byte{preEncryption, 0, 6, 0, 1, preTerminator, 1}, "", "", "db")
	f.Add([]byte{preEncryption, 0xff, 0xff, 0, 1, preTerminator}, "a", "b", "c")
	f.Fuzz(func(t *testing.T, data []byte, user, pw, db string) {
		if _, err := parsePrelogin(data); err != nil && !errors.Is(err, errMalformed) {
			t.Fatalf("parsePrelogin: %v; want an error matching errMalformed", err)
		}
		if _, err := parseLogin7(data); err != nil && !errors.Is(err, errMalformed) {
			t.Fatalf("parseLogin7: %v; want an error matching errMalformed", err)
		}
		if !utf8.ValidString(user) || !utf8.ValidString(pw) || !utf8.ValidString(db) || len(user)+len(pw)+len(db) > 10000 {
			return
		}
		l, err := parseLogin7(login7For(user, pw, db))
		if err != nil || l.User != user || l.Password != pw || l.Database != db || l.tdsVersion != tdsVersion74 || l.packetSize != 4096 {
			t.Fatalf("login of %q/%q on %q read back as %q/%q on %q, %v", user, pw, db, l.User, l.Password, l.Database, err)
		}
	})
}

// rpcExecuteSQL is an sp_executesql RPC, as go-mssqldb sends one, of stmt
// with one bigint parameter @p1 of value v.
func rpcExecuteSQL(stmt string, v int64) []byte {
	rpc := []byte{22, 0, 0, 0, 18, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xFF, 0xFF, 10, 0, 0, 0}
	param := func(name string, ti ...byte) {
		rpc = appendBVarChar(rpc, name)
		rpc = append(append(rpc, 0), ti...)
	}
	param("", append([]byte{typNVarChar, 0xFF, 0xFF, 9, 4, 0xD0, 0, 0x34}, appendPLP(nil, ucs2(stmt))...)...)
	decl := ucs2("@p1 bigint")
	param("", append([]byte{typNVarChar, 40, 0, 9, 4, 0xD0, 0, 0x34, byte(len(decl)), 0}, decl...)...)
	param("@p1", append([]byte{typIntN, 8, 8}, binary.LittleEndian.AppendUint64(nil, uint64(v))...)...)
	return rpc
}

// FuzzRequest parses arbitrary bytes as an RPC and as a SQL batch, and
// requests built from a fuzzed statement and parameter: nothing panics,
// and a built request reads back exactly.
func FuzzRequest(f *testing.F) {
	f.Add(rpcExecuteSQL("SELECT @p1", 1), "SELECT @p1", int64(-1))
	f.Add(batchBytes("BACKUP DATABASE d TO URL = 'https://x/y'"), "", int64(1)<<62)
	f.Add([]byte{0xFF, 0xFF, 10, 0, 0, 0, 0, 0, typNVarChar, 0xFF, 0xFF, 9, 4, 0xD0, 0, 0x34, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, "日本", int64(0))
	f.Add([]byte{0, 0, 0, 0, typDecimalN, 17, 38, 200, 1, 1}, "x", int64(7))
	f.Fuzz(func(t *testing.T, data []byte, stmt string, v int64) {
		_, _ = parseRPC(data)
		_ = parseBatch(data)
		if !utf8.ValidString(stmt) || len(stmt) > 1<<16 {
			return
		}
		req, err := parseRPC(rpcExecuteSQL(stmt, v))
		if err != nil || req.sql != stmt || len(req.params) != 1 || req.params[0].Name != "@p1" || req.params[0].Value != v {
			t.Fatalf("sp_executesql %q with @p1 = %d read back as %q %+v, %v", stmt, v, req.sql, req.params, err)
		}
		if got := parseBatch(batchBytes(stmt)).sql; got != stmt {
			t.Fatalf("batch %q read back as %q", stmt, got)
		}
	})
}
