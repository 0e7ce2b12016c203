package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/policy"
	"github.com/cofferhq/coffer/pkg/telemetry"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func tsOrZero(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func timeOf(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

// startSchedule records a newly protected database's schedule: its first
// full is already queued, the rest follow the policy from now.
func (s *Service) startSchedule(ctx context.Context, ref *cofferv1.DatabaseRef, p *policy.Policy, firstFull string, now time.Time) error {
	key := catalog.Key(ref.GetInstance(), ref.GetDatabase())
	st := &cofferv1.ScheduleState{
		Database:         ref,
		Policy:           p.Name,
		NextFull:         tsOrZero(p.NextFull(now)),
		NextDifferential: tsOrZero(p.NextDifferential(now)),
		NextLog:          tsOrZero(p.NextLogOf(now, ref.GetInstance(), ref.GetDatabase())),
		NextVerify:       tsOrZero(p.NextVerify(now)),
		PendingFullJob:   firstFull,
		NeedsFull:        true,
		NeedsFullReason:  "no full backup yet",
	}
	_, err := s.schedule.Put(ctx, key, st)
	return err
}

// updateSchedule applies f to a database's schedule with compare-and-set,
// retrying on conflict. It starts from the fleet's copy, when it has one,
// so that a current copy costs no read. A database without a schedule is
// left alone.
func (s *Service) updateSchedule(ctx context.Context, ref *cofferv1.DatabaseRef, f func(*cofferv1.ScheduleState) bool) error {
	ls, _, _, ok := s.fleet.lookup(catalog.Key(ref.GetInstance(), ref.GetDatabase()))
	if !ok {
		return s.updateScheduleFrom(ctx, ref, nil, 0, f)
	}
	return s.updateScheduleFrom(ctx, ref, proto.CloneOf(ls.st), ls.rev, f)
}

// updateScheduleFrom is updateSchedule starting from st, the schedule as
// read at revision rev, so that the first attempt needs no read: the
// schedule is read again on a conflict, or when f finds nothing to change
// in st (which may be stale). A nil st is read first.
func (s *Service) updateScheduleFrom(ctx context.Context, ref *cofferv1.DatabaseRef, st *cofferv1.ScheduleState, rev uint64, f func(*cofferv1.ScheduleState) bool) error {
	key := catalog.Key(ref.GetInstance(), ref.GetDatabase())
	for attempt := 0; attempt < 10; attempt++ {
		fresh := st == nil
		if fresh {
			st = &cofferv1.ScheduleState{}
			var err error
			rev, err = s.schedule.Get(ctx, key, st)
			if errors.Is(err, catalog.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
		}
		if !f(st) {
			if fresh {
				return nil
			}
			// nothing to change in a copy that may be stale: only the
			// latest revision may say so
			st = nil
			continue
		}
		if _, err := s.schedule.Update(ctx, key, st, rev); !errors.Is(err, catalog.ErrConflict) {
			return err
		}
		st = nil
	}
	return fmt.Errorf("schedule of %s/%s: too many concurrent updates", ref.GetInstance(), ref.GetDatabase())
}

// committed records a committed recovery point in the schedule.
func (s *Service) committed(ctx context.Context, rp *cofferv1.RecoveryPoint) error {
	s.last.saw(rp)
	b := rp.GetBackup()
	err := s.updateSchedule(ctx, rp.GetDatabase(), func(st *cofferv1.ScheduleState) bool {
		job := rp.GetJobId()
		switch {
		case b.GetType() == cofferv1.BackupType_BACKUP_TYPE_FULL && !b.GetCopyOnly():
			st.LastFull, st.LastFullCheckpointLsn, st.LastFullAt = rp.GetId(), b.GetCheckpointLsn(), b.GetBackupFinish()
			st.LastFullBackupSetGuid = b.GetBackupSetGuid()
			st.NeedsFull, st.NeedsFullReason = false, ""
			// the next log's start is what SQL Server says after this full;
			// a full may be the one that healed a broken chain
			st.LastLogLsn = ""
		case b.GetType() == cofferv1.BackupType_BACKUP_TYPE_LOG:
			st.LastLogLsn = b.GetLastLsn()
		}
		if !b.GetCopyOnly() && b.GetLastRecoveryForkGuid() != "" {
			st.LastFork = b.GetLastRecoveryForkGuid()
		}
		if at := backupEnd(rp); at.After(timeOf(st.GetLastBackupAt())) {
			st.LastBackupAt = timestamppb.New(at)
		}
		clearPending(st, job)
		return true
	})
	if err == nil {
		s.kick() // a slot on its instance is free
	}
	return err
}

func clearPending(st *cofferv1.ScheduleState, job string) {
	if st.PendingFullJob == job {
		st.PendingFullJob = ""
	}
	if st.PendingLogJob == job {
		st.PendingLogJob = ""
	}
	if st.PendingDifferentialJob == job {
		st.PendingDifferentialJob = ""
	}
	if st.PendingVerifyJob == job {
		st.PendingVerifyJob = ""
	}
}

// tickWorkers is how many databases a tick handles at once: each spends
// most of its time waiting on round trips to the catalog and the bus,
// which overlap.
const tickWorkers = 128

// Tick queues every backup due at now. The scheduler calls it on its
// timer; tests call it with a fake clock. Each due time is advanced past
// now when its backup is queued, so a restart neither repeats a backup nor
// skips one, and slots missed while coffer was down run once.
//
// It looks only at the databases due at now in the partitions this
// replica holds, and at those whose protection, inventory record or
// policy changed since (fleet.go): its cost follows the work due, not the
// size of the fleet. It first waits until the fleet holds every change
// made before it, so that it acts on what the handlers and discovery
// wrote before the tick.
//
// The tick is a span; each job it queues is a trace of its own, rooted in
// a span linked to the tick's, which the job's events carry to the
// streamer and the committer.
func (s *Service) Tick(ctx context.Context, now time.Time) (err error) {
	ctx, span := s.tracer.Start(ctx, "scheduler tick", trace.WithAttributes(attribute.String("tick", now.UTC().Format(time.RFC3339))))
	defer func() { endSpan(span, err) }()
	if err := s.leases.waitReady(ctx); err != nil {
		return err
	}
	if err := s.fleet.catchUp(ctx); err != nil {
		return err
	}
	owned := s.leases.owned()
	keys := s.fleet.take(owned, now)
	s.lookedAt.Add(int64(len(keys)))
	span.SetAttributes(attribute.Int("partitions", len(owned)), attribute.Int("databases", len(keys)))
	slots := s.fleet.slots(s.cfg.MaxConcurrentPerInstance)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	out := &batch{}
	todo := make(chan string)
	for range min(tickWorkers, len(keys)) {
		wg.Go(func() {
			for key := range todo {
				parked, err := s.tickOne(ctx, key, now, slots, out)
				s.fleet.put(key, parked && err == nil)
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s: %w", key, err))
					mu.Unlock()
				}
			}
		})
	}
	for _, key := range keys {
		todo <- key
	}
	close(todo)
	wg.Wait()
	errs = append(errs, s.dispatchAll(ctx, out.all)...)
	// one replica sweeps: the holder of the first partition
	if len(owned) > 0 && owned[0] == 0 {
		if err := s.sweepRetention(ctx, now); err != nil {
			errs = append(errs, fmt.Errorf("retention: %w", err))
		}
	}
	return errors.Join(errs...)
}

// batch collects the backups a tick's workers queue, to send together.
type batch struct {
	mu  sync.Mutex
	all []dispatch
}

func (b *batch) add(d dispatch) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.all = append(b.all, d)
}

// dispatchAll sends a tick's backups together: every JobQueued, then the
// work (or the failure) of each one whose JobQueued was stored. A backup
// not sent stays pending in its schedule, where a later tick finds it
// lost and queues it again (requeueLost).
func (s *Service) dispatchAll(ctx context.Context, all []dispatch) []error {
	var errs []error
	msgs := make([]bus.Outgoing, len(all))
	for i, d := range all {
		msgs[i] = d.queued
	}
	queued := s.bus.PublishAll(ctx, msgs)
	var next []dispatch
	msgs = msgs[:0]
	for i, d := range all {
		if queued[i] != nil {
			errs = append(errs, queued[i])
			continue
		}
		next = append(next, d)
		msgs = append(msgs, d.then)
	}
	for i, err := range s.bus.PublishAll(ctx, msgs) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		next[i].log(next[i].queued.Ctx, s.cfg.Logger)
	}
	if len(errs) > 0 {
		s.cfg.Logger.ErrorContext(ctx, "backups recorded as queued but not sent; a later tick queues them again", "failed", len(errs), "err", errs[0])
	}
	return errs
}

