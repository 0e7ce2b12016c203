package streamer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/policy"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// backup runs one BackupRequested and settles its work message.
func (s *Service) backup(ctx context.Context, m *bus.Message, req *cofferv1.BackupRequested) error {
	jid, db := req.GetMeta().GetJobId(), req.GetDatabase()
	if err := checkJobID(jid); err != nil {
		return err
	}
	if db.GetInstance() == "" || db.GetDatabase() == "" {
		return bus.Permanent(fmt.Errorf("backup job %s names no database", jid))
	}
	log := s.jobLogger(jid, db)
	trace.SpanFromContext(ctx).SetAttributes(dbAttrs(jid, db)...)
	if done, err := s.jobDone(ctx, jid); err != nil || done {
		if done {
			log.InfoContext(ctx, "backup already has its outcome; skipping")
		}
		return err
	}
	s.cfg.Metrics.JobStarted(cofferv1.JobKind_JOB_KIND_BACKUP, req.GetType())
	began := time.Now()
	sb, err := s.runBackup(ctx, log, jid, req, backupOptions{})
	if err == nil {
		err = s.publish(ctx, cofferv1.SubjectBackupStreamed, sb.event, sb.event.Meta.EventId)
		// Unlinking a large file takes a while (a quarter of a second
		// for 1 GiB): the committer commits meanwhile.
		removeStaging(ctx, log, sb.staging...)
	}
	if err == nil {
		s.cfg.Metrics.Transferred(cofferv1.JobKind_JOB_KIND_BACKUP, sb.event.GetBackup().GetType(), sb.event.GetSize(), time.Since(began))
		log.InfoContext(ctx, "backup streamed", slog.Int64("size", sb.event.GetSize()), slog.Int64("new_bytes", sb.event.GetNewBytes()),
			slog.Int("chunks", len(sb.draft.Chunks)), slog.String("draft", sb.event.GetDraft()))
	}
	return s.settle(ctx, m, log, err, func(reason string) *cofferv1.JobFailed {
		return &cofferv1.JobFailed{
			Meta:       event.Meta(event.ID("failed", jid, Name), jid, s.cfg.Now()),
			Kind:       cofferv1.JobKind_JOB_KIND_BACKUP,
			Database:   db,
			Reason:     reason,
			Service:    Name,
			BackupType: req.GetType(),
		}
	})
}

func backupType(t cofferv1.BackupType) (mssql.BackupType, bool) {
	switch t {
	case cofferv1.BackupType_BACKUP_TYPE_FULL:
		return mssql.Full, true
	case cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL:
		return mssql.Differential, true
	case cofferv1.BackupType_BACKUP_TYPE_LOG:
		return mssql.Log, true
	case cofferv1.BackupType_BACKUP_TYPE_COPY_ONLY_FULL:
		return mssql.CopyOnlyFull, true
	}
	return 0, false
}

// statement is a BACKUP running in its own goroutine; err is set before
// done is closed.
type statement struct {
	done chan struct{}
	err  error
}

// marksIn returns the marked transactions a log backup holds, so that a
// restore can stop at one by name. Without them (msdb not readable) the
// backup stands; a restore to a mark then says no backup holds it.
func (s *Service) marksIn(ctx context.Context, log *slog.Logger, c *mssql.Client, database string, meta *cofferv1.BackupMetadata) []*cofferv1.LogMark {
	marks, err := c.Marks(ctx, database)
	if err != nil {
		log.WarnContext(ctx, "marked transactions not readable", slog.Any("error", err))
		return nil
	}
	first, err1 := policy.ParseLSN(meta.GetFirstLsn())
	last, err2 := policy.ParseLSN(meta.GetLastLsn())
	if err1 != nil || err2 != nil {
		return nil
	}
	var out []*cofferv1.LogMark
	for _, m := range marks {
		l, err := policy.ParseLSN(m.LSN)
		if err != nil || l.Less(first) || !l.Less(last) {
			continue
		}
		out = append(out, &cofferv1.LogMark{Name: m.Name, Lsn: m.LSN, Time: timestamppb.New(m.Time)})
	}
	return out
}

