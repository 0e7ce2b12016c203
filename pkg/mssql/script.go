package mssql

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ScriptFile is one backup file a restore script applies.
type ScriptFile struct {
	Path string
	// Stripes, when two or more, is how many files the backup was striped
	// over: StripeFileName(Path, k, Stripes) names each.
	Stripes int
	Log     bool
	// Note is written as a comment above the statement (what the backup is).
	Note string
}

// Script describes a restore as T-SQL a database administrator runs
// (sqlcmd or SSMS): the files in order, each WITH NORECOVERY but the last.
type Script struct {
	Database string
	Files    []ScriptFile
	// Moves relocate the files on the first RESTORE; LogicalNames, when
	// there are no moves, are listed in a comment so that MOVE clauses can
	// be added for the target server.
	Moves        []Move
	LogicalNames []string
	// StopAt, when not zero, stops the last log there: a wall-clock time
	// of the server whose log it is (SQL Server reads STOPAT in its local
	// time), which UTCOffset says; StopAtMark and StopBeforeMark stop it
	// at a marked transaction.
	StopAt                     time.Time
	UTCOffset                  time.Duration
	StopAtMark, StopBeforeMark string
	// MarkAfter, with a mark, is the mark's moment in the server's local
	// time: STOPATMARK ... AFTER it.
	MarkAfter time.Time
	// NoRecovery leaves the database RESTORING after the last file.
	NoRecovery bool
	// Replace overwrites an existing database of the name.
	Replace bool
}

// String writes the script: statements separated by GO lines. Names and
// paths are quoted, so any database name or path is safe in it. No name
// or path is written with a line break or another control character in
// it: sqlcmd and SSMS split a script into lines before they read any
// T-SQL, so a line of a name that reads GO, or !! or :r (sqlcmd's
// commands), would run as such. A value that holds one is declared at the
// top of its batch as a variable built with NCHAR (DECLARE @db sysname =
// N'a' + NCHAR(10) + N'b'), which RESTORE takes in place of the name, the
// device and MOVE's names; in comments it is shown escaped. A mark name is
// written as a literal, the only form RESTORE documents for it: give none
// that holds a control character (see [SafeInScript]).
func (s Script) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "-- Restore %s from %d backup file(s), in this order.\n", comment(QuoteName(s.Database)), len(s.Files))
	if !s.StopAt.IsZero() {
		fmt.Fprintf(&b, "-- STOPAT is in the local time of the server that took the backups (UTC%+03d:%02d), as SQL Server reads it.\n",
			int(s.UTCOffset.Hours()), int(s.UTCOffset.Abs().Minutes())%60)
	}
	if len(s.Moves) == 0 && len(s.LogicalNames) > 0 {
		b.WriteString("-- The files go where the backup had them; to place them elsewhere add, to the first RESTORE:\n")
		for _, n := range s.LogicalNames {
			if SafeInScript(n) {
				fmt.Fprintf(&b, "--   MOVE %s TO N'<path>'\n", Literal(n))
			} else {
				fmt.Fprintf(&b, "--   MOVE @logical TO N'<path>', with DECLARE @logical sysname = %s;\n", expression(n))
			}
		}
	}
	for i, f := range s.Files {
		last := i == len(s.Files)-1
		if f.Note != "" {
			fmt.Fprintf(&b, "-- %d. %s\n", i+1, comment(strings.ReplaceAll(f.Note, "\n", " ")))
		}
		var st statement
		verb := "DATABASE"
		if f.Log {
			verb = "LOG"
		}
		fmt.Fprintf(&st.body, "RESTORE %s %s FROM ", verb, st.name(s.Database))
		for k, p := range StripeFileNames(f.Path, f.Stripes) {
			if k > 0 {
				st.body.WriteString(", ")
			}
			fmt.Fprintf(&st.body, "DISK = %s", st.literal(p, "nvarchar(4000)"))
		}
		st.body.WriteString(" WITH FILE = 1")
		if i == 0 {
			for _, m := range s.Moves {
				fmt.Fprintf(&st.body, ", MOVE %s TO %s", st.literal(m.Logical, "sysname"), st.literal(m.Physical, "nvarchar(4000)"))
			}
			if s.Replace {
				st.body.WriteString(", REPLACE")
			}
		}
		if last && !s.StopAt.IsZero() {
			fmt.Fprintf(&st.body, ", STOPAT = '%s'", s.StopAt.UTC().Format("2006-01-02T15:04:05.000"))
		}
		if last && s.StopAtMark != "" {
			fmt.Fprintf(&st.body, ", STOPATMARK = %s%s", Literal(s.StopAtMark), markAfter(s.MarkAfter))
		}
		if last && s.StopBeforeMark != "" {
			fmt.Fprintf(&st.body, ", STOPBEFOREMARK = %s%s", Literal(s.StopBeforeMark), markAfter(s.MarkAfter))
		}
		if last && !s.NoRecovery {
			st.body.WriteString(", RECOVERY;\nGO\n")
		} else {
			st.body.WriteString(", NORECOVERY;\nGO\n")
		}
		b.WriteString(st.decl.String())
		b.WriteString(st.body.String())
	}
	return b.String()
}

