package mssqlsim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// restoreStmt is a parsed RESTORE statement.
type restoreStmt struct {
	kind           string // DATABASE, LOG, HEADERONLY, FILELISTONLY, VERIFYONLY
	database       string
	sources        []target
	file           int
	noRecovery     bool
	recoveryOnly   bool // RESTORE DATABASE x WITH RECOVERY, no FROM
	replace        bool
	moves          [][2]string
	stopAt         time.Time
	stopAtMark     string
	stopBeforeMark string
	markAfter      time.Time
	checksum       bool
	noChecksum     bool
	stats          int
	credential     string
}

func (s *restoreStmt) verb() string {
	switch s.kind {
	case "LOG":
		return "RESTORE LOG"
	case "DATABASE":
		return "RESTORE DATABASE"
	case "VERIFYONLY":
		return "VERIFY DATABASE"
	}
	return "RESTORE " + s.kind
}

func (s *restoreStmt) hasStop() bool {
	return !s.stopAt.IsZero() || s.stopAtMark != "" || s.stopBeforeMark != ""
}

// restoreState is the restore sequence of a database in RESTORING.
type restoreState struct {
	redo           LSN       // next LSN to roll forward
	redoTime       time.Time // the database is consistent as of this moment
	fork           GUID
	family         GUID
	baseCheckpoint LSN  // differential base the restored full set; 0 when none
	baseGUID       GUID // its backup set GUID; empty for an older set
	baseCopyOnly   bool
	haveData       bool // a full has been restored in this sequence
	tail           bool // left by BACKUP LOG WITH NORECOVERY
	recovery       RecoveryModel
}

// isBaseOf reports whether the full this restore began with is the base
// of differential h: by GUID, as SQL Server links them, or by LSN for sets
// an older simulator wrote without GUIDs.
func (rs restoreState) isBaseOf(h setHeader) bool {
	if rs.baseGUID != "" && h.DifferentialBaseGUID != "" {
		return rs.baseGUID == h.DifferentialBaseGUID
	}
	return rs.baseCheckpoint == h.DifferentialBaseLSN
}

// source is an opened backup set on its devices.
type source struct {
	devs  []*device
	set   backupSet
	media mediaHeader
	// sets[k] is the set as devs[k] holds it (its stripe, where its body
	// starts), as openSource found it: the body is read from there
	// without scanning the device again
	sets []backupSet
}

// openSource reads the set at position file from the devices.
func (i *Instance) openSource(ctx context.Context, st *restoreStmt) (*source, *Error) {
	devs, e := i.devices(st.sources, st.credential)
	if e != nil {
		return nil, e
	}
	file := st.file
	if file == 0 {
		file = 1
	}
	src := &source{devs: devs}
	for k, d := range devs {
		if d.nul {
			return nil, newErr(3201, 16, "Cannot open backup device '%s'. Operating system error 2(The system cannot find the file specified.).", d.spec)
		}
		m, sets, _, e := i.readSets(ctx, d)
		if e != nil {
			return nil, e
		}
		if k == 0 {
			src.media = m
		} else if m.MediaSetGUID != src.media.MediaSetGUID {
			return nil, newErr(3227, 16, "The backup media on \"%s\" is part of media set which was not specified in the RESTORE statement.", d.spec)
		}
		if file > len(sets) {
			return nil, newErr(4038, 16, "Cannot find file ID %d on device '%s'.", file, d.spec)
		}
		if k == 0 || sets[file-1].StripeSeq == 1 {
			src.set = sets[file-1]
		}
		src.sets = append(src.sets, sets[file-1])
	}
	if src.media.FamilyCount != len(devs) {
		return nil, newErr(3132, 16, "The media set has %d media families but only %d are provided. All members must be provided.", src.media.FamilyCount, len(devs))
	}
	return src, nil
}

