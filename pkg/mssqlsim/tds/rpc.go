package tds

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// procName names the procedure a client calls by ProcID.
func procName(id uint16) string {
	names := [...]string{
		1: "sp_cursor", 2: "sp_cursoropen", 3: "sp_cursorprepare", 4: "sp_cursorexecute",
		5: "sp_cursorprepexec", 6: "sp_cursorunprepare", 7: "sp_cursorfetch", 8: "sp_cursoroption",
		9: "sp_cursorclose", 10: "sp_executesql", 11: "sp_prepare", 12: "sp_execute",
		13: "sp_prepexec", 14: "sp_prepexecrpc", 15: "sp_unprepare",
	}
	if id > 0 && int(id) < len(names) {
		return names[id]
	}
	return fmt.Sprintf("proc_%d", id)
}

// cursor reads little-endian fields from a message body. The first
// out-of-bounds read sets err; later reads return zero values.
type cursor struct {
	b   []byte
	err error
}

func (c *cursor) take(n int) []byte {
	if c.err != nil {
		return nil
	}
	if n < 0 || n > len(c.b) {
		c.err = fmt.Errorf("%d-byte field past end of message: %w", n, errMalformed)
		return nil
	}
	p := c.b[:n:n]
	c.b = c.b[n:]
	return p
}

// uint reads an n-byte little-endian unsigned integer.
func (c *cursor) uint(n int) uint64 {
	var v uint64
	for i, b := range c.take(n) {
		v |= uint64(b) << (8 * i)
	}
	return v
}

func (c *cursor) u8() byte    { return byte(c.uint(1)) }
func (c *cursor) u16() uint16 { return uint16(c.uint(2)) }
func (c *cursor) u32() uint32 { return uint32(c.uint(4)) }
func (c *cursor) u64() uint64 { return c.uint(8) }

// bVarChar reads a B_VARCHAR.
func (c *cursor) bVarChar() string { return decodeUCS2(c.take(2 * int(c.u8()))) }

// usVarChar reads a US_VARCHAR.
func (c *cursor) usVarChar() string { return decodeUCS2(c.take(2 * int(c.u16()))) }

// stripAllHeaders skips the ALL_HEADERS block that TDS 7.2+ puts in front
// of SQL batch, RPC and transaction manager requests. A block whose length
// is implausible is taken to be absent (a pre-7.2 client): the first four
// bytes of UCS-2 text never form a small little-endian number.
func stripAllHeaders(data []byte) []byte {
	if len(data) < 4 {
		return data
	}
	n := binary.LittleEndian.Uint32(data)
	if n < 4 || n > uint32(len(data)) {
		return data
	}
	return data[n:]
}

// request is a decoded SQL batch or RPC.
type request struct {
	sql    string
	params []Param
}

// parseBatch decodes a SQL batch message.
func parseBatch(data []byte) request {
	return request{sql: decodeUCS2(stripAllHeaders(data))}
}

// parseRPC decodes an RPC message. sp_executesql becomes its statement and
// typed parameters; any other procedure becomes "EXEC <name>" with all its
// parameters. Only the first RPC of a batched request is decoded.
func parseRPC(data []byte) (request, error) {
	c := &cursor{b: stripAllHeaders(data)}
	var name string
	if n := c.u16(); n == 0xFFFF {
		name = procName(c.u16())
	} else {
		name = decodeUCS2(c.take(2 * int(n)))
	}
	c.u16() // option flags
	if c.err != nil {
		return request{}, fmt.Errorf("rpc header: %w", c.err)
	}
	var params []Param
	for len(c.b) > 0 {
		if b := c.b[0]; b == 0x80 || b == 0xFF {
			break // batch separator: further RPCs are not supported
		}
		p, err := readParam(c)
		if err != nil {
			return request{}, fmt.Errorf("rpc %s parameter %d: %w", name, len(params)+1, err)
		}
		params = append(params, p)
	}
	if strings.EqualFold(name, "sp_executesql") || strings.EqualFold(name, "sys.sp_executesql") {
		if len(params) == 0 {
			return request{}, fmt.Errorf("sp_executesql without a statement: %w", errMalformed)
		}
		stmt, ok := params[0].Value.(string)
		if !ok {
			return request{}, fmt.Errorf("sp_executesql statement of type %T: %w", params[0].Value, errMalformed)
		}
		rest := params[1:]
		if len(rest) > 0 {
			rest = rest[1:] // parameter declarations
		}
		return request{sql: stmt, params: rest}, nil
	}
	return request{sql: "EXEC " + name, params: params}, nil
}

// readParam reads one RPC parameter: name, status flags, TYPE_INFO, value.
func readParam(c *cursor) (Param, error) {
	name := c.bVarChar()
	c.u8() // status flags (by-reference, default value)
	ti := readTypeInfo(c)
	if c.err != nil {
		return Param{}, c.err
	}
	v, err := readValue(c, ti)
	if err != nil {
		return Param{}, err
	}
	unicode := ti.id == typNVarChar || ti.id == typNChar || ti.id == typNText
	return Param{Name: name, Value: v, Unicode: unicode}, nil
}
