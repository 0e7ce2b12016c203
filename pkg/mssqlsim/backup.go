package mssqlsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// target is one TO DISK = or TO URL = clause.
type target struct {
	url  bool
	spec string
}

// backupStmt is a parsed BACKUP DATABASE or BACKUP LOG.
type backupStmt struct {
	log            bool
	database       string
	targets        []target
	differential   bool
	copyOnly       bool
	compression    *bool
	checksum       bool
	format         bool
	init           bool
	stats          int
	maxTransfer    int
	bufferCount    int
	bufferCountSet bool
	noRecovery     bool
	credential     string
	name           string
	description    string
}

func (s *backupStmt) verb() string {
	if s.log {
		return "BACKUP LOG"
	}
	return "BACKUP DATABASE"
}

// messenger sends informational messages to the client during a
// statement, and can drop the connection for a fault.
type messenger interface {
	info(number int32, format string, args ...any)
	abort()
}

// backupSetRow is one msdb.dbo.backupset row.
type backupSetRow struct {
	ID         int
	MediaSetID int
	Devices    []string
	Header     setHeader
	Trailer    setTrailer
	Machine    string
}

// logMarkRow is one msdb.dbo.logmarkhistory row: a marked transaction
// that a log backup holds.
type logMarkRow struct {
	database, mark, user string
	lsn                  LSN
	at                   time.Time
}

// typeCode returns backupset.type: D, I or L.
func (r *backupSetRow) typeCode() string {
	switch r.Header.Type {
	case typeDiff:
		return "I"
	case typeLog:
		return "L"
	}
	return "D"
}

// snapshot is what a backup copies, taken atomically under the database
// lock.
type snapshot struct {
	hdr       setHeader
	versions  []uint32 // full: all pages; diff: all pages (only listed ones are written)
	overrides map[uint32][]byte
	pages     []uint32 // page ids to write, in order
	recs      []logRecord
	dcm       []bool // cleared differential map, restored if the backup fails
	bcm       []bool
	tables    []tableOp // user tables of a full or differential (table.go)
}

// Backup runs a BACKUP statement given as SQL, for Go callers.
func (i *Instance) backup(ctx context.Context, user string, st *backupStmt, m messenger) *Error {
	verb := st.verb()
	if !i.isSysadmin(user) {
		what := "DATABASE"
		if st.log {
			what = "LOG"
		}
		return abnormal(newErr(262, 14, "BACKUP %s permission denied in database '%s'.", what, st.database), verb)
	}
	db, e := i.lookup(st.database)
	if e != nil {
		return abnormal(e, verb)
	}
	if len(st.targets) > 64 {
		return abnormal(newErr(3205, 16, "Too many backup devices specified for backup or restore; only 64 are allowed."), verb)
	}
	if e := checkTransfer(st); e != nil {
		return abnormal(e, verb)
	}
	devs, e := i.devices(st.targets, st.credential)
	if e != nil {
		return abnormal(e, verb)
	}
	snap, e := i.takeSnapshot(db, st)
	if e != nil {
		return abnormal(e, verb)
	}
	start := time.Now()
	err := i.writeBackup(ctx, db, st, devs, snap, m)
	db.mu.Lock()
	db.activeBackups--
	if st.log {
		db.activeLogs--
	}
	if err != nil {
		// the backup did not happen: the differential and bulk maps keep
		// what it would have cleared
		for k, b := range snap.dcm {
			db.dcm[k] = db.dcm[k] || b
		}
		for k, b := range snap.bcm {
			db.bcm[k] = db.bcm[k] || b
		}
		db.mu.Unlock()
		return abnormal(err, verb)
	}
	finish := i.cfg.Now()
	i.afterBackup(db, st, snap)
	db.mu.Unlock()

	row := &backupSetRow{Header: snap.hdr, Machine: i.cfg.ServerName, Trailer: snap.trailer()}
	row.Trailer.BackupFinishDate = finish
	for _, d := range devs {
		row.Devices = append(row.Devices, d.spec)
	}
	i.mu.Lock()
	i.mediaSets++
	row.MediaSetID = i.mediaSets
	row.ID = i.nextBackupSetID()
	i.backupsets = append(i.backupsets, row)
	// msdb.dbo.logmarkhistory: the marked transactions a log backup holds
	for _, r := range snap.recs {
		if r.Mark != "" && snap.hdr.Type == typeLog {
			i.logMarks = append(i.logMarks, logMarkRow{database: snap.hdr.DatabaseName, mark: r.Mark, user: snap.hdr.UserName, lsn: r.LSN, at: r.Time})
		}
	}
	i.mu.Unlock()

	pages := len(snap.pages)
	// the files and name as the snapshot saw them: db's may change under a
	// restore once the backup is done
	file := snap.hdr.Files[0].Logical
	if st.log {
		pages = max(1, len(snap.recs)/8)
		for _, f := range snap.hdr.Files {
			if f.IsLog {
				file = f.Logical
			}
		}
	}
	m.info(4035, "Processed %d pages for database '%s', file '%s' on file %d.", pages, snap.hdr.DatabaseName, file, 1)
	secs := max(time.Since(start).Seconds(), 0.001)
	m.info(3014, "%s successfully processed %d pages in %.3f seconds (%.3f MB/sec).", verb, pages, secs, float64(pages)*PageSize/secs/1e6)
	return nil
}

