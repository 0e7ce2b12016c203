package scheduler

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/policy"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// queueVerify queues the test restore job the policy made due: the latest
// moment and a random one (drawn from the job id, so a re-run queues the
// same) restored on the policy's verify instance. With nothing restorable
// yet it is dropped from the schedule until the next due time.
func (s *Service) queueVerify(ctx context.Context, jobID string, ref *cofferv1.DatabaseRef, p *policy.Policy) error {
	var rps []*cofferv1.RecoveryPoint
	err := s.rps.List(ctx, catalog.Key(ref.GetInstance(), ref.GetDatabase()), func() proto.Message { return &cofferv1.RecoveryPoint{} },
		func(_ string, m proto.Message) error {
			rp := m.(*cofferv1.RecoveryPoint)
			if rp.GetDatabase().GetInstance() == ref.GetInstance() && rp.GetDatabase().GetDatabase() == ref.GetDatabase() {
				rps = append(rps, rp)
			}
			return nil
		})
	if err != nil {
		return fmt.Errorf("read recovery points to verify: %w", err)
	}
	h := fnv.New64a()
	h.Write([]byte(jobID))
	// a point a person deleted is offered for no restore, a test one
	// included
	targets, err := policy.VerifyTargetsOf(policy.Live(rps), rand.New(rand.NewPCG(h.Sum64(), 0)))
	if err != nil {
		s.cfg.Logger.InfoContext(ctx, "test restore skipped: nothing restorable yet", "instance", ref.GetInstance(), "database", ref.GetDatabase(), "reason", err)
		return s.updateSchedule(ctx, ref, func(st *cofferv1.ScheduleState) bool {
			clearPending(st, jobID)
			return true
		})
	}
	on := ""
	if p.Verify != nil {
		on = p.Verify.Instance
	}
	where := on
	if where == "" {
		where = ref.GetInstance()
	}
	now := s.cfg.Now()
	q := &cofferv1.JobQueued{Meta: event.Meta(event.ID("job-queued", jobID), jobID, now), Kind: cofferv1.JobKind_JOB_KIND_VERIFY,
		Database: ref, Detail: fmt.Sprintf("scheduled test restore of %d target(s) on %s", len(targets), where)}
	if err := s.bus.Publish(ctx, cofferv1.SubjectJobQueued, q, q.Meta.EventId); err != nil {
		return err
	}
	w := &cofferv1.VerifyRequested{Meta: event.Meta(event.ID("verify-work", jobID), jobID, now), Database: ref, Instance: on, Targets: targets}
	if err := s.bus.Publish(ctx, cofferv1.SubjectWorkVerify, w, w.Meta.EventId); err != nil {
		return err
	}
	s.cfg.Logger.InfoContext(ctx, "test restore queued", "job_id", jobID, "instance", ref.GetInstance(), "database", ref.GetDatabase(), "on", where)
	return nil
}

// verified clears a finished test restore from the schedule.
func (s *Service) verified(ctx context.Context, e *cofferv1.VerifyCompleted) error {
	job := e.GetMeta().GetJobId()
	return s.updateSchedule(ctx, e.GetDatabase(), func(st *cofferv1.ScheduleState) bool {
		if st.GetPendingVerifyJob() != job {
			return false
		}
		clearPending(st, job)
		return true
	})
}