// statement is one batch of a script: its DECLAREs, then its statement.
type statement struct {
	decl, body strings.Builder
	vars       int
}

// name writes a database name as RESTORE takes it: quoted, or a variable.
func (st *statement) name(s string) string {
	if SafeInScript(s) {
		return QuoteName(s)
	}
	return st.declare(s, "sysname")
}

// literal writes a string as RESTORE takes it: a literal, or a variable
// of type typ.
func (st *statement) literal(s, typ string) string {
	if SafeInScript(s) {
		return Literal(s)
	}
	return st.declare(s, typ)
}

func (st *statement) declare(s, typ string) string {
	st.vars++
	v := fmt.Sprintf("@v%d", st.vars)
	fmt.Fprintf(&st.decl, "DECLARE %s %s = %s;\n", v, typ, expression(s))
	return v
}

// SafeInScript reports whether s can be written in a script as it is,
// quoted: it holds no character that ends a line or that a terminal
// would act on (control characters but tab, and Unicode's line and
// paragraph separators).
func SafeInScript(s string) bool { return strings.IndexFunc(s, breaksScript) < 0 }

func breaksScript(r rune) bool {
	return r != '\t' && unicode.IsControl(r) || r == '\u2028' || r == '\u2029'
}

// expression writes s as a T-SQL expression with no character that
// breaksScript: literals joined with NCHAR(code) for each such character.
func expression(s string) string {
	var parts []string
	rest := s
	for rest != "" {
		k := strings.IndexFunc(rest, breaksScript)
		if k < 0 {
			parts = append(parts, Literal(rest))
			break
		}
		if k > 0 {
			parts = append(parts, Literal(rest[:k]))
		}
		r, size := utf8.DecodeRuneInString(rest[k:])
		parts = append(parts, fmt.Sprintf("NCHAR(%d)", r))
		rest = rest[k+size:]
	}
	if len(parts) == 0 {
		return "N''"
	}
	return strings.Join(parts, " + ")
}

// comment makes s safe in a -- comment: every character that breaksScript
// is written as an escape (\n, \r, \u0085).
func comment(s string) string {
	if SafeInScript(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case breaksScript(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Literal quotes s as a T-SQL Unicode string literal.
func Literal(s string) string { return "N'" + strings.ReplaceAll(s, "'", "''") + "'" }

// StripeFileNames names the files of a backup striped over n files that
// is written as file name: name itself when n is 0 or 1, otherwise name
// with "-stripe01-of-03" (and so on) before its extension.
func StripeFileNames(name string, n int) []string {
	if n <= 1 {
		return []string{name}
	}
	ext := ""
	if i := strings.LastIndexByte(name, '.'); i > strings.LastIndexAny(name, `/\`) {
		name, ext = name[:i], name[i:]
	}
	out := make([]string, n)
	for k := range out {
		out[k] = fmt.Sprintf("%s-stripe%02d-of-%02d%s", name, k+1, n, ext)
	}
	return out
}
