package mssqlsim

import (
	"strings"
	"time"
)

// parseTargets reads DISK = 'x' | URL = 'x' [, ...].
func (p *parser) parseTargets() ([]target, *Error) {
	var ts []target
	for {
		kind, e := p.ident()
		if e != nil {
			return nil, e
		}
		var t target
		switch strings.ToUpper(kind) {
		case "DISK":
		case "URL":
			t.url = true
		case "TAPE":
			return nil, errNotSupported("TAPE")
		default:
			p.pos--
			return nil, p.syntaxErr()
		}
		if e := p.expectPunct("="); e != nil {
			return nil, e
		}
		if t.spec, e = p.stringValue(); e != nil {
			return nil, e
		}
		ts = append(ts, t)
		if !p.acceptPunct(",") {
			return ts, nil
		}
	}
}

// parseBackup: BACKUP DATABASE|LOG name TO targets [WITH options].
func (p *parser) parseBackup() (stmt, *Error) {
	st := &backupStmt{}
	switch {
	case p.accept("DATABASE"):
	case p.accept("LOG"):
		st.log = true
	default:
		return nil, p.syntaxErr()
	}
	var e *Error
	if st.database, e = p.name(); e != nil {
		return nil, e
	}
	if e := p.expect("TO"); e != nil {
		return nil, e
	}
	if st.targets, e = p.parseTargets(); e != nil {
		return nil, e
	}
	if p.accept("MIRROR") {
		return nil, errNotSupported("MIRROR TO")
	}
	if p.accept("WITH") {
		for {
			opt, e := p.ident()
			if e != nil {
				return nil, e
			}
			switch strings.ToUpper(opt) {
			case "DIFFERENTIAL":
				st.differential = true
			case "COPY_ONLY":
				st.copyOnly = true
			case "COMPRESSION":
				on := true
				if p.acceptPunct("(") { // COMPRESSION (ALGORITHM = ...)
					for !p.peek().isPunct(")") && p.peek().kind != tEOF {
						p.pos++
					}
					p.acceptPunct(")")
				}
				st.compression = &on
			case "NO_COMPRESSION":
				off := false
				st.compression = &off
			case "CHECKSUM":
				st.checksum = true
			case "NO_CHECKSUM":
				st.checksum = false
			case "FORMAT":
				st.format, st.init = true, true
			case "NOFORMAT":
			case "INIT":
				st.init = true
			case "NOINIT":
				st.init = false
			case "SKIP", "NOSKIP", "REWIND", "NOREWIND", "UNLOAD", "NOUNLOAD", "STOP_ON_ERROR", "CONTINUE_AFTER_ERROR", "NO_TRUNCATE":
			case "NORECOVERY":
				st.noRecovery = true
			case "STANDBY", "ENCRYPTION":
				return nil, errNotSupported(strings.ToUpper(opt))
			case "STATS":
				st.stats = 10
				if p.acceptPunct("=") {
					n, e := p.intValue()
					if e != nil {
						return nil, e
					}
					st.stats = int(n)
				}
			case "MAXTRANSFERSIZE", "BLOCKSIZE", "BUFFERCOUNT":
				if e := p.expectPunct("="); e != nil {
					return nil, e
				}
				n, e := p.intValue()
				if e != nil {
					return nil, e
				}
				// checked when the backup runs (checkTransfer), as SQL
				// Server's 3250 is followed by 3013
				switch strings.ToUpper(opt) {
				case "MAXTRANSFERSIZE":
					st.maxTransfer = int(max(min(n, 1<<31-1), -1))
				case "BUFFERCOUNT":
					st.bufferCount, st.bufferCountSet = int(max(min(n, 1<<31-1), -1)), true
				}
			case "CREDENTIAL":
				if p.acceptPunct("=") {
					if p.peek().kind == tString || p.peek().kind == tVar {
						if st.credential, e = p.stringValue(); e != nil {
							return nil, e
						}
					} else if st.credential, e = p.ident(); e != nil {
						return nil, e
					}
				}
			case "NAME", "DESCRIPTION", "MEDIANAME", "MEDIADESCRIPTION", "MEDIAPASSWORD", "PASSWORD", "EXPIREDATE", "RETAINDAYS":
				if e := p.expectPunct("="); e != nil {
					return nil, e
				}
				v := ""
				if p.peek().kind == tNumber {
					v = p.next().text
				} else if v, e = p.stringValue(); e != nil {
					return nil, e
				}
				switch strings.ToUpper(opt) {
				case "NAME":
					st.name = v
				case "DESCRIPTION":
					st.description = v
				}
			default:
				p.pos--
				return nil, p.syntaxErr()
			}
			if !p.acceptPunct(",") {
				break
			}
		}
	}
	if st.noRecovery && !st.log {
		return nil, newErr(3032, 16, "One or more of the options (norecovery) are not supported for this statement. Review the documentation for supported options.")
	}
	return func(x *execCtx) *Error {
		if st.noRecovery {
			// the tail-log backup leaves the database RESTORING: nobody
			// may be using it
			if e := x.inst.exclusive(x.sess, st.database, "BACKUP LOG", errInUse); e != nil {
				return abnormal(e, st.verb())
			}
		}
		if e := x.inst.backup(x.ctx, x.sess.user, st, x); e != nil {
			return e
		}
		return x.doneNoCount()
	}, nil
}

