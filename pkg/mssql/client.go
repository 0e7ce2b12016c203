package mssql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/golang-sql/sqlexp"
	mssqldb "github.com/microsoft/go-mssqldb"
	"github.com/microsoft/go-mssqldb/msdsn"
)

// Client is a connection pool to one SQL Server instance.
type Client struct {
	db *sql.DB
}

// Open returns a client for dsn (a go-mssqldb connection string such as
// sqlserver://user:password@host:port?encrypt=disable). It does not
// connect; Ping does.
//
// Two options of the connection string are overridden, because coffer's
// statements depend on them:
//   - database: every connection sits in master. A connection in a user
//     database, even an idle one in the pool, holds it, and RESTORE over it
//     or a tail-log backup of it then fails with 3101 (3102 on the
//     connection itself).
//   - guid conversion: uniqueidentifier values are read as SQL Server
//     sends them and formatted by coffer; the driver's conversion would
//     change every GUID coffer compares (recovery forks, differential
//     bases), so that every check would see a broken chain.
func Open(dsn string) (*Client, error) {
	cfg, err := msdsn.Parse(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse connection string: %w", redact(err, dsn))
	}
	cfg.Database = "master"
	cfg.Encoding.GuidConversion = false
	db := sql.OpenDB(mssqldb.NewConnectorConfig(cfg))
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &Client{db: db}, nil
}

// redact removes the connection string from an error, which may carry a
// password.
func redact(err error, dsn string) error {
	if err == nil || dsn == "" || !strings.Contains(err.Error(), dsn) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), dsn, "<connection string>"))
}

// Close closes the pool.
func (c *Client) Close() error { return c.db.Close() }

// Ping connects and runs a trivial query.
func (c *Client) Ping(ctx context.Context) error {
	return c.db.PingContext(ctx)
}

// Error is a SQL Server error: the cause, then what followed it (3013 for
// a failed BACKUP or RESTORE).
type Error struct {
	Number  int32
	Message string
	All     []mssqldb.Error
}

func (e *Error) Error() string {
	var parts []string
	for _, x := range e.All {
		parts = append(parts, fmt.Sprintf("%s (%d)", x.Message, x.Number))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%s (%d)", e.Message, e.Number)
	}
	return strings.Join(parts, "; ")
}

// Number returns the number of the first SQL Server error in err (the
// cause), or 0 when err is not one.
func Number(err error) int32 {
	var e *Error
	if errors.As(err, &e) {
		return e.Number
	}
	var m mssqldb.Error
	if errors.As(err, &m) {
		if len(m.All) > 0 {
			return m.All[0].Number
		}
		return m.Number
	}
	return 0
}

func wrapSQL(err error) error {
	var m mssqldb.Error
	if errors.As(err, &m) {
		e := &Error{Number: m.Number, Message: m.Message, All: m.All}
		if len(m.All) > 0 {
			e.Number, e.Message = m.All[0].Number, m.All[0].Message
		}
		return e
	}
	return err
}

// Server describes the instance.
type Server struct {
	Name     string
	Version  string
	Edition  string
	Sysadmin bool
	DataPath string
	LogPath  string
}

// MajorVersion is the server's major version: 16 for SQL Server 2022, 15
// for 2019; 0 when the version does not parse.
func (s Server) MajorVersion() int {
	major, _, _ := strings.Cut(s.Version, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return 0
	}
	return n
}

// ServerInfo reads the instance's name, version, edition, default paths,
// and whether the login is sysadmin.
func (c *Client) ServerInfo(ctx context.Context) (Server, error) {
	var s Server
	var name, dataPath, logPath sql.NullString
	var sysadmin sql.NullInt64
	err := c.db.QueryRowContext(ctx, `SELECT CAST(SERVERPROPERTY('ServerName') AS nvarchar(128)),
		CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)), CAST(SERVERPROPERTY('Edition') AS nvarchar(128)),
		IS_SRVROLEMEMBER('sysadmin'), CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(260)),
		CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS nvarchar(260))`).Scan(&name, &s.Version, &s.Edition, &sysadmin, &dataPath, &logPath)
	if err != nil {
		return s, fmt.Errorf("read server properties: %w", wrapSQL(err))
	}
	s.Name, s.DataPath, s.LogPath = name.String, dataPath.String, logPath.String
	s.Sysadmin = sysadmin.Valid && sysadmin.Int64 == 1
	return s, nil
}

// exec runs a statement, passing each informational message to onInfo,
// and returns SQL Server's errors as *Error.
func (c *Client) exec(ctx context.Context, query string, onInfo func(number int32, msg string), args ...any) error {
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return wrapSQL(err)
	}
	defer conn.Close()
	err = execOn(ctx, conn, query, onInfo, args...)
	var sqlErr *Error
	if err != nil && !errors.As(err, &sqlErr) && ctx.Err() == nil {
		// the connection broke under the statement (the server went away
		// or dropped it): the driver would hand it out again, and the next
		// statement would wait on it forever, so it is thrown away
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	return err
}

