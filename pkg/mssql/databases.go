package mssql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

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
	Name          string
	ID            int32
	State         string
	RecoveryModel string
	ReadOnly      bool
	UserAccess    string
	InStandby     bool
	Snapshot      bool
	// GroupDatabaseID and ReplicaID are set for a database in an
	// availability group.
	GroupDatabaseID string
	ReplicaID       string
	Encrypted       bool
	Created         time.Time
	Collation       string
	// AutoClose is is_auto_close_on. Closed is true when AUTO_CLOSE has
	// shut the database down: it is ONLINE but sys.databases shows NULL
	// for its collation. Its log chain state was not read, since reading
	// sys.database_recovery_status would start it again.
	AutoClose bool
	Closed    bool
	// Unknown is true when sys.databases showed NULL for the database's
	// own settings, as it does for a database that is not online or that
	// AUTO_CLOSE shut down: RecoveryModel, ReadOnly, UserAccess,
	// InStandby, Encrypted and Collation are then zero because they are
	// unknown, not because they are off.
	Unknown bool
	// Problem says what could not be read of this database (its row, its
	// files); the fields hold what could. Empty when all was read.
	Problem          string
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
	// Basic is a basic availability group (Standard edition), which takes
	// no backup on its secondary whatever the preference says.
	Basic bool
}

// Size is the sum of the database's file sizes.
func (d *Database) Size() int64 {
	var n int64
	for _, f := range d.Files {
		n += f.Size
	}
	return n
}

// addProblem records one more thing that could not be read.
func (d *Database) addProblem(what string) {
	if d.Problem != "" {
		d.Problem += "; "
	}
	d.Problem += what
}

// Databases lists every database but tempdb, with files and log-chain
// state. One database that cannot be read does not hide the others: it is
// listed with Problem saying what failed, and the error is only for a
// failure of the whole listing.
//
// It reads no database's own pages and starts no database that AUTO_CLOSE
// shut down: sys.databases and sys.master_files are master's catalog, and
// sys.database_recovery_status (which starts a closed database to read
// its boot page) is read only for the databases that are open.
func (c *Client) Databases(ctx context.Context) ([]Database, error) {
	out, err := c.listDatabases(ctx)
	if err != nil {
		return nil, err
	}
	byID := make(map[int32]int, len(out))
	for k := range out {
		byID[out[k].ID] = k
	}
	if err := c.recoveryStatus(ctx, out, byID); err != nil {
		return nil, err
	}
	if err := c.files(ctx, out, byID); err != nil {
		return nil, err
	}
	if err := c.replicas(ctx, out, byID); err != nil {
		return nil, err
	}
	return out, nil
}

// resumable runs query, whose @p1 is the database_id to start after, from
// database_id 0, passing each row to scan with rows positioned on it.
// When SQL Server fails in the middle of the result, the rows read so far
// stand: blame(last) names the database whose row failed (last is the
// database_id of the last row read, 0 for none) and the query goes on
// after it. blame returns 0 when there is no database left to blame.
func (c *Client) resumable(ctx context.Context, query string, scan func(*sql.Rows) (int32, error),
	blame func(last int32, err error) (int32, error)) error {
	after := int32(0)
	for range 10_000 { // every round blames one database, and an instance has at most 32,767
		rows, err := c.db.QueryContext(ctx, query, after)
		if err != nil {
			return wrapSQL(err)
		}
		last := after
		for rows.Next() {
			id, err := scan(rows)
			if err != nil {
				rows.Close()
				return err
			}
			last = id
		}
		err = rows.Err()
		rows.Close()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		bad, berr := blame(last, wrapSQL(err))
		if berr != nil {
			return berr
		}
		if bad == 0 {
			return wrapSQL(err)
		}
		after = bad
	}
	return errors.New("too many failed rows")
}