// body opens the set's body for reading across its stripes.
func (i *Instance) body(ctx context.Context, src *source, verify bool) (*setReader, func(), *Error) {
	// each device holds its own stripe; find each one's body offset
	readers := make([]io.Reader, len(src.devs))
	var closers []io.Closer
	closeAll := func() {
		for _, c := range closers {
			c.Close()
		}
	}
	for k, d := range src.devs {
		s := src.sets[k]
		r, err := i.openReader(ctx, d, s.bodyOffset, src.media.MaxTransferSize)
		if err != nil {
			closeAll()
			return nil, nil, errOpenDevice(d, err)
		}
		closers = append(closers, r)
		if s.StripeSeq < 1 || s.StripeSeq > len(readers) || readers[s.StripeSeq-1] != nil {
			closeAll()
			return nil, nil, newErr(3241, 16, "The media family on device '%s' is incorrectly formed. SQL Server cannot process this media family.", d.spec)
		}
		readers[s.StripeSeq-1] = r
	}
	sr, err := newSetReader(readers, verify)
	if err != nil {
		closeAll()
		return nil, nil, newErr(3013, 16, "RESTORE is terminating abnormally: %v", err)
	}
	return sr, func() { sr.Close(); closeAll() }, nil
}

// readError turns a failure while reading a backup body into SQL Server's
// error.
func readError(db string, src *source, err error) *Error {
	var bc errBlockChecksum
	switch {
	case errors.As(err, &bc):
		return newErr(3183, 16, "RESTORE detected an error on page (1:%d) in database \"%s\" as read from the backup set.", bc.block*pagesPerExtent, db)
	case errors.Is(err, errMalformed), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return newErr(3241, 16, "The media family on device '%s' is incorrectly formed. SQL Server cannot process this media family.", src.devs[0].spec)
	case errors.Is(err, context.Canceled):
		return newErr(3204, 16, "The backup or restore was aborted.")
	}
	return newErr(3203, 16, "Read on \"%s\" failed: %v", src.devs[0].spec, err)
}

// restore runs RESTORE DATABASE or RESTORE LOG.
func (i *Instance) restore(ctx context.Context, user string, st *restoreStmt, m messenger) *Error {
	verb := st.verb()
	if !i.isSysadmin(user) {
		return abnormal(newErr(262, 14, "CREATE DATABASE permission denied in database 'master'."), verb)
	}
	if st.recoveryOnly {
		return i.recoverOnly(st, verb)
	}
	src, e := i.openSource(ctx, st)
	if e != nil {
		return abnormal(e, verb)
	}
	h := src.set.setHeader
	if w := h.writer(); w.major > i.cfg.MajorVersion {
		// a database upgraded by a newer server cannot be downgraded
		p := i.cfg.product()
		return abnormal(newErr(3169, 16, "The database was backed up on a server running version %d.00.%d. That version is incompatible with this server, which is running version %d.00.%d. Either restore the database on a server that supports the backup, or use a backup that is compatible with this server.", w.major, w.build, p.major, p.build), verb)
	}
	switch {
	case st.kind == "LOG" && h.Type != typeLog:
		return abnormal(newErr(3135, 16, "The backup set in file '%s' was created by BACKUP DATABASE and cannot be used for this restore operation.", src.devs[0].spec), verb)
	case st.kind == "DATABASE" && h.Type == typeLog:
		return abnormal(newErr(3135, 16, "The backup set in file '%s' was created by BACKUP LOG and cannot be used for this restore operation.", src.devs[0].spec), verb)
	}
	if e := checkName(st.database); e != nil {
		return abnormal(e, verb)
	}
	start := time.Now()
	var n int
	switch {
	case h.Type == typeFull:
		n, e = i.restoreFull(ctx, st, src, newProgress(m, st.stats, src.set.RawBytes/PageSize))
	case h.Type == typeDiff:
		n, e = i.restoreDiff(ctx, st, src, newProgress(m, st.stats, src.set.RawBytes/PageSize))
	default:
		n, e = i.restoreLog(ctx, st, src, m, newProgress(m, st.stats, src.set.RawBytes))
	}
	if e != nil {
		return abnormal(e, verb)
	}
	secs := max(time.Since(start).Seconds(), 0.001)
	m.info(3014, "%s successfully processed %d pages in %.3f seconds (%.3f MB/sec).", verb, n, secs, float64(n)*PageSize/secs/1e6)
	return nil
}

