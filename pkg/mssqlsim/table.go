package mssqlsim

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// User tables. A table's definition and rows live beside the database's
// pages and travel the way SQL Server's do: every CREATE TABLE, INSERT and
// DROP TABLE is one committed transaction whose log record carries the
// change (tableOp) and which rewrites the pages the rows land on, so the
// differential map and log backups see it; full and differential backups
// end with a table section holding every table as of the backup's
// checkpoint. Restoring as of T therefore gives exactly the rows committed
// at or before T.

// Column types of user tables.
const (
	utInt       = "int"
	utBigInt    = "bigint"
	utNVarChar  = "nvarchar"
	utVarChar   = "varchar"
	utDateTime2 = "datetime2"
	utDateTime  = "datetime"
)

// tableColumn is one column of a user table. Size is the length of a
// (n)varchar (0 for max) or the fractional-second precision of a datetime2.
type tableColumn struct {
	Name       string
	Type       string
	Size       int
	NotNull    bool
	PrimaryKey bool
	Identity   bool

	nullable bool // declared NULL explicitly; only while CREATE TABLE runs
}

// userTable is one user table. Rows is append-only (there is no UPDATE or
// DELETE), so a snapshot that keeps Rows[:n:n] sees a stable prefix while
// inserts go on.
type userTable struct {
	Name         string
	Cols         []tableColumn
	Rows         [][]any // values are nil, int64, string or time.Time (UTC wall clock)
	NextIdentity int64

	keys map[string]bool // primary-key values, built on first use
}

// tableOp kinds.
const (
	opCreate = 1
	opInsert = 2
	opDrop   = 3
	opState  = 4 // a whole table, in a data backup's table section
)

// tableOp is one change to the user tables, as a log record carries it.
type tableOp struct {
	Kind         byte
	Table        string
	Cols         []tableColumn // opCreate, opState
	Rows         [][]any       // opInsert, opState
	NextIdentity int64         // opState
}

// GobEncode lets log records holding rows (values of several types behind
// an interface) be saved by --data without registering each type.
func (o tableOp) GobEncode() ([]byte, error) { return appendOp(nil, o), nil }

// GobDecode reads what GobEncode wrote.
func (o *tableOp) GobDecode(b []byte) error {
	op, err := readOp(bufio.NewReader(strings.NewReader(string(b))))
	if err != nil {
		return err
	}
	*o = op
	return nil
}

// tableKey is the key of a table name in dbData.tables: names compare
// case-insensitively, as under the default collation.
func tableKey(name string) string { return strings.ToLower(name) }

// applyTables applies table changes in order. d.mu must be held.
func (d *dbData) applyTables(ops []tableOp) {
	for _, op := range ops {
		k := tableKey(op.Table)
		switch op.Kind {
		case opCreate:
			if d.tables == nil {
				d.tables = map[string]*userTable{}
			}
			d.tables[k] = &userTable{Name: op.Table, Cols: op.Cols, NextIdentity: 1}
		case opState:
			if d.tables == nil {
				d.tables = map[string]*userTable{}
			}
			d.tables[k] = &userTable{Name: op.Table, Cols: op.Cols, Rows: op.Rows, NextIdentity: op.NextIdentity}
		case opDrop:
			delete(d.tables, k)
		case opInsert:
			t := d.tables[k]
			if t == nil {
				continue
			}
			for _, r := range op.Rows {
				t.add(r)
			}
		}
	}
}

// add appends a row, keeping the identity seed and the key index.
func (t *userTable) add(r []any) {
	t.Rows = append(t.Rows, r)
	for k, c := range t.Cols {
		if c.Identity {
			if n, ok := r[k].(int64); ok && n >= t.NextIdentity {
				t.NextIdentity = n + 1
			}
		}
	}
	if t.keys != nil {
		t.keys[t.keyOf(r)] = true
	}
}

// pkColumn returns the primary-key column's index, or -1.
func (t *userTable) pkColumn() int {
	for k, c := range t.Cols {
		if c.PrimaryKey {
			return k
		}
	}
	return -1
}

func (t *userTable) keyOf(r []any) string {
	k := t.pkColumn()
	if k < 0 {
		return ""
	}
	v := r[k]
	if s, ok := v.(string); ok {
		// keys compare as the default collation does
		return strings.ToLower(strings.TrimRight(s, " "))
	}
	return fmt.Sprint(v)
}

// hasKey reports whether a row with r's primary key exists.
func (t *userTable) hasKey(r []any) bool {
	if t.pkColumn() < 0 {
		return false
	}
	if t.keys == nil {
		t.keys = make(map[string]bool, len(t.Rows))
		for _, row := range t.Rows {
			t.keys[t.keyOf(row)] = true
		}
	}
	return t.keys[t.keyOf(r)]
}