// devices resolves the targets.
func (i *Instance) devices(ts []target, cred string) ([]*device, *Error) {
	var devs []*device
	for _, t := range ts {
		if t.url {
			d, e := i.urlDevice(t.spec, cred)
			if e != nil {
				return nil, e
			}
			devs = append(devs, d)
			continue
		}
		devs = append(devs, i.diskDevice(t.spec))
	}
	return devs, nil
}

// takeSnapshot checks the backup rules and captures what the backup will
// write.
func (i *Instance) takeSnapshot(db *Database, st *backupStmt) (*snapshot, *Error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	switch {
	case db.ID == 2:
		return nil, newErr(3147, 16, "Backup and restore operations are not allowed on database tempdb.")
	case db.State == Offline:
		return nil, newErr(942, 14, "Database '%s' cannot be opened because it is offline.", db.Name)
	case db.State == Restoring:
		return nil, newErr(927, 14, "Database '%s' cannot be opened. It is in the middle of a restore.", db.Name)
	}
	if db.agName != "" && !db.isPrimaryReplica() {
		if !st.log && !st.copyOnly || st.differential {
			return nil, newErr(3059, 16, "This BACKUP or RESTORE command is not supported on a database mirror or secondary replica.")
		}
		if e := db.secondaryCanBackup(); e != nil {
			return nil, e
		}
	}
	// one data backup (full or differential) of a database at a time, and
	// one log backup; a log backup may run beside a data backup
	if running := db.activeBackups - db.activeLogs; !st.log && running > 0 || st.log && db.activeLogs > 0 {
		i.serialized.Add(1)
		return nil, newErr(3023, 16, "Backup, file manipulation operations (such as ALTER DATABASE ADD FILE) and encryption changes on a database must be serialized. Reissue the statement after the current backup or file manipulation operation is completed.")
	}
	now := db.commitTime(i.cfg.Now())
	hdr := setHeader{
		Name:            st.name,
		Description:     st.description,
		DatabaseName:    db.Name,
		ServerName:      i.cfg.ServerName,
		Collation:       db.Collation,
		DatabaseGUID:    db.databaseGUID,
		FamilyGUID:      db.familyGUID,
		BackupStartDate: now,
		UTCOffset:       i.utcOffset(now),
		TimeZone:        i.cfg.Location.String(),
		SoftwareMajor:   i.cfg.MajorVersion,
		SoftwareBuild:   i.cfg.product().build,
		ConsistentTime:  now,
		RecoveryModel:   db.recovery,
		Seed:            db.seed,
		DataPages:       len(db.versions),
		Files:           append([]File(nil), db.Files...),
		Checksums:       st.checksum,
		IsCopyOnly:      st.copyOnly && !st.differential,
	}
	hdr.BackupSetGUID = i.guid()
	if st.compression != nil {
		hdr.Compressed = *st.compression
	}
	snap := &snapshot{}
	switch {
	case st.log:
		if db.recovery == Simple {
			return nil, newErr(4208, 16, "The statement BACKUP LOG is not allowed while the recovery model is SIMPLE. Use BACKUP DATABASE or change the recovery model using ALTER DATABASE.")
		}
		if db.logChainStart == 0 {
			return nil, newErr(4214, 16, "BACKUP LOG cannot be performed because there is no current database backup.")
		}
		first := db.lastLogBackup
		if first == 0 {
			first = db.logChainStart
		}
		db.checkpoint() // the log backup's own record
		last := db.lsn.next
		hdr.Type = typeLog
		hdr.FirstLSN, hdr.LastLSN = first, last
		hdr.CheckpointLSN = db.lastFullCheckpoint()
		hdr.DatabaseBackupLSN = db.lastFullCheckpoint()
		snap.recs = db.recordsIn(first, last)
		for _, r := range snap.recs {
			if r.Bulk {
				hdr.HasBulkLoggedData = true
			}
		}
		if !hdr.IsCopyOnly {
			snap.bcm = append([]bool(nil), db.bcm...)
			clear(db.bcm)
		}
		hdr.FirstRecoveryForkGUID = logStartFork(db.dbData, first)
		hdr.LastRecoveryForkGUID = db.forkGUID
		if hdr.FirstRecoveryForkGUID != hdr.LastRecoveryForkGUID {
			// fork_point_lsn is set only on a log that spans a fork
			hdr.ForkPointLSN = db.forkPointLSN
		}
	case st.differential:
		if db.ID == 1 {
			return nil, newErr(3024, 16, "You can only perform a full backup of the master database. Use BACKUP DATABASE to back up the entire master database.")
		}
		if db.diffBaseLSN == 0 {
			return nil, newErr(3035, 16, "Cannot perform a differential backup for database \"%s\", because a current database backup does not exist. Perform a full database backup by reissuing BACKUP DATABASE, omitting the WITH DIFFERENTIAL option.", db.Name)
		}
		ckpt := db.checkpoint()
		hdr.Type = typeDiff
		hdr.FirstLSN, hdr.CheckpointLSN, hdr.LastLSN = ckpt, ckpt, db.lsn.next
		hdr.DatabaseBackupLSN = db.lastFullCheckpoint()
		hdr.DifferentialBaseLSN = db.diffBaseLSN
		hdr.DifferentialBaseGUID = db.diffBaseGUID
		snap.versions = append([]uint32(nil), db.versions...)
		for x, changed := range db.dcm {
			if !changed {
				continue
			}
			for p := x * pagesPerExtent; p < min((x+1)*pagesPerExtent, len(db.versions)); p++ {
				snap.pages = append(snap.pages, uint32(p))
			}
		}
		hdr.FirstRecoveryForkGUID, hdr.LastRecoveryForkGUID = db.forkGUID, db.forkGUID
	default:
		if st.noRecovery {
			return nil, newErr(3032, 16, "One or more of the options (norecovery) are not supported for this statement. Review the documentation for supported options.")
		}
		ckpt := db.checkpoint()
		hdr.Type = typeFull
		hdr.FirstLSN, hdr.CheckpointLSN, hdr.BaseLSN = ckpt, ckpt, ckpt
		if oldest, open := db.oldestOpenTx(); open {
			// a transaction open at the start: the backup's log reaches
			// back to its beginning, and the data copy (where the
			// differential base is set) begins after the backup's own
			// begin record, past the checkpoint
			hdr.FirstLSN = min(oldest, ckpt)
			hdr.BaseLSN = db.lsn.take()
		}
		hdr.LastLSN = db.lsn.next
		hdr.DatabaseBackupLSN = db.lastFullCheckpoint()
		hdr.BeginsLogChain = db.logChainStart == 0 && db.recovery != Simple && !hdr.IsCopyOnly
		snap.versions = append([]uint32(nil), db.versions...)
		snap.pages = make([]uint32, len(db.versions))
		for p := range snap.pages {
			snap.pages[p] = uint32(p)
		}
		if !hdr.IsCopyOnly {
			snap.dcm = append([]bool(nil), db.dcm...)
			clear(db.dcm)
		}
		hdr.FirstRecoveryForkGUID, hdr.LastRecoveryForkGUID = db.forkGUID, db.forkGUID
	}
	if len(db.overrides) > 0 {
		snap.overrides = make(map[uint32][]byte, len(db.overrides))
		for k, v := range db.overrides {
			snap.overrides[k] = v
		}
	}
	if !st.log {
		hdr.BodyPages = len(snap.pages)
		snap.tables = db.snapshotTables()
		hdr.HasTables = len(snap.tables) > 0
	}
	snap.hdr = hdr
	db.activeBackups++
	if st.log {
		db.activeLogs++
	}
	return snap, nil
}

