package mssqlsim

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// output receives a statement's results; session.go writes them as TDS.
type output interface {
	columns(cols []column) error
	row(vals []any) error
	done(count int64) error
	message(e *Error) error
	flush() error
	abort()
}

// session is one connection's state.
type session struct {
	user     string
	database string
	spid     int
	markName string // BEGIN TRAN ... WITH MARK pending until COMMIT
	inTran   bool
	language string  // @@LANGUAGE: the language of translated messages
	tx       *openTx // BEGIN TRAN in a user database, until COMMIT
}

// execCtx runs the statements of one batch.
type execCtx struct {
	ctx  context.Context
	inst *Instance
	sess *session
	out  output
}

func (x *execCtx) info(number int32, format string, args ...any) {
	format = localize(x.sess.language, number, format)
	_ = x.out.message(&Error{Number: number, Severity: 10, State: 1, Message: fmt.Sprintf(format, args...)})
	_ = x.out.flush()
}

func (x *execCtx) abort() { x.out.abort() }

// stmt is one compiled statement.
type stmt func(x *execCtx) *Error

// Exec runs a batch as the given login in database db and returns its
// result sets, for Go callers and tests that do not need TDS.
func (i *Instance) compile(sql string, params map[string]any) ([]stmt, *Error) {
	toks, e := lex(sql)
	if e != nil {
		return nil, e
	}
	p := &parser{toks: toks, params: params}
	var out []stmt
	for {
		for p.acceptPunct(";") {
		}
		if p.peek().kind == tEOF {
			return out, nil
		}
		s, e := p.parseStatement()
		if e != nil {
			return nil, e
		}
		out = append(out, s)
		if !p.endOfStatement() && !startsStatement(p.peek()) {
			return nil, p.syntaxErr()
		}
	}
}

func startsStatement(t token) bool {
	for _, kw := range []string{"SELECT", "INSERT", "USE", "SET", "CREATE", "DROP", "ALTER", "BACKUP", "RESTORE", "EXEC",
		"EXECUTE", "BEGIN", "COMMIT", "ROLLBACK", "DBCC", "WAITFOR", "PRINT", "DECLARE"} {
		if t.is(kw) {
			return true
		}
	}
	return false
}

// runBatch compiles and runs a batch, sending every result to out.
func (i *Instance) runBatch(ctx context.Context, sess *session, sql string, params map[string]any, out output) {
	i.batches.Add(1)
	// a database AUTO_CLOSE shut down and the batch started is shut down
	// again once nothing uses it
	defer i.closeIdle()
	stmts, e := i.compile(sql, params)
	if e != nil {
		sendError(out, e)
		return
	}
	x := &execCtx{ctx: ctx, inst: i, sess: sess, out: out}
	for _, s := range stmts {
		if ctx.Err() != nil {
			return
		}
		if e := s(x); e != nil {
			sendError(out, e)
			if e.Severity >= 20 {
				return
			}
		}
	}
}

func sendError(out output, e *Error) {
	for _, m := range append([]*Error{e}, e.Then...) {
		c := *m
		c.Then = nil
		_ = out.message(&c)
	}
	_ = out.done(-1)
}