// vaultCompression is how the vault compresses the backup req asks for:
// its vault_compression, or, in work queued by a scheduler before that,
// zstd or none as its compression flag says. A name this streamer does
// not know (from a newer scheduler) gets zstd and a warning rather than a
// failed job: the backup is as sound and restorable either way, only
// compressed otherwise than asked, and the policy was validated where it
// was set; failing would leave the database without the backup.
func vaultCompression(ctx context.Context, log *slog.Logger, req *cofferv1.BackupRequested) vault.Compression {
	name := req.GetVaultCompression()
	if name == "" {
		if req.GetCompression() {
			return vault.Zstd
		}
		return vault.Uncompressed
	}
	c, err := vault.ParseCompression(name)
	if err != nil {
		log.WarnContext(ctx, "unknown vault compression; compressing with zstd", slog.String("compression", name))
		return vault.Zstd
	}
	return c
}

// backupOptions are what a backup the streamer takes for itself needs
// beyond its BackupRequested.
type backupOptions struct {
	// tail takes the log WITH NORECOVERY (the tail-log backup before an
	// overwrite) and keeps the staging file for the restore that follows.
	tail bool
}

// stagingName is the staging file of a backup job.
func stagingName(jid string) string { return jid + ".bak" }

// streamedBackup is a backup the vault holds, not committed yet: the
// BackupStreamed to publish, and the draft it names.
type streamedBackup struct {
	event *cofferv1.BackupStreamed
	draft *vault.Manifest
	// staging is the staging file the backup was read from, for the
	// caller to remove once the event is out (none in URL mode); a
	// tail-log backup's is kept for the restore that follows.
	staging []string
}

