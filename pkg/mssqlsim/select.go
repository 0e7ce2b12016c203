package mssqlsim

import (
	"sort"
	"strings"
	"time"
)

// table is a materialized catalog view.
type table struct {
	cols  []column
	rows  [][]any
	touch func(row []any) // called for each row a query reads; may be nil
}

type fromItem struct {
	name  []string
	alias string
	left  bool // LEFT JOIN
	on    expr
}

type selectItem struct {
	e     expr
	alias string
	star  string // "*" or "alias.*"
}

type orderItem struct {
	e    expr
	desc bool
}

type selectStmt struct {
	top   int64
	items []selectItem
	from  []fromItem
	where expr
	order []orderItem
}

// parseSelect parses after the SELECT keyword.
func (p *parser) parseSelect() (*selectStmt, *Error) {
	s := &selectStmt{top: -1}
	if p.accept("DISTINCT") {
		return nil, errNotSupported("DISTINCT")
	}
	if p.accept("TOP") {
		paren := p.acceptPunct("(")
		n, e := p.intValue()
		if e != nil {
			return nil, e
		}
		if paren {
			if e := p.expectPunct(")"); e != nil {
				return nil, e
			}
		}
		s.top = n
	}
	for {
		var it selectItem
		switch {
		case p.peek().isPunct("*"):
			p.pos++
			it.star = "*"
		case (p.peek().kind == tIdent || p.peek().kind == tQuoted) && p.peekAt(1).isPunct(".") && p.peekAt(2).isPunct("*"):
			it.star = p.next().text
			p.pos += 2
		default:
			// alias = expr form
			if (p.peek().kind == tIdent || p.peek().kind == tQuoted) && p.peekAt(1).isPunct("=") && !isReserved(p.peek().text) {
				it.alias = p.next().text
				p.pos++
			}
			x, e := p.parseExpr()
			if e != nil {
				return nil, e
			}
			it.e = x
			if p.accept("AS") {
				a, e := p.aliasName()
				if e != nil {
					return nil, e
				}
				it.alias = a
			} else if t := p.peek(); (t.kind == tQuoted || t.kind == tString || t.kind == tIdent) && !isReserved(t.text) && !t.is("FROM") {
				it.alias = p.next().text
			}
		}
		s.items = append(s.items, it)
		if !p.acceptPunct(",") {
			break
		}
	}
	if p.accept("INTO") {
		return nil, errNotSupported("SELECT INTO")
	}
	if p.accept("FROM") {
		for first := true; ; first = false {
			var f fromItem
			if !first {
				switch {
				case p.acceptPunct(","):
				case p.accept("JOIN"):
				case p.accept("INNER"):
					if e := p.expect("JOIN"); e != nil {
						return nil, e
					}
				case p.accept("LEFT"):
					p.accept("OUTER")
					if e := p.expect("JOIN"); e != nil {
						return nil, e
					}
					f.left = true
				case p.accept("CROSS"):
					if p.accept("APPLY") {
						return nil, errNotSupported("CROSS APPLY")
					}
					if e := p.expect("JOIN"); e != nil {
						return nil, e
					}
				default:
					goto fromDone
				}
			}
			name, e := p.objectName()
			if e != nil {
				return nil, e
			}
			f.name = name
			if p.accept("AS") {
				a, e := p.aliasName()
				if e != nil {
					return nil, e
				}
				f.alias = a
			} else if t := p.peek(); (t.kind == tIdent || t.kind == tQuoted) && !isReserved(t.text) && !t.is("LEFT") && !t.is("CROSS") && !t.is("WITH") {
				f.alias = p.next().text
			}
			if p.accept("WITH") { // table hints such as WITH (NOLOCK)
				if e := p.expectPunct("("); e != nil {
					return nil, e
				}
				for !p.peek().isPunct(")") && p.peek().kind != tEOF {
					p.pos++
				}
				if e := p.expectPunct(")"); e != nil {
					return nil, e
				}
			}
			if !first && p.accept("ON") {
				on, e := p.parseExpr()
				if e != nil {
					return nil, e
				}
				f.on = on
			}
			s.from = append(s.from, f)
		}
	}
fromDone:
	if p.accept("WHERE") {
		w, e := p.parseExpr()
		if e != nil {
			return nil, e
		}
		s.where = w
	}
	if p.peek().is("GROUP") {
		return nil, errNotSupported("GROUP BY")
	}
	if p.accept("ORDER") {
		if e := p.expect("BY"); e != nil {
			return nil, e
		}
		for {
			x, e := p.parseExpr()
			if e != nil {
				return nil, e
			}
			o := orderItem{e: x}
			if p.accept("DESC") {
				o.desc = true
			} else {
				p.accept("ASC")
			}
			s.order = append(s.order, o)
			if !p.acceptPunct(",") {
				break
			}
		}
	}
	if p.accept("OPTION") {
		return nil, errNotSupported("OPTION")
	}
	if t := p.peek(); t.is("UNION") || t.is("FOR") {
		return nil, errNotSupported(strings.ToUpper(t.text))
	}
	return s, nil
}

