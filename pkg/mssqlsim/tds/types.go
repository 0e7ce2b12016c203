package tds

import (
	"encoding/hex"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"time"
)

// Type ids on the wire (MS-TDS 2.2.5.4).
const (
	typNull           byte = 0x1F
	typImage          byte = 0x22
	typText           byte = 0x23
	typGUID           byte = 0x24
	typIntN           byte = 0x26
	typDateN          byte = 0x28
	typTimeN          byte = 0x29
	typDateTime2N     byte = 0x2A
	typDateTimeOffset byte = 0x2B
	typInt1           byte = 0x30
	typBit            byte = 0x32
	typInt2           byte = 0x34
	typInt4           byte = 0x38
	typDateTim4       byte = 0x3A
	typFlt4           byte = 0x3B
	typMoney          byte = 0x3C
	typDateTime       byte = 0x3D
	typFlt8           byte = 0x3E
	typNText          byte = 0x63
	typBitN           byte = 0x68
	typDecimalN       byte = 0x6A
	typNumericN       byte = 0x6C
	typFltN           byte = 0x6D
	typMoneyN         byte = 0x6E
	typDateTimeN      byte = 0x6F
	typMoney4         byte = 0x7A
	typInt8           byte = 0x7F
	typBigVarBin      byte = 0xA5
	typBigVarChar     byte = 0xA7
	typBigBinary      byte = 0xAD
	typBigChar        byte = 0xAF
	typNVarChar       byte = 0xE7
	typNChar          byte = 0xEF
	typXML            byte = 0xF1
)

const (
	plpNull             uint64 = 0xFFFFFFFFFFFFFFFF
	plpChunk                   = 1 << 20
	maxShortLen                = 8000 // longest non-max nvarchar, in bytes
	numericPrec                = 25
	numericSize                = 17 // TYPE_INFO length of the numeric column
	numericValueSize           = 13 // sign and 12 magnitude bytes, precision 25
	sqlDateTimeTicksSec        = 300
	secondsPerDay              = 86400
	epochDate                  = -719162 // 0001-01-01 in Unix days
	epochDateTime              = -25567  // 1900-01-01 in Unix days
)

// appendColMetadata appends a COLMETADATA token.
func appendColMetadata(b []byte, cols []Column) ([]byte, error) {
	b = append(b, tokColMetadata)
	b = appendU16(b, uint16(len(cols)))
	for _, c := range cols {
		b = appendU32(b, 0) // user type
		if c.Nullable {
			b = appendU16(b, 1) // flags: nullable
		} else {
			b = appendU16(b, 0)
		}
		switch c.Type {
		case Int, BigInt, SmallInt, TinyInt:
			b = append(b, typIntN, byte(intSize(c.Type)))
		case Bit:
			b = append(b, typBitN, 1)
		case NVarChar:
			size := uint16(0xFFFF)
			if !isMaxNVarChar(c) {
				size = uint16(2 * c.Size)
			}
			b = append(appendU16(append(b, typNVarChar), size), collationLatin1...)
		case DateTime2:
			b = append(b, typDateTime2N, 7)
		case DateTime:
			b = append(b, typDateTimeN, 8)
		case Numeric:
			b = append(b, typNumericN, numericSize, numericPrec, 0)
		case GUID:
			b = append(b, typGUID, 16)
		case VarBinary:
			b = append(b, typBigVarBin, 0xFF, 0xFF)
		default:
			return nil, fmt.Errorf("column %q: unknown type %d", c.Name, c.Type)
		}
		b = appendBVarChar(b, c.Name)
	}
	return b, nil
}

// intSize is the byte width of an integer column type.
func intSize(t Type) int {
	switch t {
	case BigInt:
		return 8
	case SmallInt:
		return 2
	case TinyInt:
		return 1
	}
	return 4
}

func isMaxNVarChar(c Column) bool { return c.Size <= 0 || 2*c.Size > maxShortLen }

// as asserts that v is a T.
func as[T any](v any) (T, error) {
	t, ok := v.(T)
	if !ok {
		return t, fmt.Errorf("want %T, got %T", t, v)
	}
	return t, nil
}

// appendValue appends one column value of a ROW token.
func appendValue(b []byte, c Column, v any) ([]byte, error) {
	if p, ok := v.([]byte); ok && p == nil {
		v = nil
	}
	if v == nil {
		switch {
		case c.Type == VarBinary || c.Type == NVarChar && isMaxNVarChar(c):
			return appendU64(b, plpNull), nil
		case c.Type == NVarChar:
			return appendU16(b, 0xFFFF), nil
		}
		return append(b, 0), nil
	}
	switch c.Type {
	case Int, BigInt, SmallInt, TinyInt:
		n, ok := toInt64(v)
		size := intSize(c.Type)
		lo, hi := int64(-1)<<(8*size-1), int64(1)<<(8*size-1)-1
		if size == 1 { // tinyint is unsigned
			lo, hi = 0, 255
		}
		if !ok || n < lo || n > hi {
			return nil, fmt.Errorf("value %v (%T) not a %d-byte integer", v, v, size)
		}
		b = append(b, byte(size))
		for i := range size {
			b = append(b, byte(uint64(n)>>(8*i)))
		}
		return b, nil
	case Bit:
		t, err := as[bool](v)
		if t {
			return append(b, 1, 1), err
		}
		return append(b, 1, 0), err
	case NVarChar:
		s, err := as[string](v)
		u := ucs2(s)
		if isMaxNVarChar(c) {
			return appendPLP(b, u), err
		}
		if len(u) > 2*c.Size {
			return nil, fmt.Errorf("string of %d characters exceeds nvarchar(%d)", len(u)/2, c.Size)
		}
		return append(appendU16(b, uint16(len(u))), u...), err
	case DateTime2, DateTime:
		t, err := as[time.Time](v)
		if err != nil {
			return nil, err
		}
		if c.Type == DateTime {
			return appendDateTime(append(b, 8), t)
		}
		return appendDateTime2(append(b, 8), t)
	case Numeric:
		return appendNumeric(b, v)
	case GUID:
		g, err := guidBytes(v)
		return append(append(b, 16), g[:]...), err
	case VarBinary:
		p, err := as[[]byte](v)
		return appendPLP(b, p), err
	}
	return nil, fmt.Errorf("unknown column type %d", c.Type)
}

