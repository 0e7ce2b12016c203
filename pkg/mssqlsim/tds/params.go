package tds

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
	"unicode/utf8"
)

// How a value's length is encoded, by type (MS-TDS 2.2.5.4).
const (
	lenFixed = iota
	lenByte  // BYTELEN
	lenShort // USHORTLEN, or PLP for a max type
	lenLong  // LONGLEN (text, ntext, image)
	lenPLP
)

// typeInfo is a decoded TYPE_INFO of an RPC parameter.
type typeInfo struct {
	id    byte
	kind  int
	size  int // size of a fixed type
	scale byte
}

// readTypeInfo reads a TYPE_INFO. Errors are left in c.err.
func readTypeInfo(c *cursor) typeInfo {
	ti := typeInfo{id: c.u8(), kind: lenByte}
	switch ti.id {
	case typNull:
		ti.kind = lenFixed
	case typInt1, typBit:
		ti.kind, ti.size = lenFixed, 1
	case typInt2:
		ti.kind, ti.size = lenFixed, 2
	case typInt4, typDateTim4, typFlt4, typMoney4:
		ti.kind, ti.size = lenFixed, 4
	case typInt8, typDateTime, typFlt8, typMoney:
		ti.kind, ti.size = lenFixed, 8
	case typGUID, typIntN, typBitN, typFltN, typMoneyN, typDateTimeN:
		c.u8() // maximum length
	case typDecimalN, typNumericN:
		c.take(2) // maximum length, precision
		ti.scale = c.u8()
	case typDateN:
	case typTimeN, typDateTime2N, typDateTimeOffset:
		if ti.scale = c.u8(); ti.scale > 7 {
			c.err = fmt.Errorf("time scale %d: %w", ti.scale, errMalformed)
		}
	case typBigVarBin, typBigBinary, typBigVarChar, typBigChar, typNVarChar, typNChar:
		ti.kind = lenShort
		if c.u16() == 0xFFFF {
			ti.kind = lenPLP
		}
		if ti.id != typBigVarBin && ti.id != typBigBinary {
			c.take(5) // collation
		}
	case typText, typNText, typImage:
		ti.kind = lenLong
		c.u32() // maximum length
		if ti.id != typImage {
			c.take(5) // collation
		}
	case typXML:
		ti.kind = lenPLP
		if c.u8() != 0 { // schema: database, owning schema, collection
			c.bVarChar()
			c.bVarChar()
			c.usVarChar()
		}
	default:
		if c.err == nil {
			c.err = fmt.Errorf("unsupported parameter type 0x%02X", ti.id)
		}
	}
	return ti
}

// readValue reads a value of type ti and decodes it to a Go value (see
// Param).
func readValue(c *cursor, ti typeInfo) (any, error) {
	var raw []byte
	switch ti.kind {
	case lenFixed:
		raw = c.take(ti.size)
	case lenByte:
		if n := c.u8(); n > 0 {
			raw = c.take(int(n))
		}
	case lenShort:
		if n := c.u16(); n != 0xFFFF {
			raw = c.take(int(n))
		}
	case lenLong:
		if n := c.u32(); n != math.MaxUint32 {
			raw = c.take(int(n))
		}
	case lenPLP:
		raw = readPLP(c)
	}
	if c.err != nil || raw == nil {
		return nil, c.err
	}
	return decodeValue(ti, raw)
}

// readPLP reads a PLP value; NULL is nil.
func readPLP(c *cursor) []byte {
	if c.u64() == plpNull {
		return nil
	}
	p := []byte{}
	for n := c.u32(); n > 0 && c.err == nil; n = c.u32() {
		p = append(p, c.take(int(n))...)
	}
	return p
}