// snapshotTables returns the tables as they are now, sharing the rows: the
// copy's Rows cannot grow into the live table's. d.mu must be held.
func (d *dbData) snapshotTables() []tableOp {
	var out []tableOp
	for _, t := range d.tables {
		n := len(t.Rows)
		out = append(out, tableOp{Kind: opState, Table: t.Name, Cols: t.Cols, Rows: t.Rows[:n:n], NextIdentity: t.NextIdentity})
	}
	slices.SortFunc(out, func(a, b tableOp) int { return strings.Compare(tableKey(a.Table), tableKey(b.Table)) })
	return out
}

// tablePages returns the pages a change to rows [from, to) of a table
// rewrites: a table's rows fill consecutive pages from a place its name
// picks, so inserts change a few extents as they would in SQL Server.
func tablePages(name string, from, to, pages int) []uint32 {
	if pages == 0 {
		return nil
	}
	h := fnv.New32a()
	h.Write([]byte(tableKey(name)))
	const rowsPerPage = 64
	var out []uint32
	for p := from / rowsPerPage; p <= max(from, to-1)/rowsPerPage; p++ {
		out = append(out, uint32((int(h.Sum32()%uint32(pages))+p)%pages))
	}
	return out
}

// commitTables commits one transaction of table changes: a log record
// carrying ops and the page rewrites they cause. d.mu must be held.
func (d *dbData) commitTables(now time.Time, ops []tableOp, pages []uint32) logRecord {
	rec := d.commit(now, pages, "", false)
	rec.Tables = ops
	d.recs[len(d.recs)-1].Tables = ops
	d.applyTables(ops)
	return rec
}

// Value encoding, shared by log records, table sections and --data.
const (
	valNull   = 0
	valInt    = 1
	valString = 2
	valTime   = 3
)

// maxTableString bounds a decoded string so a damaged length cannot
// exhaust memory.
const maxTableString = 1 << 24

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func appendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case int64:
		b = append(b, valInt)
		return binary.LittleEndian.AppendUint64(b, uint64(x))
	case string:
		return appendString(append(b, valString), x)
	case time.Time:
		b = append(b, valTime)
		b = binary.LittleEndian.AppendUint64(b, uint64(x.Unix()))
		return binary.LittleEndian.AppendUint32(b, uint32(x.Nanosecond()))
	}
	return append(b, valNull)
}

func appendRows(b []byte, rows [][]any) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(rows)))
	for _, r := range rows {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(r)))
		for _, v := range r {
			b = appendValue(b, v)
		}
	}
	return b
}

// appendOp appends op's wire form.
func appendOp(b []byte, op tableOp) []byte {
	b = append(b, op.Kind)
	b = appendString(b, op.Table)
	if op.Kind == opCreate || op.Kind == opState {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(op.Cols)))
		for _, c := range op.Cols {
			b = appendString(b, c.Name)
			b = appendString(b, c.Type)
			b = binary.LittleEndian.AppendUint32(b, uint32(c.Size))
			var f byte
			if c.NotNull {
				f |= 1
			}
			if c.PrimaryKey {
				f |= 2
			}
			if c.Identity {
				f |= 4
			}
			b = append(b, f)
		}
	}
	if op.Kind == opState {
		b = binary.LittleEndian.AppendUint64(b, uint64(op.NextIdentity))
	}
	if op.Kind == opInsert || op.Kind == opState {
		b = appendRows(b, op.Rows)
	}
	return b
}

// reader helpers: every failure is errMalformed, as for pages.
type opReader struct {
	r   io.Reader
	err error
	buf [8]byte
}

func (o *opReader) read(n int) []byte {
	if o.err != nil {
		return o.buf[:n]
	}
	if _, err := io.ReadFull(o.r, o.buf[:n]); err != nil {
		o.err = fmt.Errorf("%w: table data: %v", errMalformed, err)
	}
	return o.buf[:n]
}

func (o *opReader) u8() byte    { return o.read(1)[0] }
func (o *opReader) u16() uint16 { return binary.LittleEndian.Uint16(o.read(2)) }
func (o *opReader) u32() uint32 { return binary.LittleEndian.Uint32(o.read(4)) }
func (o *opReader) u64() uint64 { return binary.LittleEndian.Uint64(o.read(8)) }

