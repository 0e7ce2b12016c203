package mssql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	mssqldb "github.com/microsoft/go-mssqldb"
	"strings"
	"time"
)

// BackupType is the kind of BACKUP statement.
type BackupType int

// Backup types.
const (
	Full BackupType = iota + 1
	Differential
	Log
	CopyOnlyFull
)

// BackupRequest describes one BACKUP statement.
type BackupRequest struct {
	Database string
	Type     BackupType
	// Files are the stripes: paths on the SQL Server's machine (TO DISK)
	// or s3:// URLs (TO URL, SQL Server 2022 and later).
	Files []string
	// Compression asks SQL Server for WITH COMPRESSION (nil: the server's
	// default). coffer compresses in its own pipeline, so it is normally
	// off.
	Compression *bool
	// NoRecovery takes a tail-log backup that leaves the database
	// RESTORING.
	NoRecovery bool
	// OnProgress receives "N percent processed." as N.
	OnProgress func(percent int)
}

// Backup runs BACKUP DATABASE or BACKUP LOG with CHECKSUM and FORMAT into
// the files.
func (c *Client) Backup(ctx context.Context, r BackupRequest) error {
	if len(r.Files) == 0 {
		return fmt.Errorf("backup %q: no target file", r.Database)
	}
	var q strings.Builder
	args := []any{sql.Named("db", r.Database)}
	if r.Type == Log {
		q.WriteString("BACKUP LOG @db TO ")
	} else {
		q.WriteString("BACKUP DATABASE @db TO ")
	}
	devs, devArgs := devices(r.Files)
	q.WriteString(devs)
	args = append(args, devArgs...)
	q.WriteString(" WITH FORMAT, INIT, CHECKSUM, STATS = 5")
	switch r.Type {
	case Differential:
		q.WriteString(", DIFFERENTIAL")
	case CopyOnlyFull:
		q.WriteString(", COPY_ONLY")
	}
	if r.Compression != nil {
		if *r.Compression {
			q.WriteString(", COMPRESSION")
		} else {
			q.WriteString(", NO_COMPRESSION")
		}
	}
	if r.NoRecovery {
		q.WriteString(", NORECOVERY")
	}
	if err := c.exec(ctx, q.String(), progressFunc(r.OnProgress), args...); err != nil {
		return fmt.Errorf("back up database %q: %w", r.Database, err)
	}
	return nil
}

// Header is one backup set as RESTORE HEADERONLY reports it. LSNs are
// decimal strings, empty for NULL.
type Header struct {
	Position             int
	BackupType           int // 1 full, 2 log, 5 differential
	DatabaseName         string
	ServerName           string
	FirstLSN             string
	LastLSN              string
	CheckpointLSN        string
	DatabaseBackupLSN    string
	DifferentialBaseLSN  string
	DifferentialBaseGUID string
	BackupSetGUID        string
	BackupStart          time.Time
	BackupFinish         time.Time
	IsCopyOnly           bool
	HasBulkLoggedData    bool
	BeginsLogChain       bool
	HasChecksums         bool
	BindingID            string // the database's GUID
	FamilyGUID           string
	RecoveryForkID       string
	FirstRecoveryForkID  string
	ForkPointLSN         string
	RecoveryModel        string
	Collation            string
}

