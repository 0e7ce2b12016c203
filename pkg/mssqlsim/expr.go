package mssqlsim

import (
	"strconv"
	"strings"
	"time"
)

// expr is a scalar expression in a SELECT.
type expr interface{}

type (
	litExpr  struct{ v any }
	colExpr  struct{ qual, name string }
	sysVar   struct{ name string } // @@VERSION and friends
	funcExpr struct {
		name string // upper case, schema included: SYS.FN_HADR_...
		args []expr
		star bool // COUNT(*)
	}
	binExpr struct {
		op   string
		l, r expr
	}
	notExpr    struct{ e expr }
	isNullExpr struct {
		e   expr
		not bool
	}
	inExpr struct {
		e    expr
		list []expr
		not  bool
	}
	likeExpr struct {
		e, pattern expr
		not        bool
	}
	castExpr struct {
		e   expr
		typ colType
	}
	caseExpr struct {
		whens [][2]expr
		els   expr
	}
)

// parseExpr parses an expression with the usual precedence: OR, AND, NOT,
// comparison, additive, unary, primary.
func (p *parser) parseExpr() (expr, *Error) { return p.parseOr() }

func (p *parser) parseOr() (expr, *Error) {
	l, e := p.parseAnd()
	if e != nil {
		return nil, e
	}
	for p.accept("OR") {
		r, e := p.parseAnd()
		if e != nil {
			return nil, e
		}
		l = binExpr{op: "OR", l: l, r: r}
	}
	return l, nil
}

func (p *parser) parseAnd() (expr, *Error) {
	l, e := p.parseNot()
	if e != nil {
		return nil, e
	}
	for p.accept("AND") {
		r, e := p.parseNot()
		if e != nil {
			return nil, e
		}
		l = binExpr{op: "AND", l: l, r: r}
	}
	return l, nil
}

func (p *parser) parseNot() (expr, *Error) {
	if p.accept("NOT") {
		e, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		return notExpr{e}, nil
	}
	return p.parseCmp()
}

func (p *parser) parseCmp() (expr, *Error) {
	l, e := p.parseAdd()
	if e != nil {
		return nil, e
	}
	t := p.peek()
	switch {
	case t.kind == tPunct && (t.text == "=" || t.text == "<>" || t.text == "!=" || t.text == "<" || t.text == ">" || t.text == "<=" || t.text == ">="):
		p.pos++
		r, e := p.parseAdd()
		if e != nil {
			return nil, e
		}
		op := t.text
		if op == "!=" {
			op = "<>"
		}
		return binExpr{op: op, l: l, r: r}, nil
	case t.is("IS"):
		p.pos++
		not := p.accept("NOT")
		if e := p.expect("NULL"); e != nil {
			return nil, e
		}
		return isNullExpr{e: l, not: not}, nil
	case t.is("NOT") && (p.peekAt(1).is("IN") || p.peekAt(1).is("LIKE")):
		p.pos++
		return p.parseInLike(l, true)
	case t.is("IN") || t.is("LIKE"):
		return p.parseInLike(l, false)
	}
	return l, nil
}

func (p *parser) parseInLike(l expr, not bool) (expr, *Error) {
	if p.accept("LIKE") {
		r, e := p.parseAdd()
		if e != nil {
			return nil, e
		}
		return likeExpr{e: l, pattern: r, not: not}, nil
	}
	p.next() // IN
	if e := p.expectPunct("("); e != nil {
		return nil, e
	}
	var list []expr
	for {
		x, e := p.parseExpr()
		if e != nil {
			return nil, e
		}
		list = append(list, x)
		if !p.acceptPunct(",") {
			break
		}
	}
	if e := p.expectPunct(")"); e != nil {
		return nil, e
	}
	return inExpr{e: l, list: list, not: not}, nil
}

func (p *parser) parseAdd() (expr, *Error) {
	l, e := p.parseUnary()
	if e != nil {
		return nil, e
	}
	for p.peek().isPunct("+") || p.peek().isPunct("-") {
		op := p.next().text
		r, e := p.parseUnary()
		if e != nil {
			return nil, e
		}
		l = binExpr{op: op, l: l, r: r}
	}
	return l, nil
}

func (p *parser) parseUnary() (expr, *Error) {
	if p.acceptPunct("-") {
		x, e := p.parseUnary()
		if e != nil {
			return nil, e
		}
		return binExpr{op: "-", l: litExpr{int64(0)}, r: x}, nil
	}
	return p.parsePrimary()
}

var sqlTypes = map[string]colType{
	"INT": ctInt, "BIGINT": ctBigInt, "BIT": ctBit, "NVARCHAR": ctNVarChar, "VARCHAR": ctNVarChar,
	"SYSNAME": ctNVarChar, "NCHAR": ctNVarChar, "CHAR": ctNVarChar, "DATETIME": ctDateTime1,
	"DATETIME2": ctDateTime, "NUMERIC": ctNumeric, "DECIMAL": ctNumeric, "UNIQUEIDENTIFIER": ctGUID,
	"TINYINT": ctTinyInt, "SMALLINT": ctSmallInt, "VARBINARY": ctVarBinary,
}

// parseType reads a type name with an optional (n[,m]) or (max).
func (p *parser) parseType() (colType, *Error) {
	n, e := p.ident()
	if e != nil {
		return 0, e
	}
	t, ok := sqlTypes[strings.ToUpper(n)]
	if !ok {
		return 0, newErr(243, 16, "Type %s is not a defined system type.", n)
	}
	if p.acceptPunct("(") {
		for !p.peek().isPunct(")") && p.peek().kind != tEOF {
			p.pos++
		}
		if e := p.expectPunct(")"); e != nil {
			return 0, e
		}
	}
	return t, nil
}

