package mssqlsim

// User sessions and exclusive access. A session "uses" the database it is
// in (its login's database, or the last USE), as a SQL Server session
// holds a shared lock on its current database. RESTORE over a database,
// a tail-log backup (BACKUP LOG ... WITH NORECOVERY), DROP DATABASE and
// taking a database OFFLINE need it to themselves: another session in it
// makes them fail with 3101 (3702 for DROP, 5070 for ALTER DATABASE), and
// the session running the statement must not be in it either (3102). A
// client pool's idle connection counts as much as a busy one, until the
// pool resets it for its next request.

// UserAccess is a database's user_access_desc.
type UserAccess string

// User access modes.
const (
	MultiUser      UserAccess = "MULTI_USER"
	SingleUser     UserAccess = "SINGLE_USER"
	RestrictedUser UserAccess = "RESTRICTED_USER"
)

var userAccessCode = map[UserAccess]int64{MultiUser: 0, SingleUser: 1, RestrictedUser: 2}

// addSession records a new session and how to drop its connection.
func (i *Instance) addSession(s *session, kill func()) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.sessions == nil {
		i.sessions = map[*session]func(){}
	}
	i.sessions[s] = kill
}

// removeSession forgets a session whose connection ended.
func (i *Instance) removeSession(s *session) {
	i.mu.Lock()
	defer i.mu.Unlock()
	delete(i.sessions, s)
}

// usersOf returns the sessions other than except whose current database
// is name. i.mu must be held.
func (i *Instance) usersOf(name string, except *session) []*session {
	var out []*session
	for s := range i.sessions {
		if s != except && i.sameName(s.database, name) {
			out = append(out, s)
		}
	}
	return out
}

// enter makes name the session's current database, as USE or a login's
// database does: a SINGLE_USER database another session is in refuses
// with 924.
func (i *Instance) enter(s *session, db *Database) *Error {
	i.mu.Lock()
	defer i.mu.Unlock()
	db.mu.Lock()
	access := db.access
	db.mu.Unlock()
	if access == SingleUser && len(i.usersOf(db.Name, s)) > 0 {
		return newErr(924, 14, "Database '%s' is already open and can only have one user at a time.", db.Name)
	}
	s.database = db.Name
	return nil
}

// exclusive checks that the statement's session can have database name to
// itself. inUse is the error to give when another session is in it.
func (i *Instance) exclusive(s *session, name, verb string, inUse func() *Error) *Error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if s != nil && i.sameName(s.database, name) {
		return newErr(3102, 16, "%s cannot process database '%s' because it is in use by this session. It is recommended that the master database be used when performing this operation.", verb, name)
	}
	if len(i.usersOf(name, s)) > 0 {
		return inUse()
	}
	return nil
}

// errInUse is 3101, the error of RESTORE and BACKUP ... WITH NORECOVERY.
func errInUse() *Error {
	return newErr(3101, 16, "Exclusive access could not be obtained because the database is in use.")
}

// rollbackUsers drops every session but except that is in database name,
// as ALTER DATABASE ... WITH ROLLBACK IMMEDIATE does. They are forgotten
// at once, so the caller finds the database free.
func (i *Instance) rollbackUsers(name string, except *session) {
	i.mu.Lock()
	users := i.usersOf(name, except)
	var kills []func()
	for _, s := range users {
		kills = append(kills, i.sessions[s])
		delete(i.sessions, s)
	}
	i.mu.Unlock()
	for _, k := range kills {
		if k != nil {
			k()
		}
	}
}

// setUserAccess sets a database's user_access (ALTER DATABASE ... SET
// SINGLE_USER | RESTRICTED_USER | MULTI_USER).
func (i *Instance) setUserAccess(name string, a UserAccess) error {
	db, e := i.lookup(name)
	if e != nil {
		return e
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.access = a
	return nil
}

// userAccess is the database's user_access_desc. db.mu must be held.
func (db *Database) userAccess() UserAccess {
	if db.access == "" {
		return MultiUser
	}
	return db.access
}