// execOn runs a statement on one connection (see exec).
func execOn(ctx context.Context, conn *sql.Conn, query string, onInfo func(number int32, msg string), args ...any) error {
	msgs := &sqlexp.ReturnMessage{}
	rows, err := conn.QueryContext(ctx, query, append(args, msgs)...)
	if err != nil {
		return wrapSQL(err)
	}
	defer rows.Close()
	var errs []mssqldb.Error
	for active := true; active; {
		switch m := msgs.Message(ctx).(type) {
		case sqlexp.MsgNotice:
			if onInfo != nil {
				if e, ok := m.Message.(mssqldb.Error); ok {
					onInfo(e.Number, e.Message)
				} else {
					onInfo(0, m.Message.String())
				}
			}
		case sqlexp.MsgError:
			var e mssqldb.Error
			if errors.As(m.Error, &e) {
				if len(e.All) > 0 {
					errs = append(errs, e.All...)
				} else {
					errs = append(errs, e)
				}
			} else {
				return m.Error
			}
		case sqlexp.MsgNext:
			for rows.Next() {
			}
		case sqlexp.MsgNextResultSet:
			active = rows.NextResultSet()
		case nil:
			if err := ctx.Err(); err != nil {
				return err
			}
			active = false
		}
	}
	if len(errs) > 0 {
		return &Error{Number: errs[0].Number, Message: errs[0].Message, All: errs}
	}
	if err := rows.Err(); err != nil {
		return wrapSQL(err)
	}
	return nil
}

// msgPercentProcessed is the message BACKUP and RESTORE send for STATS:
// "N percent processed." in English, in the session's language elsewhere.
const msgPercentProcessed = 3211

var percentRE = regexp.MustCompile(`\d+`)

// progressFunc turns BACKUP and RESTORE progress messages into calls of
// fn. The message is known by its number, never its text, which follows
// the server's language; the percentage is its first number.
func progressFunc(fn func(percent int)) func(int32, string) {
	return func(number int32, msg string) {
		if fn == nil || number != msgPercentProcessed {
			return
		}
		if m := percentRE.FindString(msg); m != "" {
			n, _ := strconv.Atoi(m)
			fn(n)
		}
	}
}

// QuoteName quotes an identifier for the statements that accept no
// variable: [name] with every ] doubled.
func QuoteName(name string) string {
	return "[" + strings.ReplaceAll(name, "]", "]]") + "]"
}

// Chain is what SQL Server says of a database's backup chain now.
type Chain struct {
	// LastLogBackupLSN is where the next log backup starts; empty when the
	// database has no log chain.
	LastLogBackupLSN string
	// DifferentialBaseLSN is the differential base of the database's data
	// (where the last full's data copy began); empty when there is none.
	DifferentialBaseLSN string
	// DifferentialBaseGUID is the backup set GUID of the full the next
	// differential is based on (sys.master_files.differential_base_guid),
	// lower case; empty when there is none.
	DifferentialBaseGUID string
	// RecoveryFork is the database's recovery fork GUID.
	RecoveryFork string
}

// ChainState reads a database's log chain position, differential base and
// recovery fork.
func (c *Client) ChainState(ctx context.Context, database string) (Chain, error) {
	var ch Chain
	var lsn, base, baseGUID, fork sql.NullString
	err := c.db.QueryRowContext(ctx, `SELECT rs.last_log_backup_lsn, mf.differential_base_lsn,
		CAST(mf.differential_base_guid AS nvarchar(36)), CAST(rs.recovery_fork_guid AS nvarchar(36))
		FROM sys.databases d
		LEFT JOIN sys.database_recovery_status rs ON rs.database_id = d.database_id
		LEFT JOIN sys.master_files mf ON mf.database_id = d.database_id AND mf.file_id = 1
		WHERE d.name = @p1`, database).Scan(&lsn, &base, &baseGUID, &fork)
	if errors.Is(err, sql.ErrNoRows) {
		return ch, fmt.Errorf("database %q does not exist", database)
	}
	if err != nil {
		return ch, fmt.Errorf("read the backup chain of %q: %w", database, wrapSQL(err))
	}
	return Chain{LastLogBackupLSN: lsn.String, DifferentialBaseLSN: base.String, DifferentialBaseGUID: strings.ToLower(baseGUID.String),
		RecoveryFork: strings.ToLower(fork.String)}, nil
}

// UTCOffset returns the server's local time less UTC, rounded to the
// quarter hour (every zone's offset is a multiple of it). SQL Server
// reports backup dates and reads STOPAT in its local time.
func (c *Client) UTCOffset(ctx context.Context) (time.Duration, error) {
	var local, utc time.Time
	if err := c.db.QueryRowContext(ctx, `SELECT SYSDATETIME(), SYSUTCDATETIME()`).Scan(&local, &utc); err != nil {
		return 0, fmt.Errorf("read the server's time zone: %w", wrapSQL(err))
	}
	return wallClock(local).Sub(wallClock(utc)).Round(15 * time.Minute), nil
}