// logStartFork returns the recovery fork a log backup starting at first
// begins on. Every recovery restarts the log chain at its fork point, so the
// first log backup after a recovery starts exactly there and spans the
// fork, as in SQL Server: first_recovery_fork_guid is the fork that ended at
// the fork point, last_recovery_fork_guid the new one. That is what lets a
// restore follow the database across the recovery. d.mu must be held.
func logStartFork(d *dbData, first LSN) GUID {
	if n := len(d.forks); n > 0 && first == d.forks[n-1].until {
		return d.forks[n-1].guid
	}
	return d.forkAt(first)
}

// afterBackup records a finished backup in the database's chain state.
// db.mu must be held.
func (i *Instance) afterBackup(db *Database, st *backupStmt, snap *snapshot) {
	h := snap.hdr
	switch h.Type {
	case typeFull:
		if h.IsCopyOnly {
			return
		}
		db.diffBaseLSN = h.baseLSN()
		db.diffBaseGUID = h.BackupSetGUID
		db.fullCkpt = h.CheckpointLSN
		db.diffBaseTime = h.BackupStartDate
		if db.logChainStart == 0 && db.recovery != Simple {
			db.logChainStart = h.FirstLSN
		}
	case typeDiff:
		if db.logChainStart == 0 && db.recovery != Simple {
			db.logChainStart = h.FirstLSN
		}
	case typeLog:
		if h.IsCopyOnly {
			break
		}
		db.lastLogBackup = h.LastLSN
		if st.noRecovery {
			// a tail-log backup leaves the database ready to restore over
			db.State = Restoring
			db.restore = &restoreState{redo: h.LastLSN, redoTime: h.ConsistentTime, fork: db.forkGUID, family: db.familyGUID,
				baseCheckpoint: db.diffBaseLSN, baseGUID: db.diffBaseGUID, haveData: true, tail: true, recovery: db.recovery}
		}
	}
}