func (p *parser) aliasName() (string, *Error) {
	t := p.next()
	if t.kind == tIdent || t.kind == tQuoted || t.kind == tString {
		return t.text, nil
	}
	p.pos--
	return "", p.syntaxErr()
}

// boundSource is one FROM item with its rows.
type boundSource struct {
	alias string // alias, or the last part of the name
	full  string // the name as written, for error messages
	t     *table
}

// evalCtx evaluates expressions over one combined row.
type evalCtx struct {
	x    *execCtx
	srcs []boundSource
	row  [][]any // one row per source; nil for a NULL-extended LEFT JOIN side
	// bound caches resolve's answers: the sources do not change while a
	// statement runs, and a join evaluates each column once per row pair
	bound map[colExpr]boundCol
}

// boundCol is where resolve found a column: source and column index.
type boundCol struct{ si, ci int }

// resolve finds the source and column a column reference names, once per
// statement.
func (c *evalCtx) resolve(col colExpr) (int, int, *Error) {
	if b, ok := c.bound[col]; ok {
		return b.si, b.ci, nil
	}
	si, ci, err := c.lookup(col)
	if err != nil {
		return 0, 0, err
	}
	if c.bound == nil {
		c.bound = map[colExpr]boundCol{}
	}
	c.bound[col] = boundCol{si, ci}
	return si, ci, nil
}

// lookup is resolve without the cache.
func (c *evalCtx) lookup(col colExpr) (int, int, *Error) {
	si, ci := -1, -1
	bound := false // the qualifier names a source
	for k, s := range c.srcs {
		if col.qual != "" && !strings.EqualFold(col.qual, s.alias) && !strings.EqualFold(col.qual, s.full) {
			continue
		}
		bound = true
		for j, cc := range s.t.cols {
			if strings.EqualFold(cc.name, col.name) {
				if si >= 0 {
					return 0, 0, newErr(209, 16, "Ambiguous column name '%s'.", col.name)
				}
				si, ci = k, j
			}
		}
	}
	if si < 0 {
		// SQL Server: an unknown qualifier is 4104, a known one with an
		// unknown column 207
		if col.qual != "" && !bound {
			return 0, 0, newErr(4104, 16, "The multi-part identifier \"%s.%s\" could not be bound.", col.qual, col.name)
		}
		return 0, 0, errInvalidColumn(col.name)
	}
	return si, ci, nil
}