// runBackup takes the backup into the staging directory while it streams
// the file into the vault, and returns it, its draft stored and its
// staging file left for the caller to remove.
func (s *Service) runBackup(ctx context.Context, log *slog.Logger, jid string, req *cofferv1.BackupRequested, opt backupOptions) (*streamedBackup, error) {
	db := req.GetDatabase()
	typ, ok := backupType(req.GetType())
	if !ok {
		return nil, fail("unsupported backup type %v", req.GetType())
	}
	// an availability group database is backed up on the replica the
	// scheduler chose; its recovery point stays with the protected database
	on := db.GetInstance()
	if r := req.GetReplicaInstance(); r != "" {
		on = r
	}
	c, err := s.client(ctx, on)
	if err != nil {
		return nil, err
	}
	chainBreak := req.GetChainBreak()
	var broke string
	if typ, broke, err = s.checkChain(ctx, log, c, jid, req, typ); err != nil {
		return nil, err
	}
	if broke != "" {
		chainBreak = broke
	}
	prog := s.newProgress(ctx, log, jid, &cofferv1.JobProgress{Kind: cofferv1.JobKind_JOB_KIND_BACKUP, Database: db, BackupType: req.GetType()})
	prog.report("backup", 0, 0, true)
	if url, err := s.urlMode(ctx, c, on); err != nil {
		return nil, err
	} else if url {
		return s.backupToURL(ctx, log, jid, req, c, on, typ, opt, chainBreak, prog)
	}

	name := stagingName(jid)
	local := filepath.Join(s.cfg.StagingDir, name)
	remote := serverPath(s.cfg.ServerStagingDir, name)
	// A file left by an earlier attempt must not be read as this one.
	if err := removeFile(local); err != nil {
		return nil, fail("clear staging file: %v", err)
	}
	keep := false
	defer func() {
		if keep {
			return
		}
		if err := removeFile(local); err != nil {
			log.ErrorContext(ctx, "staging file not removed", slog.String("path", local), slog.Any("error", err))
		}
	}()

	v, sess, err := s.openSession(ctx, req)
	if err != nil {
		return nil, err
	}
	defer s.closeSession(ctx, log, sess)
	// Until it is closed successfully, the stream is aborted: its chunks
	// become garbage, and with no manifest nothing refers to them.
	wctx, abort := context.WithCancel(ctx)
	w := v.NewWriter(wctx, vault.WriterOptions{Workers: s.cfg.VaultWorkers, Compression: vaultCompression(ctx, log, req), Session: sess})
	closed := false
	defer func() {
		abort()
		if !closed {
			w.Close()
		}
	}()

	// SQL Server's own compression is off: its output neither
	// deduplicates nor compresses further; the vault compresses per chunk.
	noCompression := false
	var percent atomic.Int64
	bctx, cancelBackup := context.WithCancel(ctx)
	defer cancelBackup()
	sctx, sqlSpan := s.tracer.Start(bctx, "mssql backup", trace.WithAttributes(dbAttrs(jid, db)...),
		trace.WithAttributes(attribute.String("db.operation.name", "BACKUP"), attribute.String("backup.file", remote)))
	st := &statement{done: make(chan struct{})}
	go func() {
		defer close(st.done)
		st.err = s.backupInTurn(sctx, log, c, mssql.BackupRequest{
			Database:    db.GetDatabase(),
			Type:        typ,
			Files:       []string{remote},
			Compression: &noCompression,
			NoRecovery:  opt.tail,
			OnProgress:  func(p int) { percent.Store(int64(p)) },
		})
		if st.err != nil {
			sqlSpan.RecordError(st.err)
			sqlSpan.SetStatus(codes.Error, st.err.Error())
		}
		sqlSpan.End()
	}()

	_, upSpan := s.tracer.Start(ctx, "vault upload", trace.WithAttributes(dbAttrs(jid, db)...))
	tailErr := s.tail(ctx, local, w, st, func(n int64) {
		prog.report("backup", float64(percent.Load()), n, false)
	})
	// Whichever failed first is the cause: a statement that failed by
	// itself, or a stream that failed while the statement ran (which
	// then fails the statement by cancelling it).
	statementFirst := false
	select {
	case <-st.done:
		statementFirst = true
	default:
	}
	cancelBackup()
	<-st.done

	switch {
	case ctx.Err() != nil:
		upSpan.End()
		return nil, fmt.Errorf("backup of %q interrupted: %w", db.GetDatabase(), context.Cause(ctx))
	case st.err != nil && (statementFirst || tailErr == nil):
		upSpan.SetStatus(codes.Error, "backup failed")
		upSpan.End()
		return nil, fail("BACKUP of database %q on instance %q failed: %v", db.GetDatabase(), on, st.err)
	case tailErr != nil:
		upSpan.RecordError(tailErr)
		upSpan.SetStatus(codes.Error, tailErr.Error())
		upSpan.End()
		return nil, fail("backup of database %q on instance %q: %v", db.GetDatabase(), on, tailErr)
	}
	// SQL Server reads the header back from the file while the vault's
	// writer stores what it holds
	type header struct {
		meta *cofferv1.BackupMetadata
		err  error
	}
	hc := make(chan header, 1)
	go func() {
		meta, err := s.readHeader(ctx, c, jid, db, []string{remote})
		hc <- header{meta, err}
	}()
	closed = true
	err = w.Close()
	h := <-hc
	if err != nil {
		upSpan.RecordError(err)
		upSpan.SetStatus(codes.Error, err.Error())
		upSpan.End()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("backup of %q interrupted: %w", db.GetDatabase(), context.Cause(ctx))
		}
		return nil, fail("store the backup of database %q in the vault: %v", db.GetDatabase(), err)
	}
	res := w.Result()
	upSpan.SetAttributes(attribute.Int64("backup.size", res.Size), attribute.Int64("vault.new_bytes", res.NewBytes),
		attribute.Int("vault.chunks", len(res.Chunks)))
	upSpan.End()

	if h.err != nil {
		return nil, h.err
	}
	sb, err := s.streamed(ctx, log, c, jid, req, h.meta, []vault.Result{res}, chainBreak)
	if err != nil {
		return nil, err
	}
	keep = true
	if !opt.tail {
		sb.staging = []string{local}
	}
	return sb, nil
}

