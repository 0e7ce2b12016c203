package streamer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/policy"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// restore runs one RestoreRequested and settles its work message.
func (s *Service) restore(ctx context.Context, m *bus.Message, req *cofferv1.RestoreRequested) error {
	jid, src := req.GetMeta().GetJobId(), req.GetSource()
	if err := checkJobID(jid); err != nil {
		return err
	}
	if src.GetInstance() == "" || src.GetDatabase() == "" {
		return bus.Permanent(fmt.Errorf("restore job %s names no source database", jid))
	}
	tgt := restoreTarget(req)
	log := s.jobLogger(jid, tgt).With(slog.String("source_instance", src.GetInstance()), slog.String("source_database", src.GetDatabase()))
	trace.SpanFromContext(ctx).SetAttributes(dbAttrs(jid, tgt)...)
	if done, err := s.jobDone(ctx, jid); err != nil || done {
		if done {
			log.InfoContext(ctx, "restore already has its outcome; skipping")
		}
		return err
	}
	s.cfg.Metrics.JobStarted(cofferv1.JobKind_JOB_KIND_RESTORE, cofferv1.BackupType_BACKUP_TYPE_UNSPECIFIED)
	began := time.Now()
	completed, left, err := s.runRestore(ctx, log, jid, req, tgt)
	if err == nil {
		err = s.publish(ctx, cofferv1.SubjectRestoreCompleted, completed, completed.Meta.EventId)
	}
	// Unlinking a large file takes a while (a quarter of a second for 1
	// GiB): the last file restored is removed once the outcome is out.
	removeStaging(ctx, log, left...)
	if err == nil {
		s.cfg.Metrics.Transferred(cofferv1.JobKind_JOB_KIND_RESTORE, cofferv1.BackupType_BACKUP_TYPE_UNSPECIFIED, completed.GetBytes(), time.Since(began))
	}
	if err == nil && req.GetToDirectory() != "" {
		log.InfoContext(ctx, "restored as files", slog.String("directory", req.GetToDirectory()), slog.Int64("bytes", completed.GetBytes()))
	} else if err == nil {
		log.InfoContext(ctx, "restore completed", slog.Int64("bytes", completed.GetBytes()))
		// the inventory shows the new database now, not at the next
		// discovery round
		d := &cofferv1.DiscoverRequested{Meta: event.Meta(event.ID("discover-after-restore", jid), jid, s.cfg.Now()), Instance: tgt.GetInstance()}
		if perr := s.publish(ctx, cofferv1.SubjectDiscoverRequested, d, d.Meta.EventId); perr != nil {
			log.WarnContext(ctx, "ask for discovery after restore", slog.Any("error", perr))
		}
	}
	return s.settle(ctx, m, log, err, func(reason string) *cofferv1.JobFailed {
		return &cofferv1.JobFailed{
			Meta:     event.Meta(event.ID("failed", jid, Name), jid, s.cfg.Now()),
			Kind:     cofferv1.JobKind_JOB_KIND_RESTORE,
			Database: src,
			Target:   tgt,
			Reason:   reason,
			Service:  Name,
		}
	})
}

// restoreTarget is where a restore goes: the request's target, with the
// source's instance or name where it leaves them empty.
func restoreTarget(req *cofferv1.RestoreRequested) *cofferv1.DatabaseRef {
	t := &cofferv1.DatabaseRef{Instance: req.GetTarget().GetInstance(), Database: req.GetTarget().GetDatabase()}
	if t.Instance == "" {
		t.Instance = req.GetSource().GetInstance()
	}
	if t.Database == "" {
		t.Database = req.GetSource().GetDatabase()
	}
	return t
}

// staged is one recovery point's backup: where it is reassembled on the
// streamer (disk mode: the staging directory; restore as files: the
// requested directory; URL mode: nowhere) and the devices SQL Server
// reads it from, one file or URL per stripe.
type staged struct {
	rp     *cofferv1.RecoveryPoint
	local  []string
	remote []string
	// from is the vault the restore asked to read every point from; ""
	// means the point's own, then its copies
	from string
}

// sources are the vaults f's point is read from, in order: the one the
// restore asked for, or the point's own vault and then each vault holding
// a copy of it, so that a point its vault cannot give (unreachable, a
// chunk damaged or gone) is read from a copy.
func sources(f staged) ([]string, error) {
	if f.from != "" {
		for _, v := range append([]string{f.rp.GetVault()}, copyVaults(f.rp)...) {
			if sameVault(v, f.from) {
				return []string{v}, nil
			}
		}
		return nil, fail("recovery point %s is neither in vault %s nor copied there", f.rp.GetId(), f.from)
	}
	return append([]string{f.rp.GetVault()}, copyVaults(f.rp)...), nil
}

// sameVault reports whether two vault names name one vault ("" and
// "default" both the default).
func sameVault(a, b string) bool {
	return a == b || daemon.IsDefaultVault(a) && daemon.IsDefaultVault(b)
}

// copyVaults are the vaults holding a committed copy of rp.
func copyVaults(rp *cofferv1.RecoveryPoint) []string {
	var out []string
	for _, c := range rp.GetCopies() {
		if c.GetCommittedAt() != nil {
			out = append(out, c.GetVault())
		}
	}
	return out
}

