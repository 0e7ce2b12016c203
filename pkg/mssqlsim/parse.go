package mssqlsim

import (
	"strconv"
	"strings"
)

// parser walks the tokens of one batch.
type parser struct {
	toks   []token
	pos    int
	params map[string]any // sp_executesql parameters, by lower-case name with '@'
	// ownParams is set once params is the parser's own copy, which
	// DECLARE adds to (parseDeclare).
	ownParams bool
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) peekAt(k int) token {
	if p.pos+k < len(p.toks) {
		return p.toks[p.pos+k]
	}
	return p.toks[len(p.toks)-1]
}
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

// accept consumes the keyword kw if it is next.
func (p *parser) accept(kw string) bool {
	if p.peek().is(kw) {
		p.pos++
		return true
	}
	return false
}

func (p *parser) acceptPunct(s string) bool {
	if p.peek().isPunct(s) {
		p.pos++
		return true
	}
	return false
}

func (p *parser) syntaxErr() *Error {
	t := p.peek()
	if t.kind == tEOF {
		return errSyntaxEOF(t.line, "Incorrect syntax near the end of the statement.")
	}
	return errSyntax(t.line, t.near())
}

func (p *parser) expect(kw string) *Error {
	if !p.accept(kw) {
		return p.syntaxErr()
	}
	return nil
}

func (p *parser) expectPunct(s string) *Error {
	if !p.acceptPunct(s) {
		return p.syntaxErr()
	}
	return nil
}

// endOfStatement reports whether the current statement ends here.
func (p *parser) endOfStatement() bool {
	t := p.peek()
	return t.kind == tEOF || t.isPunct(";")
}

// ident reads an identifier: bare or quoted.
func (p *parser) ident() (string, *Error) {
	t := p.peek()
	if t.kind == tIdent || t.kind == tQuoted {
		p.pos++
		return t.text, nil
	}
	return "", p.syntaxErr()
}

// name reads a database name: an identifier, or a variable holding one.
func (p *parser) name() (string, *Error) {
	t := p.peek()
	if t.kind == tVar {
		p.pos++
		v, e := p.variable(t)
		if e != nil {
			return "", e
		}
		s, ok := v.(string)
		if !ok {
			return "", newErr(137, 15, "Must declare the scalar variable \"%s\".", t.text)
		}
		return s, nil
	}
	return p.ident()
}

// variable resolves @name from the sp_executesql parameters.
func (p *parser) variable(t token) (any, *Error) {
	if strings.HasPrefix(t.text, "@@") {
		return nil, errSyntax(t.line, t.text)
	}
	v, ok := p.params[strings.ToLower(t.text)]
	if !ok {
		return nil, newErr(137, 15, "Must declare the scalar variable \"%s\".", t.text)
	}
	return v, nil
}

// stringValue reads a string literal or a variable holding one.
func (p *parser) stringValue() (string, *Error) {
	t := p.next()
	switch t.kind {
	case tString:
		return t.text, nil
	case tVar:
		v, e := p.variable(t)
		if e != nil {
			return "", e
		}
		if s, ok := toStr(v); ok {
			return s, nil
		}
		return "", newErr(206, 16, "Operand type clash: the value of %s is not a string.", t.text)
	}
	p.pos--
	return "", p.syntaxErr()
}

// intValue reads an integer literal or a variable holding one.
func (p *parser) intValue() (int64, *Error) {
	t := p.next()
	switch t.kind {
	case tNumber:
		n, err := strconv.ParseInt(t.text, 10, 64)
		if err != nil {
			return 0, errSyntax(t.line, t.text)
		}
		return n, nil
	case tVar:
		v, e := p.variable(t)
		if e != nil {
			return 0, e
		}
		if n, ok := toInt(v); ok {
			return n, nil
		}
		return 0, newErr(245, 16, "Conversion failed when converting the value of %s to data type int.", t.text)
	}
	p.pos--
	return 0, p.syntaxErr()
}

// objectName reads a one- to three-part name such as msdb.dbo.backupset
// or [sys].[databases]; empty parts (msdb..backupset) stay empty.
func (p *parser) objectName() ([]string, *Error) {
	var parts []string
	for {
		if p.peek().isPunct(".") {
			parts = append(parts, "")
			p.pos++
			continue
		}
		n, e := p.ident()
		if e != nil {
			return nil, e
		}
		parts = append(parts, n)
		if !p.acceptPunct(".") {
			return parts, nil
		}
	}
}

// skipStatement moves past the rest of the current statement.
func (p *parser) skipStatement() {
	for !p.endOfStatement() {
		p.pos++
	}
}