// typeOf infers an expression's result type.
func (c *evalCtx) typeOf(e expr) (column, *Error) {
	switch x := e.(type) {
	case colExpr:
		si, ci, err := c.resolve(x)
		if err != nil {
			return column{}, err
		}
		return c.srcs[si].t.cols[ci], nil
	case litExpr:
		return column{typ: typeOfValue(x.v), size: 4000}, nil
	case castExpr:
		return column{typ: x.typ, size: 4000}, nil
	case funcExpr:
		switch x.name {
		case "COUNT", "IS_SRVROLEMEMBER", "DB_ID", "SYS.FN_HADR_BACKUP_IS_PREFERRED_REPLICA", "@@SPID",
			"CHECKSUM", "CHECKSUM_AGG":
			return column{typ: ctInt}, nil
		case "COUNT_BIG":
			return column{typ: ctBigInt}, nil
		case "MAX", "MIN", "ISNULL", "COALESCE":
			if len(x.args) > 0 {
				return c.typeOf(x.args[0])
			}
		case "GETDATE", "GETUTCDATE":
			return column{typ: ctDateTime1}, nil
		case "SYSDATETIME", "SYSUTCDATETIME":
			return column{typ: ctDateTime}, nil
		}
		return column{typ: ctNVarChar, size: 4000}, nil
	case sysVar:
		if x.name == "@@SPID" || x.name == "@@TRANCOUNT" {
			return column{typ: ctInt}, nil
		}
		return column{typ: ctNVarChar, size: 4000}, nil
	case caseExpr:
		if len(x.whens) > 0 {
			return c.typeOf(x.whens[0][1])
		}
	case binExpr:
		if x.op == "+" || x.op == "-" {
			return c.typeOf(x.l)
		}
		return column{typ: ctInt}, nil
	}
	return column{typ: ctInt}, nil
}

func (c *evalCtx) eval(e expr) (any, *Error) {
	switch x := e.(type) {
	case litExpr:
		return x.v, nil
	case colExpr:
		si, ci, err := c.resolve(x)
		if err != nil {
			return nil, err
		}
		if c.row[si] == nil {
			return nil, nil
		}
		return c.row[si][ci], nil
	case sysVar:
		return c.x.sysVar(x.name)
	case funcExpr:
		return c.x.call(c, x)
	case notExpr:
		v, err := c.eval(x.e)
		if err != nil {
			return nil, err
		}
		if v == nil {
			return nil, nil
		}
		return !truth(v), nil
	case isNullExpr:
		v, err := c.eval(x.e)
		if err != nil {
			return nil, err
		}
		return (v == nil) != x.not, nil
	case inExpr:
		v, err := c.eval(x.e)
		if err != nil {
			return nil, err
		}
		found := false
		for _, le := range x.list {
			w, err := c.eval(le)
			if err != nil {
				return nil, err
			}
			if cmp, ok := compareValues(c.x.inst, v, w); ok && cmp == 0 {
				found = true
			}
		}
		if v == nil {
			return nil, nil
		}
		return found != x.not, nil
	case likeExpr:
		v, err := c.eval(x.e)
		if err != nil {
			return nil, err
		}
		pv, err := c.eval(x.pattern)
		if err != nil {
			return nil, err
		}
		s, ok1 := toStr(v)
		pat, ok2 := toStr(pv)
		if v == nil || pv == nil || !ok1 || !ok2 {
			return nil, nil
		}
		return likeMatch(c.x.inst, s, pat) != x.not, nil
	case castExpr:
		v, err := c.eval(x.e)
		if err != nil {
			return nil, err
		}
		return castValue(v, x.typ)
	case caseExpr:
		for _, w := range x.whens {
			v, err := c.eval(w[0])
			if err != nil {
				return nil, err
			}
			if truth(v) {
				return c.eval(w[1])
			}
		}
		if x.els != nil {
			return c.eval(x.els)
		}
		return nil, nil
	case binExpr:
		l, err := c.eval(x.l)
		if err != nil {
			return nil, err
		}
		switch x.op {
		case "AND":
			if l != nil && !truth(l) {
				return false, nil
			}
			r, err := c.eval(x.r)
			if err != nil {
				return nil, err
			}
			if l == nil || r == nil {
				if (r != nil && !truth(r)) || (l != nil && !truth(l)) {
					return false, nil
				}
				return nil, nil
			}
			return truth(l) && truth(r), nil
		case "OR":
			if truth(l) {
				return true, nil
			}
			r, err := c.eval(x.r)
			if err != nil {
				return nil, err
			}
			if truth(r) {
				return true, nil
			}
			if l == nil || r == nil {
				return nil, nil
			}
			return false, nil
		}
		r, err := c.eval(x.r)
		if err != nil {
			return nil, err
		}
		if l == nil || r == nil {
			return nil, nil
		}
		switch x.op {
		case "+", "-":
			if ls, ok := l.(string); ok && x.op == "+" {
				rs, _ := toStr(r)
				return ls + rs, nil
			}
			a, ok1 := toInt(l)
			b, ok2 := toInt(r)
			if !ok1 || !ok2 {
				return nil, newErr(8117, 16, "Operand data type is invalid for %s operator.", x.op)
			}
			if x.op == "+" {
				return a + b, nil
			}
			return a - b, nil
		}
		cmp, ok := compareValues(c.x.inst, l, r)
		if !ok {
			return nil, newErr(245, 16, "Conversion failed when comparing the values.")
		}
		switch x.op {
		case "=":
			return cmp == 0, nil
		case "<>":
			return cmp != 0, nil
		case "<":
			return cmp < 0, nil
		case ">":
			return cmp > 0, nil
		case "<=":
			return cmp <= 0, nil
		case ">=":
			return cmp >= 0, nil
		}
	}
	return nil, newErr(102, 15, "Incorrect syntax in expression.")
}

