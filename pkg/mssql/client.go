package mssql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/golang-sql/sqlexp"
	mssqldb "github.com/microsoft/go-mssqldb"
)

// Client is a connection pool to one SQL Server instance.
type Client struct {
	db *sql.DB
}

// Open returns a client for dsn (a go-mssqldb connection string such as
// sqlserver://user:password@host:port?encrypt=disable). It does not
// connect; Ping does.
func Open(dsn string) (*Client, error) {
	if _, err := mssqldb.NewConnector(dsn); err != nil {
		return nil, fmt.Errorf("parse connection string: %w", redact(err, dsn))
	}
	db, err := sql.Open("sqlserver", dsn)
	if err != nil {
		return nil, fmt.Errorf("open connection: %w", redact(err, dsn))
	}
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

// File is one database file.
type File struct {
	ID       int32
	Logical  string
	Physical string
	Type     string // ROWS or LOG
	Size     int64  // bytes
}

// Database is what discovery reads of a database. LSNs are decimal
// strings, empty for NULL.
type Database struct {
	Name             string
	ID               int32
	State            string
	RecoveryModel    string
	ReadOnly         bool
	UserAccess       string
	InStandby        bool
	Snapshot         bool
	GroupDatabaseID  string
	ReplicaID        string
	Encrypted        bool
	Created          time.Time
	Collation        string
	LastLogBackupLSN string
	DiffBaseLSN      string
	RecoveryForkGUID string
	Files            []File
	// AG is the local replica's availability group state; nil when the
	// database is in no group.
	AG *Replica
}

// Replica is a database's availability group state on one replica.
type Replica struct {
	Group string
	// Preference is automated_backup_preference_desc: PRIMARY,
	// SECONDARY_ONLY, SECONDARY or NONE.
	Preference string
	Primary    bool
	// Synchronization is synchronization_state_desc.
	Synchronization string
	// Preferred is sys.fn_hadr_backup_is_preferred_replica.
	Preferred bool
}

// Size is the sum of the database's file sizes.
func (d *Database) Size() int64 {
	var n int64
	for _, f := range d.Files {
		n += f.Size
	}
	return n
}

// Databases lists every database but tempdb, with files and log-chain
// state.
func (c *Client) Databases(ctx context.Context) ([]Database, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT d.name, d.database_id, d.state_desc, d.recovery_model_desc,
		d.is_read_only, d.user_access_desc, d.is_in_standby, d.source_database_id,
		CAST(d.group_database_id AS nvarchar(36)), CAST(d.replica_id AS nvarchar(36)), d.is_encrypted,
		d.create_date, d.collation_name, rs.last_log_backup_lsn, CAST(rs.recovery_fork_guid AS nvarchar(36))
		FROM sys.databases d LEFT JOIN sys.database_recovery_status rs ON rs.database_id = d.database_id
		WHERE d.database_id <> 2 ORDER BY d.database_id`)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", wrapSQL(err))
	}
	defer rows.Close()
	var out []Database
	byID := map[int32]int{}
	for rows.Next() {
		var d Database
		var src sql.NullInt64
		var gdb, rep, coll, lsn, fork sql.NullString
		if err := rows.Scan(&d.Name, &d.ID, &d.State, &d.RecoveryModel, &d.ReadOnly, &d.UserAccess, &d.InStandby,
			&src, &gdb, &rep, &d.Encrypted, &d.Created, &coll, &lsn, &fork); err != nil {
			return nil, fmt.Errorf("list databases: %w", err)
		}
		d.Snapshot = src.Valid
		d.GroupDatabaseID, d.ReplicaID, d.Collation = gdb.String, rep.String, coll.String
		d.LastLogBackupLSN, d.RecoveryForkGUID = lsn.String, strings.ToLower(fork.String)
		byID[d.ID] = len(out)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list databases: %w", wrapSQL(err))
	}
	frows, err := c.db.QueryContext(ctx, `SELECT database_id, file_id, type_desc, name, physical_name, size, differential_base_lsn
		FROM sys.master_files ORDER BY database_id, file_id`)
	if err != nil {
		return nil, fmt.Errorf("list database files: %w", wrapSQL(err))
	}
	defer frows.Close()
	for frows.Next() {
		var id int32
		var f File
		var pages int64
		var base sql.NullString
		if err := frows.Scan(&id, &f.ID, &f.Type, &f.Logical, &f.Physical, &pages, &base); err != nil {
			return nil, fmt.Errorf("list database files: %w", err)
		}
		f.Size = pages * 8192
		if k, ok := byID[id]; ok {
			out[k].Files = append(out[k].Files, f)
			if f.Type == "ROWS" && f.ID == 1 {
				out[k].DiffBaseLSN = base.String
			}
		}
	}
	if err := frows.Err(); err != nil {
		return nil, fmt.Errorf("list database files: %w", wrapSQL(err))
	}
	if err := c.replicas(ctx, out, byID); err != nil {
		return nil, err
	}
	return out, nil
}

// replicas reads the availability group state of the databases in a group.
func (c *Client) replicas(ctx context.Context, dbs []Database, byID map[int32]int) error {
	rows, err := c.db.QueryContext(ctx, `SELECT drs.database_id, ag.name, ag.automated_backup_preference_desc,
		drs.is_primary_replica, drs.synchronization_state_desc
		FROM sys.dm_hadr_database_replica_states drs JOIN sys.availability_groups ag ON ag.group_id = drs.group_id
		WHERE drs.is_local = 1`)
	if err != nil {
		return fmt.Errorf("read availability groups: %w", wrapSQL(err))
	}
	defer rows.Close()
	for rows.Next() {
		var id int32
		var r Replica
		if err := rows.Scan(&id, &r.Group, &r.Preference, &r.Primary, &r.Synchronization); err != nil {
			return fmt.Errorf("read availability groups: %w", err)
		}
		if k, ok := byID[id]; ok {
			dbs[k].AG = &r
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read availability groups: %w", wrapSQL(err))
	}
	for k := range dbs {
		if dbs[k].AG == nil {
			continue
		}
		if err := c.db.QueryRowContext(ctx, `SELECT sys.fn_hadr_backup_is_preferred_replica(@p1)`, dbs[k].Name).Scan(&dbs[k].AG.Preferred); err != nil {
			return fmt.Errorf("ask whether this replica is preferred for backups of %q: %w", dbs[k].Name, wrapSQL(err))
		}
	}
	return nil
}

// exec runs a statement, passing each informational message to onInfo,
// and returns SQL Server's errors as *Error.
func (c *Client) exec(ctx context.Context, query string, onInfo func(number int32, msg string), args ...any) error {
	msgs := &sqlexp.ReturnMessage{}
	rows, err := c.db.QueryContext(ctx, query, append(args, msgs)...)
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

var percentRE = regexp.MustCompile(`^(\d+) percent processed`)

// progressFunc turns BACKUP and RESTORE "N percent processed." messages
// into calls of fn.
func progressFunc(fn func(percent int)) func(int32, string) {
	return func(number int32, msg string) {
		if fn == nil {
			return
		}
		if m := percentRE.FindStringSubmatch(msg); m != nil {
			n, _ := strconv.Atoi(m[1])
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
	// DifferentialBaseLSN is the checkpoint of the full the next
	// differential is based on; empty when there is none.
	DifferentialBaseLSN string
	// RecoveryFork is the database's recovery fork GUID.
	RecoveryFork string
}

// ChainState reads a database's log chain position, differential base and
// recovery fork.
func (c *Client) ChainState(ctx context.Context, database string) (Chain, error) {
	var ch Chain
	var lsn, base, fork sql.NullString
	err := c.db.QueryRowContext(ctx, `SELECT rs.last_log_backup_lsn, mf.differential_base_lsn, CAST(rs.recovery_fork_guid AS nvarchar(36))
		FROM sys.databases d
		LEFT JOIN sys.database_recovery_status rs ON rs.database_id = d.database_id
		LEFT JOIN sys.master_files mf ON mf.database_id = d.database_id AND mf.file_id = 1
		WHERE d.name = @p1`, database).Scan(&lsn, &base, &fork)
	if errors.Is(err, sql.ErrNoRows) {
		return ch, fmt.Errorf("database %q does not exist", database)
	}
	if err != nil {
		return ch, fmt.Errorf("read the backup chain of %q: %w", database, wrapSQL(err))
	}
	return Chain{LastLogBackupLSN: lsn.String, DifferentialBaseLSN: base.String, RecoveryFork: strings.ToLower(fork.String)}, nil
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