// removeStaging removes staging files, and logs those it cannot.
func removeStaging(ctx context.Context, log *slog.Logger, paths ...string) {
	for _, p := range paths {
		if err := removeFile(p); err != nil {
			log.ErrorContext(ctx, "staging file not removed", slog.String("path", p), slog.Any("error", err))
		}
	}
}

// runRestore reassembles every recovery point's backup file, each one
// verified, before it runs any RESTORE, so that a damaged or missing chunk
// stops the restore before data moves; then it restores them in order on
// the target instance and returns the RestoreCompleted to publish, and
// the staging files left for the caller to remove once it is published.
func (s *Service) runRestore(ctx context.Context, log *slog.Logger, jid string, req *cofferv1.RestoreRequested, tgt *cofferv1.DatabaseRef) (completed *cofferv1.RestoreCompleted, left []string, err error) {
	src := req.GetSource()
	ids := req.GetRecoveryPoints()
	if len(ids) == 0 {
		return nil, nil, fail("the restore names no recovery point")
	}
	files := make([]staged, len(ids))
	var total int64
	for i, id := range ids {
		rp := &cofferv1.RecoveryPoint{}
		_, err := s.rps.Get(ctx, catalog.Key(src.GetInstance(), src.GetDatabase(), id), rp)
		switch {
		case errors.Is(err, catalog.ErrNotFound):
			return nil, nil, fail("recovery point %s of database %q on instance %q does not exist", id, src.GetDatabase(), src.GetInstance())
		case err != nil:
			return nil, nil, fmt.Errorf("read recovery point %s: %w", id, err)
		}
		typ := rp.GetBackup().GetType()
		isFull := typ == cofferv1.BackupType_BACKUP_TYPE_FULL || typ == cofferv1.BackupType_BACKUP_TYPE_COPY_ONLY_FULL
		if (i == 0) != isFull {
			if i == 0 {
				return nil, nil, fail("a restore starts with a full backup; recovery point %s is a %s", id, typeName(typ))
			}
			return nil, nil, fail("recovery point %s is a full backup: only the first recovery point of a restore may be", id)
		}
		name := fmt.Sprintf("%s-%d.bak", jid, i+1)
		files[i] = staged{rp: rp, from: req.GetFromVault()}
		if _, err := sources(files[i]); err != nil {
			return nil, nil, err
		}
		for _, n := range mssql.StripeFileNames(name, int(rp.GetStripes())) {
			files[i].local = append(files[i].local, filepath.Join(s.cfg.StagingDir, n))
			files[i].remote = append(files[i].remote, serverPath(s.cfg.ServerStagingDir, n))
		}
		total += rp.GetSize()
	}
	if dir := req.GetToDirectory(); dir != "" {
		completed, err = s.restoreToFiles(ctx, log, jid, req, files, total)
		return completed, nil, err
	}
	defer func() {
		if err == nil {
			return // the last file is left to the caller
		}
		for _, f := range files {
			removeStaging(ctx, log, f.local...)
		}
	}()

	c, err := s.client(ctx, tgt.GetInstance())
	if err != nil {
		return nil, nil, err
	}
	existing, err := c.DatabaseName(ctx, tgt.GetDatabase())
	if err != nil {
		return nil, nil, s.sqlFailure(ctx, err, "look up database %q on instance %q", tgt.GetDatabase(), tgt.GetInstance())
	}
	existed := existing != ""
	if existed {
		// the database as SQL Server names it: "Sales " or, under a
		// case-insensitive collation, "SALES" is Sales, whose tail-log
		// must be backed up and whose files are kept
		tgt = &cofferv1.DatabaseRef{Instance: tgt.GetInstance(), Database: existing}
	}
	if existed && !req.GetOverwrite() {
		return nil, nil, fail("database %q already exists on instance %q: restore under another name, or overwrite", tgt.GetDatabase(), tgt.GetInstance())
	}
	if existed {
		// SQL Server restores no database of an availability group
		// (3104); refused before the tail-log backup, which would leave it
		// RESTORING
		group, err := c.AvailabilityGroup(ctx, tgt.GetDatabase())
		if err != nil {
			return nil, nil, s.sqlFailure(ctx, err, "check whether database %q is in an availability group", tgt.GetDatabase())
		}
		if group != "" {
			return nil, nil, fail("database %q on instance %q is in availability group %q, and SQL Server restores no database of a group; nothing was changed. "+
				"Restore under another name, or remove it from the group on the primary (ALTER AVAILABILITY GROUP %s REMOVE DATABASE %s), restore, and join it to the group again",
				tgt.GetDatabase(), tgt.GetInstance(), group, mssql.QuoteName(group), mssql.QuoteName(tgt.GetDatabase()))
		}
	}

	url, err := s.urlMode(ctx, c, tgt.GetInstance())
	if err != nil {
		return nil, nil, err
	}
	if !url {
		return s.applyRestore(ctx, log, jid, req, c, tgt, files, total, existed, nil)
	}
	// URL mode: SQL Server reads every backup from the streamer's
	// endpoint, straight out of the vault
	var job *urlJob
	err = s.withCredential(ctx, log, c, jid, func(j *urlJob) { job = j }, func() error {
		var err error
		completed, left, err = s.applyRestore(ctx, log, jid, req, c, tgt, files, total, existed, job)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return completed, left, nil
}

// applyRestore restores files in order on instance c (the target's), the
// tail-log backup first when the source database is overwritten. In disk
// mode (job nil) each file is first reassembled in the staging directory
// and verified; in URL mode SQL Server reads each from the job's URLs,
// and an overwrite first reads and authenticates every chunk, so that a
// damaged vault changes nothing. Each file restored is removed from the
// staging directory before the next is restored, but the last: it is
// returned, for the caller to remove once the outcome is published.
func (s *Service) applyRestore(ctx context.Context, log *slog.Logger, jid string, req *cofferv1.RestoreRequested, c *mssql.Client,
	tgt *cofferv1.DatabaseRef, files []staged, total int64, existed bool, job *urlJob) (*cofferv1.RestoreCompleted, []string, error) {
	src := req.GetSource()
	prog := s.newProgress(ctx, log, jid, &cofferv1.JobProgress{Kind: cofferv1.JobKind_JOB_KIND_RESTORE, Database: src, Target: tgt})
	n := len(files)
	prog.report(fmt.Sprintf("fetch 1/%d", n), 0, 0, true)
	// Fetching is the first half of the job's percentage, restoring the
	// second, so the percentage only grows.
	if job != nil {
		for i := range files {
			if err := s.serveFile(ctx, jid, job, &files[i], i); err != nil {
				return nil, nil, err
			}
		}
	}
	var fetched int64
	for i, f := range files {
		if job != nil && !existed {
			// URL mode, to a new name: SQL Server reads each chunk as it
			// is verified, and a damaged one stops the restore, whose
			// database is then dropped
			break
		}
		step := fmt.Sprintf("fetch %d/%d", i+1, n)
		err := s.fetch(ctx, jid, tgt, f, func(b int64) {
			prog.report(step, 50*float64(fetched+b)/float64(max(total, 1)), fetched+b, false)
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("restore interrupted: %w", context.Cause(ctx))
			}
			return nil, nil, err
		}
		fetched += f.rp.GetSize()
	}

	if existed {
		// from here on a cancel would leave the database RESTORING, not
		// usable: an overwrite runs to its end, and says so at once
		if !refuseCancel(ctx, "an overwrite restore cannot be cancelled once it began changing the database (its tail-log backup, then RESTORE): the database would be left unusable") {
			return nil, nil, fmt.Errorf("restore stopped: %w", context.Cause(ctx))
		}
		prog.report(fmt.Sprintf("restore 1/%d", n), 50, total, true)
	}
	// the database being overwritten keeps what it has since its last log:
	// a tail-log backup, kept as a recovery point, applied last when the
	// restore goes to the latest moment
	var tailID string
	if existed && req.GetOverwrite() && sameDatabase(src, tgt) {
		tail, err := s.tailLog(ctx, log, jid, c, tgt, files[n-1].rp, req, job)
		if err != nil {
			return nil, nil, err
		}
		if tail != nil {
			tailID = tail.rp.GetId()
			if tail.remote != nil {
				files = append(files, *tail)
				n++
				total += tail.rp.GetSize()
			}
		}
	}
	var stopAt time.Time
	if t := req.GetStopAt(); t != nil {
		stopAt = t.AsTime()
	}
	if (!stopAt.IsZero() || req.GetStopAtMark() != "" || req.GetStopBeforeMark() != "") && files[n-1].rp.GetBackup().GetType() != cofferv1.BackupType_BACKUP_TYPE_LOG {
		return nil, nil, fail("a restore can stop at a moment or mark only inside a log backup; recovery point %s is a %s", files[n-1].rp.GetId(), typeName(files[n-1].rp.GetBackup().GetType()))
	}
	// SQL Server reads STOPAT in its local time; convert before anything
	// moves, since a moment may not be expressible
	var serverStop time.Time
	var err error
	if !stopAt.IsZero() {
		var prev *cofferv1.BackupMetadata
		if n > 1 {
			prev = files[n-2].rp.GetBackup()
		}
		if serverStop, err = policy.ServerTime(stopAt, prev, files[n-1].rp.GetBackup()); err != nil {
			return nil, nil, fail("restore to %s: %v", stopAt.UTC().Format(time.RFC3339), err)
		}
	}
	moves, err := s.moves(ctx, c, req, tgt, files[0].remote, existed, jid)
	if err != nil {
		return nil, nil, s.withDamage(job, err)
	}
	var said []string // what SQL Server said of the last step, beside progress
	for i, f := range files {
		step := fmt.Sprintf("restore %d/%d", i+1, n)
		prog.report(step, 50+50*float64(i)/float64(n), total, true)
		rr := mssql.RestoreRequest{
			Database: tgt.GetDatabase(),
			Log:      f.rp.GetBackup().GetType() == cofferv1.BackupType_BACKUP_TYPE_LOG,
			Files:    f.remote,
			Recovery: i == n-1 && !req.GetNoRecovery(),
			OnProgress: func(p int) {
				prog.report(step, 50+50*(float64(i)+float64(p)/100)/float64(n), total, false)
			},
		}
		if i == 0 {
			rr.Moves, rr.Replace = moves, existed
		}
		if i == n-1 {
			rr.OnMessage = func(number int32, msg string) {
				if number != msgRestoreDone {
					said = append(said, fmt.Sprintf("%s (%d)", msg, number))
				}
			}
			rr.StopAtMark, rr.StopBeforeMark = req.GetStopAtMark(), req.GetStopBeforeMark()
			if t := req.GetMarkAfter(); t != nil && (rr.StopAtMark != "" || rr.StopBeforeMark != "") {
				// SQL Server reads AFTER in its local time
				rr.MarkAfter = t.AsTime().UTC().Add(time.Duration(f.rp.GetBackup().GetUtcOffsetMinutes()) * time.Minute)
			}
			rr.StopAt = serverStop
		}
		if err := s.restoreFile(ctx, c, jid, tgt, f, rr); err != nil {
			reason := err.Error()
			if readErr := s.readErr(job); readErr != nil {
				reason += fmt.Sprintf("; the vault could not serve recovery point %s: %v", f.rp.GetId(), readErr)
			}
			if existed {
				reason += fmt.Sprintf("; database %q was being overwritten and may be left RESTORING", tgt.GetDatabase())
				if tailID != "" {
					reason += fmt.Sprintf("; its tail-log backup is kept as recovery point %s, so nothing committed before the restore is lost", tailID)
				}
			} else if cancelledBy(ctx) != "" {
				// a person stopped it: SQL Server leaves the database
				// RESTORING, and so does coffer
				return nil, nil, fail("%v; database %q on instance %q is left as SQL Server left it (RESTORING): drop it, or restore to it again with overwrite",
					context.Cause(ctx), tgt.GetDatabase(), tgt.GetInstance())
			} else {
				reason += s.dropPartial(ctx, log, c, tgt)
			}
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("restore interrupted: %w", context.Cause(ctx))
			}
			return nil, nil, fail("%s", reason)
		}
		if i < n-1 {
			removeStaging(ctx, log, f.local...)
		}
	}
	if !req.GetNoRecovery() {
		if err := s.checkOnline(ctx, log, c, tgt, existed, tailID, said); err != nil {
			removeStaging(ctx, log, files[n-1].local...)
			return nil, nil, err
		}
	}
	return &cofferv1.RestoreCompleted{
		Meta:   event.Meta(event.ID("restored", jid), jid, s.cfg.Now()),
		Source: src,
		Target: tgt,
		Bytes:  total,
	}, files[n-1].local, nil
}

// msgRestoreDone is RESTORE's "successfully processed N pages" message.
const msgRestoreDone = 3014

// checkOnline fails a restore WITH RECOVERY that SQL Server accepted but
// that left the database other than ONLINE: a STOPAT or mark past the end
// of the last log (message 4322) leaves it RESTORING without an error.
// said is what SQL Server said of the last step.
func (s *Service) checkOnline(ctx context.Context, log *slog.Logger, c *mssql.Client, tgt *cofferv1.DatabaseRef, existed bool, tailID string, said []string) error {
	state, err := c.DatabaseState(ctx, tgt.GetDatabase())
	if err != nil {
		return s.sqlFailure(ctx, err, "check that database %q came online", tgt.GetDatabase())
	}
	if state == "ONLINE" {
		return nil
	}
	if state == "" {
		state = "missing"
	}
	reason := fmt.Sprintf("every RESTORE ran, but database %q on instance %q is %s, not ONLINE", tgt.GetDatabase(), tgt.GetInstance(), state)
	if len(said) > 0 {
		reason += "; SQL Server said: " + strings.Join(said, "; ")
	}
	if existed {
		reason += fmt.Sprintf("; it was being overwritten: RESTORE DATABASE %s WITH RECOVERY brings it online as restored so far", mssql.QuoteName(tgt.GetDatabase()))
		if tailID != "" {
			reason += fmt.Sprintf("; its tail-log backup is kept as recovery point %s", tailID)
		}
	} else {
		reason += s.dropPartial(ctx, log, c, tgt)
	}
	return fail("%s", reason)
}

// scriptName is the file a restore as files writes its T-SQL to.
const scriptName = "restore.sql"

// restoreToFiles writes each recovery point's backup file, verified, into
// the request's directory with the script that applies them. It never
// overwrites a file; a failure removes what it wrote.
func (s *Service) restoreToFiles(ctx context.Context, log *slog.Logger, jid string, req *cofferv1.RestoreRequested, files []staged, total int64) (*cofferv1.RestoreCompleted, error) {
	dir, names := req.GetToDirectory(), req.GetFileNames()
	if !filepath.IsAbs(dir) {
		return nil, fail("restore as files: %q is not an absolute path", dir)
	}
	if len(names) != len(files) {
		return nil, fail("restore as files: %d file names for %d recovery points", len(names), len(files))
	}
	for _, n := range append(slices.Clone(names), scriptName) {
		if n == "" || filepath.Base(n) != n || n == "." || n == ".." {
			return nil, fail("restore as files: %q is not a plain file name", n)
		}
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			return nil, fail("restore as files: %s already exists in %s; coffer never overwrites it: choose an empty directory", n, dir)
		}
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fail("restore as files: create %s: %v", dir, err)
	}
	var written []string
	done := false
	defer func() {
		if done {
			return
		}
		for _, p := range written {
			if err := removeFile(p); err != nil {
				log.ErrorContext(ctx, "partial file not removed", slog.String("path", p), slog.Any("error", err))
			}
		}
	}()
	src := req.GetSource()
	prog := s.newProgress(ctx, log, jid, &cofferv1.JobProgress{Kind: cofferv1.JobKind_JOB_KIND_RESTORE, Database: src})
	var fetched int64
	for i, f := range files {
		f.local = nil
		for _, n := range mssql.StripeFileNames(names[i], int(f.rp.GetStripes())) {
			f.local = append(f.local, filepath.Join(dir, n))
		}
		written = append(written, f.local...)
		step := fmt.Sprintf("write %d/%d", i+1, len(files))
		err := s.fetch(ctx, jid, src, f, func(b int64) {
			prog.report(step, 100*float64(fetched+b)/float64(max(total, 1)), fetched+b, false)
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("restore interrupted: %w", context.Cause(ctx))
			}
			return nil, err
		}
		fetched += f.rp.GetSize()
	}
	script := filepath.Join(dir, scriptName)
	written = append(written, script)
	if err := os.WriteFile(script, []byte(req.GetScript()), 0o640); err != nil {
		return nil, fail("restore as files: write %s: %v", script, err)
	}
	done = true
	return &cofferv1.RestoreCompleted{
		Meta:   event.Meta(event.ID("restored", jid), jid, s.cfg.Now()),
		Source: src,
		Target: req.GetTarget(),
		Bytes:  total,
	}, nil
}