// streamed takes what SQL Server says of the backup it wrote (meta, read
// by readHeader from its files: a staging path, or one URL per stripe),
// stores the draft of the streams res the vault holds, one per file, and
// makes their BackupStreamed, which names the draft: a backup's chunk list
// (about 80 bytes a chunk, 8 MB for 100 GB) is too long for a message.
func (s *Service) streamed(ctx context.Context, log *slog.Logger, c *mssql.Client, jid string, req *cofferv1.BackupRequested, meta *cofferv1.BackupMetadata, res []vault.Result, chainBreak string) (*streamedBackup, error) {
	db := req.GetDatabase()
	if meta.GetType() == cofferv1.BackupType_BACKUP_TYPE_LOG {
		meta.Marks = s.marksIn(ctx, log, c, db.GetDatabase(), meta)
	}
	offset, err := s.backupOffset(ctx, log, c, db.GetDatabase(), meta)
	if err != nil {
		return nil, err
	}
	toUTC(meta, offset)
	e := &cofferv1.BackupStreamed{
		Meta:       event.Meta(event.ID("streamed", jid), jid, s.cfg.Now()),
		Database:   db,
		Backup:     meta,
		Reason:     req.GetReason(),
		ChainBreak: chainBreak,
	}
	draft := &vault.Manifest{CreatedAt: s.cfg.Now().UTC()}
	for _, r := range res {
		draft.Chunks = append(draft.Chunks, r.Chunks...)
		e.Size += r.Size
		e.NewBytes += r.NewBytes
		if len(res) > 1 {
			e.Stripes = append(e.Stripes, &cofferv1.BackupStripe{Chunks: int32(len(r.Chunks)), Size: r.Size, Checksum: r.Checksum})
			draft.Stripes = append(draft.Stripes, vault.Stripe{Chunks: len(r.Chunks), Size: r.Size, Checksum: r.Checksum})
		}
	}
	if len(res) == 1 {
		e.Checksum = res[0].Checksum
	}
	draft.Size, draft.Checksum = e.Size, e.Checksum
	// a draft of its own for each attempt: a job streamed again (its
	// work message redelivered) never replaces the chunk list the first
	// attempt's event, with the first attempt's LSNs, names
	e.Draft = event.RecoveryPointID(jid) + "." + rand.Text()[:10]
	e.Vault = req.GetVault()
	v, err := s.vaultOf(ctx, req.GetVault())
	if err != nil {
		return nil, err
	}
	if err := v.PutDraft(ctx, e.Draft, draft); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("backup of %q interrupted: %w", db.GetDatabase(), context.Cause(ctx))
		}
		return nil, fail("store the chunk list of the backup of database %q in the vault: %v", db.GetDatabase(), err)
	}
	return &streamedBackup{event: e, draft: draft}, nil
}

// openSession opens the vault session of the backup req asks for, in the
// vault it names, and returns that vault: until it is
// closed, after the backup's draft is stored (the deferred closeSession
// of the function that stores it), garbage collection deletes nothing
// the backup's writers deduplicate against. It is the backup's first
// write to the vault, before SQL Server is asked for anything: a store
// that cannot be reached is a transient error.
func (s *Service) openSession(ctx context.Context, req *cofferv1.BackupRequested) (*vault.Vault, *vault.Session, error) {
	db := req.GetDatabase()
	v, err := s.vaultOf(ctx, req.GetVault())
	var sess *vault.Session
	if err == nil {
		sess, err = v.OpenSession(ctx, vault.SessionOptions{Refresh: s.cfg.SessionRefresh})
	}
	var f *failure
	switch {
	case ctx.Err() != nil:
		return nil, nil, fmt.Errorf("backup of %q interrupted: %w", db.GetDatabase(), context.Cause(ctx))
	case errors.As(err, &f):
		return nil, nil, err
	case err != nil:
		// the store is unreachable (or refuses): transient, so the job
		// is tried again after the backoff instead of failing at once;
		// it fails, saying why, when its tries run out
		return nil, nil, fmt.Errorf("back up database %q: %w", db.GetDatabase(), err)
	}
	return v, sess, nil
}

