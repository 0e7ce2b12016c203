package mssqlsim

import (
	"strings"
	"time"
)

// viewDef builds one catalog view from the instance's state.
type viewDef struct {
	cols  []column
	build func(x *execCtx) [][]any
	// touch, when set, is called with each row a query reads (after its
	// WHERE), for views whose reading has side effects.
	touch func(x *execCtx, row []any)
}

func nv(name string, size int) column { return column{name: name, typ: ctNVarChar, size: size} }
func ic(name string) column           { return column{name: name, typ: ctInt} }
func bc(name string) column           { return column{name: name, typ: ctBit} }
func tc(name string) column           { return column{name: name, typ: ctTinyInt} }
func dc(name string) column           { return column{name: name, typ: ctDateTime} }
func d1(name string) column           { return column{name: name, typ: ctDateTime1} }
func sc(name string) column           { return column{name: name, typ: ctSmallInt} }
func lc(name string) column           { return column{name: name, typ: ctNumeric} }
func gc(name string) column           { return column{name: name, typ: ctGUID} }
func bi(name string) column           { return column{name: name, typ: ctBigInt} }

func lsnOrNull(l LSN) any {
	if l == 0 {
		return nil
	}
	return numeric(l)
}

func guidOrNull(g GUID) any {
	if g == "" {
		return nil
	}
	return g
}

func timeOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// closedNulls are the sys.databases columns (by index) that are NULL for a
// database that is not online or that AUTO_CLOSE shut down:
// compatibility_level, collation_name, user_access(_desc), is_read_only,
// is_in_standby, recovery_model(_desc), is_encrypted, log_reuse_wait_desc,
// page_verify_option(_desc).
var closedNulls = []int{4, 5, 6, 7, 8, 12, 13, 14, 15, 18, 19, 20}

var recoveryCode = map[RecoveryModel]int64{Full: 1, BulkLogged: 2, Simple: 3}
var stateCode = map[State]int64{Online: 0, Restoring: 1, Offline: 6}

