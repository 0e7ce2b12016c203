package mssqlsim

import (
	"strings"
)

// Statements on user tables (table.go): CREATE TABLE, INSERT, DROP TABLE,
// and SELECT over a table through the query engine of select.go.

// tableRef is a one- to three-part table name as written.
type tableRef struct {
	db, schema, name string
	full             string // as written, for messages
}

func (p *parser) tableRef() (tableRef, *Error) {
	parts, e := p.objectName()
	if e != nil {
		return tableRef{}, e
	}
	return newTableRef(parts)
}

func newTableRef(parts []string) (tableRef, *Error) {
	r := tableRef{full: strings.Join(parts, ".")}
	switch len(parts) {
	case 1:
		r.name = parts[0]
	case 2:
		r.schema, r.name = parts[0], parts[1]
	case 3:
		r.db, r.schema, r.name = parts[0], parts[1], parts[2]
	default:
		return r, errInvalidObject(r.full)
	}
	if r.name == "" {
		return r, errInvalidObject(r.full)
	}
	return r, nil
}

// dboSchema reports whether the schema part names dbo, the only schema the
// simulator has.
func (r tableRef) dboSchema() bool { return r.schema == "" || strings.EqualFold(r.schema, "dbo") }

// database returns the database a table name refers to: its first part,
// or the session's current database.
func (x *execCtx) tableDatabase(r tableRef) (*Database, *Error) {
	name := r.db
	if name == "" {
		name = x.sess.database
	}
	return x.inst.lookup(name)
}

// readable is the check a query makes on the database it reads. db.mu must
// be held.
func readable(db *Database) *Error {
	switch db.State {
	case Restoring:
		return newErr(927, 14, "Database '%s' cannot be opened. It is in the middle of a restore.", db.Name)
	case Offline:
		return newErr(942, 14, "Database '%s' cannot be opened because it is offline.", db.Name)
	}
	if db.agName != "" && !db.isPrimaryReplica() {
		return newErr(976, 14, "The target database, '%s', is participating in an availability group and is currently not accessible for queries.", db.Name)
	}
	return nil
}