// likeMatch implements LIKE with %, _ and character classes ([a-z], [^x]); there is no ESCAPE clause.
func likeMatch(i *Instance, s, pat string) bool {
	if !i.cfg.CaseSensitive {
		s, pat = strings.ToLower(s), strings.ToLower(pat)
	}
	rs, rp := []rune(s), []rune(pat)
	var m func(a, b int) bool
	m = func(a, b int) bool {
		for b < len(rp) {
			switch rp[b] {
			case '%':
				for k := a; k <= len(rs); k++ {
					if m(k, b+1) {
						return true
					}
				}
				return false
			case '_':
				if a >= len(rs) {
					return false
				}
			case '[':
				// a character class: [abc], [a-z], [^a-z]; [_] and [%]
				// match the character itself
				end := b + 1
				if end < len(rp) && rp[end] == '^' {
					end++
				}
				if end < len(rp) && rp[end] == ']' {
					end++ // a ] first in the class is a member
				}
				for end < len(rp) && rp[end] != ']' {
					end++
				}
				if end >= len(rp) {
					// no closing bracket: the [ is an ordinary character
					if a >= len(rs) || rs[a] != '[' {
						return false
					}
					break
				}
				if a >= len(rs) || !inClass(rs[a], rp[b+1:end]) {
					return false
				}
				b = end
			default:
				if a >= len(rs) || rs[a] != rp[b] {
					return false
				}
			}
			a++
			b++
		}
		return a == len(rs)
	}
	return m(0, 0)
}

// inClass reports whether r is in a LIKE character class (the text between
// the brackets).
func inClass(r rune, class []rune) bool {
	neg := len(class) > 0 && class[0] == '^'
	if neg {
		class = class[1:]
	}
	in := false
	for k := 0; k < len(class); k++ {
		if k+2 < len(class) && class[k+1] == '-' {
			if class[k] <= r && r <= class[k+2] {
				in = true
			}
			k += 2
			continue
		}
		if class[k] == r {
			in = true
		}
	}
	return in != neg
}

func castValue(v any, t colType) (any, *Error) {
	if v == nil {
		return nil, nil
	}
	switch t {
	case ctInt, ctBigInt, ctBit, ctTinyInt, ctSmallInt:
		n, ok := toInt(v)
		if !ok {
			s, _ := toStr(v)
			return nil, newErr(245, 16, "Conversion failed when converting the nvarchar value '%s' to data type int.", s)
		}
		if t == ctBit && n != 0 {
			n = 1
		}
		return n, nil
	case ctNVarChar:
		s, _ := toStr(v)
		return s, nil
	case ctNumeric:
		switch x := v.(type) {
		case numeric:
			return x, nil
		case int64:
			return numeric(x), nil
		}
		s, _ := toStr(v)
		n, ok := toInt(s)
		if !ok {
			return nil, newErr(8114, 16, "Error converting data type nvarchar to numeric.")
		}
		return numeric(n), nil
	case ctDateTime, ctDateTime1:
		switch x := v.(type) {
		case time.Time:
			return x, nil
		case string:
			tm, err := parseDateTime(x)
			if err != nil {
				return nil, newErr(241, 16, "Conversion failed when converting date and/or time from character string.")
			}
			return tm, nil
		}
	case ctGUID:
		s, _ := toStr(v)
		return GUID(strings.ToLower(s)), nil
	}
	return v, nil
}

