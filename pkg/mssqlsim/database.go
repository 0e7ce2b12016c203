package mssqlsim

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// State is a database's state_desc.
type State string

// Database states the simulator models.
const (
	Online    State = "ONLINE"
	Offline   State = "OFFLINE"
	Restoring State = "RESTORING"
)

// RecoveryModel is a database's recovery_model_desc.
type RecoveryModel string

// Recovery models.
const (
	Full       RecoveryModel = "FULL"
	Simple     RecoveryModel = "SIMPLE"
	BulkLogged RecoveryModel = "BULK_LOGGED"
)

// File is one database file as sys.master_files shows it.
type File struct {
	ID       int
	Logical  string
	Physical string
	IsLog    bool
	Pages    int // size in 8 KiB pages
}

// GUID is a uniqueidentifier in its string form.
type GUID string

func newGUID(r interface{ Uint32() uint32 }) GUID {
	var b [16]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return GUID(h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32])
}

// pageChange is one page's new version in a log record.
type pageChange struct {
	ID      uint32
	Version uint32
}

// logRecord is one committed transaction.
type logRecord struct {
	LSN   LSN
	Time  time.Time
	Mark  string // transaction mark name, if any
	Bulk  bool   // minimally logged (bulk) change under BULK_LOGGED
	Pages []pageChange
	// Tables holds the user-table changes of the transaction (table.go).
	Tables []tableOp
}

// dbData is a database's content and log. Availability-group replicas share
// one dbData, as they share one log.
type dbData struct {
	mu sync.Mutex

	seed      uint64
	versions  []uint32          // current version of every data page
	overrides map[uint32][]byte // pages whose bytes are not the derived ones (damage)
	dcm       []bool            // extents changed since the differential base
	bcm       []bool            // extents changed by bulk operations since the last log backup
	lsn       lsnGen
	recovery  RecoveryModel
	lastTime  time.Time
	tables    map[string]*userTable // user tables by tableKey (table.go)

	// history: the state at origin plus every transaction since, for the
	// content oracle and for log backups.
	originVersions  []uint32
	originOverrides map[uint32][]byte
	originTime      time.Time
	recs            []logRecord

	// backup chain state, as SQL Server keeps it in the boot page and
	// sys.database_recovery_status.
	familyGUID    GUID
	databaseGUID  GUID
	forkGUID      GUID
	forkPointLSN  LSN
	diffBaseLSN   LSN // checkpoint LSN of the last non-copy-only full; 0 none
	diffBaseGUID  GUID
	diffBaseTime  time.Time
	lastLogBackup LSN           // last_log_backup_lsn; 0 means NULL
	logChainStart LSN           // first_lsn a first log backup starts from; 0 means no chain (4214)
	activeBackups int           // backups running, which hold the log
	activeLogs    int           // of those, log backups (the rest back up data)
	openTx        map[int64]LSN // open transactions' begin records, by id
	txSeq         int64
	fullCkpt      LSN // checkpoint of the last non-copy-only full (DatabaseBackupLSN); 0: diffBaseLSN
	restore       *restoreState
	forks         []forkEntry // earlier recovery forks, oldest first
}

// forkEntry is an earlier recovery fork and the LSN where it ended.
type forkEntry struct {
	guid  GUID
	until LSN
}

// forkAt returns the recovery fork the log was on at lsn.
func (d *dbData) forkAt(lsn LSN) GUID {
	for _, f := range d.forks {
		if lsn < f.until {
			return f.guid
		}
	}
	return d.forkGUID
}

// newData returns a database of pages pages, all at version 0.
func newData(r *lockedRand, pages int, now time.Time) *dbData {
	d := &dbData{
		seed:         r.Uint64(),
		versions:     make([]uint32, pages),
		overrides:    map[uint32][]byte{},
		dcm:          make([]bool, (pages+pagesPerExtent-1)/pagesPerExtent),
		bcm:          make([]bool, (pages+pagesPerExtent-1)/pagesPerExtent),
		lsn:          newLSNGen(uint64(30 + r.IntN(20))),
		recovery:     Full,
		familyGUID:   newGUID(r),
		databaseGUID: newGUID(r),
		forkGUID:     newGUID(r),
		lastTime:     now,
	}
	d.resetOrigin(now)
	return d
}

// resetOrigin makes the current state the start of the oracle's history.
func (d *dbData) resetOrigin(now time.Time) {
	d.originVersions = append([]uint32(nil), d.versions...)
	d.originOverrides = map[uint32][]byte{}
	for k, v := range d.overrides {
		d.originOverrides[k] = v
	}
	d.originTime = now
	d.recs = nil
}