// HeaderOnly reads the backup sets on the files (one striped media set).
func (c *Client) HeaderOnly(ctx context.Context, files []string) ([]Header, error) {
	q, args := fromDisk("RESTORE HEADERONLY FROM ", files)
	rows, err := c.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read backup header: %w", wrapSQL(err))
	}
	defer rows.Close()
	var out []Header
	err = scanByName(rows, func(col map[string]any) {
		out = append(out, Header{
			Position:             int(asInt(col["position"])),
			BackupType:           int(asInt(col["backuptype"])),
			DatabaseName:         asString(col["databasename"]),
			ServerName:           asString(col["servername"]),
			FirstLSN:             asString(col["firstlsn"]),
			LastLSN:              asString(col["lastlsn"]),
			CheckpointLSN:        asString(col["checkpointlsn"]),
			DatabaseBackupLSN:    asString(col["databasebackuplsn"]),
			DifferentialBaseLSN:  asString(col["differentialbaselsn"]),
			DifferentialBaseGUID: asGUID(col["differentialbaseguid"]),
			BackupSetGUID:        asGUID(col["backupsetguid"]),
			BackupStart:          asTime(col["backupstartdate"]),
			BackupFinish:         asTime(col["backupfinishdate"]),
			IsCopyOnly:           asInt(col["iscopyonly"]) != 0,
			HasBulkLoggedData:    asInt(col["hasbulkloggeddata"]) != 0,
			BeginsLogChain:       asInt(col["beginslogchain"]) != 0,
			HasChecksums:         asInt(col["hasbackupchecksums"]) != 0,
			BindingID:            asGUID(col["bindingid"]),
			FamilyGUID:           asGUID(col["familyguid"]),
			RecoveryForkID:       asGUID(col["recoveryforkid"]),
			FirstRecoveryForkID:  asGUID(col["firstrecoveryforkid"]),
			ForkPointLSN:         asString(col["forkpointlsn"]),
			RecoveryModel:        asString(col["recoverymodel"]),
			Collation:            asString(col["collation"]),
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read backup header: %w", wrapSQL(err))
	}
	return out, nil
}

// FileList reads the database files a backup set holds (RESTORE
// FILELISTONLY).
func (c *Client) FileList(ctx context.Context, files []string) ([]File, error) {
	q, args := fromDisk("RESTORE FILELISTONLY FROM ", files)
	rows, err := c.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read backup file list: %w", wrapSQL(err))
	}
	defer rows.Close()
	var out []File
	err = scanByName(rows, func(col map[string]any) {
		// as sys.master_files.type_desc names them
		typ := map[string]string{"L": "LOG", "S": "FILESTREAM", "F": "FULLTEXT"}[asString(col["type"])]
		if typ == "" {
			typ = "ROWS"
		}
		n, _ := col["size"].([]byte)
		var size int64
		fmt.Sscan(string(n), &size)
		out = append(out, File{ID: int32(asInt(col["fileid"])), Logical: asString(col["logicalname"]),
			Physical: asString(col["physicalname"]), Type: typ, Size: size})
	})
	if err != nil {
		return nil, fmt.Errorf("read backup file list: %w", wrapSQL(err))
	}
	return out, nil
}

// Move relocates one logical file of a restore.
type Move struct {
	Logical  string
	Physical string
}

// RestoreRequest describes one RESTORE DATABASE or RESTORE LOG from DISK.
type RestoreRequest struct {
	Database string
	Log      bool
	Files    []string
	Moves    []Move
	Replace  bool
	// Recovery brings the database online; otherwise WITH NORECOVERY.
	Recovery bool
	// StopAt is the server's wall clock (SQL Server reads STOPAT in its
	// local time); its fields are sent as they are, its location ignored.
	StopAt time.Time
	// StopAtMark and StopBeforeMark stop at a marked transaction,
	// including it or not.
	StopAtMark, StopBeforeMark string
	// MarkAfter, with a mark, stops at the first transaction of that name
	// at or after this moment (server local time), not the first of the
	// name in the log: STOPATMARK ... AFTER.
	MarkAfter time.Time
	// OnProgress receives "N percent processed." as N.
	OnProgress func(percent int)
	// OnMessage receives every other informational message, such as 4322
	// (the stop point lies past this log: the database stays RESTORING).
	OnMessage func(number int32, msg string)
}

// Restore runs the RESTORE statement.
func (c *Client) Restore(ctx context.Context, r RestoreRequest) error {
	verb := "RESTORE DATABASE @db FROM "
	if r.Log {
		verb = "RESTORE LOG @db FROM "
	}
	q, args := fromDisk(verb, r.Files)
	args = append(args, sql.Named("db", r.Database))
	var b strings.Builder
	b.WriteString(q)
	b.WriteString(" WITH FILE = 1, STATS = 5")
	for k, m := range r.Moves {
		fmt.Fprintf(&b, ", MOVE @ml%d TO @mp%d", k, k)
		args = append(args, sql.Named(fmt.Sprintf("ml%d", k), m.Logical), sql.Named(fmt.Sprintf("mp%d", k), m.Physical))
	}
	if r.Replace {
		b.WriteString(", REPLACE")
	}
	if !r.StopAt.IsZero() {
		// SQL Server takes a STOPAT variable only as varchar, char,
		// smalldatetime or datetime (a Go string would go as nvarchar);
		// datetime carries the wall clock as it is, whatever the DSN's
		// time zone option
		b.WriteString(", STOPAT = @stopat")
		args = append(args, sql.Named("stopat", mssqldb.DateTime1(wallClock(r.StopAt))))
	}
	// a mark name is written as a quoted literal: RESTORE documents no
	// variable form for it
	if r.StopAtMark != "" {
		b.WriteString(", STOPATMARK = " + Literal(r.StopAtMark) + markAfter(r.MarkAfter))
	}
	if r.StopBeforeMark != "" {
		b.WriteString(", STOPBEFOREMARK = " + Literal(r.StopBeforeMark) + markAfter(r.MarkAfter))
	}
	if r.Recovery {
		b.WriteString(", RECOVERY")
	} else {
		b.WriteString(", NORECOVERY")
	}
	progress := progressFunc(r.OnProgress)
	onInfo := func(number int32, msg string) {
		if number == msgPercentProcessed {
			progress(number, msg)
		} else if r.OnMessage != nil {
			r.OnMessage(number, msg)
		}
	}
	if err := c.exec(ctx, b.String(), onInfo, args...); err != nil {
		return fmt.Errorf("restore %q: %w", r.Database, err)
	}
	return nil
}

// DropDatabase drops a database (used to clean up a failed restore to a
// new name). DROP DATABASE takes no variable, so the name is quoted.
func (c *Client) DropDatabase(ctx context.Context, name string) error {
	if err := c.exec(ctx, "DROP DATABASE "+QuoteName(name), nil); err != nil {
		return fmt.Errorf("drop database %q: %w", name, err)
	}
	return nil
}

// markAfter is the AFTER clause of a mark stop at or after t, empty for a
// zero t. RESTORE takes it as a literal. t is cut to a multiple of 10 ms,
// which datetime holds exactly, so that rounding never puts it after the
// mark's own time.
func markAfter(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return " AFTER '" + t.Truncate(10*time.Millisecond).Format("2006-01-02T15:04:05.000") + "'"
}

// AvailabilityGroup returns the availability group database is in on
// this replica, or "" when it is in none.
func (c *Client) AvailabilityGroup(ctx context.Context, database string) (string, error) {
	var name sql.NullString
	err := c.db.QueryRowContext(ctx, `SELECT ag.name FROM sys.dm_hadr_database_replica_states drs
		JOIN sys.availability_groups ag ON ag.group_id = drs.group_id
		WHERE drs.is_local = 1 AND drs.database_id = DB_ID(@p1)`, database).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the availability group of %q: %w", database, wrapSQL(err))
	}
	return name.String, nil
}

