package mssqlsim

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// colType is the SQL type of a value in a result set.
type colType int

const (
	ctInt colType = iota + 1
	ctBigInt
	ctBit
	ctNVarChar
	ctDateTime
	ctNumeric // numeric(25,0): LSNs
	ctGUID
	ctTinyInt
	ctSmallInt
	ctVarBinary
	// ctDateTime1 is SQL Server's datetime (1/300 s), as msdb's dates
	// are; ctDateTime is datetime2.
	ctDateTime1
)

// column is a result set column.
type column struct {
	name string
	typ  colType
	size int // characters for nvarchar; 0 = max
}

// numeric is a numeric(25,0) value (an LSN).
type numeric uint64

// Values flowing through queries are nil, int64, string, time.Time, numeric,
// GUID or []byte. Bit and the integer types are int64.

func compareValues(i *Instance, a, b any) (int, bool) {
	if a == nil || b == nil {
		return 0, false
	}
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			return cmpOrd(x, y), true
		case numeric:
			if x < 0 {
				return -1, true
			}
			return cmpOrd(uint64(x), uint64(y)), true
		case string:
			n, err := strconv.ParseInt(strings.TrimSpace(y), 10, 64)
			if err != nil {
				return 0, false
			}
			return cmpOrd(x, n), true
		}
	case numeric:
		switch y := b.(type) {
		case numeric:
			return cmpOrd(x, y), true
		case int64:
			c, ok := compareValues(i, y, x)
			return -c, ok
		case string:
			n, err := strconv.ParseUint(strings.TrimSpace(y), 10, 64)
			if err != nil {
				return 0, false
			}
			return cmpOrd(uint64(x), n), true
		}
	case string:
		switch y := b.(type) {
		case string:
			xa, ya := strings.TrimRight(x, " "), strings.TrimRight(y, " ")
			if i.sameName(xa, ya) {
				return 0, true
			}
			if i.lessName(xa, ya) {
				return -1, true
			}
			return 1, true
		case GUID:
			return compareValues(i, GUID(strings.ToLower(x)), y)
		case time.Time:
			t, err := parseDateTime(x)
			if err != nil {
				return 0, false
			}
			return compareValues(i, t, y)
		default:
			c, ok := compareValues(i, b, a)
			return -c, ok
		}
	case time.Time:
		switch y := b.(type) {
		case time.Time:
			return x.Compare(y), true
		case string:
			t, err := parseDateTime(y)
			if err != nil {
				return 0, false
			}
			return x.Compare(t), true
		}
	case GUID:
		switch y := b.(type) {
		case GUID:
			return strings.Compare(strings.ToLower(string(x)), strings.ToLower(string(y))), true
		case string:
			return strings.Compare(strings.ToLower(string(x)), strings.ToLower(y)), true
		}
	}
	return 0, false
}

func cmpOrd[T int64 | uint64 | numeric](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parseDateTime reads the literal forms SQL Server accepts for datetime
// values: ISO 8601 with T, or with a space, with optional fraction, and
// plain dates.
func parseDateTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{
		"2006-01-02T15:04:05.999999999Z07:00",
		"2006-01-02T15:04:05.9999999",
		"2006-01-02 15:04:05.9999999",
		"2006-01-02T15:04:05",
		"2006-01-02 15:04:05",
		"2006-01-02T15:04",
		"2006-01-02 15:04",
		"20060102 15:04:05",
		"2006-01-02",
		"20060102",
		"Jan 2 2006 3:04PM",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("conversion failed when converting date and/or time from character string")
}

// toBool is a predicate's truth; NULL is false.
func truth(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case int64:
		return x != 0
	}
	return false
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case numeric:
		return int64(x), true
	case float64:
		return int64(x), true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func toStr(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case int64:
		return strconv.FormatInt(x, 10), true
	case numeric:
		return strconv.FormatUint(uint64(x), 10), true
	case GUID:
		return strings.ToUpper(string(x)), true
	case time.Time:
		return x.Format("2006-01-02 15:04:05.000"), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		if x {
			return "1", true
		}
		return "0", true
	}
	return "", false
}

// typeOfValue guesses a column type for a literal.
func typeOfValue(v any) colType {
	switch v.(type) {
	case int64:
		return ctInt
	case numeric:
		return ctNumeric
	case time.Time:
		return ctDateTime
	case GUID:
		return ctGUID
	case []byte:
		return ctVarBinary
	}
	return ctNVarChar
}
