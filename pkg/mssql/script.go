package mssql

import (
	"fmt"
	"strings"
	"time"
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
// paths are quoted, so any database name or path is safe in it.
func (s Script) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "-- Restore %s from %d backup file(s), in this order.\n", QuoteName(s.Database), len(s.Files))
	if !s.StopAt.IsZero() {
		fmt.Fprintf(&b, "-- STOPAT is in the local time of the server that took the backups (UTC%+03d:%02d), as SQL Server reads it.\n",
			int(s.UTCOffset.Hours()), int(s.UTCOffset.Abs().Minutes())%60)
	}
	if len(s.Moves) == 0 && len(s.LogicalNames) > 0 {
		b.WriteString("-- The files go where the backup had them; to place them elsewhere add, to the first RESTORE:\n")
		for _, n := range s.LogicalNames {
			fmt.Fprintf(&b, "--   MOVE %s TO N'<path>'\n", Literal(n))
		}
	}
	for i, f := range s.Files {
		last := i == len(s.Files)-1
		if f.Note != "" {
			fmt.Fprintf(&b, "-- %d. %s\n", i+1, strings.ReplaceAll(f.Note, "\n", " "))
		}
		verb := "DATABASE"
		if f.Log {
			verb = "LOG"
		}
		fmt.Fprintf(&b, "RESTORE %s %s FROM ", verb, QuoteName(s.Database))
		for k, p := range StripeFileNames(f.Path, f.Stripes) {
			if k > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "DISK = %s", Literal(p))
		}
		b.WriteString(" WITH FILE = 1")
		if i == 0 {
			for _, m := range s.Moves {
				fmt.Fprintf(&b, ", MOVE %s TO %s", Literal(m.Logical), Literal(m.Physical))
			}
			if s.Replace {
				b.WriteString(", REPLACE")
			}
		}
		if last && !s.StopAt.IsZero() {
			fmt.Fprintf(&b, ", STOPAT = '%s'", s.StopAt.UTC().Format("2006-01-02T15:04:05.000"))
		}
		if last && s.StopAtMark != "" {
			fmt.Fprintf(&b, ", STOPATMARK = %s%s", Literal(s.StopAtMark), markAfter(s.MarkAfter))
		}
		if last && s.StopBeforeMark != "" {
			fmt.Fprintf(&b, ", STOPBEFOREMARK = %s%s", Literal(s.StopBeforeMark), markAfter(s.MarkAfter))
		}
		if last && !s.NoRecovery {
			b.WriteString(", RECOVERY;\nGO\n")
		} else {
			b.WriteString(", NORECOVERY;\nGO\n")
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
