package mssqlsim

import (
	"strings"
	"unicode"
	"unicode/utf16"
)

// tokKind classifies a T-SQL token.
type tokKind int

const (
	tEOF    tokKind = iota
	tIdent          // bare identifier or keyword
	tQuoted         // [bracketed] or "quoted" identifier
	tString         // 'literal' or N'literal'
	tNumber
	tVar   // @name or @@name
	tPunct // operators and punctuation
)

type token struct {
	kind tokKind
	text string // identifier name, string value, number text, punctuation
	pos  int    // byte offset in the batch
	line int
}

// is reports whether t is the bare keyword kw (case-insensitive).
func (t token) is(kw string) bool { return t.kind == tIdent && strings.EqualFold(t.text, kw) }

// isPunct reports whether t is the punctuation p.
func (t token) isPunct(p string) bool { return t.kind == tPunct && t.text == p }

// near is what SQL Server quotes in "Incorrect syntax near '...'".
func (t token) near() string {
	switch t.kind {
	case tEOF:
		return ""
	case tString:
		return t.text
	default:
		return t.text
	}
}

// lex splits a batch into tokens. Comments are dropped. It returns a syntax
// error for an unterminated literal or identifier.
func lex(src string) ([]token, *sqlError) {
	var toks []token
	line := 1
	i := 0
	rs := []rune(src)
	// work on runes but keep byte-ish positions as rune offsets
	for i < len(rs) {
		c := rs[i]
		switch {
		case c == '\n':
			line++
			i++
		case unicode.IsSpace(c):
			i++
		case c == '-' && i+1 < len(rs) && rs[i+1] == '-':
			for i < len(rs) && rs[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(rs) && rs[i+1] == '*':
			depth := 0
			for i < len(rs) {
				if rs[i] == '/' && i+1 < len(rs) && rs[i+1] == '*' {
					depth++
					i += 2
					continue
				}
				if rs[i] == '*' && i+1 < len(rs) && rs[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
					continue
				}
				if rs[i] == '\n' {
					line++
				}
				i++
			}
			if depth != 0 {
				return nil, errSyntaxEOF(line, "Missing end comment mark '*/'.")
			}
		case c == '[':
			start := i
			var b strings.Builder
			i++
			for {
				if i >= len(rs) {
					return nil, errUnclosedQuote(line, string(rs[start:]))
				}
				if rs[i] == ']' {
					if i+1 < len(rs) && rs[i+1] == ']' {
						b.WriteRune(']')
						i += 2
						continue
					}
					i++
					break
				}
				if rs[i] == '\n' {
					line++
				}
				b.WriteRune(rs[i])
				i++
			}
			toks = append(toks, token{kind: tQuoted, text: b.String(), pos: start, line: line})
		case c == '"':
			start := i
			var b strings.Builder
			i++
			for {
				if i >= len(rs) {
					return nil, errUnclosedQuote(line, string(rs[start:]))
				}
				if rs[i] == '"' {
					if i+1 < len(rs) && rs[i+1] == '"' {
						b.WriteRune('"')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteRune(rs[i])
				i++
			}
			toks = append(toks, token{kind: tQuoted, text: b.String(), pos: start, line: line})
		case c == '\'' || ((c == 'N' || c == 'n') && i+1 < len(rs) && rs[i+1] == '\''):
			start := i
			if c != '\'' {
				i++
			}
			i++
			var b strings.Builder
			for {
				if i >= len(rs) {
					return nil, errUnclosedQuote(line, string(rs[start:]))
				}
				if rs[i] == '\'' {
					if i+1 < len(rs) && rs[i+1] == '\'' {
						b.WriteRune('\'')
						i += 2
						continue
					}
					i++
					break
				}
				if rs[i] == '\n' {
					line++
				}
				b.WriteRune(rs[i])
				i++
			}
			toks = append(toks, token{kind: tString, text: b.String(), pos: start, line: line})
		case c >= '0' && c <= '9' || (c == '.' && i+1 < len(rs) && rs[i+1] >= '0' && rs[i+1] <= '9'):
			start := i
			for i < len(rs) && (rs[i] >= '0' && rs[i] <= '9' || rs[i] == '.') {
				i++
			}
			toks = append(toks, token{kind: tNumber, text: string(rs[start:i]), pos: start, line: line})
		case c == '@':
			start := i
			i++
			if i < len(rs) && rs[i] == '@' {
				i++
			}
			for i < len(rs) && isIdentRune(rs[i]) {
				i++
			}
			toks = append(toks, token{kind: tVar, text: string(rs[start:i]), pos: start, line: line})
		case isIdentStart(c):
			start := i
			for i < len(rs) && isIdentRune(rs[i]) {
				i++
			}
			toks = append(toks, token{kind: tIdent, text: string(rs[start:i]), pos: start, line: line})
		default:
			start := i
			two := ""
			if i+1 < len(rs) {
				two = string(rs[i : i+2])
			}
			switch two {
			case "<>", "!=", "<=", ">=", "::":
				toks = append(toks, token{kind: tPunct, text: two, pos: start, line: line})
				i += 2
				continue
			}
			if strings.ContainsRune("(),;.=<>*+-/%", c) {
				toks = append(toks, token{kind: tPunct, text: string(c), pos: start, line: line})
				i++
				continue
			}
			return nil, errSyntax(line, string(c))
		}
	}
	toks = append(toks, token{kind: tEOF, pos: len(rs), line: line})
	for _, t := range toks {
		// an identifier is a sysname: at most 128 UTF-16 code units, quoted
		// or not (SQL Server checks this while parsing)
		if (t.kind == tIdent || t.kind == tQuoted) && len(utf16.Encode([]rune(t.text))) > 128 {
			e := newErr(103, 15, "The identifier that starts with '%s' is too long. Maximum length is 128.", truncRunes(t.text, 128))
			e.Line = int32(t.line)
			return nil, e
		}
	}
	return toks, nil
}

func isIdentStart(r rune) bool { return r == '_' || r == '#' || unicode.IsLetter(r) }

func isIdentRune(r rune) bool {
	return r == '_' || r == '#' || r == '$' || unicode.IsLetter(r) || unicode.IsDigit(r)
}