// due is one backup the tick decided to queue.
type due struct {
	typ    cofferv1.BackupType
	reason string
	slot   time.Time
	job    string // derived from the slot, so a re-run tick queues the same job
}

// broken is a chain break the tick noticed itself.
type broken struct {
	reason string
	slot   time.Time
}

// tickOne queues the backups due at now for the database under key,
// taking each one's slot on its instance from slots. parked reports that
// its protection, inventory record or policy rules out any backup until
// one of them changes.
func (s *Service) tickOne(ctx context.Context, key string, now time.Time, slots *instanceSlots, out *batch) (parked bool, err error) {
	ls, item, db, ok := s.fleet.lookup(key)
	if !ok {
		return true, nil
	}
	listed := ls.st
	ref := listed.GetDatabase()
	if item.GetState() != cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED {
		return true, nil
	}
	if db == nil {
		return true, nil // dropped: nothing to back up
	}
	if db.GetState() != "ONLINE" {
		return true, nil // due backups stay due and run once when it is back
	}
	p, ok, err := s.fleet.policy(item.GetPolicy())
	if err != nil || !ok {
		return true, err
	}
	ended, lost, err := s.endedJobs(ctx, listed, now)
	if err != nil {
		return false, err
	}
	if err := s.requeueLost(ctx, lost, ref, db, p, listed, item.GetVault()); err != nil {
		return false, err
	}
	if len(ended) == 0 && !needsUpdate(listed, db, p, now) {
		return false, nil
	}
	var queue []due
	var expect *cofferv1.ScheduleState
	var brk *broken
	heal := ""      // why the chain broke, for the full that heals it
	verifyJob := "" // a test restore the policy makes due
	held := 0       // slots taken on the instance, one per backup in queue and maybe one more
	err = s.updateScheduleFrom(ctx, ref, proto.CloneOf(listed), ls.rev, func(st *cofferv1.ScheduleState) bool {
		queue, brk, heal, verifyJob = queue[:0], nil, "", ""
		changed := false
		for _, j := range ended {
			// the job failed without the failure reaching the schedule (an
			// event lost for good): do not let it block that backup type
			before := len(pendingJobs(st))
			clearPending(st, j)
			changed = changed || before != len(pendingJobs(st))
		}
		// room for one more backup in queue: a slot already held (by an
		// earlier attempt, or a check that queued nothing) or a new one
		room := func() bool {
			if held > len(queue) {
				return true
			}
			if !slots.take(ref.GetInstance()) {
				return false
			}
			held++
			return true
		}
		changed = startOrStop(st, p, now) || changed
		if nv := timeOf(st.GetNextVerify()); !nv.IsZero() && !now.Before(nv) {
			st.NextVerify = tsOrZero(p.NextVerify(now))
			changed = true
			if st.GetPendingVerifyJob() == "" && st.GetLastFull() != "" {
				verifyJob = event.DerivedJobID(nv, "verify", ref.GetInstance(), ref.GetDatabase(), nv.String())
				st.PendingVerifyJob = verifyJob
			}
		}
		if st.GetLogPaused() && db.GetRecoveryModel() != "SIMPLE" {
			// back from SIMPLE: the log chain restarts with a full
			st.LogPaused = false
			st.NeedsFull, st.NeedsFullReason = true, "the recovery model changed from SIMPLE, which broke the log chain"
			changed = true
		}
		noFull := st.GetLastFull() == "" || st.GetNeedsFull()
		fullReason := st.GetNeedsFullReason()
		if fullReason == "" {
			fullReason = "no full backup yet"
		}
		// full on its schedule
		if nf := timeOf(st.GetNextFull()); !nf.IsZero() && !now.Before(nf) && st.GetPendingFullJob() == "" && room() {
			queue = append(queue, due{typ: cofferv1.BackupType_BACKUP_TYPE_FULL, reason: "scheduled", slot: nf})
			st.NextFull = tsOrZero(p.NextFull(now))
			changed = true
		}
		fullQueued := len(queue) > 0 || st.GetPendingFullJob() != ""
		// differential: never alongside a full, never of master, never of a
		// read-only database; a broken chain turns it into a full
		if nd := timeOf(st.GetNextDifferential()); !nd.IsZero() && !now.Before(nd) {
			switch {
			case fullQueued:
				st.NextDifferential = tsOrZero(p.NextDifferential(now))
				changed = true
			case st.GetPendingDifferentialJob() != "" || !room():
			case noFull:
				queue = append(queue, due{typ: cofferv1.BackupType_BACKUP_TYPE_FULL, reason: "instead of a differential: " + fullReason, slot: nd})
				st.NextDifferential = tsOrZero(p.NextDifferential(now))
				fullQueued, changed = true, true
			case strings.EqualFold(db.GetName(), "master") || db.GetReadOnly():
				st.NextDifferential = tsOrZero(p.NextDifferential(now))
				changed = true
			default:
				queue = append(queue, due{typ: cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL, reason: "scheduled", slot: nd})
				st.NextDifferential = tsOrZero(p.NextDifferential(now))
				changed = true
			}
		}
		// logs: paused under SIMPLE, resumed with a full first; they run
		// alongside a long full
		if nl := timeOf(st.GetNextLog()); !nl.IsZero() && !now.Before(nl) {
			switch {
			case db.GetRecoveryModel() == "SIMPLE":
				if !st.GetLogPaused() {
					st.LogPaused = true
					if st.GetLastFull() != "" {
						brk = &broken{reason: "the recovery model changed to SIMPLE: the log chain ends; log backups pause and resume with a full", slot: nl}
					}
				}
				st.NextLog = tsOrZero(p.NextLogOf(now, ref.GetInstance(), ref.GetDatabase()))
				changed = true
			case db.GetReadOnly():
				st.NextLog = tsOrZero(p.NextLogOf(now, ref.GetInstance(), ref.GetDatabase()))
				changed = true
			case noFull:
				if !fullQueued && room() {
					queue = append(queue, due{typ: cofferv1.BackupType_BACKUP_TYPE_FULL, reason: "instead of a log: " + fullReason, slot: nl})
					st.NextLog = tsOrZero(p.NextLogOf(now, ref.GetInstance(), ref.GetDatabase()))
					changed = true
				}
			case st.GetPendingLogJob() == "" && room():
				queue = append(queue, due{typ: cofferv1.BackupType_BACKUP_TYPE_LOG, reason: "scheduled", slot: nl})
				st.NextLog = tsOrZero(p.NextLogOf(now, ref.GetInstance(), ref.GetDatabase()))
				changed = true
			}
		}
		expect = proto.Clone(st).(*cofferv1.ScheduleState)
		if st.GetNeedsFull() && st.GetLastFull() != "" {
			// before the first full there is no chain to break
			heal = st.GetNeedsFullReason()
		}
		for k := range queue {
			d := &queue[k]
			d.job = event.DerivedJobID(d.slot, "scheduled", ref.GetInstance(), ref.GetDatabase(), d.typ.String(), d.slot.String())
			job := d.job
			switch d.typ {
			case cofferv1.BackupType_BACKUP_TYPE_FULL:
				st.PendingFullJob = job
			case cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL:
				st.PendingDifferentialJob = job
			case cofferv1.BackupType_BACKUP_TYPE_LOG:
				st.PendingLogJob = job
			}
		}
		return changed
	})
	if err != nil {
		slots.give(ref.GetInstance(), held)
		return false, err
	}
	slots.give(ref.GetInstance(), held-len(queue))
	// the schedule is updated before the work is queued: a crash in
	// between leaves a pending job that the jobs' own ids make safe to
	// queue again (see requeueLost)
	if brk != nil {
		id := event.ID("chain-broken", ref.GetInstance(), ref.GetDatabase(), brk.slot.UTC().Format(time.RFC3339))
		ev := &cofferv1.ChainBroken{Meta: event.Meta(id, "", now), Database: ref, Reason: brk.reason}
		if err := s.bus.Publish(ctx, cofferv1.SubjectChainBroken, ev, id); err != nil {
			return false, err
		}
	}
	if verifyJob != "" {
		jctx, span := s.startJob(ctx, "schedule verification", verifyJob, ref)
		err := s.queueVerify(jctx, verifyJob, ref, p)
		endSpan(span, err)
		if err != nil {
			return false, err
		}
	}
	for _, d := range queue {
		brokeBy := ""
		if d.typ == cofferv1.BackupType_BACKUP_TYPE_FULL {
			brokeBy = heal
		}
		on, refused := s.fleet.route(ref, db, d.typ)
		jctx, span := s.startJob(ctx, "schedule backup", d.job, ref)
		span.SetAttributes(attribute.String("backup.type", d.typ.String()), attribute.String("reason", d.reason))
		out.add(s.backupMessages(jctx, on, refused, d.job, ref, d.typ, d.reason, p.Compression, expect, brokeBy, item.GetVault()))
		endSpan(span, nil)
	}
	return false, nil
}