// pushWhere splits the WHERE clause of s into the parts joined by AND and
// sorts them by the last source each reads: early[k] may be tested as
// soon as source k's row is chosen (a query joining backupset with
// backupmediafamily then filters backupset's rows before it pairs them),
// late after the whole row is. A part is late when it reads a source on
// the right of a LEFT JOIN (the WHERE clause filters after the join's NULL
// rows are added, and testing it early would add them where SQL Server
// does not), when it reads no source, or reads something this cannot
// place. How SQL Server orders the tests of a WHERE clause is its own
// choice: only the rows that come out are defined.
func (c *evalCtx) pushWhere(s *selectStmt) (early [][]expr, late []expr) {
	early = make([][]expr, len(c.srcs))
	if s.where == nil {
		return early, nil
	}
	var parts []expr
	var split func(e expr)
	split = func(e expr) {
		if b, ok := e.(binExpr); ok && b.op == "AND" {
			split(b.l)
			split(b.r)
			return
		}
		parts = append(parts, e)
	}
	split(s.where)
	for _, e := range parts {
		last, ok := c.lastSource(e)
		if !ok || last < 0 || s.from[last].left {
			late = append(late, e)
			continue
		}
		early[last] = append(early[last], e)
	}
	return early, late
}

// lastSource is the highest source index e reads, -1 for none; ok is
// false when e holds something it cannot place.
func (c *evalCtx) lastSource(e expr) (last int, ok bool) {
	last = -1
	var walk func(e expr) bool
	walk = func(e expr) bool {
		switch x := e.(type) {
		case nil, litExpr, sysVar:
			return true
		case colExpr:
			si, _, err := c.resolve(x)
			if err != nil {
				return false
			}
			last = max(last, si)
			return true
		case binExpr:
			return walk(x.l) && walk(x.r)
		case notExpr:
			return walk(x.e)
		case isNullExpr:
			return walk(x.e)
		case castExpr:
			return walk(x.e)
		case likeExpr:
			return walk(x.e) && walk(x.pattern)
		case inExpr:
			if !walk(x.e) {
				return false
			}
			for _, a := range x.list {
				if !walk(a) {
					return false
				}
			}
			return true
		}
		return false // functions, CASE, subqueries: tested late
	}
	if !walk(e) {
		return 0, false
	}
	return last, true
}