// closeSession ends a backup's vault session. A session that expired
// (not refreshed within its lease) may have let garbage collection take
// a chunk the backup deduplicated against: its commit then fails, naming
// the chunk.
func (s *Service) closeSession(ctx context.Context, log *slog.Logger, sess *vault.Session) {
	if err := sess.Close(context.WithoutCancel(ctx)); err != nil {
		log.ErrorContext(ctx, "vault session not closed cleanly", slog.Any("error", err))
	}
}

// errSerialized is SQL Server's refusal of a second data backup (or a
// second log backup) of a database while one runs.
const errSerialized = 3023

// backupInTurn runs the BACKUP statement, and when SQL Server refuses it
// because another backup of the database is running (the first full after
// protection and an on-demand full, or another tool's), waits for that
// one to end and runs it then, so that concurrent backups of a database
// are taken one after the other. It waits as long as the job's context
// lasts: a backup of a large database may run for hours.
func (s *Service) backupInTurn(ctx context.Context, log *slog.Logger, c *mssql.Client, r mssql.BackupRequest) error {
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(s.cfg.SerializedRetry),
		backoff.WithMaxInterval(30*time.Second), backoff.WithMaxElapsedTime(0))
	waited := false
	return backoff.Retry(func() error {
		err := c.Backup(ctx, r)
		switch {
		case err == nil:
			return nil
		case mssql.Number(err) == errSerialized && ctx.Err() == nil:
			if !waited {
				log.InfoContext(ctx, "another backup of the database is running; this one waits its turn")
				waited = true
			}
			return err
		}
		return backoff.Permanent(err)
	}, backoff.WithContext(b, ctx))
}

// readHeader reads what SQL Server says of the backup in files (its
// stripes).
func (s *Service) readHeader(ctx context.Context, c *mssql.Client, jid string, db *cofferv1.DatabaseRef, files []string) (*cofferv1.BackupMetadata, error) {
	ctx, span := s.tracer.Start(ctx, "mssql restore headeronly", trace.WithAttributes(dbAttrs(jid, db)...),
		trace.WithAttributes(attribute.String("db.operation.name", "RESTORE HEADERONLY")))
	defer span.End()
	headers, err := c.HeaderOnly(ctx, files)
	if err == nil && len(headers) != 1 {
		err = fmt.Errorf("the backup file holds %d backup sets, want 1", len(headers))
	}
	var dbFiles []mssql.File
	if err == nil {
		dbFiles, err = c.FileList(ctx, files)
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		if ctx.Err() != nil {
			return nil, fmt.Errorf("backup of %q interrupted: %w", db.GetDatabase(), context.Cause(ctx))
		}
		return nil, fail("read the header of the backup of database %q: %v", db.GetDatabase(), err)
	}
	return backupMetadata(headers[0], dbFiles), nil
}

// tail copies the backup file at path into w while SQL Server writes it:
// it reads to the end, waits for the file to grow, and stops once the
// statement has returned and the end is reached. A statement that failed
// stops it at once; the caller reports the statement's error.
func (s *Service) tail(ctx context.Context, path string, w io.Writer, st *statement, onRead func(n int64)) error {
	timer := time.NewTimer(s.cfg.PollInterval)
	defer timer.Stop()
	ended := false // the statement returned before the last read began
	wait := func() error {
		timer.Reset(s.cfg.PollInterval)
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-st.done:
			ended = true
		case <-timer.C:
		}
		return nil
	}

	var f *os.File
	for f == nil {
		var err error
		f, err = os.Open(path)
		switch {
		case err == nil:
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("open the backup file: %w", err)
		case ended && st.err != nil:
			return nil
		case ended:
			return fmt.Errorf("SQL Server reports the backup written, but %s does not exist: "+
				"the staging directory must be the same directory for SQL Server and the streamer", path)
		default:
			if err := wait(); err != nil {
				return err
			}
		}
	}
	defer f.Close()

	buf := make([]byte, s.cfg.ReadBuffer)
	var off int64
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return fmt.Errorf("store in the vault: %w", werr)
			}
			off += int64(n)
			onRead(off)
		}
		switch {
		case err == nil:
			continue
		case !errors.Is(err, io.EOF):
			return fmt.Errorf("read the backup file: %w", err)
		case ended:
			if st.err != nil {
				return nil
			}
			if fi, err := f.Stat(); err == nil && fi.Size() != off {
				return fmt.Errorf("the backup file is %d bytes, but %d were read", fi.Size(), off)
			}
			return nil
		}
		if fi, err := f.Stat(); err == nil && fi.Size() < off {
			return fmt.Errorf("the backup file shrank to %d bytes while %d were read", fi.Size(), off)
		}
		if err := wait(); err != nil {
			return err
		}
		if ended && st.err != nil {
			return nil
		}
	}
}