// pageBytes writes the bytes page id had when the snapshot was taken. It
// reads nothing of the database, which a restore may replace meanwhile.
func (s *snapshot) pageBytes(buf []byte, id uint32) {
	if o, ok := s.overrides[id]; ok {
		copy(buf, o)
		return
	}
	fillPage(buf, s.hdr.Seed, id, s.versions[id])
}

func (s *snapshot) trailer() setTrailer {
	t := setTrailer{Pages: int64(len(s.pages)), Records: int64(len(s.recs)), RawBytes: int64(len(s.pages)) * PageSize}
	return t
}

// writeBackup streams the snapshot to the devices.
func (i *Instance) writeBackup(ctx context.Context, db *Database, st *backupStmt, devs []*device, snap *snapshot, m messenger) *Error {
	faults := i.armedFaults(db.Name)
	var writers []deviceWriter
	var media []mediaHeader
	abortAll := func() {
		for _, w := range writers {
			w.Abort()
		}
	}
	mediaGUID := i.guid()
	partSize := st.maxTransfer
	if partSize == 0 {
		partSize = defaultURLTransfer
	}
	buffers := st.bufferCount
	if buffers == 0 {
		buffers = defaultURLBuffers
	}
	slots := make(chan struct{}, buffers)
	for k, d := range devs {
		w, mh, e := i.openForBackup(ctx, d, st, k, len(devs), mediaGUID, partSize, slots)
		if e != nil {
			abortAll()
			return e
		}
		writers = append(writers, w)
		media = append(media, mh)
	}
	streams := make([]io.Writer, len(writers))
	for k, w := range writers {
		streams[k] = &faultWriter{ctx: ctx, w: w, faults: faults, abort: m.abort, upload: devs[k].url,
			rate: i.cfg.BackupRate, start: time.Now(), stalled: &i.stalled}
	}
	if media[0].FamilyCount == 0 {
		media = nil // appending: the media headers are already there
	}
	snap.hdr.MediaSetGUID = mediaGUID
	sw, err := newSetWriter(streams, snap.hdr, media)
	if err != nil {
		abortAll()
		return i.streamError(devs, err)
	}
	total := int64(len(snap.pages))
	if st.log {
		total = int64(len(snap.recs))
	}
	progress := newProgress(m, st.stats, total)
	if st.log {
		var buf []byte
		for n, r := range snap.recs {
			buf = encodeRecord(buf[:0], r)
			if _, err := sw.Write(buf); err != nil {
				abortAll()
				return i.streamError(devs, err)
			}
			if n%1024 == 0 && ctx.Err() != nil {
				abortAll()
				return i.streamError(devs, ctx.Err())
			}
			progress.step(int64(n + 1))
		}
	} else {
		page := make([]byte, PageSize)
		for n, id := range snap.pages {
			snap.pageBytes(page, id)
			if st.checksum && !pageChecksumOK(page) {
				abortAll()
				return newErr(3043, 16, "BACKUP '%s' detected an error on page (1:%d) in file '%s'.", snap.hdr.DatabaseName, id, snap.hdr.Files[0].Physical)
			}
			if _, err := sw.Write(page); err != nil {
				abortAll()
				return i.streamError(devs, err)
			}
			if n%64 == 0 && ctx.Err() != nil {
				abortAll()
				return i.streamError(devs, ctx.Err())
			}
			progress.step(int64(n + 1))
		}
		if snap.hdr.HasTables {
			if err := writeTableSection(sw, snap.tables); err != nil {
				abortAll()
				return i.streamError(devs, err)
			}
		}
	}
	progress.finish()
	finish := i.cfg.Now()
	sw.trailer.UTCOffset = i.utcOffset(finish)
	if err := sw.Close(finish); err != nil {
		abortAll()
		return i.streamError(devs, err)
	}
	for k, w := range writers {
		if err := w.Commit(); err != nil {
			for _, x := range writers[k+1:] {
				x.Abort()
			}
			return i.streamError(devs[k:k+1], err)
		}
	}
	return nil
}