func sameDatabase(a, b *cofferv1.DatabaseRef) bool {
	return a.GetInstance() == b.GetInstance() && a.GetDatabase() == b.GetDatabase()
}

// tailLog takes a tail-log backup (BACKUP LOG WITH NORECOVERY) of a
// database about to be overwritten, streams it into the vault and hands it
// to the committer, so that nothing committed since its last log backup is
// lost. It returns the tail as a step to apply when the restore goes to
// the latest moment (req.latest) and the tail continues the plan; with a
// local path empty when it is kept but not applied; nil when the database
// has no log chain (SIMPLE recovery, or no full backup yet) to take a tail
// of. A failed tail-log backup refuses the restore: nothing is
// overwritten.
func (s *Service) tailLog(ctx context.Context, log *slog.Logger, jid string, c *mssql.Client, db *cofferv1.DatabaseRef, last *cofferv1.RecoveryPoint, req *cofferv1.RestoreRequested, job *urlJob) (*staged, error) {
	ch, err := c.ChainState(ctx, db.GetDatabase())
	if err != nil {
		return nil, s.sqlFailure(ctx, err, "read the log chain of %q before its tail-log backup", db.GetDatabase())
	}
	if ch.LastLogBackupLSN == "" {
		log.InfoContext(ctx, "no tail-log backup: the database has no log chain (SIMPLE recovery or no full backup)")
		return nil, nil
	}
	now := s.cfg.Now()
	tjid := event.DerivedJobID(now, "tail-log", jid)
	breq := &cofferv1.BackupRequested{Meta: event.Meta(event.ID("tail-log", jid), tjid, now), Database: db,
		Type: cofferv1.BackupType_BACKUP_TYPE_LOG, Reason: "tail-log", Compression: true,
		// the tail continues the chain restored over it, in its vault
		Vault: last.GetVault()}
	tlog := log.With(slog.String("tail_log_job", tjid))
	sb, err := s.runBackup(ctx, tlog, tjid, breq, backupOptions{tail: true})
	if err != nil {
		return nil, fail("the tail-log backup of %q failed, so nothing was overwritten: %v", db.GetDatabase(), err)
	}
	local := filepath.Join(s.cfg.StagingDir, stagingName(tjid))
	streamed := sb.event
	if err := s.publish(ctx, cofferv1.SubjectBackupStreamed, streamed, streamed.Meta.EventId); err != nil {
		return nil, fmt.Errorf("database %q is RESTORING after its tail-log backup, which is in %s and not yet recorded (RESTORE DATABASE ... WITH RECOVERY brings the database back): %w",
			db.GetDatabase(), local, err)
	}
	rp := &cofferv1.RecoveryPoint{Id: event.RecoveryPointID(tjid), Database: db, Backup: streamed.GetBackup(), Size: streamed.GetSize(), JobId: tjid}
	tlog.InfoContext(ctx, "tail-log backup taken", slog.String("recovery_point", rp.GetId()), slog.Int64("size", rp.GetSize()))
	if req.GetLatest() && req.GetStopAt() == nil && req.GetStopAtMark() == "" && req.GetStopBeforeMark() == "" && continues(streamed.GetBackup(), last.GetBackup()) {
		if job != nil {
			// URL mode: the restore reads the tail from the endpoint
			tv, err := s.vaultOf(ctx, breq.GetVault())
			if err != nil {
				return nil, err
			}
			return &staged{rp: rp, remote: s.serveStreams(jid, job, tv, "tail.bak", chunkLists(sb.draft))}, nil
		}
		return &staged{rp: rp, local: []string{local}, remote: []string{serverPath(s.cfg.ServerStagingDir, stagingName(tjid))}}, nil
	}
	if err := removeFile(local); err != nil {
		tlog.ErrorContext(ctx, "staging file not removed", slog.String("path", local), slog.Any("error", err))
	}
	return &staged{rp: rp}, nil
}

