package streamer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/mssql"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// verify runs one VerifyRequested: each target is restored to a scratch
// database, checked with DBCC CHECKDB and compared with its backup, then
// dropped. The results go to the committer, which records them on the
// recovery points; any failed target also fails the job, naming the
// recovery point.
func (s *Service) verify(ctx context.Context, m *bus.Message, req *cofferv1.VerifyRequested) error {
	jid, db := req.GetMeta().GetJobId(), req.GetDatabase()
	if err := checkJobID(jid); err != nil {
		return err
	}
	if db.GetInstance() == "" || db.GetDatabase() == "" || len(req.GetTargets()) == 0 {
		return bus.Permanent(fmt.Errorf("verify job %s names no database or no target", jid))
	}
	instance := req.GetInstance()
	if instance == "" {
		instance = db.GetInstance()
	}
	log := s.jobLogger(jid, db).With(slog.String("verify_instance", instance))
	if done, err := s.jobDone(ctx, jid); err != nil || done {
		if done {
			log.InfoContext(ctx, "verification already has its outcome; skipping")
		}
		return err
	}
	s.cfg.Metrics.JobStarted(cofferv1.JobKind_JOB_KIND_VERIFY, cofferv1.BackupType_BACKUP_TYPE_UNSPECIFIED)
	jobFailed := func(reason string) *cofferv1.JobFailed {
		return &cofferv1.JobFailed{
			Meta:     event.Meta(event.ID("failed", jid, Name), jid, s.cfg.Now()),
			Kind:     cofferv1.JobKind_JOB_KIND_VERIFY,
			Database: db,
			Reason:   reason,
			Service:  Name,
		}
	}
	var results []*cofferv1.VerifyResult
	var failed []string
	for k, t := range req.GetTargets() {
		res := s.verifyOne(ctx, log, jid, k, db, instance, t)
		if ctx.Err() != nil {
			// a shutdown hands it back; a person's cancel ends it (jobFailed)
			return s.settle(ctx, m, log, fmt.Errorf("verification interrupted: %w", context.Cause(ctx)), jobFailed)
		}
		results = append(results, res)
		if !res.GetPassed() {
			failed = append(failed, fmt.Sprintf("recovery point %s (%s) failed its test restore: %s", res.GetRecoveryPoint(), res.GetLabel(), res.GetDetail()))
		}
	}
	done := &cofferv1.VerifyCompleted{Meta: event.Meta(event.ID("verified", jid), jid, s.cfg.Now()), Database: db, Instance: instance, Results: results}
	err := s.publish(ctx, cofferv1.SubjectVerifyCompleted, done, done.Meta.EventId)
	if err == nil && len(failed) > 0 {
		err = fail("%s", strings.Join(failed, "; "))
	}
	if err == nil {
		log.InfoContext(ctx, "verification passed", slog.Int("targets", len(results)))
	}
	return s.settle(ctx, m, log, err, jobFailed)
}

// verifyOne restores one target to a scratch database on instance, checks
// it and drops it.
func (s *Service) verifyOne(ctx context.Context, log *slog.Logger, jid string, k int, db *cofferv1.DatabaseRef, instance string, t *cofferv1.VerifyTarget) *cofferv1.VerifyResult {
	ids := t.GetRecoveryPoints()
	res := &cofferv1.VerifyResult{Label: t.GetLabel(), RestoredTo: t.GetAt()}
	if len(ids) == 0 {
		res.Detail = "the target names no recovery point"
		return res
	}
	res.RecoveryPoint = ids[len(ids)-1]
	scratch := &cofferv1.DatabaseRef{Instance: instance, Database: event.ScratchDatabase(jid, k+1)}
	log = log.With(slog.String("scratch_database", scratch.GetDatabase()), slog.String("recovery_point", res.RecoveryPoint))
	c, err := s.client(ctx, instance)
	if err != nil {
		res.Detail = err.Error()
		return res
	}
	// a scratch database of this job left by an interrupted attempt
	s.dropPartial(ctx, log, c, scratch)
	if ctx.Err() != nil {
		return res
	}
	rreq := &cofferv1.RestoreRequested{Meta: event.Meta(event.ID("verify-restore", jid, fmt.Sprint(k)), jid, s.cfg.Now()),
		RecoveryPoints: ids, Source: db, Target: scratch, StopAt: t.GetStopAt()}
	_, left, err := s.runRestore(ctx, log, jid, rreq, scratch)
	removeStaging(ctx, log, left...)
	if err != nil {
		res.Detail = "restore failed: " + err.Error()
		return res
	}
	defer func() {
		if note := s.dropPartial(ctx, log, c, scratch); strings.Contains(note, "could not") {
			res.Passed = false
			res.Detail += note
		}
	}()
	if err := c.CheckDB(ctx, scratch.GetDatabase()); err != nil {
		res.Detail = err.Error()
		return res
	}
	if problem := s.compareFiles(ctx, c, scratch.GetDatabase(), db, ids[0]); problem != "" {
		res.Detail = problem
		return res
	}
	res.Passed = true
	res.Detail = fmt.Sprintf("restored %d backup(s) to %s on %s", len(ids), scratch.GetDatabase(), instance)
	if st := t.GetStopAt(); st != nil {
		res.Detail += ", stopped at " + st.AsTime().UTC().Format(time.RFC3339)
	}
	res.Detail += "; DBCC CHECKDB found no errors; its files match the backup's"
	return res
}

// compareFiles checks that the restored database has the files (by
// logical name) its full backup lists; it returns the difference.
func (s *Service) compareFiles(ctx context.Context, c *mssql.Client, name string, src *cofferv1.DatabaseRef, fullID string) string {
	dbs, err := c.Databases(ctx)
	if err != nil {
		return "read the restored database's files: " + err.Error()
	}
	d := findDatabase(dbs, name)
	if d == nil {
		return fmt.Sprintf("the restored database %q is not listed", name)
	}
	if d.State != "ONLINE" {
		return fmt.Sprintf("the restored database %q is %s, not ONLINE", name, d.State)
	}
	rp := &cofferv1.RecoveryPoint{}
	if _, err := s.rps.Get(ctx, catalog.Key(src.GetInstance(), src.GetDatabase(), fullID), rp); err != nil {
		return fmt.Sprintf("read recovery point %s: %v", fullID, err)
	}
	var want, got []string
	for _, f := range rp.GetBackup().GetFiles() {
		want = append(want, f.GetLogicalName())
	}
	for _, f := range d.Files {
		got = append(got, f.Logical)
	}
	slices.Sort(want)
	slices.Sort(got)
	if len(want) > 0 && !slices.Equal(want, got) {
		return fmt.Sprintf("the restored files %v differ from the backup's %v", got, want)
	}
	return ""
}
