package streamer_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// TestCancelOverwriteRefused: an overwrite restore that began changing
// its database (its tail-log backup, stalled here inside BACKUP LOG) says
// it can no longer be cancelled, refuses a cancel that comes anyway, and
// runs to its end, where a cancel would have left the database RESTORING.
func TestCancelOverwriteRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.startCommitter()
	var logs syncBuffer
	cfg := e.streamerConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	e.startStreamer(cfg)
	ctx := t.Context()
	e.createFilled("Sales", 64)
	rp := e.backupOK(ctx, "Sales", cofferv1.BackupType_BACKUP_TYPE_FULL)
	if _, err := e.inst.Commit("Sales", 8); err != nil {
		t.Fatal(err)
	}
	remove := e.inst.InjectFault(mssqlsim.Fault{Kind: mssqlsim.FaultStall, Database: "Sales"})
	t.Cleanup(remove)
	jid := e.restore(ctx, "Sales", "Sales", true, rp.GetId())
	waitFor(t, time.Minute, "the tail-log backup stalled", func() bool { return e.inst.Stats().Stalled == 1 })
	job := func() *cofferv1.Job {
		j := &cofferv1.Job{}
		if _, err := e.cat.Bucket(cofferv1.BucketJobs).Get(context.Background(), catalog.Key(jid), j); err != nil {
			t.Fatal(err)
		}
		return j
	}
	waitFor(t, time.Minute, "the job to say it can no longer be cancelled", func() bool { return job().GetNoCancel() != "" })
	e.publish(ctx, cofferv1.SubjectJobCancel, &cofferv1.JobCancelRequested{Meta: event.Meta(event.ID("cancel", jid), jid, time.Now()), By: "ann"},
		event.ID("cancel", jid))
	waitFor(t, time.Minute, "the cancel recorded", func() bool { return job().GetCancelRequestedBy() == "ann" })
	waitFor(t, time.Minute, "the streamer to refuse the cancel", func() bool {
		return strings.Contains(logs.String(), `msg="cancel refused" job_id=`+jid+" by=ann")
	})
	remove()
	j := e.mustSucceed(jid)
	if j.GetState() != cofferv1.JobState_JOB_STATE_SUCCEEDED || j.GetCancelledBy() != "" {
		t.Errorf("job %s, cancelled by %q; want it succeeded", j.GetState(), j.GetCancelledBy())
	}
	if st, err := e.inst.DatabaseState("Sales"); err != nil || st != mssqlsim.Online {
		t.Errorf("Sales is %v (%v); want ONLINE", st, err)
	}
	if n := e.inst.Stats().Cancelled; n != 0 {
		t.Errorf("%d BACKUP statements cancelled; want none", n)
	}
}

// syncBuffer is a bytes.Buffer a logger may write while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