// needsUpdate reports whether a tick at now may change st, the schedule
// of db: a backup is due, or logs paused under SIMPLE resume. Apart from
// clearing ended jobs, nothing else changes a schedule, so without either
// the tick leaves the database alone.
func needsUpdate(st *cofferv1.ScheduleState, db *cofferv1.DatabaseInfo, p *policy.Policy, now time.Time) bool {
	due := func(t *timestamppb.Timestamp) bool {
		at := timeOf(t)
		return !at.IsZero() && !now.Before(at)
	}
	return due(st.GetNextFull()) || due(st.GetNextDifferential()) || due(st.GetNextLog()) || due(st.GetNextVerify()) ||
		st.GetLogPaused() && db.GetRecoveryModel() != "SIMPLE" || startOrStop(proto.CloneOf(st), p, now)
}

// startOrStop brings st in line with a policy changed since st was made:
// a backup type or test restore the policy added starts at its next due
// time, one it dropped stops. It reports whether st changed.
func startOrStop(st *cofferv1.ScheduleState, p *policy.Policy, now time.Time) bool {
	changed := false
	align := func(next **timestamppb.Timestamp, want time.Time) {
		switch {
		case *next == nil && !want.IsZero():
			*next = timestamppb.New(want)
			changed = true
		case *next != nil && want.IsZero():
			*next = nil
			changed = true
		}
	}
	align(&st.NextDifferential, p.NextDifferential(now))
	align(&st.NextLog, p.NextLogOf(now, st.GetDatabase().GetInstance(), st.GetDatabase().GetDatabase()))
	align(&st.NextVerify, p.NextVerify(now))
	return changed
}