// removeFile removes path; a missing file is not an error.
func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// checkChain compares the database's chain with what coffer's own backups
// say it should be (REFERENCE.md, chain rules 2 and 5, and forks). When
// another tool took a log or a full, or the database was restored over, a
// log or differential cannot continue coffer's chain: the job takes a full
// instead, which heals it, and ChainBroken says why. What the job expects
// was read when it was queued: a backup of coffer's that committed since
// (msdb names its job in its device) moved the chain without breaking it.
func (s *Service) checkChain(ctx context.Context, log *slog.Logger, c *mssql.Client, jid string, req *cofferv1.BackupRequested, typ mssql.BackupType) (mssql.BackupType, string, error) {
	if typ != mssql.Log && typ != mssql.Differential {
		return typ, "", nil
	}
	db := req.GetDatabase()
	ch, err := c.ChainState(ctx, db.GetDatabase())
	if err != nil {
		return typ, "", err
	}
	var reason string
	switch {
	case req.GetExpectedRecoveryFork() != "" && !strings.EqualFold(ch.RecoveryFork, req.GetExpectedRecoveryFork()):
		reason = fmt.Sprintf("the database is on recovery fork %s, not %s of coffer's last backup: it was restored over", ch.RecoveryFork, req.GetExpectedRecoveryFork())
	case typ == mssql.Log && req.GetExpectedLastLogLsn() != "" && ch.LastLogBackupLSN != req.GetExpectedLastLogLsn():
		// coffer's own logs, committed after this job was queued, moved
		// the chain: the expectation is stale, not the chain broken
		last, err := s.ownLogs(ctx, c, db, req.GetExpectedLastLogLsn(), ch.LastLogBackupLSN)
		if err != nil {
			return typ, "", err
		}
		if last == ch.LastLogBackupLSN {
			break
		}
		reason = fmt.Sprintf("a log backup was taken outside coffer: the log chain is at LSN %s, coffer's last log ended at %s", orNone(ch.LastLogBackupLSN), last)
		if e, ok := s.foreign(ctx, log, c, db.GetDatabase(), func(e mssql.HistoryEntry) bool {
			return e.Type == "L" && !e.CopyOnly && e.FirstLSN == last
		}); ok {
			reason += "; msdb shows " + e
		}
	case typ == mssql.Differential && req.GetExpectedDifferentialBaseGuid() != "" && !strings.EqualFold(ch.DifferentialBaseGUID, req.GetExpectedDifferentialBaseGuid()):
		// SQL Server's own link: the base full's backup set GUID. A full
		// of coffer's that committed after this job was queued is as good
		// a base as the one expected.
		own, err := s.ownFull(ctx, c, db, ch.DifferentialBaseGUID)
		if err != nil {
			return typ, "", err
		}
		if own {
			break
		}
		reason = fmt.Sprintf("a full backup was taken outside coffer: the differential base is backup set %s, coffer's last full is %s", orNone(ch.DifferentialBaseGUID), req.GetExpectedDifferentialBaseGuid())
		if e, ok := s.foreign(ctx, log, c, db.GetDatabase(), func(e mssql.HistoryEntry) bool {
			return e.Type == "D" && !e.CopyOnly && strings.EqualFold(e.BackupSetGUID, ch.DifferentialBaseGUID)
		}); ok {
			reason += "; msdb shows " + e
		}
	case typ == mssql.Differential && req.GetExpectedDifferentialBaseGuid() == "" && req.GetExpectedDifferentialBaseLsn() != "" && ch.DifferentialBaseLSN != req.GetExpectedDifferentialBaseLsn():
		// coffer's last full was recorded before it kept backup set GUIDs
		reason = fmt.Sprintf("a full backup was taken outside coffer: the differential base is LSN %s, coffer's last full is %s", orNone(ch.DifferentialBaseLSN), req.GetExpectedDifferentialBaseLsn())
		if e, ok := s.foreign(ctx, log, c, db.GetDatabase(), func(e mssql.HistoryEntry) bool {
			return e.Type == "D" && !e.CopyOnly && e.CheckpointLSN == ch.DifferentialBaseLSN
		}); ok {
			reason += "; msdb shows " + e
		}
	}
	if reason == "" {
		return typ, "", nil
	}
	log.WarnContext(ctx, "chain broken; taking a full instead", slog.String("reason", reason))
	ev := &cofferv1.ChainBroken{Meta: event.Meta(event.ID("chain-broken", jid), jid, s.cfg.Now()), Database: db, Reason: reason}
	if err := s.publish(ctx, cofferv1.SubjectChainBroken, ev, ev.Meta.EventId); err != nil {
		return typ, "", err
	}
	return mssql.Full, reason, nil
}