// restoreTarget finds or creates the database a full restore writes,
// applying the REPLACE and tail-of-log rules. created reports a database
// that did not exist before.
func (i *Instance) restoreTarget(st *restoreStmt, h setHeader) (db *Database, created bool, _ *Error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	files, e := movedFiles(h, st.moves)
	if e != nil {
		return nil, false, e
	}
	db, e = i.existingRestoreTarget(st, h, files)
	if e != nil {
		return nil, false, e
	}
	if db != nil {
		return db, false, nil
	}
	db, e = i.createDatabase(st.database, 1, files, h.RecoveryModel)
	if e != nil {
		return nil, false, e
	}
	db.mu.Lock()
	db.State = Restoring
	db.mu.Unlock()
	return db, true, nil
}

// existingRestoreTarget applies the rules of a full restore to the
// database of that name and readies it; it returns nil, nil when there is
// none and no file is in the way. i.mu must be held.
func (i *Instance) existingRestoreTarget(st *restoreStmt, h setHeader, files []File) (*Database, *Error) {
	db := i.dbByName(st.database)
	if db != nil {
		if db.ID <= 4 && db.ID != 1 {
			return nil, newErr(3147, 16, "Backup and restore operations are not allowed on database %s.", db.Name)
		}
		if db.agName != "" {
			return nil, newErr(3104, 16, "RESTORE cannot operate on database '%s' because it is configured for database mirroring or has joined an availability group.", db.Name)
		}
		db.mu.Lock()
		busy := db.activeBackups > 0
		sameFamily := db.familyGUID == h.FamilyGUID
		tailUnsaved := db.State == Online && db.recovery != Simple && db.logChainStart != 0 &&
			len(db.recordsIn(max(db.lastLogBackup, db.logChainStart), db.lsn.next)) > 0
		db.mu.Unlock()
		if busy {
			// a restore needs the database to itself; a running backup
			// uses it
			return nil, newErr(3101, 16, "Exclusive access could not be obtained because the database is in use.")
		}
		if !st.replace {
			if !sameFamily {
				return nil, newErr(3154, 16, "The backup set holds a backup of a database other than the existing '%s' database.", db.Name)
			}
			if tailUnsaved && st.stopAt.IsZero() {
				return nil, newErr(3159, 16, "The tail of the log for the database \"%s\" has not been backed up. Use BACKUP LOG WITH NORECOVERY to back up the log if it contains work you do not want to lose. Use the WITH REPLACE or WITH STOPAT clause of the RESTORE statement to just overwrite the contents of the log.", db.Name)
			}
		}
	}
	for _, f := range files {
		if other := i.physicalInUse(f.Physical, db); other != nil {
			return nil, &Error{Number: 1834, Severity: 16, State: 1,
				Message: fmt.Sprintf("The file '%s' cannot be overwritten.  It is being used by database '%s'.", f.Physical, other.Name),
				Then: []*Error{
					newErr(3156, 16, "File '%s' cannot be restored to '%s'. Use WITH MOVE to identify a valid location for the file.", f.Logical, f.Physical),
					newErr(3119, 16, "Problems were identified while planning for the RESTORE statement. Previous messages provide details."),
				}}
		}
	}
	if db == nil {
		return nil, nil
	}
	db.mu.Lock()
	db.Files = files
	db.State = Restoring
	db.restore = nil
	db.mu.Unlock()
	return db, nil
}

// movedFiles applies WITH MOVE to the backup's file list.
func movedFiles(h setHeader, moves [][2]string) ([]File, *Error) {
	files := append([]File(nil), h.Files...)
	for _, mv := range moves {
		found := false
		for k := range files {
			if strings.EqualFold(files[k].Logical, mv[0]) {
				files[k].Physical = mv[1]
				found = true
			}
		}
		if !found {
			return nil, newErr(3234, 16, "Logical file '%s' is not part of database '%s'. Use RESTORE FILELISTONLY to list the logical file names.", mv[0], h.DatabaseName)
		}
		if !absolutePath(mv[1]) {
			// the file would land in the server process's working
			// directory, which SQL Server does not look up
			return nil, &Error{Number: 5133, Severity: 16, State: 1,
				Message: fmt.Sprintf("Directory lookup for the file \"%s\" failed with the operating system error 2(The system cannot find the file specified.).", mv[1]),
				Then: []*Error{
					newErr(3156, 16, "File '%s' cannot be restored to '%s'. Use WITH MOVE to identify a valid location for the file.", mv[0], mv[1]),
					newErr(3119, 16, "Problems were identified while planning for the RESTORE statement. Previous messages provide details."),
				}}
		}
	}
	return files, nil
}