// continues reports whether log backup next can be restored right after
// prev (REFERENCE.md, chain rules): after a log, it starts where prev
// ended; after a full or differential, prev ends inside it.
func continues(next, prev *cofferv1.BackupMetadata) bool {
	first, err1 := policy.ParseLSN(next.GetFirstLsn())
	last, err2 := policy.ParseLSN(next.GetLastLsn())
	end, err3 := policy.ParseLSN(prev.GetLastLsn())
	if err1 != nil || err2 != nil || err3 != nil || end.IsZero() || first.IsZero() {
		return false
	}
	if prev.GetType() == cofferv1.BackupType_BACKUP_TYPE_LOG {
		return first == end
	}
	return !end.Less(first) && end.Less(last)
}

func typeName(t cofferv1.BackupType) string {
	switch t {
	case cofferv1.BackupType_BACKUP_TYPE_FULL:
		return "full backup"
	case cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL:
		return "differential backup"
	case cofferv1.BackupType_BACKUP_TYPE_LOG:
		return "log backup"
	case cofferv1.BackupType_BACKUP_TYPE_COPY_ONLY_FULL:
		return "copy-only full backup"
	}
	return "backup of unknown type"
}

// fetch reassembles one recovery point's backup from the vault, each
// stripe into its file of f.local (or nowhere, when f.local is empty),
// every chunk verified as it is read, and checks each stream's length and
// checksum against the manifest.
func (s *Service) fetch(ctx context.Context, jid string, tgt *cofferv1.DatabaseRef, f staged, onBytes func(int64)) (err error) {
	ctx, span := s.tracer.Start(ctx, "vault download", trace.WithAttributes(dbAttrs(jid, tgt)...),
		trace.WithAttributes(attribute.String("recovery_point", f.rp.GetId())))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	from, err := sources(f)
	if err != nil {
		return err
	}
	for k, name := range from {
		err = s.fetchFrom(ctx, name, f, onBytes)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if k+1 < len(from) {
			s.log.WarnContext(ctx, "recovery point not read from its vault; reading a copy", slog.String("recovery_point", f.rp.GetId()),
				slog.String("vault", name), slog.String("copy", from[k+1]), slog.Any("error", err))
			span.AddEvent("read a copy", trace.WithAttributes(attribute.String("vault", from[k+1])))
		}
	}
	return err
}