// jobFailed clears a failed backup or test restore from the schedule so
// that it is tried again at its next due time.
func (s *Service) jobFailed(ctx context.Context, f *cofferv1.JobFailed) error {
	if k := f.GetKind(); k != cofferv1.JobKind_JOB_KIND_BACKUP && k != cofferv1.JobKind_JOB_KIND_VERIFY || f.GetDatabase() == nil {
		return nil
	}
	err := s.updateSchedule(ctx, f.GetDatabase(), func(st *cofferv1.ScheduleState) bool {
		before := len(pendingJobs(st))
		clearPending(st, f.GetMeta().GetJobId())
		return before != len(pendingJobs(st))
	})
	if err == nil {
		s.kick() // a slot on its instance is free
	}
	return err
}

// chainBroken makes the database's next backup a full.
func (s *Service) chainBroken(ctx context.Context, ev *cofferv1.ChainBroken) error {
	return s.updateSchedule(ctx, ev.GetDatabase(), func(st *cofferv1.ScheduleState) bool {
		st.NeedsFull, st.NeedsFullReason = true, ev.GetReason()
		return true
	})
}

// lostAfter is how old a pending backup the jobs bucket does not know
// must be before a tick takes it for lost: queued in the schedule by a
// scheduler that died before it put the work on the queue.
const lostAfter = 30 * time.Second

