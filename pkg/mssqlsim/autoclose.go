package mssqlsim

// AUTO_CLOSE, as SQL Server documents it: a database with the option on is
// shut down cleanly when its last user leaves, and started again by the
// next thing that needs it. While it is shut down, sys.databases shows
// NULL in the columns that come from the database itself (collation_name,
// compatibility_level and the others listed in closedNulls), and reading
// its row of sys.database_recovery_status starts it ("If the database is
// not opened, the Database Engine tries to start it"). Starting a
// database costs a real server time and I/O, so each start is counted
// (Instance.Wakes) for tests that must prove a reader started nothing.
//
// What starts a closed database here: a login or USE naming it, any
// statement or Instance method that works on it by name (BACKUP, RESTORE,
// ALTER DATABASE, DBCC, the workload procedures), and reading its row of
// sys.database_recovery_status. sys.databases, sys.master_files, DB_ID,
// DB_NAME and msdb do not start it: they read master's own catalog.
// A database is shut down again at the end of the batch once no session
// uses it, no backup or restore runs on it and no workload writes to it.

// wake starts db if AUTO_CLOSE shut it down.
func (db *Database) wake() {
	if db.autoClose.Load() && db.asleep.CompareAndSwap(true, false) {
		db.wakes.Add(1)
	}
}

// isClosed reports whether AUTO_CLOSE has shut db down.
func (db *Database) isClosed() bool { return db.autoClose.Load() && db.asleep.Load() }

// SetAutoClose turns AUTO_CLOSE on or off, as ALTER DATABASE ... SET
// AUTO_CLOSE does. A database with the option on is shut down at once when
// nothing uses it.
func (i *Instance) SetAutoClose(name string, on bool) error {
	db, e := i.lookup(name)
	if e != nil {
		return e
	}
	if db.state() != Online {
		return newErr(5011, 14, "User does not have permission to alter database '%s', the database does not exist, or the database is not in a state that allows access checks.", db.Name)
	}
	if db.ID <= 4 && on {
		// SQL Server refuses the option on master, tempdb, model and msdb.
		return newErr(5058, 16, "Option 'AUTO_CLOSE' cannot be set in database '%s'.", db.Name)
	}
	db.autoClose.Store(on)
	db.asleep.Store(false)
	i.closeIdle()
	return nil
}

// Wakes returns how many times AUTO_CLOSE's shut-down database name was
// started again, and whether it is shut down now.
func (i *Instance) Wakes(name string) (wakes int64, closed bool, err error) {
	i.mu.Lock()
	db := i.dbByName(name)
	i.mu.Unlock()
	if db == nil {
		return 0, false, errNoDatabase(name)
	}
	return db.wakes.Load(), db.isClosed(), nil
}

// closeIdle shuts down every AUTO_CLOSE database that nothing uses.
func (i *Instance) closeIdle() {
	i.mu.Lock()
	var open []*Database
	for _, db := range i.dbs {
		if db.autoClose.Load() && !db.asleep.Load() {
			open = append(open, db)
		}
	}
	used := map[*Database]bool{}
	for s := range i.sessions {
		if db := i.dbByName(s.database); db != nil {
			used[db] = true
		}
	}
	for _, db := range open {
		if i.workloads[db.dbData] != nil {
			used[db] = true
		}
	}
	i.mu.Unlock()
	for _, db := range open {
		if used[db] {
			continue
		}
		db.mu.Lock()
		busy := db.activeBackups > 0 || db.restore != nil || db.State != Online
		db.mu.Unlock()
		if !busy {
			db.asleep.Store(true)
		}
	}
}