// fetchFrom is fetch from the vault called name.
func (s *Service) fetchFrom(ctx context.Context, name string, f staged, onBytes func(int64)) error {
	v, err := s.vaultOf(ctx, name)
	if err != nil {
		return err
	}
	m, err := v.GetManifest(ctx, f.rp.GetManifest())
	if err != nil {
		return fail("recovery point %s: %v", f.rp.GetId(), err)
	}
	streams := m.Streams()
	if len(f.local) > 0 && len(f.local) != len(streams) {
		return fail("recovery point %s: its manifest holds %d stripes, its record %d; the restore was refused", f.rp.GetId(), len(streams), len(f.local))
	}
	var done int64
	for k, st := range streams {
		// in URL mode nothing is written: the stream is only read and
		// authenticated
		path := ""
		if len(f.local) > 0 {
			path = f.local[k]
		}
		if err := s.fetchStream(ctx, v, f.rp.GetId(), st, path, func(b int64) { onBytes(done + b) }); err != nil {
			return err
		}
		done += st.Size
	}
	return nil
}

// fetchStream reads one stream of recovery point id into the file at path
// (nowhere when path is empty), checking its length and checksum.
func (s *Service) fetchStream(ctx context.Context, v *vault.Vault, id string, st vault.Stream, path string, onBytes func(int64)) error {
	var out io.WriteCloser = nopWriteCloser{io.Discard}
	if path != "" {
		file, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
		if err != nil {
			return fail("recovery point %s: staging file: %v", id, err)
		}
		defer file.Close()
		out = file
	}
	// the reader checks the stream's length and checksum at its end, and
	// nothing restores the file before that
	r := v.NewStreamReader(ctx, st)
	defer r.Close()
	n, err := io.Copy(&progressWriter{w: out, onBytes: onBytes}, r)
	if errors.Is(err, vault.ErrCorrupt) && !errors.As(err, new(*vault.ChunkError)) {
		return fail("recovery point %s: the backup reassembled from the vault is not the one stored (%v); the restore was refused", id, err)
	}
	if err != nil {
		return fail("recovery point %s cannot be read from the vault, so the restore was refused: %v", id, err)
	}
	if err := out.Close(); err != nil {
		return fail("recovery point %s: write staging file: %v", id, err)
	}
	if n != st.Size {
		return fail("recovery point %s: the vault gave %d bytes, the manifest says %d; the restore was refused", id, n, st.Size)
	}
	return nil
}