// endedJobs returns the pending jobs of st, a database's schedule as the
// tick listed it, that the jobs bucket shows as failed, in case the
// failure event never reached the scheduler; and lost, the pending
// backups it does not know at all although their slot is lostAfter
// before now: a scheduler records a backup in the schedule before it
// queues the work, and one killed in between leaves it pending for ever.
// Without a pending job it reads nothing.
func (s *Service) endedJobs(ctx context.Context, st *cofferv1.ScheduleState, now time.Time) (ended, lost []string, err error) {
	for _, id := range pendingJobs(st) {
		var j cofferv1.Job
		if _, err := s.jobs.Get(ctx, catalog.Key(id), &j); err != nil {
			if errors.Is(err, catalog.ErrNotFound) {
				if at, ok := event.DerivedJobTime(id); ok && now.Sub(at) >= lostAfter && id != st.GetPendingVerifyJob() {
					lost = append(lost, id)
				}
				continue
			}
			return nil, nil, err
		}
		// only failures (and cancels): a success clears its pending job
		// when its recovery point's commit reaches the schedule, together
		// with the chain state it brings
		if j.GetState() == cofferv1.JobState_JOB_STATE_FAILED || j.GetState() == cofferv1.JobState_JOB_STATE_CANCELLED {
			ended = append(ended, id)
		}
	}
	return ended, lost, nil
}