// views are the catalog views the simulator answers, by lower-case
// schema.name.
var views = map[string]viewDef{
	"sys.databases": {
		cols: []column{nv("name", 128), ic("database_id"), ic("source_database_id"), dc("create_date"),
			tc("compatibility_level"), nv("collation_name", 128), tc("user_access"), nv("user_access_desc", 60),
			bc("is_read_only"), bc("is_auto_close_on"), tc("state"), nv("state_desc", 60), bc("is_in_standby"),
			tc("recovery_model"), nv("recovery_model_desc", 60), bc("is_encrypted"), gc("replica_id"),
			gc("group_database_id"), nv("log_reuse_wait_desc", 60), tc("page_verify_option"),
			nv("page_verify_option_desc", 60)},
		build: func(x *execCtx) [][]any {
			var rows [][]any
			x.forDatabases(func(db *Database) {
				var replica, groupDB any
				if db.ag != nil {
					db.ag.mu.Lock()
					if r := db.ag.replica(db.owner); r != nil {
						replica = r.id
					}
					groupDB = db.ag.dbIDs[db.Name]
					db.ag.mu.Unlock()
				}
				row := []any{db.Name, int64(db.ID), nil, db.CreateDate, int64(x.inst.cfg.product().compat), db.Collation,
					userAccessCode[db.userAccess()], string(db.userAccess()), b2i(db.ReadOnly), b2i(db.autoClose.Load()), stateCode[db.State],
					string(db.State), int64(0), recoveryCode[db.recovery], string(db.recovery), int64(0), replica,
					groupDB, "NOTHING", int64(2), "CHECKSUM"}
				if db.State != Online || db.isClosed() {
					// "If a database is not ONLINE, or AUTO_CLOSE is set
					// to ON and the database is closed, the values of
					// some columns may be NULL": the simulator takes the
					// strict reading and leaves only what master itself
					// records (name, ids, dates, state, the options)
					for _, k := range closedNulls {
						row[k] = nil
					}
				}
				rows = append(rows, row)
			})
			return rows
		},
	},
	"sys.database_recovery_status": {
		cols: []column{ic("database_id"), gc("database_guid"), gc("family_guid"), lc("last_log_backup_lsn"),
			gc("recovery_fork_guid"), gc("first_recovery_fork_guid"), lc("fork_point_lsn")},
		build: func(x *execCtx) [][]any {
			var rows [][]any
			x.forDatabases(func(db *Database) {
				if db.State != Online {
					// one row per database; one that is not open has
					// no recovery state to show
					rows = append(rows, []any{int64(db.ID), nil, nil, nil, nil, nil, nil})
					return
				}
				first := db.forkGUID
				if len(db.forks) > 0 {
					first = db.forks[0].guid
				}
				// last_log_backup_lsn is where the next log backup starts:
				// NULL under SIMPLE or before the first full, the full's
				// first LSN until the first log backup
				next := db.lastLogBackup
				if next == 0 {
					next = db.logChainStart
				}
				rows = append(rows, []any{int64(db.ID), db.databaseGUID, db.familyGUID, lsnOrNull(next),
					db.forkGUID, first, lsnOrNull(db.forkPointLSN)})
			})
			return rows
		},
		// "If the database is not opened, the Database Engine tries to
		// start it": reading the row of a database AUTO_CLOSE shut down
		// starts it. A WHERE on database_id is applied first, as the
		// view's plan filters master's list before it opens anything.
		touch: func(x *execCtx, row []any) {
			id, _ := toInt(row[0])
			x.inst.mu.Lock()
			db := x.inst.dbs[int(id)]
			x.inst.mu.Unlock()
			if db != nil {
				db.wake()
			}
		},
	},
	"sys.master_files": {
		cols: []column{ic("database_id"), ic("file_id"), tc("type"), nv("type_desc", 60), ic("data_space_id"),
			nv("name", 128), nv("physical_name", 260), nv("state_desc", 60), ic("size"), lc("differential_base_lsn"),
			gc("differential_base_guid"), dc("differential_base_time"), lc("redo_start_lsn"), lc("backup_lsn")},
		build: func(x *execCtx) [][]any {
			var rows [][]any
			x.forDatabases(func(db *Database) {
				for _, f := range db.Files {
					typ, desc, space := int64(0), "ROWS", int64(1)
					var base, baseGUID, baseTime any
					if f.IsLog {
						typ, desc, space = 1, "LOG", 0
					} else if f.ID == 1 {
						base, baseGUID, baseTime = lsnOrNull(db.diffBaseLSN), guidOrNull(db.diffBaseGUID), timeOrNull(db.diffBaseTime)
						if db.diffBaseLSN == 0 {
							baseGUID, baseTime = nil, nil
						}
					}
					var redo any
					if db.restore != nil {
						redo = numeric(db.restore.redo)
					}
					rows = append(rows, []any{int64(db.ID), int64(f.ID), typ, desc, space, f.Logical, f.Physical,
						string(db.State), int64(f.Pages), base, baseGUID, baseTime, redo, nil})
				}
			})
			return rows
		},
	},
	"sys.credentials": {
		cols: []column{ic("credential_id"), nv("name", 128), nv("credential_identity", 4000), dc("create_date")},
		build: func(x *execCtx) [][]any {
			x.inst.mu.Lock()
			defer x.inst.mu.Unlock()
			var rows [][]any
			for _, c := range x.inst.credentials {
				rows = append(rows, []any{int64(c.id), c.name, c.identity, x.inst.startTime})
			}
			return rows
		},
	},
	"sys.availability_groups": {
		cols: []column{gc("group_id"), nv("name", 128), tc("automated_backup_preference"), nv("automated_backup_preference_desc", 60),
			bc("basic_features")},
		build: func(x *execCtx) [][]any {
			var rows [][]any
			for _, ag := range x.groups() {
				ag.mu.Lock()
				code := map[string]int64{PreferPrimary: 0, PreferSecondaryOnly: 1, PreferSecondary: 2, PreferNone: 3}[ag.preference]
				rows = append(rows, []any{ag.id, ag.Name, code, ag.preference, b2i(ag.basic)})
				ag.mu.Unlock()
			}
			return rows
		},
	},
	"sys.availability_replicas": {
		cols: []column{gc("replica_id"), gc("group_id"), nv("replica_server_name", 256), ic("backup_priority"),
			nv("availability_mode_desc", 60), nv("secondary_role_allow_connections_desc", 60)},
		build: func(x *execCtx) [][]any {
			var rows [][]any
			for _, ag := range x.groups() {
				ag.mu.Lock()
				for _, r := range ag.replicas {
					rows = append(rows, []any{r.id, ag.id, r.inst.Name(), int64(r.priority), "SYNCHRONOUS_COMMIT", "ALL"})
				}
				ag.mu.Unlock()
			}
			return rows
		},
	},
	"sys.dm_hadr_availability_replica_states": {
		cols: []column{gc("replica_id"), gc("group_id"), bc("is_local"), tc("role"), nv("role_desc", 60),
			nv("synchronization_health_desc", 60), nv("connected_state_desc", 60)},
		build: func(x *execCtx) [][]any {
			var rows [][]any
			for _, ag := range x.groups() {
				ag.mu.Lock()
				for _, r := range ag.replicas {
					role, desc := int64(2), "SECONDARY"
					if r.primary {
						role, desc = 1, "PRIMARY"
					}
					health := "HEALTHY"
					if r.sync == NotSynchronizing {
						health = "NOT_HEALTHY"
					}
					rows = append(rows, []any{r.id, ag.id, b2i(r.inst == x.inst), role, desc, health, "CONNECTED"})
				}
				ag.mu.Unlock()
			}
			return rows
		},
	},
	"sys.dm_hadr_database_replica_states": {
		cols: []column{ic("database_id"), gc("group_id"), gc("replica_id"), gc("group_database_id"), bc("is_local"),
			bc("is_primary_replica"), tc("synchronization_state"), nv("synchronization_state_desc", 60),
			nv("synchronization_health_desc", 60), lc("last_hardened_lsn")},
		build: func(x *execCtx) [][]any {
			var rows [][]any
			x.forDatabases(func(db *Database) {
				if db.ag == nil {
					return
				}
				ag := db.ag
				ag.mu.Lock()
				defer ag.mu.Unlock()
				for _, r := range ag.replicas {
					if r.inst != x.inst {
						continue
					}
					sync := r.sync
					if r.primary {
						sync = Synchronized
					}
					code := map[string]int64{NotSynchronizing: 0, Synchronizing: 1, Synchronized: 2}[sync]
					health := "HEALTHY"
					if sync == NotSynchronizing {
						health = "NOT_HEALTHY"
					}
					rows = append(rows, []any{int64(db.ID), ag.id, r.id, ag.dbIDs[db.Name], int64(1), b2i(r.primary),
						code, sync, health, numeric(db.lsn.next)})
				}
			})
			return rows
		},
	},
	"sys.availability_databases_cluster": {
		cols: []column{gc("group_id"), gc("group_database_id"), nv("database_name", 128)},
		build: func(x *execCtx) [][]any {
			var rows [][]any
			for _, ag := range x.groups() {
				ag.mu.Lock()
				for name, id := range ag.dbIDs {
					rows = append(rows, []any{ag.id, id, name})
				}
				ag.mu.Unlock()
			}
			return rows
		},
	},
	"dbo.backupset": {
		cols: []column{ic("backup_set_id"), gc("backup_set_uuid"), ic("media_set_id"), nv("name", 128),
			nv("description", 255), nv("user_name", 128), d1("backup_start_date"), d1("backup_finish_date"), sc("time_zone"),
			nv("type", 1), bi("backup_size"), bi("compressed_backup_size"), nv("database_name", 128),
			nv("server_name", 128), nv("machine_name", 128), nv("recovery_model", 60), bc("has_bulk_logged_data"),
			bc("is_snapshot"), bc("is_readonly"), bc("is_copy_only"), bc("begins_log_chain"), bc("has_backup_checksums"),
			bc("is_damaged"), lc("first_lsn"), lc("last_lsn"), lc("checkpoint_lsn"), lc("database_backup_lsn"),
			lc("differential_base_lsn"), gc("differential_base_guid"), gc("first_recovery_fork_guid"),
			gc("last_recovery_fork_guid"), lc("fork_point_lsn"), gc("database_guid"), gc("family_guid"),
			dc("database_creation_date"), nv("collation_name", 128)},
		build: func(x *execCtx) [][]any {
			x.inst.mu.Lock()
			defer x.inst.mu.Unlock()
			var rows [][]any
			for _, r := range x.inst.backupsets {
				h := r.Header
				size := r.Trailer.RawBytes
				if h.Type == typeLog {
					size = r.Trailer.Records * 64
				}
				rows = append(rows, []any{int64(r.ID), guidOrNull(h.BackupSetGUID), int64(r.MediaSetID), nullIfEmpty(h.Name),
					nullIfEmpty(h.Description), h.UserName, datetimeValue(h.localStart()), datetimeValue(r.Trailer.localFinish()),
					timeZoneCode(h.UTCOffset),
					r.typeCode(), size, size, h.DatabaseName, h.ServerName, r.Machine, string(h.RecoveryModel),
					b2i(h.HasBulkLoggedData), int64(0), int64(0), b2i(h.IsCopyOnly), b2i(h.BeginsLogChain),
					b2i(h.Checksums), int64(0), numeric(h.FirstLSN), numeric(h.LastLSN), lsnOrNull(h.CheckpointLSN),
					lsnOrNull(h.DatabaseBackupLSN), lsnOrNull(h.DifferentialBaseLSN), guidOrNull(h.DifferentialBaseGUID),
					guidOrNull(h.FirstRecoveryForkGUID), guidOrNull(h.LastRecoveryForkGUID), lsnOrNull(h.ForkPointLSN),
					h.DatabaseGUID, h.FamilyGUID, nil, h.Collation})
			}
			return append(rows, x.inst.foreignBackupsets()...)
		},
	},
	"dbo.logmarkhistory": {
		cols: []column{nv("database_name", 128), nv("mark_name", 128), nv("description", 255), nv("user_name", 128),
			lc("lsn"), d1("mark_time")},
		build: func(x *execCtx) [][]any {
			x.inst.mu.Lock()
			defer x.inst.mu.Unlock()
			rows := make([][]any, 0, len(x.inst.logMarks))
			for _, m := range x.inst.logMarks {
				rows = append(rows, []any{m.database, m.mark, nil, m.user, numeric(m.lsn), datetimeValue(x.inst.local(m.at))})
			}
			return rows
		},
	},
	"dbo.backupmediafamily": {
		cols: []column{ic("media_set_id"), tc("family_sequence_number"), nv("physical_device_name", 260), tc("device_type")},
		build: func(x *execCtx) [][]any {
			x.inst.mu.Lock()
			defer x.inst.mu.Unlock()
			var rows [][]any
			for _, r := range x.inst.backupsets {
				for k, d := range r.Devices {
					typ := int64(2)
					if strings.HasPrefix(strings.ToLower(d), "s3://") {
						typ = 9
					}
					rows = append(rows, []any{int64(r.MediaSetID), int64(k + 1), d, typ})
				}
			}
			return rows
		},
	},
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// catalogTable resolves a one- to three-part name to a view.
func (x *execCtx) catalogTable(parts []string) (*table, *Error) {
	full := strings.Join(parts, ".")
	var dbName, schema, name string
	switch len(parts) {
	case 1:
		schema, name = "dbo", parts[0]
	case 2:
		schema, name = parts[0], parts[1]
	case 3:
		dbName, schema, name = parts[0], parts[1], parts[2]
	default:
		return nil, errInvalidObject(full)
	}
	if schema == "" {
		schema = "dbo"
	}
	key := strings.ToLower(schema + "." + name)
	v, ok := views[key]
	if !ok {
		return nil, errInvalidObject(full)
	}
	if dbName == "" {
		dbName = x.sess.database
	}
	if strings.HasPrefix(key, "dbo.") && !strings.EqualFold(dbName, "msdb") {
		return nil, errInvalidObject(full)
	}
	if dbName != "" && !strings.EqualFold(dbName, "msdb") && !strings.EqualFold(dbName, "master") {
		x.inst.mu.Lock()
		db := x.inst.dbByName(dbName)
		x.inst.mu.Unlock()
		if db == nil {
			return nil, errNoDatabase(dbName)
		}
	}
	t := &table{cols: v.cols, rows: v.build(x)}
	if v.touch != nil {
		t.touch = func(row []any) { v.touch(x, row) }
	}
	return t, nil
}

// forDatabases calls f for each database in id order, under its lock.
func (x *execCtx) forDatabases(f func(db *Database)) {
	x.inst.mu.Lock()
	dbs := x.inst.sortedDBs()
	x.inst.mu.Unlock()
	for _, db := range dbs {
		db.mu.Lock()
		f(db)
		db.mu.Unlock()
	}
}

func (x *execCtx) groups() []*AvailabilityGroup {
	x.inst.mu.Lock()
	defer x.inst.mu.Unlock()
	var out []*AvailabilityGroup
	for _, ag := range x.inst.ags {
		out = append(out, ag)
	}
	return out
}