// absolutePath reports whether p is a full path on Linux or Windows: /x,
// C:\x or \\server\share.
func absolutePath(p string) bool {
	return strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\\`) ||
		len(p) >= 3 && p[1] == ':' && (p[2] == '\\' || p[2] == '/')
}

// readPages reads a full or differential body into d, reporting progress
// in pages. As SQL Server reads a backup on one thread and writes the
// database's files on others, reading overlaps checking: the pages are
// read in batches, which workers check (checksum, and whether the page is
// the one the database's seed makes), and applied to d in their order.
func readPages(sr *setReader, d *dbData, verify bool, dbName string, src *source, prog *progress) (int, *Error) {
	c := pageChecker{seed: d.seed, pages: len(d.versions), verify: verify, dbName: dbName}
	const inFlight = 4
	free := make(chan *pageBatch, inFlight+2)
	for range cap(free) {
		free <- &pageBatch{buf: make([]byte, batchPages*PageSize)}
	}
	queue := make(chan *pageBatch, inFlight)
	var stop atomic.Bool
	var workers sync.WaitGroup
	go func() {
		defer close(queue)
		for n := 0; !stop.Load(); {
			b := <-free
			b.first, b.k, b.err, b.tables = n, 0, nil, false
			b.done = make(chan struct{})
			want := batchPages
			if src.set.HasTables {
				want = min(want, src.set.BodyPages-n)
			}
			for b.k < want {
				p := b.buf[b.k*PageSize : (b.k+1)*PageSize]
				if _, err := io.ReadFull(sr, p); err != nil {
					b.err = err
					break
				}
				b.k++
			}
			// the user tables follow the body's last page
			b.tables = b.err == nil && src.set.HasTables && n+b.k == src.set.BodyPages
			n += b.k
			workers.Go(func() {
				c.check(b)
				close(b.done)
			})
			queue <- b
			if b.err != nil || b.tables {
				return
			}
		}
	}()
	n, e := applyPages(queue, free, d, &c, sr, src, prog)
	if e != nil {
		stop.Store(true)
		for b := range queue {
			// the reader finishes the batch it was reading, and may wait
			// for a free one to do so
			<-b.done
			free <- b
		}
	}
	workers.Wait()
	return n, e
}

// batchPages is how many pages readPages reads and checks at once.
const batchPages = 64

// pageBatch is pages read in a row, from the body's page first.
type pageBatch struct {
	buf    []byte // batchPages pages
	first  int
	k      int   // pages read into buf
	err    error // what ended reading after them, if anything
	tables bool  // the user tables section comes next
	res    [batchPages]pageResult
	done   chan struct{} // closed once res holds the checks
}

// pageResult is what checking one page found.
type pageResult struct {
	err      *Error
	id, ver  uint32
	override []byte // the page, when the seed does not make it
}

// pageChecker checks pages of a database with the given seed and number
// of pages; it is safe for concurrent use.
type pageChecker struct {
	seed   uint64
	pages  int
	verify bool
	dbName string
}

func (c *pageChecker) check(b *pageBatch) {
	want := make([]byte, PageSize)
	for j := range b.k {
		page := b.buf[j*PageSize : (j+1)*PageSize]
		r := &b.res[j]
		*r = pageResult{}
		ph, ok := readPageHeader(page)
		if !ok || int(ph.id) >= c.pages {
			r.err = newErr(3183, 16, "RESTORE detected an error on page (1:%d) in database \"%s\" as read from the backup set.", b.first+j, c.dbName)
			continue
		}
		sumOK := pageChecksumOK(page)
		if c.verify && !sumOK {
			r.err = newErr(3183, 16, "RESTORE detected an error on page (1:%d) in database \"%s\" as read from the backup set.", ph.id, c.dbName)
			continue
		}
		r.id, r.ver = ph.id, ph.version
		// the page is the one the seed makes when all but its checksum
		// match and its checksum is right: the checksum is that of the
		// rest, which matches (one CRC a page, not two)
		fillPageContent(want, c.seed, ph.id, ph.version)
		same := sumOK && string(want[:offChecksum]) == string(page[:offChecksum]) &&
			string(want[offChecksum+4:]) == string(page[offChecksum+4:])
		if !same {
			// damage the backup did not detect: the page is restored as it
			// was read, as SQL Server would without checksums
			r.override = append([]byte(nil), page...)
		}
	}
}

// applyPages applies the batches of queue to d in order, returning each
// to free, up to the first error, and reads the user tables section when
// the body has one.
func applyPages(queue <-chan *pageBatch, free chan<- *pageBatch, d *dbData, c *pageChecker, sr *setReader, src *source, prog *progress) (int, *Error) {
	n := 0
	for b := range queue {
		<-b.done
		for j := range b.k {
			r := &b.res[j]
			if r.err != nil {
				return n, r.err
			}
			d.versions[r.id] = r.ver
			d.dcm[r.id/pagesPerExtent] = true
			if r.override != nil {
				d.overrides[r.id] = r.override
			} else {
				delete(d.overrides, r.id)
			}
			n++
			prog.step(int64(n))
		}
		switch {
		case b.tables:
			// the user tables as of the backup replace the database's
			tables, err := readTableSection(sr)
			if err != nil {
				return n, readError(c.dbName, src, err)
			}
			d.tables = tables
			prog.finish()
			return n, nil
		case errors.Is(b.err, io.EOF):
			// a backup without a table section holds no tables
			d.tables = nil
			prog.finish()
			return n, nil
		case b.err != nil:
			return n, readError(c.dbName, src, b.err)
		}
		free <- b
	}
	return n, nil
}

func (i *Instance) restoreFull(ctx context.Context, st *restoreStmt, src *source, prog *progress) (int, *Error) {
	h := src.set.setHeader
	if !st.stopAt.IsZero() && st.stopAt.Before(wallIn(i.clockOf(h), h.ConsistentTime)) {
		return 0, newErr(4338, 16, "The STOPAT clause specifies a point too early to allow this backup set to be restored. Choose a different stop point or use RESTORE DATABASE WITH RECOVERY to recover at the current point.")
	}
	verify := h.Checksums && !st.noChecksum
	if st.checksum && !h.Checksums {
		return 0, newErr(3187, 16, "RESTORE WITH CHECKSUM cannot be specified because the backup set does not contain checksum information.")
	}
	sr, closeBody, e := i.body(ctx, src, verify)
	if e != nil {
		return 0, e
	}
	defer closeBody()
	db, created, e := i.restoreTarget(st, h)
	if e != nil {
		return 0, e
	}
	dbGUID := h.DatabaseGUID
	if created {
		// RESTORE gives a database that did not exist a new database_guid
		// (the family_guid stays the backup's)
		db.mu.Lock()
		dbGUID = db.databaseGUID
		db.mu.Unlock()
	}
	data := &dbData{
		seed:         h.Seed,
		versions:     make([]uint32, h.DataPages),
		overrides:    map[uint32][]byte{},
		dcm:          make([]bool, (h.DataPages+pagesPerExtent-1)/pagesPerExtent),
		bcm:          make([]bool, (h.DataPages+pagesPerExtent-1)/pagesPerExtent),
		recovery:     h.RecoveryModel,
		familyGUID:   h.FamilyGUID,
		databaseGUID: dbGUID,
		forkGUID:     h.LastRecoveryForkGUID,
		lastTime:     h.ConsistentTime,
	}
	n, e := readPages(sr, data, verify, st.database, src, prog)
	if e != nil {
		// the target is left RESTORING with nothing to roll forward
		return n, e
	}
	clear(data.dcm)
	data.restore = &restoreState{
		redo: h.LastLSN, redoTime: h.ConsistentTime, fork: h.LastRecoveryForkGUID, family: h.FamilyGUID,
		baseCheckpoint: h.baseLSN(), baseGUID: h.BackupSetGUID, baseCopyOnly: h.IsCopyOnly, haveData: true, recovery: h.RecoveryModel,
	}
	data.lsn.next = h.LastLSN
	db.mu.Lock()
	defer db.mu.Unlock()
	// the restored content goes into the database's own dbData: its mutex
	// is the database's lock, so the pointer must never change under
	// sessions that read it
	db.dbData.takeRestored(data)
	db.State = Restoring
	i.finishStep(db, st, false)
	return n, nil
}

// restoredFields are the dbData fields takeRestored replaces; a test keeps
// the list in step with the struct.
var restoredFields = []string{"seed", "versions", "overrides", "dcm", "bcm", "lsn", "recovery", "lastTime",
	"originVersions", "originOverrides", "originTime", "recs", "familyGUID", "databaseGUID", "forkGUID",
	"forkPointLSN", "diffBaseLSN", "diffBaseGUID", "diffBaseTime", "lastLogBackup", "logChainStart", "restore", "forks", "fullCkpt", "tables"}

// takeRestored replaces d's content and chain state with n's, the
// database a full restore read: everything but the lock and the count of
// backups running. d.mu must be held.
func (d *dbData) takeRestored(n *dbData) {
	d.seed, d.versions, d.overrides, d.dcm, d.bcm = n.seed, n.versions, n.overrides, n.dcm, n.bcm
	d.lsn, d.recovery, d.lastTime = n.lsn, n.recovery, n.lastTime
	d.originVersions, d.originOverrides, d.originTime, d.recs = n.originVersions, n.originOverrides, n.originTime, n.recs
	d.familyGUID, d.databaseGUID, d.forkGUID, d.forkPointLSN = n.familyGUID, n.databaseGUID, n.forkGUID, n.forkPointLSN
	d.diffBaseLSN, d.diffBaseGUID, d.diffBaseTime = n.diffBaseLSN, n.diffBaseGUID, n.diffBaseTime
	d.lastLogBackup, d.logChainStart, d.restore, d.forks = n.lastLogBackup, n.logChainStart, n.restore, n.forks
	d.fullCkpt = n.fullCkpt
	d.tables = n.tables
}

func (i *Instance) restoringDB(name string) (*Database, *Error) {
	db, e := i.lookup(name)
	if e != nil {
		return nil, e
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.State == Online || db.State == Offline {
		return nil, newErr(4306, 16, "The preceding restore operation did not specify WITH NORECOVERY or WITH STANDBY. Restart the restore sequence, specifying WITH NORECOVERY or WITH STANDBY for all but the final step.")
	}
	if db.restore == nil {
		return nil, newErr(3117, 16, "The log or differential backup cannot be restored because no files are ready to rollforward.")
	}
	return db, nil
}

func (i *Instance) restoreDiff(ctx context.Context, st *restoreStmt, src *source, prog *progress) (int, *Error) {
	h := src.set.setHeader
	db, e := i.restoringDB(st.database)
	if e != nil {
		return 0, e
	}
	db.mu.Lock()
	rs := db.restore
	switch {
	case rs.family != h.FamilyGUID:
		db.mu.Unlock()
		return 0, newErr(3154, 16, "The backup set holds a backup of a database other than the existing '%s' database.", db.Name)
	case !rs.haveData || rs.baseCopyOnly || !rs.isBaseOf(h) || rs.redo > h.LastLSN:
		db.mu.Unlock()
		return 0, newErr(3136, 16, "This differential backup cannot be restored because the database has not been restored to the correct earlier state.")
	}
	db.mu.Unlock()
	verify := h.Checksums && !st.noChecksum
	sr, closeBody, e := i.body(ctx, src, verify)
	if e != nil {
		return 0, e
	}
	defer closeBody()
	db.mu.Lock()
	defer db.mu.Unlock()
	n, e := readPages(sr, db.dbData, verify, db.Name, src, prog)
	if e != nil {
		db.restore = nil // the sequence is broken: restart from a full
		return n, e
	}
	rs.redo, rs.redoTime = h.LastLSN, h.ConsistentTime
	db.lsn.next = h.LastLSN
	i.finishStep(db, st, false)
	return n, nil
}

func (i *Instance) restoreLog(ctx context.Context, st *restoreStmt, src *source, m messenger, prog *progress) (int, *Error) {
	h := src.set.setHeader
	db, e := i.restoringDB(st.database)
	if e != nil {
		return 0, e
	}
	db.mu.Lock()
	rs := *db.restore
	db.mu.Unlock()
	switch {
	case rs.family != h.FamilyGUID:
		return 0, newErr(3154, 16, "The backup set holds a backup of a database other than the existing '%s' database.", db.Name)
	case h.LastLSN <= rs.redo:
		return 0, newErr(4326, 16, "The log in this backup set terminates at LSN %s, which is too early to apply to the database. A more recent log backup that includes LSN %s can be restored.", h.LastLSN, rs.redo)
	case h.FirstLSN > rs.redo:
		return 0, newErr(4305, 16, "The log in this backup set begins at LSN %s, which is too late to apply to the database. An earlier log backup that includes LSN %s can be restored.", h.FirstLSN, rs.redo)
	case !onRecoveryPath(h, rs):
		return 0, newErr(4330, 16, "This backup set cannot be applied because it is on a recovery path that is inconsistent with the database. The recovery path is the sequence of data and log backups that have brought the database to a particular recovery point. Find a compatible backup to restore, or restore the rest of the database to match a recovery point within this backup set, which will restore the database to a different point in time.")
	case !st.stopAt.IsZero() && st.stopAt.Before(wallIn(i.clockOf(h), rs.redoTime)):
		return 0, newErr(4335, 16, "The specified STOPAT time is too early. All or part of the database is already rolled forward beyond that point.")
	case !st.stopAt.IsZero() && h.HasBulkLoggedData && st.stopAt.Before(wallIn(i.clockOf(h), h.ConsistentTime)):
		return 0, newErr(4327, 16, "The log in this backup set contains bulk-logged changes. Point-in-time recovery to %s inside it is inhibited. Restore the whole log backup, or stop at a point outside it.", st.stopAt.Format("2006-01-02 15:04:05.000"))
	}
	sr, closeBody, e := i.body(ctx, src, h.Checksums && !st.noChecksum)
	if e != nil {
		return 0, e
	}
	defer closeBody()
	cr := &countingReader{r: sr}
	br := bufio.NewReaderSize(cr, 256<<10)
	var recs []logRecord
	for {
		rec, err := decodeRecord(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return 0, readError(db.Name, src, err)
		}
		recs = append(recs, rec)
		prog.step(cr.n - int64(br.Buffered()))
	}
	prog.finish()
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.restore == nil || db.restore.redo != rs.redo {
		return 0, newErr(3117, 16, "The log or differential backup cannot be restored because no files are ready to rollforward.")
	}
	stopped := false
	redo, redoTime := h.LastLSN, h.ConsistentTime
	applied := 0
	// STOPAT and AFTER are the wall clock the commit times in the log
	// were written in, that of the server that wrote the log (whichever
	// server restores it): redo rolls forward and stops at the first
	// commit later than STOPAT. In the hour a daylight-saving change
	// repeats, that is the first occurrence of the time (see
	// docs/mssqlsim.md).
	clock := i.clockOf(h)
	reached := rs.redoTime // the moment the last applied commit made
	for _, rec := range recs {
		if rec.LSN < rs.redo {
			continue
		}
		at := wallIn(clock, rec.Time)
		if !st.stopAt.IsZero() && at.After(st.stopAt) {
			stopped, redo, redoTime = true, rec.LSN, stopMoment(clock, st.stopAt, reached, rec.Time)
			break
		}
		if st.stopBeforeMark != "" && rec.Mark == st.stopBeforeMark && !at.Before(st.markAfter) {
			stopped, redo, redoTime = true, rec.LSN, rec.Time
			break
		}
		db.apply(rec)
		applied++
		reached = rec.Time
		if st.stopAtMark != "" && rec.Mark == st.stopAtMark && !at.Before(st.markAfter) {
			stopped, redo, redoTime = true, rec.LSN+1, rec.Time
			break
		}
	}
	if !stopped && !st.stopAt.IsZero() && !st.stopAt.After(wallIn(clock, h.ConsistentTime)) {
		// the log covers the stop time and nothing was committed after it
		stopped, redoTime = true, stopMoment(clock, st.stopAt, reached, h.ConsistentTime)
	}
	db.restore.redo, db.restore.redoTime = redo, redoTime
	if h.LastRecoveryForkGUID != rs.fork && redo >= h.ForkPointLSN {
		db.restore.fork = h.LastRecoveryForkGUID
	}
	db.lsn.next = redo
	if st.hasStop() && !stopped && !st.noRecovery {
		m.info(4322, "This backup set contains records that were logged before the designated point in time. The database is being left in the restoring state so that more roll forward can be performed.")
		return max(1, applied/8), nil
	}
	i.finishStep(db, st, stopped)
	return max(1, applied/8), nil
}

// onRecoveryPath reports whether a log backup continues a restore's
// recovery path. A log on one fork fits a restore on that fork. A log that
// spans a fork (the first log after a recovery) fits a restore on the old
// fork that has not gone past the fork point, or one already on the new
// fork at or past it; a restore that rolled the old fork forward past the
// fork point holds changes the new fork never saw (4330).
func onRecoveryPath(h setHeader, rs restoreState) bool {
	if h.FirstRecoveryForkGUID == h.LastRecoveryForkGUID {
		return h.FirstRecoveryForkGUID == rs.fork
	}
	switch rs.fork {
	case h.FirstRecoveryForkGUID:
		return rs.redo <= h.ForkPointLSN
	case h.LastRecoveryForkGUID:
		return rs.redo >= h.ForkPointLSN
	}
	return false
}

// finishStep recovers the database when the statement asks for RECOVERY.
// db.mu must be held.
func (i *Instance) finishStep(db *Database, st *restoreStmt, stopped bool) {
	if st.noRecovery {
		return
	}
	if st.kind == "DATABASE" && st.hasStop() {
		// RESTORE DATABASE ... WITH STOPAT past the data backup: more log
		// is needed to reach the stop point
		return
	}
	i.recover(db)
}

// recover brings a restoring database online at its redo point, starting
// a new recovery fork. db.mu must be held.
func (i *Instance) recover(db *Database) {
	rs := db.restore
	now := i.cfg.Now()
	db.State = Online
	db.forkGUID = i.guid()
	db.forkPointLSN = rs.redo
	db.forks = append(db.forks, forkEntry{guid: rs.fork, until: rs.redo})
	db.lsn.next = rs.redo
	db.lsn.take() // the recovery's own record
	if rs.baseCheckpoint != 0 && !rs.baseCopyOnly {
		db.diffBaseLSN, db.diffBaseGUID = rs.baseCheckpoint, rs.baseGUID
	} else {
		db.diffBaseLSN = 0
		clear(db.dcm)
	}
	db.recovery = rs.recovery
	if db.diffBaseLSN != 0 && db.recovery != Simple {
		db.logChainStart = rs.redo
		db.lastLogBackup = rs.redo
	} else {
		db.logChainStart, db.lastLogBackup = 0, 0
	}
	db.lastTime = rs.redoTime
	db.restore = nil
	db.resetOrigin(now)
	if db.lastTime.After(now) {
		db.lastTime = now
	}
}

// recoverOnly is RESTORE DATABASE x WITH RECOVERY without a backup.
func (i *Instance) recoverOnly(st *restoreStmt, verb string) *Error {
	db, e := i.lookup(st.database)
	if e != nil {
		return abnormal(e, verb)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.State != Restoring {
		return abnormal(newErr(3153, 16, "The database is already fully recovered."), verb)
	}
	if db.restore == nil {
		return abnormal(newErr(3117, 16, "The log or differential backup cannot be restored because no files are ready to rollforward."), verb)
	}
	i.recover(db)
	return nil
}