// listDatabases reads sys.databases.
func (c *Client) listDatabases(ctx context.Context) ([]Database, error) {
	var out []Database
	scan := func(rows *sql.Rows) (int32, error) {
		var d Database
		var name, state, rm, ua, gdb, rep, coll sql.NullString
		var ro, standby, enc, autoClose sql.NullBool
		var src sql.NullInt64
		var created sql.NullTime
		if err := rows.Scan(&d.ID, &name, &state, &rm, &ro, &ua, &standby, &src, &gdb, &rep, &enc, &created, &coll, &autoClose); err != nil {
			// A value the driver cannot convert spoils this row only.
			d.Name = name.String
			d.addProblem(fmt.Sprintf("its row of sys.databases does not read: %v", err))
			out = append(out, d)
			return d.ID, nil
		}
		d.Name, d.State, d.RecoveryModel, d.UserAccess = name.String, state.String, rm.String, ua.String
		d.ReadOnly, d.InStandby, d.Encrypted, d.AutoClose = ro.Bool, standby.Bool, enc.Bool, autoClose.Bool
		d.Snapshot = src.Valid
		d.GroupDatabaseID, d.ReplicaID, d.Collation = gdb.String, rep.String, coll.String
		d.Created = created.Time
		// Documented as NULL when the database is not online, or when
		// AUTO_CLOSE is on and the database is closed.
		d.Unknown = !rm.Valid || !ro.Valid || !coll.Valid
		d.Closed = d.AutoClose && d.State == "ONLINE" && !coll.Valid
		if !name.Valid || !state.Valid || !created.Valid {
			d.addProblem("sys.databases shows NULL for its name, state or creation date")
		}
		out = append(out, d)
		return d.ID, nil
	}
	blame := func(last int32, cause error) (int32, error) {
		// The row after last failed: name it by id, which cannot fail.
		var id int32
		var name sql.NullString
		err := c.db.QueryRowContext(ctx, `SELECT TOP 1 database_id, DB_NAME(database_id) FROM sys.databases
			WHERE database_id > @p1 AND database_id <> 2 ORDER BY database_id`, last).Scan(&id, &name)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("list databases: %w", wrapSQL(err))
		}
		d := Database{ID: id, Name: name.String}
		d.addProblem(fmt.Sprintf("its row of sys.databases does not read: %v", cause))
		out = append(out, d)
		return id, nil
	}
	err := c.resumable(ctx, `SELECT d.database_id, d.name, d.state_desc, d.recovery_model_desc, d.is_read_only,
		d.user_access_desc, d.is_in_standby, d.source_database_id, CAST(d.group_database_id AS nvarchar(36)),
		CAST(d.replica_id AS nvarchar(36)), d.is_encrypted, d.create_date, d.collation_name, d.is_auto_close_on
		FROM sys.databases d WHERE d.database_id > @p1 AND d.database_id <> 2 ORDER BY d.database_id`, scan, blame)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	return out, nil
}

// recoveryStatus reads the log chain state of every open database. The
// view starts a database AUTO_CLOSE shut down for each row it reads, so
// when any is closed the query names the others.
func (c *Client) recoveryStatus(ctx context.Context, dbs []Database, byID map[int32]int) error {
	query := `SELECT database_id, last_log_backup_lsn, CAST(recovery_fork_guid AS nvarchar(36)) FROM sys.database_recovery_status WHERE database_id <> 2`
	var open []string
	closed := false
	for _, d := range dbs {
		if d.Closed {
			closed = true
			continue
		}
		if d.State == "ONLINE" {
			open = append(open, strconv.Itoa(int(d.ID)))
		}
	}
	if closed {
		if len(open) == 0 {
			return nil
		}
		// database_ids SQL Server just listed: integers, no quoting needed
		query = `SELECT database_id, last_log_backup_lsn, CAST(recovery_fork_guid AS nvarchar(36)) FROM sys.database_recovery_status
			WHERE database_id IN (` + strings.Join(open, ",") + `)`
	}
	rows, err := c.db.QueryContext(ctx, query)
	if err != nil {
		return fmt.Errorf("read the log chain state: %w", wrapSQL(err))
	}
	defer rows.Close()
	for rows.Next() {
		var id int32
		var lsn, fork sql.NullString
		if err := rows.Scan(&id, &lsn, &fork); err != nil {
			if k, ok := byID[id]; ok {
				dbs[k].addProblem(fmt.Sprintf("its log chain state does not read: %v", err))
			}
			continue
		}
		if k, ok := byID[id]; ok {
			dbs[k].LastLogBackupLSN, dbs[k].RecoveryForkGUID = lsn.String, strings.ToLower(fork.String)
		}
	}
	if err := rows.Err(); err != nil {
		// The chain state is advisory here (the streamer reads it again
		// before each backup): keep what was read and say what was not.
		for k := range dbs {
			if dbs[k].State == "ONLINE" && !dbs[k].Closed && dbs[k].RecoveryForkGUID == "" {
				dbs[k].addProblem(fmt.Sprintf("its log chain state does not read: %v", wrapSQL(err)))
			}
		}
	}
	return nil
}