// historyDepth is how many of msdb's latest backups foreign looks through.
const historyDepth = 50

// jobInDevice finds a coffer job id in a backup's device name: coffer
// names a backup's staging file, and its URL, after the job.
var jobInDevice = regexp.MustCompile(`j[0-9]{8}T[0-9]{6}-[0-9a-f]{8}`)

// ownLogs follows the log backups SQL Server took after coffer's last
// known one (which ended at from) towards the chain's current LSN (to)
// for as long as they are coffer's own, committed, and returns the LSN
// where coffer's logs end: to when the chain is whole, and a job queued
// before those logs committed only expected too little. A log whose job
// has not ended yet is a transient error: this job waits for its outcome.
// The walk stops at a log taken elsewhere, one whose job failed, and
// where msdb's history ends.
func (s *Service) ownLogs(ctx context.Context, c *mssql.Client, db *cofferv1.DatabaseRef, from, to string) (string, error) {
	hist, err := c.History(ctx, db.GetDatabase(), historyDepth)
	if err != nil {
		return from, nil // foreign names what it can
	}
	cur := from
	for steps := 0; cur != to && steps <= len(hist); steps++ {
		k := slices.IndexFunc(hist, func(e mssql.HistoryEntry) bool { return e.Type == "L" && !e.CopyOnly && e.FirstLSN == cur })
		if k < 0 {
			break
		}
		own, err := s.ownJob(ctx, db, hist[k], cofferv1.BackupType_BACKUP_TYPE_LOG)
		if err != nil {
			return cur, err
		}
		if !own {
			break
		}
		cur = hist[k].LastLSN
	}
	if cur == to {
		return cur, nil
	}
	// the chain broke after from, and a full of coffer's, committed, has
	// healed it since: a log from where the chain is now continues that
	// full (it covers the full's last LSN), as a log queued before the
	// full was taken does not know
	for _, e := range hist {
		if e.Type != "D" || e.CopyOnly || !lsnLE(to, e.LastLSN) {
			continue
		}
		own, err := s.ownJob(ctx, db, e, cofferv1.BackupType_BACKUP_TYPE_FULL)
		if err != nil {
			return cur, err
		}
		if own {
			return to, nil
		}
	}
	return cur, nil
}

// lsnLE orders LSNs as msdb writes them, decimal numbers of up to 25
// digits.
func lsnLE(a, b string) bool {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	return len(a) < len(b) || len(a) == len(b) && a <= b
}

