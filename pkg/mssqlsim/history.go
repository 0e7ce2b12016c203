package mssqlsim

import (
	"strings"
	"time"
)

// HistoryRow is a row of msdb.dbo.backupset that this instance did not
// write itself: one another tool inserted, or one a restore of msdb
// brought back from an older server. msdb documents nearly every column
// of backupset as nullable (type, is_copy_only, backup_start_date,
// backup_finish_date, the LSNs, user_name, ...), and such rows do carry
// NULLs; here a zero field is NULL.
type HistoryRow struct {
	Database string
	// Type is msdb's code (D, I, L, F, G, P, Q); "" is NULL.
	Type          string
	CopyOnly      *bool
	FirstLSN      LSN
	LastLSN       LSN
	CheckpointLSN LSN
	Start         time.Time
	Finish        time.Time
	UserName      string
	ServerName    string
}

// foreignRow is a HistoryRow with the id msdb gave it.
type foreignRow struct {
	id int
	HistoryRow
}

// AddHistory inserts r into msdb.dbo.backupset with the next
// backup_set_id, as another tool's INSERT would. It has no media family,
// and RESTORE knows nothing of it.
func (i *Instance) AddHistory(r HistoryRow) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.foreign = append(i.foreign, foreignRow{id: i.nextBackupSetID(), HistoryRow: r})
}

// nextBackupSetID is the next backup_set_id; i.mu must be held.
func (i *Instance) nextBackupSetID() int {
	n := 0
	for _, r := range i.backupsets {
		n = max(n, r.ID)
	}
	for _, r := range i.foreign {
		n = max(n, r.id)
	}
	return n + 1
}

// foreignBackupsets returns the dbo.backupset rows of AddHistory in the
// view's column order; i.mu must be held.
func (i *Instance) foreignBackupsets() [][]any {
	rows := make([][]any, 0, len(i.foreign))
	for _, r := range i.foreign {
		var copyOnly any
		if r.CopyOnly != nil {
			copyOnly = b2i(*r.CopyOnly)
		}
		rows = append(rows, []any{int64(r.id), nil, nil, nil,
			nil, nullIfEmpty(r.UserName), timeOrNull(r.Start), timeOrNull(r.Finish), nil,
			nullIfEmpty(r.Type), nil, nil, r.Database,
			nullIfEmpty(r.ServerName), nil, nil, nil,
			nil, nil, copyOnly, nil, nil,
			nil, lsnOrNull(r.FirstLSN), lsnOrNull(r.LastLSN), lsnOrNull(r.CheckpointLSN), nil,
			nil, nil, nil,
			nil, nil, nil, nil,
			nil, nil})
	}
	return rows
}

// DamageCatalog gives database's log file a logical name longer than a
// sysname: the state of a database created before the simulator refused
// such names (a --data directory from then), or of a damaged catalog. Its
// row of sys.master_files cannot be sent, so a query reading it fails in
// the middle of its result. For tests of readers that must survive one bad
// row.
func (i *Instance) DamageCatalog(database string) error {
	db, e := i.lookup(database)
	if e != nil {
		return e
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	for k := range db.Files {
		if db.Files[k].IsLog {
			db.Files[k].Logical = strings.Repeat("L", 129)
		}
	}
	return nil
}