// DatabaseState returns a database's state_desc (ONLINE, RESTORING,
// RECOVERY_PENDING, ...), or "" when there is no database of that name.
func (c *Client) DatabaseState(ctx context.Context, name string) (string, error) {
	var st sql.NullString
	err := c.db.QueryRowContext(ctx, "SELECT state_desc FROM sys.databases WHERE name = @p1", name).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the state of database %q: %w", name, wrapSQL(err))
	}
	return st.String, nil
}

// DatabaseSize returns the allocated size in bytes of a database's data
// files and of its log files, as sys.master_files says: a full or
// differential backup holds less than both, a log backup less than the
// log, so a bound to plan a backup by.
func (c *Client) DatabaseSize(ctx context.Context, name string) (data, log int64, err error) {
	rows, err := c.db.QueryContext(ctx, "SELECT type_desc, size FROM sys.master_files WHERE database_id = DB_ID(@p1)", name)
	if err != nil {
		return 0, 0, fmt.Errorf("read the size of database %q: %w", name, wrapSQL(err))
	}
	defer rows.Close()
	for rows.Next() {
		var typ sql.NullString
		var pages sql.NullInt64
		if err := rows.Scan(&typ, &pages); err != nil {
			return 0, 0, fmt.Errorf("read the size of database %q: %w", name, err)
		}
		if typ.String == "LOG" {
			log += pages.Int64 * 8192
		} else {
			data += pages.Int64 * 8192
		}
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("read the size of database %q: %w", name, wrapSQL(err))
	}
	return data, log, nil
}