func (p *parser) parseStatement() (stmt, *Error) {
	t := p.next()
	switch {
	case t.is("SELECT"):
		s, e := p.parseSelect()
		if e != nil {
			return nil, e
		}
		return func(x *execCtx) *Error {
			cols, rows, e := s.run(x)
			if e != nil {
				return e
			}
			return x.sendRows(cols, rows)
		}, nil
	case t.is("USE"):
		name, e := p.ident()
		if e != nil {
			return nil, e
		}
		return func(x *execCtx) *Error {
			db, e := x.inst.lookup(name)
			if e != nil {
				return e
			}
			if db.state() != Online {
				return newErr(927, 14, "Database '%s' cannot be opened. It is in the middle of a restore.", db.Name)
			}
			if e := x.inst.enter(x.sess, db); e != nil {
				return e
			}
			x.info(5701, "Changed database context to '%s'.", db.Name)
			return x.doneNoCount()
		}, nil
	case t.is("SET"):
		return p.parseSet()
	case t.is("DECLARE"):
		return p.parseDeclare()
	case t.is("PRINT"):
		v, e := p.parseExpr()
		if e != nil {
			return nil, e
		}
		return func(x *execCtx) *Error {
			c := &evalCtx{x: x}
			val, e := c.eval(v)
			if e != nil {
				return e
			}
			s, _ := toStr(val)
			x.info(0, "%s", s)
			return nil
		}, nil
	case t.is("WAITFOR"):
		if e := p.expect("DELAY"); e != nil {
			return nil, e
		}
		s, e := p.stringValue()
		if e != nil {
			return nil, e
		}
		d, err := time.Parse("15:04:05", s)
		if err != nil {
			return nil, newErr(148, 15, "Incorrect time syntax in time string '%s' used with WAITFOR.", s)
		}
		dur := time.Duration(d.Hour())*time.Hour + time.Duration(d.Minute())*time.Minute + time.Duration(d.Second())*time.Second
		return func(x *execCtx) *Error {
			select {
			case <-x.ctx.Done():
			case <-time.After(dur):
			}
			return nil
		}, nil
	case t.is("CREATE"):
		switch {
		case p.accept("DATABASE"):
			return p.parseCreateDatabase()
		case p.accept("CREDENTIAL"):
			return p.parseCreateCredential()
		case p.accept("TABLE"):
			return p.parseCreateTable()
		}
	case t.is("INSERT"):
		return p.parseInsert()
	case t.is("DROP"):
		switch {
		case p.accept("TABLE"):
			return p.parseDropTable()
		case p.accept("DATABASE"):
			ifExists, e := p.ifExists()
			if e != nil {
				return nil, e
			}
			// DROP DATABASE takes identifiers only: SQL Server has no
			// DROP DATABASE @variable (dynamic SQL is the way)
			names, e := commaList(p, p.ident)
			if e != nil {
				return nil, e
			}
			return func(x *execCtx) *Error {
				if e := x.needSysadmin("DROP DATABASE", "master"); e != nil {
					return e
				}
				for _, n := range names {
					if db, _ := x.inst.lookup(n); db == nil || db.ID <= 4 {
						// missing or a system database: dropDatabase says why
					} else if e := x.inst.exclusive(x.sess, n, "DROP DATABASE", func() *Error {
						return newErr(3702, 16, "Cannot drop database \"%s\" because it is currently in use.", n)
					}); e != nil {
						if e.Number == 3102 {
							e = newErr(3702, 16, "Cannot drop database \"%s\" because it is currently in use.", n)
						}
						return e
					}
					x.inst.mu.Lock()
					e := x.inst.dropDatabase(n)
					x.inst.mu.Unlock()
					if e != nil && !(ifExists && e.Number == 3701) {
						return e
					}
				}
				return x.doneNoCount()
			}, nil
		case p.accept("CREDENTIAL"):
			n, e := p.ident()
			if e != nil {
				return nil, e
			}
			return func(x *execCtx) *Error {
				if e := x.needSysadmin("DROP CREDENTIAL", "master"); e != nil {
					return e
				}
				x.inst.mu.Lock()
				defer x.inst.mu.Unlock()
				for k, c := range x.inst.credentials {
					if strings.EqualFold(c.name, n) {
						x.inst.credentials = append(x.inst.credentials[:k], x.inst.credentials[k+1:]...)
						return nil
					}
				}
				return newErr(15151, 16, "Cannot drop the credential '%s', because it does not exist or you do not have permission.", n)
			}, nil
		}
	case t.is("ALTER"):
		if p.accept("DATABASE") {
			return p.parseAlterDatabase()
		}
	case t.is("BACKUP"):
		return p.parseBackup()
	case t.is("RESTORE"):
		return p.parseRestore()
	case t.is("EXEC") || t.is("EXECUTE"):
		return p.parseExec()
	case t.is("BEGIN"):
		if p.accept("TRAN") || p.accept("TRANSACTION") {
			name := ""
			if tk := p.peek(); tk.kind == tIdent && !tk.is("WITH") || tk.kind == tQuoted {
				name = p.next().text
			}
			mark := false
			if p.accept("WITH") {
				if e := p.expect("MARK"); e != nil {
					return nil, e
				}
				mark = true
				if p.peek().kind == tString {
					p.next()
				}
				if name == "" {
					return nil, newErr(3929, 16, "A transaction mark requires a transaction name.")
				}
			}
			return func(x *execCtx) *Error {
				x.sess.inTran = true
				if mark {
					x.sess.markName = name
				}
				if db, _ := x.inst.lookup(x.sess.database); db != nil && db.ID > 4 && x.sess.tx == nil {
					x.sess.tx = &openTx{data: db.dbData, id: db.beginTx()}
				}
				return nil
			}, nil
		}
	case t.is("COMMIT") || t.is("ROLLBACK"):
		commit := t.is("COMMIT")
		if p.accept("TRAN") || p.accept("TRANSACTION") || p.accept("WORK") {
			if tk := p.peek(); tk.kind == tIdent && !startsStatement(tk) || tk.kind == tQuoted {
				p.next()
			}
		}
		return func(x *execCtx) *Error {
			if !x.sess.inTran {
				return newErr(3902, 16, "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.")
			}
			mark := x.sess.markName
			x.sess.inTran, x.sess.markName = false, ""
			x.sess.endTx()
			if commit && mark != "" {
				if _, err := x.inst.Mark(x.sess.database, mark); err != nil {
					return asError(err)
				}
			}
			return nil
		}, nil
	case t.is("DBCC"):
		return p.parseDBCC()
	}
	p.pos--
	return nil, p.syntaxErr()
}