func (p *parser) parsePrimary() (expr, *Error) {
	t := p.peek()
	switch t.kind {
	case tNumber:
		p.pos++
		if strings.Contains(t.text, ".") {
			f, err := strconv.ParseFloat(t.text, 64)
			if err != nil {
				return nil, errSyntax(t.line, t.text)
			}
			return litExpr{f}, nil
		}
		n, err := strconv.ParseInt(t.text, 10, 64)
		if err != nil {
			u, err := strconv.ParseUint(t.text, 10, 64)
			if err != nil {
				return nil, errSyntax(t.line, t.text)
			}
			return litExpr{numeric(u)}, nil
		}
		return litExpr{n}, nil
	case tString:
		p.pos++
		return litExpr{t.text}, nil
	case tVar:
		p.pos++
		if strings.HasPrefix(t.text, "@@") {
			return sysVar{strings.ToUpper(t.text)}, nil
		}
		v, e := p.variable(t)
		if e != nil {
			return nil, e
		}
		return litExpr{normalizeParam(v)}, nil
	case tPunct:
		if t.text == "(" {
			p.pos++
			x, e := p.parseExpr()
			if e != nil {
				return nil, e
			}
			if e := p.expectPunct(")"); e != nil {
				return nil, e
			}
			return x, nil
		}
		return nil, p.syntaxErr()
	case tIdent, tQuoted:
		if t.kind == tIdent {
			switch strings.ToUpper(t.text) {
			case "NULL":
				p.pos++
				return litExpr{nil}, nil
			case "CAST":
				p.pos++
				if e := p.expectPunct("("); e != nil {
					return nil, e
				}
				x, e := p.parseExpr()
				if e != nil {
					return nil, e
				}
				if e := p.expect("AS"); e != nil {
					return nil, e
				}
				typ, e := p.parseType()
				if e != nil {
					return nil, e
				}
				if e := p.expectPunct(")"); e != nil {
					return nil, e
				}
				return castExpr{e: x, typ: typ}, nil
			case "CONVERT":
				p.pos++
				if e := p.expectPunct("("); e != nil {
					return nil, e
				}
				typ, e := p.parseType()
				if e != nil {
					return nil, e
				}
				if e := p.expectPunct(","); e != nil {
					return nil, e
				}
				x, e := p.parseExpr()
				if e != nil {
					return nil, e
				}
				if p.acceptPunct(",") { // style
					if _, e := p.parseExpr(); e != nil {
						return nil, e
					}
				}
				if e := p.expectPunct(")"); e != nil {
					return nil, e
				}
				return castExpr{e: x, typ: typ}, nil
			case "CASE":
				p.pos++
				var c caseExpr
				for p.accept("WHEN") {
					w, e := p.parseExpr()
					if e != nil {
						return nil, e
					}
					if e := p.expect("THEN"); e != nil {
						return nil, e
					}
					v, e := p.parseExpr()
					if e != nil {
						return nil, e
					}
					c.whens = append(c.whens, [2]expr{w, v})
				}
				if p.accept("ELSE") {
					v, e := p.parseExpr()
					if e != nil {
						return nil, e
					}
					c.els = v
				}
				if e := p.expect("END"); e != nil {
					return nil, e
				}
				return c, nil
			}
			if isReserved(t.text) {
				return nil, p.syntaxErr()
			}
		}
		parts, e := p.objectName()
		if e != nil {
			return nil, e
		}
		if p.acceptPunct("(") {
			f := funcExpr{name: strings.ToUpper(strings.Join(parts, "."))}
			if p.acceptPunct("*") {
				f.star = true
			} else if !p.peek().isPunct(")") {
				for {
					x, e := p.parseExpr()
					if e != nil {
						return nil, e
					}
					f.args = append(f.args, x)
					if !p.acceptPunct(",") {
						break
					}
				}
			}
			if e := p.expectPunct(")"); e != nil {
				return nil, e
			}
			return f, nil
		}
		switch len(parts) {
		case 1:
			return colExpr{name: parts[0]}, nil
		case 2:
			return colExpr{qual: parts[0], name: parts[1]}, nil
		}
		return colExpr{qual: strings.Join(parts[:len(parts)-1], "."), name: parts[len(parts)-1]}, nil
	}
	return nil, p.syntaxErr()
}

// reserved words that cannot start an expression.
var reserved = map[string]bool{
	"SELECT": true, "FROM": true, "WHERE": true, "ORDER": true, "BY": true, "JOIN": true, "ON": true,
	"AND": true, "OR": true, "AS": true, "INNER": true, "LEFT": true, "GROUP": true, "UNION": true,
	"TOP": true, "DISTINCT": true, "INTO": true, "HAVING": true, "BACKUP": true, "RESTORE": true,
	"WITH": true, "TO": true, "DATABASE": true, "EXEC": true, "EXECUTE": true, "USE": true,
}

func isReserved(s string) bool { return reserved[strings.ToUpper(s)] }

// normalizeParam converts a driver parameter to a query value.
func normalizeParam(v any) any {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case bool:
		if x {
			return int64(1)
		}
		return int64(0)
	case [16]byte:
		return guidFromBytes(x)
	case time.Time:
		return x.UTC()
	}
	return v
}

// guidFromBytes formats a uniqueidentifier received in SQL Server byte order.
func guidFromBytes(b [16]byte) GUID {
	const hexd = "0123456789abcdef"
	order := []int{3, 2, 1, 0, -1, 5, 4, -1, 7, 6, -1, 8, 9, -1, 10, 11, 12, 13, 14, 15}
	var s strings.Builder
	for _, k := range order {
		if k < 0 {
			s.WriteByte('-')
			continue
		}
		s.WriteByte(hexd[b[k]>>4])
		s.WriteByte(hexd[b[k]&15])
	}
	return GUID(s.String())
}