// DatabaseName returns the name of the database SQL Server takes name to
// mean, spelt as the server spells it, or "" when there is none. The
// server compares names under its collation with trailing spaces
// ignored, so "Sales " and, under a case-insensitive collation, "SALES"
// both name the database Sales.
func (c *Client) DatabaseName(ctx context.Context, name string) (string, error) {
	var got sql.NullString
	if err := c.db.QueryRowContext(ctx, "SELECT DB_NAME(DB_ID(@p1))", name).Scan(&got); err != nil {
		return "", fmt.Errorf("look up database %q: %w", name, wrapSQL(err))
	}
	return got.String, nil
}

// DatabaseExists reports whether a database of that name exists.
func (c *Client) DatabaseExists(ctx context.Context, name string) (bool, error) {
	var id sql.NullInt64
	if err := c.db.QueryRowContext(ctx, "SELECT DB_ID(@p1)", name).Scan(&id); err != nil {
		return false, fmt.Errorf("look up database %q: %w", name, wrapSQL(err))
	}
	return id.Valid, nil
}

// fromDisk is a statement's FROM clause over files (paths or s3:// URLs).
func fromDisk(prefix string, files []string) (string, []any) {
	devs, args := devices(files)
	return prefix + devs, args
}

// devices lists backup devices as T-SQL with their parameters: DISK =
// for a path, URL = for an s3:// URL.
func devices(files []string) (string, []any) {
	var b strings.Builder
	var args []any
	for k, f := range files {
		if k > 0 {
			b.WriteString(", ")
		}
		kind := "DISK"
		if IsURL(f) {
			kind = "URL"
		}
		fmt.Fprintf(&b, "%s = @f%d", kind, k)
		args = append(args, sql.Named(fmt.Sprintf("f%d", k), f))
	}
	return b.String(), args
}

// IsURL reports whether a backup device is an s3:// URL.
func IsURL(device string) bool { return strings.HasPrefix(strings.ToLower(device), "s3://") }

// CreateS3Credential creates the credential SQL Server uses for the URLs
// under prefix (s3://host:port/bucket/path): an S3 access key and its
// secret. CREATE CREDENTIAL takes no variable, so every part is quoted.
func (c *Client) CreateS3Credential(ctx context.Context, prefix, accessKey, secret string) error {
	q := "CREATE CREDENTIAL " + QuoteName(prefix) + " WITH IDENTITY = 'S3 Access Key', SECRET = " + Literal(accessKey+":"+secret)
	if err := c.exec(ctx, q, nil); err != nil {
		return fmt.Errorf("create the credential for %s: %w", prefix, err)
	}
	return nil
}

// errNoCredential is DROP CREDENTIAL's error for a credential that does
// not exist.
const errNoCredential = 15151

// DropCredential drops a credential; one that does not exist is not an
// error.
func (c *Client) DropCredential(ctx context.Context, name string) error {
	err := c.exec(ctx, "DROP CREDENTIAL "+QuoteName(name), nil)
	if err != nil && Number(err) != errNoCredential {
		return fmt.Errorf("drop the credential %s: %w", name, err)
	}
	return nil
}

// Credentials lists the names of the server's credentials that begin with
// prefix.
func (c *Client) Credentials(ctx context.Context, prefix string) ([]string, error) {
	rows, err := c.db.QueryContext(ctx, "SELECT name FROM sys.credentials")
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", wrapSQL(err))
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("list credentials: %w", err)
		}
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list credentials: %w", wrapSQL(err))
	}
	return out, nil
}

// scanByName calls fn with each row as a map from lower-case column name
// to value.
func scanByName(rows *sql.Rows, fn func(map[string]any)) error {
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for k := range vals {
		ptrs[k] = &vals[k]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		m := make(map[string]any, len(cols))
		for k, c := range cols {
			m[strings.ToLower(c)] = vals[k]
		}
		fn(m)
	}
	return rows.Err()
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case int16:
		return int64(x)
	case uint8:
		return int64(x)
	case bool:
		if x {
			return 1
		}
	}
	return 0
}

// asTime reads a datetime column as the server's wall clock (see
// wallClock).
func asTime(v any) time.Time {
	if t, ok := v.(time.Time); ok {
		return wallClock(t)
	}
	return time.Time{}
}

// asGUID formats a uniqueidentifier as go-mssqldb returns it (16 bytes in
// SQL Server's order), in lower case.
func asGUID(v any) string {
	b, ok := v.([]byte)
	if !ok || len(b) != 16 {
		return asString(v)
	}
	var u mssqldb.UniqueIdentifier
	if err := u.Scan(b); err != nil {
		return ""
	}
	return strings.ToLower(u.String())
}

