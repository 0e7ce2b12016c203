package mssqlsim

import (
	"errors"
	"fmt"
)

// Error is a SQL Server error as the simulator raises it: the number,
// severity and message SQL Server would send. A BACKUP or RESTORE failure
// carries the real cause first and then 3013, as SQL Server sends both.
type Error struct {
	Number   int32
	Severity uint8
	State    uint8
	Message  string
	Line     int32
	// Then holds errors SQL Server sends after this one for the same
	// statement, such as 3013 after the cause of a failed BACKUP.
	Then []*Error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("mssql: error %d: %s", e.Number, e.Message)
	for _, t := range e.Then {
		s += fmt.Sprintf("; error %d: %s", t.Number, t.Message)
	}
	return s
}

// Is matches another *Error with the same number, so callers can write
// errors.Is(err, &mssqlsim.Error{Number: 4305}).
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	if e.Number == t.Number {
		return true
	}
	for _, n := range e.Then {
		if n.Number == t.Number {
			return true
		}
	}
	return false
}

// sqlError is the internal name; kept short for the many constructors.
type sqlError = Error

func newErr(number int32, severity uint8, format string, args ...any) *Error {
	return &Error{Number: number, Severity: severity, State: 1, Message: fmt.Sprintf(format, args...)}
}

// abnormal appends the 3013 "terminating abnormally" that follows the cause
// of a failed BACKUP or RESTORE.
func abnormal(cause *Error, verb string) *Error {
	if cause.Number == 3013 {
		return cause
	}
	for _, t := range cause.Then {
		if t.Number == 3013 {
			return cause
		}
	}
	cause.Then = append(cause.Then, newErr(3013, 16, "%s is terminating abnormally.", verb))
	return cause
}

func errSyntax(line int, near string) *Error {
	e := newErr(102, 15, "Incorrect syntax near '%s'.", near)
	e.Line = int32(line)
	return e
}

func errSyntaxEOF(line int, msg string) *Error {
	e := newErr(102, 15, "%s", msg)
	e.Line = int32(line)
	return e
}

func errUnclosedQuote(line int, after string) *Error {
	if len(after) > 40 {
		after = after[:40]
	}
	e := newErr(105, 15, "Unclosed quotation mark after the character string '%s'.", after)
	e.Line = int32(line)
	return e
}

func errInvalidObject(name string) *Error {
	return newErr(208, 16, "Invalid object name '%s'.", name)
}

func errInvalidColumn(name string) *Error {
	return newErr(207, 16, "Invalid column name '%s'.", name)
}

func errNoDatabase(name string) *Error {
	return newErr(911, 16, "Database '%s' does not exist. Make sure that the name is entered correctly.", name)
}

func errNotSupported(what string) *Error {
	return newErr(40517, 16, "Keyword or statement option '%s' is not supported by the SQL Server simulator.", what)
}