// parseRestore: RESTORE DATABASE|LOG name [FROM sources] [WITH options],
// and RESTORE HEADERONLY|FILELISTONLY|VERIFYONLY|LABELONLY FROM sources.
func (p *parser) parseRestore() (stmt, *Error) {
	st := &restoreStmt{}
	kind, e := p.ident()
	if e != nil {
		return nil, e
	}
	st.kind = strings.ToUpper(kind)
	switch st.kind {
	case "DATABASE", "LOG":
		if st.database, e = p.name(); e != nil {
			return nil, e
		}
		if p.accept("FILE") || p.accept("FILEGROUP") || p.accept("PAGE") {
			return nil, errNotSupported("piecemeal and page restore")
		}
	case "HEADERONLY", "FILELISTONLY", "VERIFYONLY", "LABELONLY":
	case "REWINDONLY":
		return nil, errNotSupported("REWINDONLY")
	default:
		p.pos--
		return nil, p.syntaxErr()
	}
	if p.accept("FROM") {
		if st.sources, e = p.parseTargets(); e != nil {
			return nil, e
		}
	} else if st.kind != "DATABASE" {
		return nil, p.syntaxErr()
	}
	recovery := false
	if p.accept("WITH") {
		for {
			opt, e := p.ident()
			if e != nil {
				return nil, e
			}
			switch strings.ToUpper(opt) {
			case "FILE":
				if e := p.expectPunct("="); e != nil {
					return nil, e
				}
				n, e := p.intValue()
				if e != nil {
					return nil, e
				}
				st.file = int(n)
			case "NORECOVERY":
				st.noRecovery = true
			case "RECOVERY":
				recovery = true
			case "STANDBY":
				return nil, errNotSupported("STANDBY")
			case "REPLACE":
				st.replace = true
			case "MOVE":
				from, e := p.stringValue()
				if e != nil {
					return nil, e
				}
				if e := p.expect("TO"); e != nil {
					return nil, e
				}
				to, e := p.stringValue()
				if e != nil {
					return nil, e
				}
				st.moves = append(st.moves, [2]string{from, to})
			case "STOPAT":
				if e := p.expectPunct("="); e != nil {
					return nil, e
				}
				if e := p.stopAtVariableType(); e != nil {
					return nil, e
				}
				t, e := p.timeValue()
				if e != nil {
					return nil, e
				}
				st.stopAt = t
			case "STOPATMARK", "STOPBEFOREMARK":
				if e := p.expectPunct("="); e != nil {
					return nil, e
				}
				m, e := p.stringValue()
				if e != nil {
					return nil, e
				}
				if strings.HasPrefix(strings.ToLower(m), "lsn:") {
					return nil, errNotSupported("STOPATMARK = 'lsn:...'")
				}
				if strings.EqualFold(opt, "STOPATMARK") {
					st.stopAtMark = m
				} else {
					st.stopBeforeMark = m
				}
				if p.accept("AFTER") {
					t, e := p.timeValue()
					if e != nil {
						return nil, e
					}
					st.markAfter = t
				}
			case "CHECKSUM":
				st.checksum = true
			case "NO_CHECKSUM":
				st.noChecksum = true
			case "STATS":
				st.stats = 10
				if p.acceptPunct("=") {
					n, e := p.intValue()
					if e != nil {
						return nil, e
					}
					st.stats = int(n)
				}
			case "CREDENTIAL":
				if p.acceptPunct("=") {
					if st.credential, e = p.stringValue(); e != nil {
						return nil, e
					}
				}
			case "NOUNLOAD", "UNLOAD", "REWIND", "NOREWIND", "KEEP_REPLICATION", "KEEP_CDC", "CONTINUE_AFTER_ERROR",
				"STOP_ON_ERROR", "ENABLE_BROKER", "NEW_BROKER", "ERROR_BROKER_CONVERSATIONS", "RESTRICTED_USER", "PARTIAL", "LOADHISTORY":
			case "MAXTRANSFERSIZE", "BLOCKSIZE", "BUFFERCOUNT":
				if e := p.expectPunct("="); e != nil {
					return nil, e
				}
				if _, e := p.intValue(); e != nil {
					return nil, e
				}
			default:
				p.pos--
				return nil, p.syntaxErr()
			}
			if !p.acceptPunct(",") {
				break
			}
		}
	}
	if recovery && st.noRecovery {
		return nil, newErr(3032, 16, "One or more of the options (recovery, norecovery) are not supported for this statement. Review the documentation for supported options.")
	}
	if st.kind == "DATABASE" && len(st.sources) == 0 {
		if !recovery {
			return nil, p.syntaxErr()
		}
		st.recoveryOnly = true
	}
	if len(st.sources) > 64 {
		return nil, newErr(3205, 16, "Too many backup devices specified for backup or restore; only 64 are allowed.")
	}
	return func(x *execCtx) *Error {
		var e *Error
		switch st.kind {
		case "HEADERONLY":
			e = x.headerOnly(st)
		case "FILELISTONLY":
			e = x.fileListOnly(st)
		case "LABELONLY":
			e = x.labelOnly(st)
		case "VERIFYONLY":
			e = x.verifyOnly(st)
		default:
			if st.kind == "DATABASE" && !st.recoveryOnly {
				// a restore over a database needs it to itself
				e = x.inst.exclusive(x.sess, st.database, "RESTORE", errInUse)
				if e != nil {
					e = abnormal(e, st.verb())
				}
			}
			if e == nil {
				e = x.inst.restore(x.ctx, x.sess.user, st, x)
			}
		}
		if e != nil {
			return e
		}
		return x.doneNoCount()
	}, nil
}