func asError(err error) *Error {
	if e, ok := err.(*Error); ok {
		return e
	}
	return newErr(50000, 16, "%v", err)
}

func (x *execCtx) doneNoCount() *Error {
	if err := x.out.done(-1); err != nil {
		return newErr(0, 20, "%v", err)
	}
	return nil
}

func (x *execCtx) needSysadmin(what, db string) *Error {
	if !x.inst.isSysadmin(x.sess.user) {
		return newErr(262, 14, "%s permission denied in database '%s'.", what, db)
	}
	return nil
}

// commaList reads one or more items separated by commas.
func commaList[T any](p *parser, item func() (T, *Error)) ([]T, *Error) {
	var out []T
	for {
		v, e := item()
		if e != nil {
			return nil, e
		}
		out = append(out, v)
		if !p.acceptPunct(",") {
			return out, nil
		}
	}
}

// ifExists reads DROP's optional IF EXISTS.
func (p *parser) ifExists() (bool, *Error) {
	if !p.accept("IF") {
		return false, nil
	}
	if e := p.expect("EXISTS"); e != nil {
		return false, e
	}
	return true, nil
}

// parseSet accepts the session options clients send and ignores them,
// but for SET LANGUAGE, which chooses the language of messages.
func (p *parser) parseSet() (stmt, *Error) {
	t := p.next()
	if t.kind != tIdent {
		p.pos--
		return nil, p.syntaxErr()
	}
	if t.is("LANGUAGE") {
		var lang string
		if tk := p.peek(); tk.kind == tString {
			lang = p.next().text
		} else {
			var e *Error
			if lang, e = p.ident(); e != nil {
				return nil, e
			}
		}
		name, ok := languageName(lang)
		return func(x *execCtx) *Error {
			if !ok {
				return newErr(2743, 16, "SET LANGUAGE failed because '%s' is not an official language name or a language alias on this SQL Server.", lang)
			}
			x.sess.language = name
			x.info(5703, "Changed language setting to %s.", name)
			return nil
		}, nil
	}
	p.skipStatementOrNextSet()
	return func(x *execCtx) *Error { return nil }, nil
}

// skipStatementOrNextSet skips a SET option's arguments, which run until
// the end of the statement or the next statement keyword.
func (p *parser) skipStatementOrNextSet() {
	for !p.endOfStatement() && !startsStatement(p.peek()) {
		p.pos++
	}
}

func (x *execCtx) sendRows(cols []column, rows [][]any) *Error {
	if err := x.out.columns(cols); err != nil {
		return newErr(0, 20, "%v", err)
	}
	for _, r := range rows {
		if err := x.out.row(r); err != nil {
			return newErr(0, 20, "%v", err)
		}
	}
	x.inst.rowsSent.Add(int64(len(rows)))
	if err := x.out.done(int64(len(rows))); err != nil {
		return newErr(0, 20, "%v", err)
	}
	return nil
}