// commitTime returns now, never earlier than the last commit.
func (d *dbData) commitTime(now time.Time) time.Time {
	if now.Before(d.lastTime) {
		now = d.lastTime
	}
	d.lastTime = now
	return now
}

// commit applies one transaction that rewrites the given pages. d.mu must be
// held.
func (d *dbData) commit(now time.Time, pages []uint32, mark string, bulk bool) logRecord {
	rec := logRecord{LSN: d.lsn.take(), Time: d.commitTime(now), Mark: mark}
	rec.Bulk = bulk && d.recovery == BulkLogged
	for _, id := range pages {
		if int(id) >= len(d.versions) {
			continue
		}
		d.versions[id]++
		delete(d.overrides, id)
		rec.Pages = append(rec.Pages, pageChange{ID: id, Version: d.versions[id]})
		d.dcm[id/pagesPerExtent] = true
		if rec.Bulk {
			d.bcm[id/pagesPerExtent] = true
		}
	}
	d.recs = append(d.recs, rec)
	return rec
}

// checkpoint writes a checkpoint record and returns its LSN.
func (d *dbData) checkpoint() LSN { return d.lsn.take() }

// apply sets the page versions a log record carries. Used by restore.
func (d *dbData) apply(rec logRecord) {
	for _, c := range rec.Pages {
		if int(c.ID) < len(d.versions) {
			d.versions[c.ID] = c.Version
			delete(d.overrides, c.ID)
			d.dcm[c.ID/pagesPerExtent] = true
		}
	}
	d.applyTables(rec.Tables)
}

// recordsIn returns the log records with first <= LSN < last.
func (d *dbData) recordsIn(first, last LSN) []logRecord {
	i := sort.Search(len(d.recs), func(i int) bool { return d.recs[i].LSN >= first })
	j := sort.Search(len(d.recs), func(i int) bool { return d.recs[i].LSN >= last })
	return d.recs[i:j]
}

// contentHash hashes the bytes of every page in page order, given versions
// and overrides.
func contentHash(seed uint64, versions []uint32, overrides map[uint32][]byte) string {
	h := sha256.New()
	buf := make([]byte, PageSize)
	for id, v := range versions {
		if o, ok := overrides[uint32(id)]; ok {
			h.Write(o)
			continue
		}
		fillPage(buf, seed, uint32(id), v)
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// hashNow returns the content hash of the current pages. d.mu must be held.
func (d *dbData) hashNow() string { return contentHash(d.seed, d.versions, d.overrides) }

// hashAsOf returns the content hash as of t: every transaction committed at
// or before t applied. ok is false when t is before the retained history.
func (d *dbData) hashAsOf(t time.Time) (string, bool) {
	if t.Before(d.originTime) {
		return "", false
	}
	v := append([]uint32(nil), d.originVersions...)
	o := map[uint32][]byte{}
	for k, b := range d.originOverrides {
		o[k] = b
	}
	for _, r := range d.recs {
		if r.Time.After(t) {
			break
		}
		for _, c := range r.Pages {
			v[c.ID] = c.Version
			delete(o, c.ID)
		}
	}
	return contentHash(d.seed, v, o), true
}

// pageBytes writes the current bytes of page id into buf.
func (d *dbData) pageBytes(buf []byte, id uint32, versions []uint32, overrides map[uint32][]byte) {
	if o, ok := overrides[id]; ok {
		copy(buf, o)
		return
	}
	fillPage(buf, d.seed, id, versions[id])
}

// Database is one database of an instance, as sys.databases lists it.
type Database struct {
	ID         int
	Name       string
	State      State
	ReadOnly   bool
	CreateDate time.Time
	Collation  string
	Files      []File
	access     UserAccess // user_access_desc; "" is MULTI_USER

	// AUTO_CLOSE: whether the option is on, whether the database is shut
	// down now (idle), and how many times it was started again.
	autoClose atomic.Bool
	asleep    atomic.Bool
	wakes     atomic.Int64

	// AG membership; empty when not in an availability group.
	agName string
	ag     *AvailabilityGroup
	owner  *Instance

	*dbData
}

// state is the database's state_desc now.
func (db *Database) state() State {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.State
}

// dataPages returns the number of pages in the data files.
func dataPages(files []File) int {
	n := 0
	for _, f := range files {
		if !f.IsLog {
			n += f.Pages
		}
	}
	return n
}
