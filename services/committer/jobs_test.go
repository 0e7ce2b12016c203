package committer_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/committer"
)

// TestJobSteps: a job's record keeps each step it went through, with when
// it began and ended and how, the last 50 of them.
func TestJobSteps(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{})
	db := &cofferv1.DatabaseRef{Instance: "sql1", Database: "Sales"}
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	progress := func(job, step string, pct float64, at time.Time) {
		id := event.ID("p", job, step, fmt.Sprint(pct))
		e.publish(cofferv1.SubjectJobProgress, &cofferv1.JobProgress{Meta: event.Meta(id, job, at),
			Kind: cofferv1.JobKind_JOB_KIND_RESTORE, Database: db, Step: step, Percent: pct}, id)
		waitFor(t, time.Minute, "progress "+step, func() bool {
			j, err := e.job(job)
			return err == nil && j.GetStep() == step && j.GetPercent() == pct
		})
	}
	progress("jsteps", "fetch 1/2", 0, t0)
	progress("jsteps", "fetch 1/2", 10, t0.Add(time.Second)) // the same step
	progress("jsteps", "restore 1/2", 50, t0.Add(time.Minute))
	e.publish(cofferv1.SubjectRestoreCompleted, &cofferv1.RestoreCompleted{Meta: event.Meta("r", "jsteps", t0.Add(90*time.Second)),
		Source: db, Target: db}, "r")
	j := e.waitJob("jsteps", cofferv1.JobState_JOB_STATE_SUCCEEDED)
	var got []string
	for _, s := range j.GetSteps() {
		got = append(got, fmt.Sprintf("%s %s-%s %s", s.GetName(), s.GetBeganAt().AsTime().Format("15:04:05"),
			s.GetEndedAt().AsTime().Format("15:04:05"), s.GetOutcome()))
	}
	want := []string{"fetch 1/2 10:00:00-10:01:00 done", "restore 1/2 10:01:00-10:01:30 succeeded"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("steps %q; want %q", got, want)
	}

	for i := range 60 {
		progress("jmany", fmt.Sprintf("step %d", i), float64(i), t0.Add(time.Duration(i)*time.Second))
	}
	j, err := e.job("jmany")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(j.GetSteps()); n != 50 || j.GetSteps()[0].GetName() != "step 10" || j.GetSteps()[49].GetEndedAt() != nil {
		t.Errorf("%d steps, the first %q; want the last 50, from step 10, the last running", n, j.GetSteps()[0].GetName())
	}
}

// TestJobCancel: a queued job is cancelled at once (and its JobFailed,
// cancelled, published for the scheduler); a running one is marked for
// its streamer, and ends cancelled when the streamer says so, its running
// step with it; its backup, streamed after all, is not committed; a job
// that ended, or that is not recorded, stays as it is.
func TestJobCancel(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{})
	db := &cofferv1.DatabaseRef{Instance: "sql1", Database: "Sales"}
	now := time.Now()
	cancel := func(job, by string) {
		e.publish(cofferv1.SubjectJobCancel, &cofferv1.JobCancelRequested{Meta: event.Meta(event.ID("cancel", job, by), job, now), By: by},
			event.ID("cancel", job, by))
	}
	queued := func(job string) {
		e.publish(cofferv1.SubjectJobQueued, &cofferv1.JobQueued{Meta: event.Meta(event.ID("q", job), job, now), Kind: cofferv1.JobKind_JOB_KIND_BACKUP,
			Database: db, BackupType: cofferv1.BackupType_BACKUP_TYPE_FULL}, event.ID("q", job))
	}
	failedBefore := e.count(cofferv1.SubjectJobFailed)
	queued("jqueued")
	e.waitJob("jqueued", cofferv1.JobState_JOB_STATE_QUEUED) // the gateway cancels a job it read
	cancel("jqueued", "ann")
	j := e.waitJob("jqueued", cofferv1.JobState_JOB_STATE_CANCELLED)
	if j.GetCancelledBy() != "ann" || !strings.Contains(j.GetError(), "cancelled by ann before it started") {
		t.Errorf("queued job cancelled by %q (%s); want by ann, before it started", j.GetCancelledBy(), j.GetError())
	}
	if n := e.count(cofferv1.SubjectJobFailed) - failedBefore; n != 1 {
		t.Errorf("%d JobFailed published; want the cancel's", n)
	}

	queued("jrun")
	e.publish(cofferv1.SubjectJobProgress, &cofferv1.JobProgress{Meta: event.Meta("p-jrun", "jrun", now), Kind: cofferv1.JobKind_JOB_KIND_BACKUP,
		Database: db, Step: "backup", Percent: 5}, "p-jrun")
	e.waitJob("jrun", cofferv1.JobState_JOB_STATE_RUNNING)
	cancel("jrun", "bob")
	waitFor(t, time.Minute, "the cancel of jrun recorded", func() bool {
		j, err := e.job("jrun")
		return err == nil && j.GetCancelRequestedBy() == "bob"
	})
	if j, _ := e.job("jrun"); j.GetState() != cofferv1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("running job %s after a cancel request; want running until its streamer stops it", j.GetState())
	}
	e.publish(cofferv1.SubjectJobFailed, &cofferv1.JobFailed{Meta: event.Meta("f-jrun", "jrun", now.Add(time.Second)), Kind: cofferv1.JobKind_JOB_KIND_BACKUP,
		Database: db, Reason: "cancelled by bob", Service: "backup-streamer", CancelledBy: "bob"}, "f-jrun")
	j = e.waitJob("jrun", cofferv1.JobState_JOB_STATE_CANCELLED)
	if j.GetCancelledBy() != "bob" || len(j.GetSteps()) != 1 || j.GetSteps()[0].GetOutcome() != "cancelled" {
		t.Errorf("cancelled by %q, steps %v; want bob, the backup step cancelled", j.GetCancelledBy(), j.GetSteps())
	}
	e.publish(cofferv1.SubjectBackupStreamed, e.stream("jrun", db, 64<<10), "s-jrun")
	e.settled()
	if _, err := e.cat.Bucket(cofferv1.BucketRecoveryPoints).Get(t.Context(), catalog.Key("sql1", "Sales", event.RecoveryPointID("jrun")), &cofferv1.RecoveryPoint{}); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("the cancelled job's backup: %v; want no recovery point", err)
	}
	if j := e.waitJob("jrun", cofferv1.JobState_JOB_STATE_CANCELLED); len(e.manifests()) != 0 {
		t.Errorf("job %s, manifests %v; want it cancelled, and none", j.GetState(), e.manifests())
	}

	cancel("jrun", "carl") // ended: as it was
	cancel("jnobody", "carl")
	e.settled()
	if j, _ := e.job("jrun"); j.GetCancelledBy() != "bob" {
		t.Errorf("a cancel after the end: cancelled by %q; want bob still", j.GetCancelledBy())
	}
	if _, err := e.job("jnobody"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("a cancel of an unknown job: %v; want no record", err)
	}
}