func (x *execCtx) sysVar(name string) (any, *Error) {
	switch name {
	case "@@VERSION":
		p := x.inst.cfg.product()
		return fmt.Sprintf("%s - %s (X64) \n\tcoffer mssqlsim\n\t%s on Linux (simulated)", p.name, p.version, x.inst.cfg.Edition), nil
	case "@@SERVERNAME":
		return x.inst.cfg.ServerName, nil
	case "@@SPID":
		return int64(x.sess.spid), nil
	case "@@TRANCOUNT":
		return b2i(x.sess.inTran), nil
	case "@@LANGUAGE":
		return x.sess.language, nil
	}
	return nil, newErr(137, 15, "Must declare the scalar variable \"%s\".", name)
}

// call evaluates a scalar function.
func (x *execCtx) call(c *evalCtx, f funcExpr) (any, *Error) {
	args := make([]any, len(f.args))
	for k, a := range f.args {
		v, e := c.eval(a)
		if e != nil {
			return nil, e
		}
		args[k] = v
	}
	arg := func(k int) string {
		if k < len(args) {
			s, _ := toStr(args[k])
			return s
		}
		return ""
	}
	switch f.name {
	case "SERVERPROPERTY":
		switch strings.ToLower(arg(0)) {
		case "productversion":
			return x.inst.cfg.product().version, nil
		case "productmajorversion":
			return strconv.Itoa(x.inst.cfg.MajorVersion), nil
		case "productlevel":
			return "RTM", nil
		case "edition":
			return x.inst.cfg.Edition, nil
		case "engineedition":
			return int64(3), nil
		case "servername", "machinename":
			return x.inst.cfg.ServerName, nil
		case "instancename":
			return nil, nil
		case "collation":
			return x.inst.cfg.collation(), nil
		case "ishadrenabled":
			return int64(1), nil
		case "isclustered":
			return int64(0), nil
		case "instancedefaultdatapath":
			if x.inst.cfg.NoDefaultPaths {
				return nil, nil
			}
			return x.inst.cfg.DataPath, nil
		case "instancedefaultlogpath":
			if x.inst.cfg.NoDefaultPaths {
				return nil, nil
			}
			return x.inst.cfg.LogPath, nil
		case "instancedefaultbackuppath":
			return x.inst.cfg.BackupDir, nil
		}
		return nil, nil
	case "IS_SRVROLEMEMBER":
		if !strings.EqualFold(arg(0), "sysadmin") {
			return int64(0), nil
		}
		return b2i(x.inst.isSysadmin(x.sess.user)), nil
	case "SUSER_SNAME", "SUSER_NAME", "ORIGINAL_LOGIN":
		return x.sess.user, nil
	case "DB_NAME":
		if len(args) == 0 {
			return x.sess.database, nil
		}
		id, _ := toInt(args[0])
		x.inst.mu.Lock()
		defer x.inst.mu.Unlock()
		if db := x.inst.dbs[int(id)]; db != nil {
			return db.Name, nil
		}
		return nil, nil
	case "DB_ID":
		name := x.sess.database
		if len(args) > 0 {
			if args[0] == nil {
				return nil, nil
			}
			name = arg(0)
		}
		x.inst.mu.Lock()
		defer x.inst.mu.Unlock()
		if db := x.inst.dbByName(name); db != nil {
			return int64(db.ID), nil
		}
		return nil, nil
	case "SYS.FN_HADR_BACKUP_IS_PREFERRED_REPLICA", "MASTER.SYS.FN_HADR_BACKUP_IS_PREFERRED_REPLICA":
		x.inst.mu.Lock()
		db := x.inst.dbByName(arg(0))
		x.inst.mu.Unlock()
		if db == nil {
			return int64(0), nil
		}
		if db.ag == nil {
			return int64(1), nil
		}
		return b2i(db.ag.preferred(x.inst)), nil
	case "ISNULL", "COALESCE":
		for _, a := range args {
			if a != nil {
				return a, nil
			}
		}
		return nil, nil
	case "GETDATE", "SYSDATETIME":
		return x.inst.local(x.inst.cfg.Now()), nil
	case "GETUTCDATE", "SYSUTCDATETIME":
		return x.inst.cfg.Now().UTC(), nil
	case "LEN":
		return int64(len([]rune(strings.TrimRight(arg(0), " ")))), nil
	case "UPPER":
		return strings.ToUpper(arg(0)), nil
	case "LOWER":
		return strings.ToLower(arg(0)), nil
	case "CHECKSUM":
		return checksumCall(c, f, args), nil
	case "QUOTENAME":
		return "[" + strings.ReplaceAll(arg(0), "]", "]]") + "]", nil
	case "NCHAR", "CHAR":
		// the character of a code: 0 to 65535 for NCHAR (the collations
		// modelled have no _SC flag), 0 to 255 for CHAR; NULL outside
		if len(args) != 1 {
			return nil, newErr(174, 15, "The %s function requires 1 argument(s).", strings.ToLower(f.name))
		}
		n, ok := toInt(args[0])
		if limit := map[string]int64{"NCHAR": 0xFFFF, "CHAR": 0xFF}[f.name]; args[0] == nil || !ok || n < 0 || n > limit {
			return nil, nil
		}
		return string(rune(n)), nil
	case "COUNT", "MAX", "MIN", "SUM":
		return nil, newErr(8120, 16, "Aggregates are only supported over the whole result.")
	}
	return nil, newErr(195, 15, "'%s' is not a recognized built-in function name.", strings.ToLower(f.name))
}