// streamError turns a failure while writing into SQL Server's error.
func (i *Instance) streamError(devs []*device, err error) *Error {
	d := devs[0]
	var de *deviceError
	if errors.As(err, &de) {
		d = de.d
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		i.cancelled.Add(1)
		return newErr(3204, 16, "The backup or restore was aborted.")
	case errors.Is(err, errConnectionDrop):
		return newErr(3204, 16, "The backup or restore was aborted: the client connection was lost.")
	case errors.Is(err, errUploadRefused) || d.url:
		return newErr(3202, 16, "Write on \"%s\" failed: %v", d.spec, err)
	}
	return errWriteDevice(d, err)
}

// openForBackup opens one device for a backup, honouring FORMAT, INIT and
// NOINIT (append). mh.FamilyCount is 0 when appending to existing media.
func (i *Instance) openForBackup(ctx context.Context, d *device, st *backupStmt, seq, count int, mediaGUID GUID, partSize int, slots chan struct{}) (deviceWriter, mediaHeader, *Error) {
	fresh := mediaHeader{MediaSetGUID: mediaGUID, FamilyCount: count, FamilySeq: seq + 1, Created: i.cfg.Now()}
	switch {
	case d.nul:
		return nulWriter{}, fresh, nil
	case d.url:
		if e := checkURLTransfer(st); e != nil {
			return nil, fresh, e
		}
		fresh.MaxTransferSize = partSize
		exists, err := i.objectExists(ctx, d)
		if err != nil {
			i.log.Warn("backup to URL: endpoint refused", "device", d.spec, "err", err)
			return nil, fresh, errOpenDevice(d, err)
		}
		if exists && !st.format {
			return nil, fresh, newErr(3201, 16, "Cannot open backup device '%s'. Operating system error 80(The file exists.). Backups to URL cannot be appended to: use WITH FORMAT to overwrite.", d.spec)
		}
		w, err := i.openUploadWriter(ctx, d, partSize, slots)
		if err != nil {
			i.log.Warn("backup to URL: endpoint refused", "device", d.spec, "err", err)
			return nil, fresh, errOpenDevice(d, err)
		}
		return w, fresh, nil
	}
	if st.maxTransfer > maxDiskTransfer {
		return nil, fresh, errTransferRange(st.maxTransfer)
	}
	if _, err := os.Stat(d.path); st.format || errors.Is(err, fs.ErrNotExist) {
		// new media: FORMAT, or no file yet
		w, err := openFileWriter(d.path, 0)
		if err != nil {
			return nil, fresh, errOpenDevice(d, err)
		}
		return w, fresh, nil
	}
	m, _, end, e := i.readSets(ctx, d)
	if e != nil {
		return nil, fresh, e
	}
	if m.FamilyCount != count {
		return nil, fresh, newErr(3231, 16, "The media loaded on \"%s\" is formatted to support %d media families, but %d media families are expected according to the backup device specification.", d.spec, m.FamilyCount, count)
	}
	if st.init {
		// overwrite the backup sets, keep the media header
		w, err := openFileWriter(d.path, 0)
		if err != nil {
			return nil, fresh, errOpenDevice(d, err)
		}
		keep := fresh
		keep.MediaSetGUID, keep.FamilySeq = m.MediaSetGUID, m.FamilySeq
		return w, keep, nil
	}
	w, err := openFileWriter(d.path, end)
	if err != nil {
		return nil, fresh, errOpenDevice(d, err)
	}
	return w, mediaHeader{}, nil
}