// TestJobLog: log lines reach their job's record in time order, the last
// 100, each cut to 512 bytes, a redelivered batch once; lines about a job
// not recorded make no record.
func TestJobLog(t *testing.T) {
	e := newEnv(t)
	e.start(committer.Config{})
	t0 := time.Now()
	e.publish(cofferv1.SubjectJobQueued, &cofferv1.JobQueued{Meta: event.Meta("q", "jlog", t0), Kind: cofferv1.JobKind_JOB_KIND_BACKUP}, "q")
	e.waitJob("jlog", cofferv1.JobState_JOB_STATE_QUEUED)
	line := func(at time.Duration, msg string) *cofferv1.JobLogLine {
		return &cofferv1.JobLogLine{Time: timestamppb.New(t0.Add(at)), Level: "INFO", Service: "backup-streamer", Message: msg}
	}
	logged := func(job, id string, lines ...*cofferv1.JobLogLine) {
		e.publish(cofferv1.SubjectJobLogged, &cofferv1.JobLogged{Meta: event.Meta(id, job, t0), Lines: lines}, id)
	}
	logged("jlog", "l1", line(2*time.Second, "second"), line(time.Second, "first"))
	logged("jlog", "l2", line(3*time.Second, strings.Repeat("x", 2000)))
	logged("jlog", "l3", line(time.Second, "first")) // the first batch again
	logged("jnobody", "l4", line(time.Second, "lost"))
	var j *cofferv1.Job
	waitFor(t, time.Minute, "the lines of jlog", func() bool {
		var err error
		j, err = e.job("jlog")
		return err == nil && len(j.GetLog()) >= 3
	})
	e.settled()
	j, _ = e.job("jlog")
	var got []string
	for _, l := range j.GetLog() {
		got = append(got, fmt.Sprintf("%.10s %d", l.GetMessage(), len(l.GetMessage())))
	}
	if want := []string{"first 5", "second 6", "xxxxxxxxxx 515"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("log %q; want %q", got, want)
	}
	if _, err := e.job("jnobody"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("lines of an unknown job: %v; want no record", err)
	}
	for i := range 120 {
		logged("jlog", fmt.Sprintf("m%d", i), line(time.Minute+time.Duration(i)*time.Millisecond, fmt.Sprintf("line %d", i)))
	}
	waitFor(t, time.Minute, "line 119 of jlog", func() bool {
		var err error
		j, err = e.job("jlog")
		return err == nil && j.GetLog()[len(j.GetLog())-1].GetMessage() == "line 119"
	})
	e.settled()
	j, _ = e.job("jlog")
	if n := len(j.GetLog()); n != 100 || j.GetLog()[99].GetMessage() != "line 119" {
		t.Errorf("%d lines; want the last 100, up to line 119", n)
	}
}