// parseCreateDatabase: CREATE DATABASE name [ON (...)] [LOG ON (...)]
// [COLLATE x].
func (p *parser) parseCreateDatabase() (stmt, *Error) {
	// an identifier only: CREATE DATABASE @variable is a syntax error in
	// SQL Server, unlike BACKUP and RESTORE
	name, e := p.ident()
	if e != nil {
		return nil, e
	}
	var files []File
	pages := 0
	parseFiles := func(isLog bool) *Error {
		for {
			if e := p.expectPunct("("); e != nil {
				return e
			}
			f := File{IsLog: isLog, Pages: 1024}
			for !p.peek().isPunct(")") {
				opt, e := p.ident()
				if e != nil {
					return e
				}
				if e := p.expectPunct("="); e != nil {
					return e
				}
				switch strings.ToUpper(opt) {
				case "NAME":
					if p.peek().kind == tString {
						f.Logical = p.next().text
					} else if f.Logical, e = p.ident(); e != nil {
						return e
					}
				case "FILENAME":
					if f.Physical, e = p.stringValue(); e != nil {
						return e
					}
				case "SIZE", "MAXSIZE", "FILEGROWTH":
					t := p.next()
					if t.kind != tNumber && !t.is("UNLIMITED") {
						p.pos--
						return p.syntaxErr()
					}
					n, _ := strconv.Atoi(t.text)
					unit := 1024 * 1024
					if u := p.peek(); u.is("KB") {
						unit = 1024
						p.next()
					} else if u.is("MB") {
						p.next()
					} else if u.is("GB") {
						unit = 1024 * 1024 * 1024
						p.next()
					} else if u.is("TB") {
						return p.syntaxErr()
					} else if u.isPunct("%") {
						p.next()
					}
					if strings.EqualFold(opt, "SIZE") {
						f.Pages = max(1, n*unit/PageSize)
					}
				default:
					return p.syntaxErr()
				}
				if !p.acceptPunct(",") {
					break
				}
			}
			if e := p.expectPunct(")"); e != nil {
				return e
			}
			files = append(files, f)
			if !p.acceptPunct(",") {
				return nil
			}
		}
	}
	if p.accept("ON") {
		p.accept("PRIMARY")
		if e := parseFiles(false); e != nil {
			return nil, e
		}
	}
	if p.accept("LOG") {
		if e := p.expect("ON"); e != nil {
			return nil, e
		}
		if e := parseFiles(true); e != nil {
			return nil, e
		}
	}
	if p.accept("COLLATE") {
		if _, e := p.ident(); e != nil {
			return nil, e
		}
	}
	if p.accept("WITH") {
		return nil, errNotSupported("CREATE DATABASE ... WITH")
	}
	return func(x *execCtx) *Error {
		if e := x.needSysadmin("CREATE DATABASE", "master"); e != nil {
			return e
		}
		var fs []File
		if len(files) > 0 {
			id := 1
			haveLog := false
			for _, f := range files {
				if f.IsLog {
					haveLog = true
				}
			}
			for _, f := range files {
				if f.IsLog {
					continue
				}
				f.ID = id
				id++
				if f.Logical == "" {
					f.Logical = name
				}
				if f.Physical == "" {
					f.Physical = strings.TrimRight(x.inst.cfg.DataPath, "/") + "/" + fileSafe(f.Logical) + ".mdf"
				}
				fs = append(fs, f)
			}
			if len(fs) == 0 {
				return newErr(1802, 16, "CREATE DATABASE failed. A data file is required.")
			}
			if !haveLog {
				files = append(files, File{IsLog: true, Pages: 1024})
			}
			for _, f := range files {
				if !f.IsLog {
					continue
				}
				f.ID = id
				id++
				if f.Logical == "" {
					if e := checkDerivedLogName(name); e != nil {
						return e
					}
					f.Logical = name + "_log"
				}
				if f.Physical == "" {
					f.Physical = strings.TrimRight(x.inst.cfg.LogPath, "/") + "/" + fileSafe(f.Logical) + ".ldf"
				}
				fs = append(fs, f)
			}
			pages = dataPages(fs)
		}
		x.inst.mu.Lock()
		_, e := x.inst.createDatabase(name, pages, fs, "")
		x.inst.mu.Unlock()
		if e != nil {
			return e
		}
		return x.doneNoCount()
	}, nil
}