// requeueLost queues again each lost backup of the database ref, whose
// schedule is st: the same job, with the same message ids, so that a
// backup that was queued after all (and whose record is only late) is
// dropped by the streams as a duplicate.
func (s *Service) requeueLost(ctx context.Context, lost []string, ref *cofferv1.DatabaseRef, db *cofferv1.DatabaseInfo, p *policy.Policy, st *cofferv1.ScheduleState, vault string) error {
	for _, job := range lost {
		typ := cofferv1.BackupType_BACKUP_TYPE_LOG
		switch job {
		case st.GetPendingFullJob():
			typ = cofferv1.BackupType_BACKUP_TYPE_FULL
		case st.GetPendingDifferentialJob():
			typ = cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL
		}
		heal := ""
		if typ == cofferv1.BackupType_BACKUP_TYPE_FULL && st.GetNeedsFull() && st.GetLastFull() != "" {
			heal = st.GetNeedsFullReason()
		}
		s.cfg.Logger.WarnContext(ctx, "a backup recorded as queued never reached the queue; queueing it again", "job_id", job,
			"instance", ref.GetInstance(), "database", ref.GetDatabase(), "type", typ.String())
		on, refused := s.fleet.route(ref, db, typ)
		jctx, span := s.startJob(ctx, "schedule backup", job, ref)
		span.SetAttributes(attribute.String("backup.type", typ.String()), attribute.String("reason", "queued again"))
		err := s.queueOn(jctx, on, refused, job, ref, typ, "scheduled", p.Compression, st, heal, vault)
		endSpan(span, err)
		if err != nil {
			return err
		}
	}
	return nil
}

// pendingJobs returns the backups and test restores st records as queued
// or running.
func pendingJobs(st *cofferv1.ScheduleState) []string {
	var out []string
	for _, id := range []string{st.GetPendingFullJob(), st.GetPendingLogJob(), st.GetPendingDifferentialJob(), st.GetPendingVerifyJob()} {
		if id != "" {
			out = append(out, id)
		}
	}
	return out
}

// startJob starts the root span of a job the tick in ctx queues: a new
// trace, linked to the tick's, so that one job is one trace from here to
// its commit and a tick that queues many jobs does not make one trace of
// them all.
func (s *Service) startJob(ctx context.Context, name, jobID string, ref *cofferv1.DatabaseRef) (context.Context, trace.Span) {
	return s.tracer.Start(ctx, name, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithLinks(trace.LinkFromContext(ctx)),
		trace.WithAttributes(attribute.String(telemetry.JobIDKey, jobID), attribute.String(telemetry.InstanceKey, ref.GetInstance()),
			attribute.String(telemetry.DatabaseKey, ref.GetDatabase())))
}

// endSpan ends span, marking it failed with err when err is set.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