// readErr is the first damage the endpoint met serving job's objects, nil
// in disk mode or when there was none.
func (s *Service) readErr(job *urlJob) error {
	if job == nil {
		return nil
	}
	s.url.mu.Lock()
	defer s.url.mu.Unlock()
	return job.readErr
}

// withDamage adds to a failure the damage the endpoint met serving the
// backup, which is what SQL Server's error ("incorrectly formed") means.
func (s *Service) withDamage(job *urlJob, err error) error {
	readErr := s.readErr(job)
	if readErr == nil {
		return err
	}
	var f *failure
	if errors.As(err, &f) {
		return fail("%s; the vault could not serve the backup: %v", f.reason, readErr)
	}
	return err
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// serveFile makes recovery point f the job's object number i (one object
// per stripe), which SQL Server reads from the endpoint: f's remote
// becomes their URLs, and nothing is staged.
func (s *Service) serveFile(ctx context.Context, jid string, job *urlJob, f *staged, i int) error {
	// the first source that gives the manifest serves the job; a chunk
	// damaged later fails the restore (SQL Server reads while it restores)
	from, err := sources(*f)
	if err != nil {
		return err
	}
	var v *vault.Vault
	var m *vault.Manifest
	for _, name := range from {
		if v, err = s.vaultOf(ctx, name); err == nil {
			m, err = v.GetManifest(ctx, f.rp.GetManifest())
		}
		if err == nil {
			break
		}
	}
	if err != nil {
		return fail("recovery point %s: %v", f.rp.GetId(), err)
	}
	f.local, f.remote = nil, s.serveStreams(jid, job, v, fmt.Sprintf("%d-%s.bak", i+1, f.rp.GetId()), chunkLists(m))
	return nil
}

// chunkLists returns the chunks of each stream of m, in order.
func chunkLists(m *vault.Manifest) [][]vault.ChunkRef {
	var out [][]vault.ChunkRef
	for _, st := range m.Streams() {
		out = append(out, st.Chunks)
	}
	return out
}

// serveStreams lets the job's SQL Server read streams, the stripes of
// one backup, as objects named after name, and returns their URLs.
func (s *Service) serveStreams(jid string, job *urlJob, v *vault.Vault, name string, streams [][]vault.ChunkRef) []string {
	names := mssql.StripeFileNames(name, len(streams))
	urls := make([]string, len(names))
	s.url.mu.Lock()
	defer s.url.mu.Unlock()
	for k, n := range names {
		job.objects[n] = streams[k]
		job.from[n] = v
		job.siblings[n] = len(streams)
		urls[k] = s.url.url(jid, n)
	}
	return urls
}

// progressWriter writes to w and reports the bytes written so far.
type progressWriter struct {
	w       io.Writer
	n       int64
	onBytes func(int64)
}

func (t *progressWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	t.n += int64(n)
	t.onBytes(t.n)
	return n, err
}

// restoreFile runs one RESTORE in its own span.
func (s *Service) restoreFile(ctx context.Context, c *mssql.Client, jid string, tgt *cofferv1.DatabaseRef, f staged, rr mssql.RestoreRequest) error {
	ctx, span := s.tracer.Start(ctx, "mssql restore", trace.WithAttributes(dbAttrs(jid, tgt)...),
		trace.WithAttributes(attribute.String("db.operation.name", "RESTORE"), attribute.String("recovery_point", f.rp.GetId())))
	defer span.End()
	if err := c.Restore(ctx, rr); err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return fmt.Errorf("RESTORE of recovery point %s into database %q on instance %q failed: %v",
			f.rp.GetId(), tgt.GetDatabase(), tgt.GetInstance(), err)
	}
	return nil
}