// parseCreateCredential: CREATE CREDENTIAL [name] WITH IDENTITY = '...',
// SECRET = '...'.
func (p *parser) parseCreateCredential() (stmt, *Error) {
	name, e := p.ident()
	if e != nil {
		return nil, e
	}
	if e := p.expect("WITH"); e != nil {
		return nil, e
	}
	var identity, secret string
	for {
		opt, e := p.ident()
		if e != nil {
			return nil, e
		}
		if e := p.expectPunct("="); e != nil {
			return nil, e
		}
		v, e := p.stringValue()
		if e != nil {
			return nil, e
		}
		switch strings.ToUpper(opt) {
		case "IDENTITY":
			identity = v
		case "SECRET":
			secret = v
		default:
			return nil, p.syntaxErr()
		}
		if !p.acceptPunct(",") {
			break
		}
	}
	return func(x *execCtx) *Error {
		if e := x.needSysadmin("CREATE CREDENTIAL", "master"); e != nil {
			return e
		}
		x.inst.mu.Lock()
		defer x.inst.mu.Unlock()
		for _, c := range x.inst.credentials {
			if strings.EqualFold(c.name, name) {
				return newErr(15025, 16, "The server principal '%s' already exists.", name)
			}
		}
		x.inst.credentials = append(x.inst.credentials, &credential{id: 65536 + len(x.inst.credentials), name: name, identity: identity, secret: secret})
		return nil
	}, nil
}