// files reads sys.master_files. A database whose files fail to read keeps
// those that did, and says so.
func (c *Client) files(ctx context.Context, dbs []Database, byID map[int32]int) error {
	ids := make([]int32, 0, len(dbs))
	for _, d := range dbs {
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	add := func(rows *sql.Rows, only int32) (int32, error) {
		var id, fid sql.NullInt32
		var typ, logical, physical, base sql.NullString
		var pages sql.NullInt64
		if err := rows.Scan(&id, &fid, &typ, &logical, &physical, &pages, &base); err != nil {
			if k, ok := byID[id.Int32]; ok {
				dbs[k].addProblem(fmt.Sprintf("a row of its files does not read: %v", err))
			}
			return id.Int32, nil
		}
		k, ok := byID[id.Int32]
		if !ok || (only != 0 && id.Int32 != only) {
			return id.Int32, nil
		}
		f := File{ID: fid.Int32, Logical: logical.String, Physical: physical.String, Type: typ.String, Size: pages.Int64 * 8192}
		dbs[k].Files = append(dbs[k].Files, f)
		if f.Type == "ROWS" && f.ID == 1 {
			dbs[k].DiffBaseLSN = base.String
		}
		return id.Int32, nil
	}
	const cols = `SELECT database_id, file_id, type_desc, name, physical_name, size, differential_base_lsn FROM sys.master_files`
	next := func(after int32) int32 {
		i, _ := slices.BinarySearch(ids, after+1)
		if i < len(ids) {
			return ids[i]
		}
		return 0
	}
	blame := func(last int32, cause error) (int32, error) {
		// The failing row is either a later file of the last database
		// read, or the first file of the next: read the last alone to
		// tell which.
		if last != 0 {
			if k, ok := byID[last]; ok {
				dbs[k].Files, dbs[k].DiffBaseLSN = nil, ""
				rows, err := c.db.QueryContext(ctx, cols+` WHERE database_id = @p1 ORDER BY file_id`, last)
				if err != nil {
					return 0, wrapSQL(err)
				}
				for rows.Next() {
					add(rows, last)
				}
				err = rows.Err()
				rows.Close()
				if err != nil {
					dbs[k].addProblem(fmt.Sprintf("its files do not read: %v", wrapSQL(err)))
					return last, nil
				}
			}
		}
		bad := next(last)
		if k, ok := byID[bad]; ok {
			dbs[k].addProblem(fmt.Sprintf("its files do not read: %v", cause))
		}
		return bad, nil
	}
	err := c.resumable(ctx, cols+` WHERE database_id > @p1 ORDER BY database_id, file_id`,
		func(rows *sql.Rows) (int32, error) { return add(rows, 0) }, blame)
	if err != nil {
		return fmt.Errorf("list database files: %w", err)
	}
	return nil
}

// replicas reads the availability group state of the databases in a group.
func (c *Client) replicas(ctx context.Context, dbs []Database, byID map[int32]int) error {
	rows, err := c.db.QueryContext(ctx, `SELECT drs.database_id, ag.name, ag.automated_backup_preference_desc,
		drs.is_primary_replica, drs.synchronization_state_desc, ag.basic_features
		FROM sys.dm_hadr_database_replica_states drs JOIN sys.availability_groups ag ON ag.group_id = drs.group_id
		WHERE drs.is_local = 1`)
	if err != nil {
		return fmt.Errorf("read availability groups: %w", wrapSQL(err))
	}
	defer rows.Close()
	for rows.Next() {
		var id int32
		var group, pref, sync sql.NullString
		var primary, basic sql.NullBool
		if err := rows.Scan(&id, &group, &pref, &primary, &sync, &basic); err != nil {
			if k, ok := byID[id]; ok {
				dbs[k].addProblem(fmt.Sprintf("its availability group state does not read: %v", err))
			}
			continue
		}
		if k, ok := byID[id]; ok {
			dbs[k].AG = &Replica{Group: group.String, Preference: pref.String, Primary: primary.Bool, Synchronization: sync.String, Basic: basic.Bool}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read availability groups: %w", wrapSQL(err))
	}
	for k := range dbs {
		if dbs[k].AG == nil {
			continue
		}
		var preferred sql.NullBool
		if err := c.db.QueryRowContext(ctx, `SELECT sys.fn_hadr_backup_is_preferred_replica(@p1)`, dbs[k].Name).Scan(&preferred); err != nil {
			dbs[k].addProblem(fmt.Sprintf("whether this replica is preferred for its backups does not read: %v", wrapSQL(err)))
			continue
		}
		dbs[k].AG.Preferred = preferred.Bool
	}
	return nil
}

// Fingerprint summarises sys.databases in one row. It changes when a
// database is created, dropped, renamed or restored over, and when one
// changes state, recovery model, read-only, user access, standby,
// encryption, availability group or AUTO_CLOSE setting, or AUTO_CLOSE
// opens or closes it. It does not change with backups, file sizes or a
// failover: those need the full listing.
type Fingerprint struct {
	Count      int64
	MaxID      int64
	MaxCreated time.Time
	Checksum   int64
}

// Fingerprint reads the summary of sys.databases: one statement whose cost
// does not grow with what it finds, which reads master's catalog only and
// starts no database. CHECKSUM_AGG over CHECKSUM can miss a change (two
// that cancel out), so callers still list everything now and then.
func (c *Client) Fingerprint(ctx context.Context) (Fingerprint, error) {
	var f Fingerprint
	var maxID, sum sql.NullInt64
	var created sql.NullTime
	err := c.db.QueryRowContext(ctx, `SELECT COUNT_BIG(*), MAX(database_id), MAX(create_date),
		CHECKSUM_AGG(CHECKSUM(name, database_id, create_date, state, recovery_model, is_read_only, user_access,
			is_in_standby, is_encrypted, is_auto_close_on, collation_name, source_database_id, replica_id, group_database_id))
		FROM sys.databases`).Scan(&f.Count, &maxID, &created, &sum)
	if err != nil {
		return f, fmt.Errorf("read the summary of sys.databases: %w", wrapSQL(err))
	}
	f.MaxID, f.MaxCreated, f.Checksum = maxID.Int64, created.Time, sum.Int64
	return f, nil
}