// HistoryEntry is one backup msdb recorded of a database. msdb documents
// nearly every column of backupset as nullable, and rows other tools
// inserted or a restore of msdb brought back do hold NULLs: a NULL reads
// as the zero value (an empty Type or LSN, a zero time).
type HistoryEntry struct {
	// Type is msdb's code: D full, I differential, L log; empty when NULL.
	Type          string
	BackupSetGUID string // lower case
	CopyOnly      bool
	FirstLSN      string
	LastLSN       string
	CheckpointLSN string
	Start         time.Time
	Finish        time.Time
	User          string
	Server        string
	// Device is the first media family's physical device name.
	Device string
}

// History reads msdb's most recent backups of database, newest first, at
// most n.
func (c *Client) History(ctx context.Context, database string, n int) ([]HistoryEntry, error) {
	rows, err := c.db.QueryContext(ctx, fmt.Sprintf(`SELECT TOP %d bs.backup_set_id, CAST(bs.backup_set_uuid AS nvarchar(36)), bs.type, bs.is_copy_only,
		bs.first_lsn, bs.last_lsn, bs.checkpoint_lsn, bs.backup_start_date, bs.backup_finish_date,
		bs.user_name, bs.server_name, mf.physical_device_name
		FROM msdb.dbo.backupset bs LEFT JOIN msdb.dbo.backupmediafamily mf ON mf.media_set_id = bs.media_set_id
		WHERE bs.database_name = @p1 ORDER BY bs.backup_set_id DESC`, max(n, 1)*4), database)
	if err != nil {
		return nil, fmt.Errorf("read the backup history of %q: %w", database, wrapSQL(err))
	}
	defer rows.Close()
	var out []HistoryEntry
	seen := map[int64]bool{}
	for rows.Next() {
		var id int64
		var e HistoryEntry
		var typ, first, last, ckpt, user, server, device, setGUID sql.NullString
		var copyOnly sql.NullBool
		var start, finish sql.NullTime
		if err := rows.Scan(&id, &setGUID, &typ, &copyOnly, &first, &last, &ckpt, &start, &finish, &user, &server, &device); err != nil {
			return nil, fmt.Errorf("read the backup history of %q: %w", database, err)
		}
		e.Type, e.CopyOnly, e.Start, e.Finish = typ.String, copyOnly.Bool, start.Time, finish.Time
		if seen[id] || len(out) == n {
			continue // another stripe of a backup already read
		}
		seen[id] = true
		e.Start, e.Finish = wallClock(e.Start), wallClock(e.Finish)
		e.FirstLSN, e.LastLSN, e.CheckpointLSN = first.String, last.String, ckpt.String
		e.User, e.Server, e.Device = user.String, server.String, device.String
		e.BackupSetGUID = strings.ToLower(setGUID.String)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the backup history of %q: %w", database, wrapSQL(err))
	}
	return out, nil
}

// CheckDB runs DBCC CHECKDB on a database; consistency errors come back as
// the *Error SQL Server raised (8939, then 8989 with the count). DBCC
// takes no variable for the name, so it is quoted.
func (c *Client) CheckDB(ctx context.Context, database string) error {
	if err := c.exec(ctx, "DBCC CHECKDB ("+QuoteName(database)+") WITH NO_INFOMSGS", nil); err != nil {
		return fmt.Errorf("DBCC CHECKDB of %q: %w", database, err)
	}
	return nil
}

// Mark is a marked transaction msdb recorded (msdb.dbo.logmarkhistory).
type Mark struct {
	Name string
	LSN  string
	Time time.Time
}

// Marks reads the marked transactions msdb recorded of database.
func (c *Client) Marks(ctx context.Context, database string) ([]Mark, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT mark_name, lsn, mark_time FROM msdb.dbo.logmarkhistory WHERE database_name = @p1`, database)
	if err != nil {
		return nil, fmt.Errorf("read the marked transactions of %q: %w", database, wrapSQL(err))
	}
	defer rows.Close()
	var out []Mark
	for rows.Next() {
		var m Mark
		if err := rows.Scan(&m.Name, &m.LSN, &m.Time); err != nil {
			return nil, fmt.Errorf("read the marked transactions of %q: %w", database, err)
		}
		m.Time = wallClock(m.Time)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the marked transactions of %q: %w", database, wrapSQL(err))
	}
	return out, nil
}