// run executes a SELECT and returns its columns and rows.
func (s *selectStmt) run(x *execCtx) ([]column, [][]any, *Error) {
	c := &evalCtx{x: x}
	for _, f := range s.from {
		t, err := x.sourceTable(f.name)
		if err != nil {
			return nil, nil, err
		}
		alias := f.alias
		if alias == "" {
			alias = f.name[len(f.name)-1]
		}
		c.srcs = append(c.srcs, boundSource{alias: alias, full: strings.Join(f.name, "."), t: t})
	}
	// output columns
	var cols []column
	type outItem struct {
		e   expr
		src int // for star items: source index, -1 otherwise
		ci  int
	}
	var outs []outItem
	agg := false
	for _, it := range s.items {
		if it.star != "" {
			matched := false
			for k, src := range c.srcs {
				if it.star != "*" && !strings.EqualFold(it.star, src.alias) {
					continue
				}
				matched = true
				for j, col := range src.t.cols {
					cols = append(cols, col)
					outs = append(outs, outItem{src: k, ci: j})
				}
			}
			if !matched {
				if len(c.srcs) == 0 {
					return nil, nil, newErr(263, 16, "Must specify table to select from.")
				}
				return nil, nil, newErr(4104, 16, "The multi-part identifier \"%s\" could not be bound.", it.star)
			}
			continue
		}
		c.row = make([][]any, len(c.srcs))
		col, err := c.typeOf(it.e)
		if err != nil {
			return nil, nil, err
		}
		col.name = it.alias
		if it.alias == "" {
			if ce, ok := it.e.(colExpr); ok {
				col.name = ce.name
				_, ci, _ := c.resolve(ce)
				si, _, _ := c.resolve(ce)
				col.name = c.srcs[si].t.cols[ci].name
			}
		}
		if f, ok := it.e.(funcExpr); ok && isAggregate(f.name) {
			agg = true
		}
		cols = append(cols, col)
		outs = append(outs, outItem{e: it.e, src: -1})
	}
	if s.where != nil && len(c.srcs) > 0 {
		// bind the WHERE clause's columns once, as SQL Server does when it
		// compiles: an unknown column is 207 even over no rows
		c.row = make([][]any, len(c.srcs))
		if _, err := c.eval(s.where); err != nil {
			return nil, nil, err
		}
	}
	// join, testing each part of the WHERE clause as soon as the rows it
	// reads are chosen (see pushWhere)
	early, late := c.pushWhere(s)
	test := func(conds []expr, row [][]any) (bool, *Error) {
		c.row = row
		for _, e := range conds {
			v, err := c.eval(e)
			if err != nil {
				return false, err
			}
			if !truth(v) {
				return false, nil
			}
		}
		return true, nil
	}
	var combos [][][]any
	var walk func(k int, cur [][]any) *Error
	walk = func(k int, cur [][]any) *Error {
		if k == len(c.srcs) {
			if ok, err := test(late, cur); err != nil || !ok {
				return err
			}
			combos = append(combos, append([][]any(nil), cur...))
			for k, r := range cur {
				if t := c.srcs[k].t; t.touch != nil && r != nil {
					t.touch(r)
				}
			}
			return nil
		}
		matched := false
		for _, r := range c.srcs[k].t.rows {
			next := append(cur[:k:k], r)
			if on := s.from[k].on; on != nil {
				c.row = append(next, make([][]any, len(c.srcs)-k-1)...)
				v, err := c.eval(on)
				if err != nil {
					return err
				}
				if !truth(v) {
					continue
				}
			}
			matched = true
			if len(early[k]) > 0 {
				ok, err := test(early[k], append(next, make([][]any, len(c.srcs)-k-1)...))
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
			}
			if err := walk(k+1, next); err != nil {
				return err
			}
		}
		if !matched && s.from[k].left {
			return walk(k+1, append(cur[:k:k], nil))
		}
		return nil
	}
	if len(c.srcs) == 0 {
		combos = [][][]any{{}}
		if s.where != nil {
			c.row = nil
			v, err := c.eval(s.where)
			if err != nil {
				return nil, nil, err
			}
			if !truth(v) {
				combos = nil
			}
		}
	} else if err := walk(0, nil); err != nil {
		return nil, nil, err
	}
	if len(s.order) > 0 {
		var sortErr *Error
		keys := make([][]any, len(combos))
		for k, r := range combos {
			c.row = r
			for _, o := range s.order {
				var v any
				var err *Error
				if lit, ok := o.e.(litExpr); ok {
					if n, ok := lit.v.(int64); ok && n >= 1 && int(n) <= len(outs) {
						v, err = evalOut(c, outs[n-1].e, outs[n-1].src, outs[n-1].ci)
					}
				} else if ce, ok := o.e.(colExpr); ok && ce.qual == "" && aliasIndex(s.items, ce.name) >= 0 {
					oi := outs[aliasIndex(s.items, ce.name)]
					v, err = evalOut(c, oi.e, oi.src, oi.ci)
				} else {
					v, err = c.eval(o.e)
				}
				if err != nil && sortErr == nil {
					sortErr = err
				}
				keys[k] = append(keys[k], v)
			}
		}
		if sortErr != nil {
			return nil, nil, sortErr
		}
		idx := make([]int, len(combos))
		for k := range idx {
			idx[k] = k
		}
		sort.SliceStable(idx, func(a, b int) bool {
			for j, o := range s.order {
				va, vb := keys[idx[a]][j], keys[idx[b]][j]
				var cmp int
				switch {
				case va == nil && vb == nil:
					cmp = 0
				case va == nil:
					cmp = -1
				case vb == nil:
					cmp = 1
				default:
					cmp, _ = compareValues(x.inst, va, vb)
				}
				if o.desc {
					cmp = -cmp
				}
				if cmp != 0 {
					return cmp < 0
				}
			}
			return false
		})
		sorted := make([][][]any, len(combos))
		for k, j := range idx {
			sorted[k] = combos[j]
		}
		combos = sorted
	}
	var rows [][]any
	if agg {
		row := make([]any, len(outs))
		for k, o := range outs {
			f, ok := o.e.(funcExpr)
			if !ok || !isAggregate(f.name) {
				return nil, nil, newErr(8120, 16, "Column is invalid in the select list because it is not contained in either an aggregate function or the GROUP BY clause.")
			}
			v, err := aggregate(c, f, combos)
			if err != nil {
				return nil, nil, err
			}
			row[k] = v
		}
		rows = append(rows, row)
	} else {
		for _, r := range combos {
			c.row = r
			row := make([]any, len(outs))
			for k, o := range outs {
				v, err := evalOut(c, o.e, o.src, o.ci)
				if err != nil {
					return nil, nil, err
				}
				row[k] = v
			}
			rows = append(rows, row)
		}
	}
	if s.top >= 0 && int64(len(rows)) > s.top {
		rows = rows[:s.top]
	}
	for k := range cols {
		if cols[k].typ == ctInt || cols[k].typ == ctBit {
			// widen columns whose values do not fit
			for _, r := range rows {
				if n, ok := r[k].(int64); ok && (n > 1<<31-1 || n < -1<<31) {
					cols[k].typ = ctBigInt
				}
			}
		}
		for _, r := range rows {
			if b, ok := r[k].(bool); ok {
				if b {
					r[k] = int64(1)
				} else {
					r[k] = int64(0)
				}
			}
		}
	}
	return cols, rows, nil
}