// decodeValue converts the raw bytes of a non-NULL value.
func decodeValue(ti typeInfo, raw []byte) (any, error) {
	le := binary.LittleEndian
	switch n := len(raw); ti.id {
	case typNull:
		return nil, nil
	case typInt1, typInt2, typInt4, typInt8, typIntN:
		switch n {
		case 1:
			return int64(raw[0]), nil
		case 2:
			return int64(int16(le.Uint16(raw))), nil
		case 4:
			return int64(int32(le.Uint32(raw))), nil
		case 8:
			return int64(le.Uint64(raw)), nil
		}
	case typBit, typBitN:
		if n == 1 {
			return raw[0] != 0, nil
		}
	case typFlt4, typFlt8, typFltN:
		if n == 4 {
			return float64(math.Float32frombits(le.Uint32(raw))), nil
		} else if n == 8 {
			return math.Float64frombits(le.Uint64(raw)), nil
		}
	case typMoney, typMoney4, typMoneyN:
		if n == 4 {
			return scaledString(big.NewInt(int64(int32(le.Uint32(raw)))), 4), nil
		} else if n == 8 {
			return scaledString(big.NewInt(int64(le.Uint32(raw))<<32|int64(le.Uint32(raw[4:]))), 4), nil
		}
	case typDateTime, typDateTim4, typDateTimeN:
		if n == 4 {
			return fromDays(int64(le.Uint16(raw)), epochDateTime).Add(time.Duration(le.Uint16(raw[2:])) * time.Minute), nil
		} else if n == 8 {
			ns := (int64(le.Uint32(raw[4:]))*1e9 + sqlDateTimeTicksSec/2) / sqlDateTimeTicksSec
			return fromDays(int64(int32(le.Uint32(raw))), epochDateTime).Add(time.Duration(ns)), nil
		}
	case typGUID:
		if n == 16 {
			return [16]byte(raw), nil
		}
	case typDecimalN, typNumericN:
		mag := make([]byte, 0, n)
		for i := n - 1; i > 0; i-- {
			mag = append(mag, raw[i])
		}
		v := new(big.Int).SetBytes(mag)
		if raw[0] == 0 {
			v.Neg(v)
		}
		return scaledString(v, int(ti.scale)), nil
	case typDateN, typTimeN, typDateTime2N, typDateTimeOffset:
		return decodeTime(ti, raw)
	case typNVarChar, typNChar, typNText, typXML:
		return decodeUCS2(raw), nil
	case typBigVarChar, typBigChar, typText:
		return decodeSingleByte(raw), nil
	case typBigVarBin, typBigBinary, typImage:
		return raw, nil
	}
	return nil, fmt.Errorf("type 0x%02X with %d bytes: %w", ti.id, len(raw), errMalformed)
}

// decodeTime decodes date, time, datetime2 and datetimeoffset values. A
// time is returned on 0001-01-01, a datetimeoffset in its own fixed zone.
func decodeTime(ti typeInfo, raw []byte) (any, error) {
	timeLen := 0 // 3, 4 or 5 bytes for scale 0-2, 3-4, 5-7
	switch {
	case ti.id == typDateN:
	case ti.scale <= 2:
		timeLen = 3
	case ti.scale <= 4:
		timeLen = 4
	default:
		timeLen = 5
	}
	dateLen := 3
	if ti.id == typTimeN {
		dateLen = 0
	} else if ti.id == typDateTimeOffset {
		dateLen = 5 // date and offset
	}
	if len(raw) != timeLen+dateLen {
		return nil, fmt.Errorf("type 0x%02X scale %d with %d bytes: %w", ti.id, ti.scale, len(raw), errMalformed)
	}
	c := &cursor{b: raw}
	ns := int64(c.uint(timeLen)) * int64(math.Pow10(9-int(ti.scale)))
	t := fromDays(int64(c.uint(min(dateLen, 3))), epochDate).Add(time.Duration(ns))
	if ti.id == typDateTimeOffset {
		t = t.In(time.FixedZone("", 60*int(int16(c.u16()))))
	}
	return t, nil
}

// scaledString formats n / 10^scale exactly.
func scaledString(n *big.Int, scale int) string {
	s := new(big.Int).Abs(n).String()
	if scale > 0 {
		if len(s) <= scale {
			s = strings.Repeat("0", scale-len(s)+1) + s
		}
		s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	}
	if n.Sign() < 0 {
		s = "-" + s
	}
	return s
}

// decodeSingleByte decodes varchar data: UTF-8 when valid, else Latin-1.
func decodeSingleByte(raw []byte) string {
	if utf8.Valid(raw) {
		return string(raw)
	}
	r := make([]rune, len(raw))
	for i, b := range raw {
		r[i] = rune(b)
	}
	return string(r)
}