func (o *opReader) str() string {
	n := o.u32()
	if o.err != nil {
		return ""
	}
	if n > maxTableString {
		o.err = fmt.Errorf("%w: table string of %d bytes", errMalformed, n)
		return ""
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(o.r, b); err != nil {
		o.err = fmt.Errorf("%w: table data: %v", errMalformed, err)
	}
	return string(b)
}

func (o *opReader) value() any {
	switch o.u8() {
	case valInt:
		return int64(o.u64())
	case valString:
		return o.str()
	case valTime:
		s := int64(o.u64())
		ns := int64(o.u32())
		return time.Unix(s, ns).UTC()
	case valNull:
		return nil
	}
	if o.err == nil {
		o.err = fmt.Errorf("%w: unknown value tag", errMalformed)
	}
	return nil
}

func (o *opReader) rows() [][]any {
	n := o.u32()
	if o.err != nil || n > 1<<28 {
		if o.err == nil {
			o.err = fmt.Errorf("%w: %d rows", errMalformed, n)
		}
		return nil
	}
	rows := make([][]any, 0, min(n, 1<<16))
	for range n {
		w := int(o.u16())
		r := make([]any, w)
		for k := range r {
			r[k] = o.value()
		}
		if o.err != nil {
			return nil
		}
		rows = append(rows, r)
	}
	return rows
}

// readOp reads one op written by appendOp.
func readOp(r io.Reader) (tableOp, error) {
	o := &opReader{r: r}
	op := tableOp{Kind: o.u8()}
	op.Table = o.str()
	if op.Kind < opCreate || op.Kind > opState {
		return tableOp{}, fmt.Errorf("%w: table op %d", errMalformed, op.Kind)
	}
	if op.Kind == opCreate || op.Kind == opState {
		n := int(o.u16())
		for range n {
			c := tableColumn{Name: o.str(), Type: o.str(), Size: int(int32(o.u32()))}
			f := o.u8()
			c.NotNull, c.PrimaryKey, c.Identity = f&1 != 0, f&2 != 0, f&4 != 0
			op.Cols = append(op.Cols, c)
		}
	}
	if op.Kind == opState {
		op.NextIdentity = int64(o.u64())
	}
	if op.Kind == opInsert || op.Kind == opState {
		op.Rows = o.rows()
	}
	return op, o.err
}

// appendOps appends a count and the ops: the tables of a log record.
func appendOps(b []byte, ops []tableOp) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ops)))
	for _, op := range ops {
		b = appendOp(b, op)
	}
	return b
}

// readOps reads what appendOps wrote.
func readOps(r io.Reader) ([]tableOp, error) {
	o := &opReader{r: r}
	n := o.u32()
	if o.err != nil {
		return nil, o.err
	}
	if n > 1<<20 {
		return nil, fmt.Errorf("%w: %d table ops", errMalformed, n)
	}
	ops := make([]tableOp, 0, n)
	for range n {
		op, err := readOp(r)
		if err != nil {
			return nil, err
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// writeTableSection writes a data backup's table section: the count of
// tables, then each table whole. Rows are written in pieces so a large
// table is not encoded in memory at once.
func writeTableSection(w io.Writer, tables []tableOp) error {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(tables)))
	for _, t := range tables {
		head := t
		head.Rows = nil
		b = appendOp(b, head)
		// appendOp ended with a zero row count: replace it by the real one
		b = b[:len(b)-4]
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t.Rows)))
		for _, r := range t.Rows {
			b = binary.LittleEndian.AppendUint16(b, uint16(len(r)))
			for _, v := range r {
				b = appendValue(b, v)
			}
			if len(b) >= blockSize {
				if _, err := w.Write(b); err != nil {
					return err
				}
				b = b[:0]
			}
		}
	}
	_, err := w.Write(b)
	return err
}

// readTableSection reads what writeTableSection wrote into tables.
func readTableSection(r io.Reader) (map[string]*userTable, error) {
	ops, err := readOps(r)
	if err != nil {
		return nil, err
	}
	d := &dbData{}
	d.applyTables(ops)
	return d.tables, nil
}

// rowChecksum is CHECKSUM(*) of one row: FNV-1a over each value's type and
// bytes. SQL Server's algorithm is undocumented; this one is deterministic
// and changes when any value does.
func rowChecksum(vals []any) int64 {
	h := fnv.New32a()
	var b []byte
	for _, v := range vals {
		if t, ok := v.(time.Time); ok {
			v = t.UTC()
		}
		b = appendValue(b[:0], v)
		h.Write(b)
	}
	return int64(int32(h.Sum32()))
}

