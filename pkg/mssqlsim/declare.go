package mssqlsim

import (
	"strconv"
	"strings"
	"unicode/utf16"
)

// parseDeclare: DECLARE @name [AS] type [= expression] [, ...].
//
// The simulator compiles a whole batch before it runs it, and a variable
// stands for its value in the statements after its DECLARE, as an
// sp_executesql parameter does. So an initial value must be a constant
// expression (literals, +, -, CAST, CONVERT, NCHAR, CHAR), which is folded
// here; anything else is 40517. A variable without one is NULL. As in SQL
// Server, a string is cut to the declared length without an error
// (nvarchar and varchar without a length hold one character, sysname
// 128), a name declared twice in a batch is 134, and a variable is known
// only after its DECLARE (137 before).
func (p *parser) parseDeclare() (stmt, *Error) {
	for {
		t := p.next()
		if t.kind != tVar || strings.HasPrefix(t.text, "@@") {
			p.pos--
			return nil, p.syntaxErr()
		}
		p.accept("AS")
		typeName, e := p.ident()
		if e != nil {
			return nil, e
		}
		typ, ok := sqlTypes[strings.ToUpper(typeName)]
		if !ok {
			return nil, newErr(2715, 16, "Column, parameter, or variable #1: Cannot find data type %s.", typeName)
		}
		length := 1 // nvarchar, varchar, nchar and char without a length
		if strings.EqualFold(typeName, "sysname") {
			length = 128
		}
		if p.acceptPunct("(") {
			switch n := p.next(); {
			case n.is("MAX"):
				length = -1
			case n.kind == tNumber:
				length, _ = strconv.Atoi(n.text)
				if p.acceptPunct(",") { // numeric(p, s)
					p.next()
				}
			default:
				p.pos--
				return nil, p.syntaxErr()
			}
			if e := p.expectPunct(")"); e != nil {
				return nil, e
			}
		}
		var v any
		if p.acceptPunct("=") {
			x, e := p.parseExpr()
			if e != nil {
				return nil, e
			}
			if !constantExpr(x) {
				return nil, errNotSupported("DECLARE with an initial value that is not a constant expression")
			}
			if v, e = (&evalCtx{}).eval(x); e != nil {
				return nil, e
			}
			if v, e = castValue(v, typ); e != nil {
				return nil, e
			}
			if s, ok := v.(string); ok && typ == ctNVarChar && length >= 0 {
				v = cutUTF16(s, length)
			}
		}
		name := strings.ToLower(t.text)
		if _, dup := p.params[name]; dup {
			return nil, newErr(134, 15, "The variable name '%s' has already been declared. Variable names must be unique within a query batch or stored procedure.", t.text)
		}
		p.declare(name, v, typ == ctNVarChar && strings.HasPrefix(strings.ToUpper(typeName), "N") || strings.EqualFold(typeName, "sysname"))
		if !p.acceptPunct(",") {
			return func(*execCtx) *Error { return nil }, nil
		}
	}
}

// declare adds a variable to the batch's parameters, copying them first
// so that the caller's map is never changed.
func (p *parser) declare(name string, v any, unicode bool) {
	if !p.ownParams {
		params := make(map[string]any, len(p.params)+1)
		for k, x := range p.params {
			params[k] = x
		}
		if u, ok := params[unicodeParamsKey].(map[string]bool); ok {
			c := make(map[string]bool, len(u))
			for k, x := range u {
				c[k] = x
			}
			params[unicodeParamsKey] = c
		}
		p.params, p.ownParams = params, true
	}
	p.params[name] = v
	if unicode {
		u, _ := p.params[unicodeParamsKey].(map[string]bool)
		if u == nil {
			u = map[string]bool{}
			p.params[unicodeParamsKey] = u
		}
		u[name] = true
	}
}

// constantExpr reports whether x can be evaluated without a session or a
// row: literals (and variables, already replaced by their values),
// +, -, CAST, CONVERT, NCHAR and CHAR.
func constantExpr(x expr) bool {
	switch x := x.(type) {
	case litExpr:
		return true
	case castExpr:
		return constantExpr(x.e)
	case binExpr:
		return (x.op == "+" || x.op == "-") && constantExpr(x.l) && constantExpr(x.r)
	case funcExpr:
		if x.name != "NCHAR" && x.name != "CHAR" {
			return false
		}
		for _, a := range x.args {
			if !constantExpr(a) {
				return false
			}
		}
		return true
	}
	return false
}

// cutUTF16 cuts s to n UTF-16 code units, as an nvarchar(n) holds it.
func cutUTF16(s string, n int) string {
	units := 0
	for i, r := range s {
		units += len(utf16.Encode([]rune{r}))
		if units > n {
			return s[:i]
		}
	}
	return s
}