// Transfer sizes. A URL's part is MAXTRANSFERSIZE bytes: 10 MB unless
// the statement says otherwise, and from 5 MB to 20 MB; a disk takes up
// to 4 MB.
const (
	defaultURLTransfer = 10 << 20
	minURLTransfer     = 5 << 20
	maxURLTransfer     = 20 << 20
	maxDiskTransfer    = 4 << 20
	// defaultURLBuffers is the BUFFERCOUNT of a backup to URL that names
	// none: how many parts are uploaded at once. SQL Server documents no
	// default; any value above one lets parts arrive out of order.
	defaultURLBuffers = 4
)

// checkURLTransfer applies the S3 connector's rules on MAXTRANSFERSIZE:
// 5 MB to 20 MB, and "the use of COMPRESSION is required in order to
// change MAXTRANSFERSIZE values" (SQL Server's S3 documentation), read
// strictly: a value other than the default needs WITH COMPRESSION.
func checkURLTransfer(st *backupStmt) *Error {
	n := st.maxTransfer
	switch {
	case n == 0 || n == defaultURLTransfer:
		return nil
	case n < minURLTransfer || n > maxURLTransfer:
		return errTransferRange(n)
	case st.compression == nil || !*st.compression:
		return &Error{Number: 3250, Severity: 16, State: 2, Message: fmt.Sprintf(
			"The value '%d' is not within range for the MAXTRANSFERSIZE parameter. A MAXTRANSFERSIZE other than %d to S3-compatible object storage requires WITH COMPRESSION.", n, defaultURLTransfer)}
	}
	return nil
}

// checkTransfer applies what holds for any device: MAXTRANSFERSIZE is a
// multiple of 64 KB up to 20 MB (the device may allow less), BUFFERCOUNT
// a positive integer. A statement naming neither has zero in both.
func checkTransfer(st *backupStmt) *Error {
	if n := st.maxTransfer; n != 0 && (n < 65536 || n > maxURLTransfer || n%65536 != 0) {
		return errTransferRange(n)
	}
	if st.bufferCount < 0 || st.bufferCount == 0 && st.bufferCountSet {
		return newErr(3250, 16, "The value '%d' is not within range for the BUFFERCOUNT parameter.", st.bufferCount)
	}
	return nil
}

func errTransferRange(n int) *Error {
	return newErr(3250, 16, "The value '%d' is not within range for the MAXTRANSFERSIZE parameter.", n)
}

// progress sends "N percent processed." every STATS percent.
type progress struct {
	m     messenger
	every int
	total int64
	next  int
}

func newProgress(m messenger, every int, total int64) *progress {
	return &progress{m: m, every: every, total: total, next: every}
}

func (p *progress) step(done int64) {
	if p == nil || p.every <= 0 || p.total == 0 {
		return
	}
	for p.next <= 100 && done*100 >= int64(p.next)*p.total {
		p.m.info(3211, "%d percent processed.", p.next)
		p.next += p.every
	}
}

// finish sends the messages up to 100 percent not sent yet: all of them
// for a backup or restore that had nothing to copy, which SQL Server
// reports as done too.
func (p *progress) finish() {
	if p == nil || p.every <= 0 {
		return
	}
	for p.next <= 100 {
		p.m.info(3211, "%d percent processed.", p.next)
		p.next += p.every
	}
}