// ownFull reports whether the full whose backup set is guid is coffer's
// own, committed (see ownLogs).
func (s *Service) ownFull(ctx context.Context, c *mssql.Client, db *cofferv1.DatabaseRef, guid string) (bool, error) {
	hist, err := c.History(ctx, db.GetDatabase(), historyDepth)
	if err != nil {
		return false, nil
	}
	k := slices.IndexFunc(hist, func(e mssql.HistoryEntry) bool {
		return e.Type == "D" && !e.CopyOnly && strings.EqualFold(e.BackupSetGUID, guid)
	})
	if k < 0 {
		return false, nil
	}
	return s.ownJob(ctx, db, hist[k], cofferv1.BackupType_BACKUP_TYPE_FULL)
}

// ownJob reports whether backup e of db is a coffer job of type typ that
// committed; an error when its job has not ended yet.
func (s *Service) ownJob(ctx context.Context, db *cofferv1.DatabaseRef, e mssql.HistoryEntry, typ cofferv1.BackupType) (bool, error) {
	jid := jobInDevice.FindString(e.Device)
	if jid == "" {
		return false, nil
	}
	var j cofferv1.Job
	_, err := s.jobs.Get(ctx, catalog.Key(jid), &j)
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read job %s: %w", jid, err)
	case j.GetDatabase().GetInstance() != db.GetInstance() || j.GetDatabase().GetDatabase() != db.GetDatabase():
		return false, nil
	case j.GetState() == cofferv1.JobState_JOB_STATE_FAILED, j.GetState() == cofferv1.JobState_JOB_STATE_CANCELLED:
		return false, nil
	case j.GetState() == cofferv1.JobState_JOB_STATE_SUCCEEDED:
		// the job kept this backup, not one SQL Server took on an earlier
		// try of it: the recovery point is the same backup set
		if j.GetRecoveryPoint() == "" {
			return false, nil
		}
		var rp cofferv1.RecoveryPoint
		_, err := s.rps.Get(ctx, catalog.Key(db.GetInstance(), db.GetDatabase(), j.GetRecoveryPoint()), &rp)
		switch {
		case errors.Is(err, catalog.ErrNotFound):
			return false, nil
		case err != nil:
			return false, fmt.Errorf("read recovery point %s: %w", j.GetRecoveryPoint(), err)
		}
		b := rp.GetBackup()
		return b.GetType() == typ && b.GetFirstLsn() == e.FirstLSN && b.GetLastLsn() == e.LastLSN, nil
	}
	return false, fmt.Errorf("backup job %s, which SQL Server finished (LSN %s to %s), has no outcome yet: waiting for it", jid, e.FirstLSN, e.LastLSN)
}

// foreign describes the backup in msdb's history that match picks: the
// backup that broke coffer's chain. A backup coffer itself took into its
// staging directory but never kept (its job failed after SQL Server
// finished) is named as such. Without msdb history the reason stands on
// the LSNs alone.
func (s *Service) foreign(ctx context.Context, log *slog.Logger, c *mssql.Client, database string, match func(mssql.HistoryEntry) bool) (string, bool) {
	hist, err := c.History(ctx, database, historyDepth)
	if err != nil {
		log.WarnContext(ctx, "msdb backup history not readable", slog.Any("error", err))
		return "", false
	}
	for _, e := range hist {
		if !match(e) {
			continue
		}
		kind := map[string]string{"D": "BACKUP DATABASE", "I": "BACKUP DATABASE WITH DIFFERENTIAL", "L": "BACKUP LOG"}[e.Type]
		when := "at an unknown time" // msdb's dates may be NULL
		if !e.Finish.IsZero() {
			when = "at " + e.Finish.Format("2006-01-02 15:04:05") + " server time"
		}
		if kind == "" {
			kind = "a backup of unknown type"
		}
		what := fmt.Sprintf("%s to %q %s", kind, e.Device, when)
		if e.User != "" {
			what += " by " + e.User
		}
		what += fmt.Sprintf(" on %s (LSN %s to %s)", e.Server, e.FirstLSN, e.LastLSN)
		if dir := s.cfg.ServerStagingDir; dir != "" && strings.HasPrefix(e.Device, dir) {
			what += ", which coffer took and did not keep: its job failed after SQL Server finished the backup"
		}
		return what, true
	}
	return "", false
}

func orNone(lsn string) string {
	if lsn == "" {
		return "none"
	}
	return lsn
}