// sourceTable resolves a FROM item: a catalog view, or else a user table.
func (x *execCtx) sourceTable(parts []string) (*table, *Error) {
	t, e := x.catalogTable(parts)
	if e == nil || e.Number != 208 {
		return t, e
	}
	r, re := newTableRef(parts)
	if re != nil || !r.dboSchema() {
		return nil, e
	}
	db, le := x.tableDatabase(r)
	if le != nil {
		return nil, le
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	ut := db.tables[tableKey(r.name)]
	if ut == nil {
		return nil, e
	}
	if re := readable(db); re != nil {
		return nil, re
	}
	out := &table{}
	for _, c := range ut.Cols {
		out.cols = append(out.cols, resultColumn(c))
	}
	// rows are never changed in place, only appended: the prefix is stable
	n := len(ut.Rows)
	out.rows = ut.Rows[:n:n]
	return out, nil
}

// parseCreateTable: CREATE TABLE name (col type [NULL|NOT NULL]
// [PRIMARY KEY] [IDENTITY[(1,1)]], ... [, PRIMARY KEY (col)]).
func (p *parser) parseCreateTable() (stmt, *Error) {
	ref, e := p.tableRef()
	if e != nil {
		return nil, e
	}
	if strings.HasPrefix(ref.name, "#") {
		return nil, errNotSupported("temporary tables")
	}
	if e := p.expectPunct("("); e != nil {
		return nil, e
	}
	var cols []tableColumn
	pkCount := 0
	var tablePK []string
	for {
		if p.accept("PRIMARY") || p.accept("CONSTRAINT") && p.skipIdent() && p.accept("PRIMARY") {
			if e := p.expect("KEY"); e != nil {
				return nil, e
			}
			p.accept("CLUSTERED")
			p.accept("NONCLUSTERED")
			if e := p.expectPunct("("); e != nil {
				return nil, e
			}
			for {
				n, e := p.ident()
				if e != nil {
					return nil, e
				}
				p.accept("ASC")
				tablePK = append(tablePK, n)
				if !p.acceptPunct(",") {
					break
				}
			}
			if e := p.expectPunct(")"); e != nil {
				return nil, e
			}
			pkCount++
		} else {
			c, e := p.columnDef(len(cols) + 1)
			if e != nil {
				return nil, e
			}
			if c.PrimaryKey {
				pkCount++
			}
			cols = append(cols, c)
		}
		if !p.acceptPunct(",") {
			break
		}
	}
	if e := p.expectPunct(")"); e != nil {
		return nil, e
	}
	return func(x *execCtx) *Error {
		if pkCount > 1 || len(tablePK) > 1 {
			return newErr(8110, 16, "Cannot add multiple PRIMARY KEY constraints to table '%s'.", ref.name)
		}
		for _, n := range tablePK {
			found := false
			for k := range cols {
				if strings.EqualFold(cols[k].Name, n) {
					cols[k].PrimaryKey, found = true, true
				}
			}
			if !found {
				return newErr(1911, 16, "Column name '%s' does not exist in the target table or view.", n)
			}
		}
		for k, c := range cols {
			for _, o := range cols[:k] {
				if strings.EqualFold(o.Name, c.Name) {
					return newErr(2705, 16, "Column names in each table must be unique. Column name '%s' in table '%s' is specified more than once.", c.Name, ref.name)
				}
			}
			if c.PrimaryKey && !c.NotNull {
				if c.nullable {
					return newErr(8111, 16, "Cannot define PRIMARY KEY constraint on nullable column in table '%s'.", ref.name)
				}
				cols[k].NotNull = true
			}
		}
		idents := 0
		for _, c := range cols {
			if c.Identity {
				idents++
			}
		}
		if idents > 1 {
			return newErr(2744, 16, "Multiple identity columns specified for table '%s'. Only one identity column per table is allowed.", ref.name)
		}
		if !ref.dboSchema() {
			return newErr(2760, 16, "The specified schema name \"%s\" either does not exist or you do not have permission to use it.", ref.schema)
		}
		db, e := x.tableDatabase(ref)
		if e != nil {
			return e
		}
		db.mu.Lock()
		defer db.mu.Unlock()
		if e := writable(db); e != nil {
			return e
		}
		if db.tables[tableKey(ref.name)] != nil {
			return newErr(2714, 16, "There is already an object named '%s' in the database.", ref.name)
		}
		defs := make([]tableColumn, len(cols))
		for k, c := range cols {
			c.Size = c.size()
			defs[k] = c
		}
		ops := []tableOp{{Kind: opCreate, Table: ref.name, Cols: defs}}
		db.commitTables(x.inst.cfg.Now(), ops, tablePages(ref.name, 0, 1, len(db.versions)))
		return x.doneNoCount()
	}, nil
}

// skipIdent consumes an identifier; it always returns true so it can sit
// in a chain of accepts.
func (p *parser) skipIdent() bool {
	_, _ = p.ident()
	return true
}

// columnDef parses one column definition. Size holds the parsed length
// here, -1 for max, and -2 for "not given"; size() turns it into the
// stored form.
func (p *parser) columnDef(n int) (tableColumn, *Error) {
	name, e := p.ident()
	if e != nil {
		return tableColumn{}, e
	}
	typTok := p.peek()
	typ, e := p.ident()
	if e != nil {
		return tableColumn{}, e
	}
	c := tableColumn{Name: name, Type: strings.ToLower(typ), Size: -2}
	switch c.Type {
	case utInt, utBigInt, utDateTime, utNVarChar, utVarChar, utDateTime2:
	default:
		return tableColumn{}, newErr(2715, 16, "Column, parameter, or variable #%d: Cannot find data type %s.", n, typTok.text)
	}
	if p.acceptPunct("(") {
		switch {
		case p.accept("MAX") && (c.Type == utNVarChar || c.Type == utVarChar):
			c.Size = -1
		default:
			v, e := p.intValue()
			if e != nil {
				return tableColumn{}, e
			}
			c.Size = int(v)
		}
		if e := p.expectPunct(")"); e != nil {
			return tableColumn{}, e
		}
		switch c.Type {
		case utNVarChar, utVarChar:
			limit := 4000
			if c.Type == utVarChar {
				limit = 8000
			}
			if c.Size > limit {
				return tableColumn{}, newErr(131, 15, "The size (%d) given to the column '%s' exceeds the maximum allowed for any data type (%d).", c.Size, name, limit)
			}
			if c.Size == 0 {
				return tableColumn{}, newErr(1001, 15, "Line 1: Length or precision specification 0 is invalid.")
			}
		case utDateTime2:
			if c.Size > 7 {
				return tableColumn{}, newErr(1002, 15, "Line 1: Specified scale %d is invalid.", c.Size)
			}
		default:
			return tableColumn{}, p.syntaxErr()
		}
	}
	for {
		switch {
		case p.accept("NOT"):
			if e := p.expect("NULL"); e != nil {
				return tableColumn{}, e
			}
			c.NotNull = true
		case p.accept("NULL"):
			c.nullable = true
		case p.accept("PRIMARY"):
			if e := p.expect("KEY"); e != nil {
				return tableColumn{}, e
			}
			p.accept("CLUSTERED")
			p.accept("NONCLUSTERED")
			c.PrimaryKey = true
		case p.accept("CONSTRAINT"):
			if _, e := p.ident(); e != nil {
				return tableColumn{}, e
			}
		case p.accept("IDENTITY"):
			if p.acceptPunct("(") {
				seed, e := p.intValue()
				if e != nil {
					return tableColumn{}, e
				}
				if e := p.expectPunct(","); e != nil {
					return tableColumn{}, e
				}
				inc, e := p.intValue()
				if e != nil {
					return tableColumn{}, e
				}
				if e := p.expectPunct(")"); e != nil {
					return tableColumn{}, e
				}
				if seed != 1 || inc != 1 {
					return tableColumn{}, errNotSupported("IDENTITY other than (1,1)")
				}
			}
			if c.Type != utInt && c.Type != utBigInt {
				return tableColumn{}, newErr(2749, 16, "Identity column '%s' must be of data type int, bigint, smallint, tinyint, or decimal or numeric with a scale of 0, and constrained to be nonnullable.", name)
			}
			c.Identity, c.NotNull = true, true
		case p.peek().is("DEFAULT") || p.peek().is("CHECK") || p.peek().is("UNIQUE") || p.peek().is("REFERENCES") || p.peek().is("COLLATE"):
			return tableColumn{}, errNotSupported(strings.ToUpper(p.peek().text))
		default:
			return c, nil
		}
	}
}

// size returns the stored Size: characters (0 for max) or datetime2's
// precision (7 when not given).
func (c *tableColumn) size() int {
	switch c.Type {
	case utNVarChar, utVarChar:
		switch c.Size {
		case -2:
			return 1 // SQL Server's default length in a definition
		case -1:
			return 0
		}
	case utDateTime2:
		if c.Size == -2 {
			return 7
		}
	default:
		return 0
	}
	return c.Size
}

// parseDropTable: DROP TABLE [IF EXISTS] name [, name ...].
func (p *parser) parseDropTable() (stmt, *Error) {
	ifExists, e := p.ifExists()
	if e != nil {
		return nil, e
	}
	refs, e := commaList(p, p.tableRef)
	if e != nil {
		return nil, e
	}
	return func(x *execCtx) *Error {
		for _, r := range refs {
			if e := x.dropTable(r, ifExists); e != nil {
				return e
			}
		}
		return x.doneNoCount()
	}, nil
}

func (x *execCtx) dropTable(r tableRef, ifExists bool) *Error {
	missing := newErr(3701, 11, "Cannot drop the table '%s', because it does not exist or you do not have permission.", r.full)
	if !r.dboSchema() {
		if ifExists {
			return nil
		}
		return missing
	}
	db, e := x.tableDatabase(r)
	if e != nil {
		return e
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if e := writable(db); e != nil {
		return e
	}
	t := db.tables[tableKey(r.name)]
	if t == nil {
		if ifExists {
			return nil
		}
		return missing
	}
	ops := []tableOp{{Kind: opDrop, Table: t.Name}}
	db.commitTables(x.inst.cfg.Now(), ops, tablePages(t.Name, 0, len(t.Rows), len(db.versions)))
	return nil
}

// parseInsert: INSERT [INTO] name [(col, ...)] VALUES (expr, ...) [, (...)].
func (p *parser) parseInsert() (stmt, *Error) {
	p.accept("INTO")
	ref, e := p.tableRef()
	if e != nil {
		return nil, e
	}
	var names []string
	if p.acceptPunct("(") {
		if names, e = commaList(p, p.ident); e != nil {
			return nil, e
		}
		if e := p.expectPunct(")"); e != nil {
			return nil, e
		}
	}
	if p.peek().is("SELECT") || p.peek().is("DEFAULT") || p.peek().is("OUTPUT") || p.peek().is("EXEC") {
		return nil, errNotSupported("INSERT ... " + strings.ToUpper(p.peek().text))
	}
	if e := p.expect("VALUES"); e != nil {
		return nil, e
	}
	var tuples [][]expr
	for {
		if e := p.expectPunct("("); e != nil {
			return nil, e
		}
		tuple, e := commaList(p, p.parseExpr)
		if e != nil {
			return nil, e
		}
		if e := p.expectPunct(")"); e != nil {
			return nil, e
		}
		tuples = append(tuples, tuple)
		if !p.acceptPunct(",") {
			break
		}
	}
	if len(tuples) > 1000 {
		return nil, newErr(10738, 15, "The number of row value expressions in the INSERT statement exceeds the maximum allowed number of 1000 row values.")
	}
	return func(x *execCtx) *Error { return x.insert(ref, names, tuples) }, nil
}

// insert runs one INSERT: every row converted and checked first, then one
// transaction, so a failed statement changes nothing.
func (x *execCtx) insert(ref tableRef, names []string, tuples [][]expr) *Error {
	if !ref.dboSchema() {
		return errInvalidObject(ref.full)
	}
	// values are evaluated before the database lock is taken: functions
	// such as DB_NAME take the instance lock, which comes first
	c := &evalCtx{x: x}
	vals := make([][]any, len(tuples))
	for k, tuple := range tuples {
		for _, ex := range tuple {
			v, e := c.eval(ex)
			if e != nil {
				return e
			}
			vals[k] = append(vals[k], v)
		}
	}
	db, e := x.tableDatabase(ref)
	if e != nil {
		return e
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	t := db.tables[tableKey(ref.name)]
	if t == nil {
		if e := readable(db); e != nil {
			return e
		}
		return errInvalidObject(ref.full)
	}
	if e := writable(db); e != nil {
		return e
	}
	full := db.Name + ".dbo." + t.Name
	// target column of each supplied value
	var target []int
	if names == nil {
		for k, col := range t.Cols {
			if !col.Identity {
				target = append(target, k)
			}
		}
	} else {
		for _, n := range names {
			k := -1
			for j, col := range t.Cols {
				if strings.EqualFold(col.Name, n) {
					k = j
				}
			}
			if k < 0 {
				return errInvalidColumn(n)
			}
			for _, seen := range target {
				if seen == k {
					return newErr(264, 16, "The column name '%s' is specified more than once in the SET clause or column list of an INSERT. A column cannot be assigned more than one value in the same clause. Modify the clause to make sure that a column is updated only once.", t.Cols[k].Name)
				}
			}
			if t.Cols[k].Identity {
				return newErr(544, 16, "Cannot insert explicit value for identity column in table '%s' when IDENTITY_INSERT is set to OFF.", t.Name)
			}
			target = append(target, k)
		}
	}
	for _, v := range vals {
		switch {
		case names == nil && len(v) != len(target):
			return newErr(213, 16, "Column name or number of supplied values does not match table definition.")
		case len(v) > len(target):
			return newErr(110, 15, "There are fewer columns in the INSERT statement than values specified in the VALUES clause. The number of values in the VALUES clause must match the number of columns specified in the INSERT statement.")
		case len(v) < len(target):
			return newErr(109, 15, "There are more columns in the INSERT statement than values specified in the VALUES clause. The number of values in the VALUES clause must match the number of columns specified in the INSERT statement.")
		}
	}
	rows := make([][]any, len(vals))
	next := t.NextIdentity
	seen := map[string]bool{}
	for k, v := range vals {
		row := make([]any, len(t.Cols))
		for j, col := range target {
			cv, e := convertForColumn(v[j], t.Cols[col], full)
			if e != nil {
				return e
			}
			row[col] = cv
		}
		for j, col := range t.Cols {
			if col.Identity {
				row[j] = next
				next++
			}
			if col.NotNull && row[j] == nil {
				return newErr(515, 16, "Cannot insert the value NULL into column '%s', table '%s'; column does not allow nulls. INSERT fails.", col.Name, full)
			}
		}
		if t.pkColumn() >= 0 {
			key := t.keyOf(row)
			if seen[key] || t.hasKey(row) {
				pk := t.Cols[t.pkColumn()]
				s, _ := toStr(row[t.pkColumn()])
				return newErr(2627, 14, "Violation of PRIMARY KEY constraint 'PK__%s__%s'. Cannot insert duplicate key in object 'dbo.%s'. The duplicate key value is (%s).", t.Name, pk.Name, t.Name, s)
			}
			seen[key] = true
		}
		rows[k] = row
	}
	before := len(t.Rows)
	ops := []tableOp{{Kind: opInsert, Table: t.Name, Rows: rows}}
	db.commitTables(x.inst.cfg.Now(), ops, tablePages(t.Name, before, before+len(rows), len(db.versions)))
	if err := x.out.done(int64(len(rows))); err != nil {
		return newErr(0, 20, "%v", err)
	}
	return nil
}

// checksumAggregate is CHECKSUM_AGG(expr) over the rows of a query.
func checksumAggregate(c *evalCtx, f funcExpr, rows [][][]any) (any, *Error) {
	if len(f.args) != 1 || f.star {
		return nil, newErr(174, 15, "The checksum_agg function requires 1 argument(s).")
	}
	vals := make([]any, 0, len(rows))
	for _, r := range rows {
		c.row = r
		v, e := c.eval(f.args[0])
		if e != nil {
			return nil, e
		}
		vals = append(vals, v)
	}
	return checksumAgg(vals), nil
}

// checksumCall is CHECKSUM(*) over every column of the current row, or
// CHECKSUM(expr, ...) over its arguments.
func checksumCall(c *evalCtx, f funcExpr, args []any) any {
	vals := args
	if f.star {
		vals = nil
		for _, r := range c.row {
			vals = append(vals, r...)
		}
	}
	// strings equal under the server collation (case, when it ignores
	// case, and trailing spaces) hash alike, as in SQL Server
	norm := make([]any, len(vals))
	for k, v := range vals {
		if s, ok := v.(string); ok {
			s = strings.TrimRight(s, " ")
			if !c.x.inst.cfg.CaseSensitive {
				s = strings.ToLower(s)
			}
			v = s
		}
		norm[k] = v
	}
	return rowChecksum(norm)
}