// parseAlterDatabase: ALTER DATABASE name SET option [WITH ROLLBACK ...].
func (p *parser) parseAlterDatabase() (stmt, *Error) {
	// an identifier only, as in SQL Server (ALTER DATABASE @variable is a
	// syntax error); CURRENT is not supported
	name, e := p.ident()
	if e != nil {
		return nil, e
	}
	if e := p.expect("SET"); e != nil {
		return nil, e
	}
	opt, e := p.ident()
	if e != nil {
		return nil, e
	}
	var run func(i *Instance) error
	exclusive := false // the change needs every other session out
	switch strings.ToUpper(opt) {
	case "RECOVERY":
		m, e := p.ident()
		if e != nil {
			return nil, e
		}
		rm := RecoveryModel(strings.ToUpper(m))
		if rm != Full && rm != Simple && rm != BulkLogged {
			p.pos--
			return nil, p.syntaxErr()
		}
		run = func(i *Instance) error { return i.SetRecoveryModel(name, rm) }
	case "READ_ONLY", "READ_WRITE":
		ro := strings.EqualFold(opt, "READ_ONLY")
		run = func(i *Instance) error { return i.SetReadOnly(name, ro) }
	case "OFFLINE", "ONLINE":
		off := strings.EqualFold(opt, "OFFLINE")
		exclusive = off
		run = func(i *Instance) error { return i.SetOffline(name, off) }
	case "AUTO_CLOSE":
		on := p.accept("ON")
		if !on && !p.accept("OFF") {
			return nil, p.syntaxErr()
		}
		run = func(i *Instance) error { return i.SetAutoClose(name, on) }
	case "SINGLE_USER", "MULTI_USER", "RESTRICTED_USER":
		access := UserAccess(strings.ToUpper(opt))
		exclusive = access != MultiUser
		run = func(i *Instance) error { return i.setUserAccess(name, access) }
	default:
		p.pos--
		return nil, p.syntaxErr()
	}
	rollback := false
	if p.accept("WITH") {
		switch {
		case p.accept("ROLLBACK"):
			rollback = true
			if !p.accept("IMMEDIATE") {
				if e := p.expect("AFTER"); e != nil {
					return nil, e
				}
				if _, e := p.intValue(); e != nil {
					return nil, e
				}
				p.accept("SECONDS")
			}
		case p.accept("NO_WAIT"):
		default:
			return nil, p.syntaxErr()
		}
	}
	return func(x *execCtx) *Error {
		if e := x.needSysadmin("ALTER DATABASE", name); e != nil {
			return e
		}
		if exclusive {
			if rollback {
				x.inst.rollbackUsers(name, x.sess)
			}
			// without ROLLBACK, SQL Server waits for the other sessions to
			// leave; the simulator answers as WITH NO_WAIT does
			x.inst.mu.Lock()
			busy := len(x.inst.usersOf(name, x.sess)) > 0
			x.inst.mu.Unlock()
			if busy {
				return newErr(5070, 16, "Database state cannot be changed while other users are using the database '%s'", name)
			}
		}
		if err := run(x.inst); err != nil {
			if e := asError(err); e.Number != 911 {
				return e
			}
			// ALTER DATABASE reports a missing database as 5011
			return newErr(5011, 14, "User does not have permission to alter database '%s', the database does not exist, or the database is not in a state that allows access checks.", name)
		}
		return x.doneNoCount()
	}, nil
}

func errOrNil(e *Error) error {
	if e == nil {
		return nil
	}
	return e
}

// parseDBCC: DBCC CHECKDB [(name)] [WITH NO_INFOMSGS, ...].
func (p *parser) parseDBCC() (stmt, *Error) {
	cmd, e := p.ident()
	if e != nil {
		return nil, e
	}
	if !strings.EqualFold(cmd, "CHECKDB") {
		return nil, errNotSupported("DBCC " + strings.ToUpper(cmd))
	}
	name := ""
	if p.acceptPunct("(") {
		if p.peek().kind == tString {
			name = p.next().text
		} else if name, e = p.name(); e != nil {
			return nil, e
		}
		if e := p.expectPunct(")"); e != nil {
			return nil, e
		}
	}
	quiet := false
	if p.accept("WITH") {
		for {
			o, e := p.ident()
			if e != nil {
				return nil, e
			}
			if strings.EqualFold(o, "NO_INFOMSGS") {
				quiet = true
			}
			if !p.acceptPunct(",") {
				break
			}
		}
	}
	return func(x *execCtx) *Error {
		target := name
		if target == "" {
			target = x.sess.database
		}
		bad, e := x.inst.checkDB(target)
		if e != nil {
			return e
		}
		if len(bad) > 0 {
			first := &Error{Number: 8939, Severity: 16, State: 98, Message: fmt.Sprintf("Table error: page (1:%d) in database '%s' failed its checksum.", bad[0], target)}
			for _, b := range bad[1:] {
				first.Then = append(first.Then, &Error{Number: 8939, Severity: 16, State: 98, Message: fmt.Sprintf("Table error: page (1:%d) in database '%s' failed its checksum.", b, target)})
			}
			first.Then = append(first.Then, newErr(8989, 16, "CHECKDB found 0 allocation errors and %d consistency errors in database '%s'.", len(bad), target))
			return first
		}
		if !quiet {
			x.info(8989, "CHECKDB found 0 allocation errors and 0 consistency errors in database '%s'.", target)
		}
		return x.doneNoCount()
	}, nil
}

// checkDB returns the pages whose checksum fails.
func (i *Instance) checkDB(name string) ([]uint32, *Error) {
	db, e := i.lookup(name)
	if e != nil {
		return nil, e
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.State != Online {
		return nil, newErr(927, 14, "Database '%s' cannot be opened. It is in the middle of a restore.", db.Name)
	}
	var bad []uint32
	for id, b := range db.overrides {
		if !pageChecksumOK(b) {
			bad = append(bad, id)
		}
	}
	return bad, nil
}