// dropPartial drops a database a failed restore created, and says what
// became of it, for the failure's reason.
func (s *Service) dropPartial(ctx context.Context, log *slog.Logger, c *mssql.Client, tgt *cofferv1.DatabaseRef) string {
	// Also after a cancellation: a half-restored database would make the
	// redelivered job refuse to overwrite it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	exists, err := c.DatabaseExists(ctx, tgt.GetDatabase())
	if err != nil {
		log.ErrorContext(ctx, "partly restored database not checked", slog.Any("error", err))
		return fmt.Sprintf("; whether a partly restored database %q is left could not be checked: %v", tgt.GetDatabase(), err)
	}
	if !exists {
		return ""
	}
	if err := c.DropDatabase(ctx, tgt.GetDatabase()); err != nil {
		log.ErrorContext(ctx, "partly restored database not dropped", slog.Any("error", err))
		return fmt.Sprintf("; the partly restored database %q could not be dropped: %v", tgt.GetDatabase(), err)
	}
	log.InfoContext(ctx, "partly restored database dropped")
	return fmt.Sprintf("; the partly restored database %q was dropped", tgt.GetDatabase())
}

// sqlFailure classifies an error of a statement other than BACKUP or
// RESTORE: shutdown is returned as is, anything else fails the job.
func (s *Service) sqlFailure(ctx context.Context, err error, format string, args ...any) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), context.Cause(ctx))
	}
	return fail("%s: %v", fmt.Sprintf(format, args...), err)
}