// appendPLP appends a PLP value of known length in chunks.
func appendPLP(b []byte, p []byte) []byte {
	b = appendU64(b, uint64(len(p)))
	for len(p) > 0 {
		n := min(len(p), plpChunk)
		b = append(appendU32(b, uint32(n)), p[:n]...)
		p = p[n:]
	}
	return appendU32(b, 0)
}

// toInt64 converts any Go integer that fits an int64.
func toInt64(v any) (int64, bool) {
	rv := reflect.ValueOf(v)
	switch {
	case rv.CanInt():
		return rv.Int(), true
	case rv.CanUint():
		return int64(rv.Uint()), rv.Uint() <= 1<<63-1
	}
	return 0, false
}

// appendDateTime2 appends the 8 bytes of a datetime2(7): 100ns ticks since
// midnight (5 bytes) and days since 0001-01-01 (3 bytes). The wall clock of
// t in its own location is stored.
func appendDateTime2(b []byte, t time.Time) ([]byte, error) {
	days, nanos := wallDays(t, epochDate)
	if days < 0 || days > 3652058 {
		return nil, fmt.Errorf("time %v out of datetime2 range", t)
	}
	ticks := uint64(nanos/100) | uint64(days)<<40
	for i := range 8 {
		b = append(b, byte(ticks>>(8*i)))
	}
	return b, nil
}

// appendDateTime appends the 8 bytes of a datetime: days since 1900-01-01
// and 1/300 seconds since midnight.
func appendDateTime(b []byte, t time.Time) ([]byte, error) {
	days, nanos := wallDays(t, epochDateTime)
	ticks := (nanos*sqlDateTimeTicksSec + 5e8) / 1e9
	if ticks >= secondsPerDay*sqlDateTimeTicksSec {
		days, ticks = days+1, 0
	}
	if days < -53690 || days > 2958463 {
		return nil, fmt.Errorf("time %v out of datetime range", t)
	}
	return appendU32(appendU32(b, uint32(int32(days))), uint32(ticks)), nil
}

// wallDays splits t's wall clock into whole days since epoch (in Unix
// days) and nanoseconds since midnight.
func wallDays(t time.Time, epoch int64) (days int64, nanos int64) {
	y, m, d := t.Date()
	// Unix seconds, unlike a Duration, do not overflow over ten millennia.
	days = time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix()/secondsPerDay - epoch
	return days, int64(t.Hour())*3600e9 + int64(t.Minute())*60e9 + int64(t.Second())*1e9 + int64(t.Nanosecond())
}

// fromDays returns midnight UTC of the day days after epoch (in Unix days).
func fromDays(days, epoch int64) time.Time {
	return time.Unix((days+epoch)*secondsPerDay, 0).UTC()
}

// appendNumeric appends a numeric(25,0) value: length, sign (1 positive),
// then the magnitude little-endian.
func appendNumeric(b []byte, v any) ([]byte, error) {
	var n big.Int
	if s, ok := v.(string); ok {
		if _, ok := n.SetString(strings.TrimSpace(s), 10); !ok {
			return nil, fmt.Errorf("numeric value %q is not an integer", s)
		}
	} else if u, ok := v.(uint64); ok {
		n.SetUint64(u)
	} else if i, ok := toInt64(v); ok {
		n.SetInt64(i)
	} else {
		return nil, fmt.Errorf("want decimal string or integer, got %T", v)
	}
	sign := byte(1)
	if n.Sign() < 0 {
		sign = 0
		n.Neg(&n)
	}
	if len(n.String()) > numericPrec {
		return nil, fmt.Errorf("numeric value %v exceeds %d digits", v, numericPrec)
	}
	mag := n.FillBytes(make([]byte, numericValueSize-1)) // big-endian
	b = append(b, numericValueSize, sign)
	for i := len(mag) - 1; i >= 0; i-- {
		b = append(b, mag[i])
	}
	return b, nil
}

// guidBytes returns a GUID in SQL Server byte order: the first three groups
// little-endian, the rest as written.
func guidBytes(v any) ([16]byte, error) {
	switch x := v.(type) {
	case [16]byte:
		return x, nil
	case string:
		s := strings.Trim(x, "{}")
		raw, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
		if err != nil || len(raw) != 16 || len(s) != 36 {
			return [16]byte{}, fmt.Errorf("invalid guid %q", x)
		}
		var g [16]byte
		for i, j := range [16]int{3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15} {
			g[i] = raw[j]
		}
		return g, nil
	}
	return [16]byte{}, fmt.Errorf("want [16]byte or string guid, got %T", v)
}