func aliasIndex(items []selectItem, name string) int {
	for k, it := range items {
		if it.alias != "" && strings.EqualFold(it.alias, name) {
			return k
		}
	}
	return -1
}

func evalOut(c *evalCtx, e expr, src, ci int) (any, *Error) {
	if src >= 0 {
		if c.row[src] == nil {
			return nil, nil
		}
		return c.row[src][ci], nil
	}
	return c.eval(e)
}

func isAggregate(name string) bool {
	switch name {
	case "COUNT", "COUNT_BIG", "MAX", "MIN", "SUM", "CHECKSUM_AGG":
		return true
	}
	return false
}

func aggregate(c *evalCtx, f funcExpr, rows [][][]any) (any, *Error) {
	if (f.name == "COUNT" || f.name == "COUNT_BIG") && f.star {
		return int64(len(rows)), nil
	}
	if f.name == "CHECKSUM_AGG" {
		return checksumAggregate(c, f, rows)
	}
	if len(f.args) != 1 {
		return nil, newErr(174, 15, "The %s function requires 1 argument(s).", strings.ToLower(f.name))
	}
	var acc any
	n := int64(0)
	for _, r := range rows {
		c.row = r
		v, err := c.eval(f.args[0])
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		n++
		switch f.name {
		case "MAX", "MIN":
			if acc == nil {
				acc = v
				continue
			}
			cmp, _ := compareValues(c.x.inst, v, acc)
			if (f.name == "MAX" && cmp > 0) || (f.name == "MIN" && cmp < 0) {
				acc = v
			}
		case "SUM":
			a, _ := toInt(acc)
			b, _ := toInt(v)
			acc = a + b
		}
	}
	if f.name == "COUNT" || f.name == "COUNT_BIG" {
		return n, nil
	}
	return acc, nil
}