// moves places every file of the backup: where the request says, or in
// the target instance's default data and log directories, under names
// made from the target database's name and the job. A database being
// overwritten keeps its files where they are.
func (s *Service) moves(ctx context.Context, c *mssql.Client, req *cofferv1.RestoreRequested, tgt *cofferv1.DatabaseRef, files []string, existed bool, jid string) ([]mssql.Move, error) {
	backupFiles, err := c.FileList(ctx, files)
	if err != nil {
		return nil, s.sqlFailure(ctx, err, "read the file list of the backup")
	}
	dataDir, logDir := req.GetDataPath(), req.GetLogPath()
	if dataDir == "" || logDir == "" {
		srv, err := c.ServerInfo(ctx)
		if err != nil {
			return nil, s.sqlFailure(ctx, err, "read the default paths of instance %q", tgt.GetInstance())
		}
		if dataDir == "" {
			dataDir = srv.DataPath
		}
		if logDir == "" {
			logDir = srv.LogPath
		}
		if logDir == "" {
			logDir = dataDir
		}
		if dataDir == "" {
			// bare file names in MOVE would be looked up in SQL Server's
			// working directory, and the restore fails half-way
			return nil, fail("instance %q reports no default data path (SERVERPROPERTY('InstanceDefaultDataPath') is empty): "+
				"give the restore a data path and a log path (--data-path, --log-path), or set the instance's default locations", tgt.GetInstance())
		}
	}
	keep := map[string]string{}
	if existed {
		dbs, err := c.Databases(ctx)
		if err != nil {
			return nil, s.sqlFailure(ctx, err, "read the files of database %q", tgt.GetDatabase())
		}
		if d := findDatabase(dbs, tgt.GetDatabase()); d != nil {
			for _, f := range d.Files {
				keep[f.Logical] = f.Physical
			}
		}
	}
	return planMoves(backupFiles, dataDir, logDir, fileStem(tgt.GetDatabase(), jid), keep), nil
}

// planMoves relocates every file of a backup: to keep[logical] when the
// database being overwritten has a file of that logical name, otherwise
// into dataDir or logDir as stem.mdf, stem_<id>.ndf, stem_log.ldf and
// stem_log<id>.ldf.
func planMoves(files []mssql.File, dataDir, logDir, stem string, keep map[string]string) []mssql.Move {
	var moves []mssql.Move
	rows, logs := 0, 0
	for _, f := range files {
		if p, ok := keep[f.Logical]; ok {
			moves = append(moves, mssql.Move{Logical: f.Logical, Physical: p})
			continue
		}
		var name, dir string
		if f.Type == "LOG" {
			logs++
			name, dir = stem+"_log.ldf", logDir
			if logs > 1 {
				name = stem + "_log" + strconv.Itoa(int(f.ID)) + ".ldf"
			}
		} else {
			rows++
			name, dir = stem+".mdf", dataDir
			if rows > 1 {
				name = stem + "_" + strconv.Itoa(int(f.ID)) + ".ndf"
			}
		}
		moves = append(moves, mssql.Move{Logical: f.Logical, Physical: serverPath(dir, name)})
	}
	return moves
}

// findDatabase finds the database named exactly name among dbs: name is
// spelt as the server spells it (Client.DatabaseName), since only the
// server knows its collation, under which Sales and sales may be two
// databases.
func findDatabase(dbs []mssql.Database, name string) *mssql.Database {
	for i := range dbs {
		if dbs[i].Name == name {
			return &dbs[i]
		}
	}
	return nil
}

// fileStem makes a file name from a database name that is safe on any file
// system and in any T-SQL: ASCII letters, digits, '-' and '_' are kept,
// anything else becomes '_', the result is cut to 64 characters, and a
// short suffix from the job id keeps two restores of one name apart.
func fileStem(database, jobID string) string {
	var b strings.Builder
	for _, r := range database {
		if b.Len() == 64 {
			break
		}
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	stem := b.String()
	if strings.Trim(stem, "_") == "" {
		stem = "db" + stem
	}
	var suffix []byte
	for i := len(jobID) - 1; i >= 0 && len(suffix) < 8; i-- {
		c := jobID[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			suffix = append([]byte{c}, suffix...)
		}
	}
	if len(suffix) == 0 {
		return stem
	}
	return stem + "_" + string(suffix)
}

// serverPath joins a directory and a file name as SQL Server's machine
// spells paths: with the directory's own separator, '\' for a Windows path.
func serverPath(dir, name string) string {
	switch {
	case dir == "":
		return name
	case strings.HasSuffix(dir, "/"), strings.HasSuffix(dir, `\`):
		return dir + name
	case strings.Contains(dir, `\`) && !strings.Contains(dir, "/"):
		return dir + `\` + name
	}
	return dir + "/" + name
}