// timeValue reads a datetime literal or variable.
// unicodeParamsKey holds, in a batch's parameters, the set of parameters
// that came as nchar or nvarchar. No variable can have the name: a name
// starting with @@ is a system function.
const unicodeParamsKey = "@@unicode"

// stopAtVariableType refuses a STOPAT variable of a type RESTORE does not
// take: SQL Server documents @datetime_var as varchar, char, smalldatetime
// or datetime only. The error number is our choice (see
// docs/mssqlsim.md): the documentation names none.
func (p *parser) stopAtVariableType() *Error {
	t := p.peek()
	if t.kind != tVar || strings.HasPrefix(t.text, "@@") {
		return nil
	}
	unicode, _ := p.params[unicodeParamsKey].(map[string]bool)
	if unicode[strings.ToLower(t.text)] {
		return newErr(206, 16, "Operand type clash: nvarchar is incompatible with datetime")
	}
	return nil
}

// timeValue reads a datetime literal or variable. A datetime has no zone:
// a variable's zone, if any, is dropped and its wall clock kept, as SQL
// Server converts a datetimeoffset to datetime.
func (p *parser) timeValue() (time.Time, *Error) {
	t := p.peek()
	if t.kind == tVar {
		p.next()
		v, e := p.variable(t)
		if e != nil {
			return time.Time{}, e
		}
		switch x := v.(type) {
		case time.Time:
			return wallClock(x), nil
		case string:
			tm, err := parseDateTime(x)
			if err != nil {
				return time.Time{}, newErr(241, 16, "Conversion failed when converting date and/or time from character string.")
			}
			return wallClock(tm), nil
		}
		return time.Time{}, newErr(241, 16, "Conversion failed when converting date and/or time from character string.")
	}
	s, e := p.stringValue()
	if e != nil {
		return time.Time{}, e
	}
	tm, err := parseDateTime(s)
	if err != nil {
		return time.Time{}, newErr(241, 16, "Conversion failed when converting date and/or time from character string.")
	}
	return wallClock(tm), nil
}