// checksumAgg is CHECKSUM_AGG over int values: their sum wrapped to 32
// bits, which does not depend on row order and, unlike XOR, does not let
// two equal rows cancel out. NULLs are ignored; no value gives NULL.
func checksumAgg(vals []any) any {
	var sum int32
	n := 0
	for _, v := range vals {
		x, ok := toInt(v)
		if v == nil || !ok {
			continue
		}
		sum += int32(x)
		n++
	}
	if n == 0 {
		return nil
	}
	return int64(sum)
}

// convertForColumn converts a value to what column c stores, with SQL
// Server's errors. table is the three-part name for messages.
func convertForColumn(v any, c tableColumn, table string) (any, *Error) {
	if v == nil {
		return nil, nil
	}
	switch c.Type {
	case utInt, utBigInt:
		lo, hi := int64(math.MinInt32), int64(math.MaxInt32)
		if c.Type == utBigInt {
			lo, hi = math.MinInt64, math.MaxInt64
		}
		var n int64
		switch x := v.(type) {
		case int64:
			n = x
		case float64:
			if x < float64(lo) || x > float64(hi) {
				return nil, newErr(8115, 16, "Arithmetic overflow error converting expression to data type %s.", c.Type)
			}
			n = int64(x)
		case bool:
			n, _ = toInt(x)
		case string:
			m, ok := toInt(x)
			if !ok {
				return nil, newErr(245, 16, "Conversion failed when converting the nvarchar value '%s' to data type %s.", x, c.Type)
			}
			n = m
		default:
			return nil, newErr(206, 16, "Operand type clash: %s is incompatible with %s", sqlTypeName(v), c.Type)
		}
		if n < lo || n > hi {
			return nil, newErr(8115, 16, "Arithmetic overflow error converting expression to data type %s.", c.Type)
		}
		return n, nil
	case utNVarChar, utVarChar:
		s, ok := toStr(v)
		if !ok {
			return nil, newErr(206, 16, "Operand type clash: %s is incompatible with %s", sqlTypeName(v), c.Type)
		}
		if c.Size > 0 && len([]rune(s)) > c.Size {
			return nil, newErr(2628, 16, "String or binary data would be truncated in table '%s', column '%s'. Truncated value: '%s'.", table, c.Name, truncRunes(s, c.Size))
		}
		return s, nil
	case utDateTime2, utDateTime:
		var t time.Time
		switch x := v.(type) {
		case time.Time:
			// a datetimeoffset converts to its local wall clock, as
			// CAST(datetimeoffset AS datetime2) does
			t = time.Date(x.Year(), x.Month(), x.Day(), x.Hour(), x.Minute(), x.Second(), x.Nanosecond(), time.UTC)
		case string:
			p, err := parseDateTime(x)
			if err != nil {
				return nil, newErr(241, 16, "Conversion failed when converting date and/or time from character string.")
			}
			t = p
		default:
			return nil, newErr(206, 16, "Operand type clash: %s is incompatible with %s", sqlTypeName(v), c.Type)
		}
		if c.Type == utDateTime {
			if t.Year() < 1753 {
				return nil, newErr(242, 16, "The conversion of a datetime2 data type to a datetime data type resulted in an out-of-range value.")
			}
			return roundDateTime(t), nil
		}
		return roundFraction(t, c.Size), nil
	}
	return nil, newErr(2715, 16, "Column, parameter, or variable #1: Cannot find data type %s.", c.Type)
}

// roundFraction rounds t to digits fractional-second digits, as converting
// to datetime2(digits) does.
func roundFraction(t time.Time, digits int) time.Time {
	unit := time.Duration(1)
	for range 9 - digits {
		unit *= 10
	}
	return t.Round(unit)
}

// roundDateTime rounds t to datetime's 1/300-second ticks.
func roundDateTime(t time.Time) time.Time {
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	ns := t.Sub(day).Nanoseconds()
	ticks := (ns*300 + 5e8) / 1e9
	return day.Add(time.Duration(ticks * 1e9 / 300))
}

func sqlTypeName(v any) string {
	switch v.(type) {
	case int64:
		return "int"
	case float64:
		return "float"
	case time.Time:
		return "datetime2"
	case []byte:
		return "varbinary"
	case bool:
		return "bit"
	}
	return "nvarchar"
}

// resultColumn is the result-set column a table column is returned as.
func resultColumn(c tableColumn) column {
	switch c.Type {
	case utInt:
		return column{name: c.Name, typ: ctInt}
	case utBigInt:
		return column{name: c.Name, typ: ctBigInt}
	case utDateTime2, utDateTime:
		return column{name: c.Name, typ: ctDateTime}
	}
	return column{name: c.Name, typ: ctNVarChar, size: c.Size}
}
