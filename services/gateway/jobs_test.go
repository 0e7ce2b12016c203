package gateway_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/gateway"
)

// TestCancelJob: an operator cancels a running job, which asks the
// committer (JobCancelRequested, with who asked) and is audited; a
// viewer may not; an unknown job is 404; a job that ended, a kind no
// streamer runs, and an overwrite restore past its point of no return
// are 409, in the one error shape, and ask nothing.
func TestCancelJob(t *testing.T) {
	e := newEnv(t, "adm1n")
	tokens := e.users(t, "adm1n")
	asked := make(chan *cofferv1.JobCancelRequested, 8)
	sub, err := e.bus.Consume(t.Context(), bus.ConsumerSpec{Stream: cofferv1.StreamJobs, Durable: "cancels",
		FilterSubjects: []string{cofferv1.SubjectJobCancel}},
		func(_ context.Context, m *bus.Message) error {
			var ev cofferv1.JobCancelRequested
			if err := m.Decode(&ev); err != nil {
				return err
			}
			asked <- &ev
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Stop)
	db := &cofferv1.DatabaseRef{Instance: "sql1", Database: "Sales"}
	jobs := map[string]*cofferv1.Job{
		"jrunning":   {Kind: cofferv1.JobKind_JOB_KIND_BACKUP, State: cofferv1.JobState_JOB_STATE_RUNNING, Database: db},
		"jdone":      {Kind: cofferv1.JobKind_JOB_KIND_BACKUP, State: cofferv1.JobState_JOB_STATE_SUCCEEDED, Database: db},
		"jcancelled": {Kind: cofferv1.JobKind_JOB_KIND_BACKUP, State: cofferv1.JobState_JOB_STATE_CANCELLED, Database: db, CancelledBy: "x"},
		"jprotect":   {Kind: cofferv1.JobKind_JOB_KIND_PROTECT, State: cofferv1.JobState_JOB_STATE_QUEUED, Database: db},
		"joverwrite": {Kind: cofferv1.JobKind_JOB_KIND_RESTORE, State: cofferv1.JobState_JOB_STATE_RUNNING, Database: db, Target: db,
			NoCancel: "an overwrite restore cannot be cancelled once it began changing the database"},
	}
	for id, j := range jobs {
		j.Id = id
		if _, err := e.cat.Bucket(cofferv1.BucketJobs).Put(t.Context(), catalog.Key(id), j); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		id, role string
		tok      string
		status   int
		says     string
	}{
		{"jrunning", "viewer", tokens[gateway.RoleViewer], 403, "forbidden"},
		{"nothing", "operator", tokens[gateway.RoleOperator], 404, `"code": "not_found"`},
		{"jdone", "operator", tokens[gateway.RoleOperator], 409, "already ended: succeeded"},
		{"jcancelled", "operator", tokens[gateway.RoleOperator], 409, "already ended: cancelled"},
		{"jprotect", "operator", tokens[gateway.RoleOperator], 409, "a protect job cannot be cancelled"},
		{"joverwrite", "admin", tokens[gateway.RoleAdmin], 409, "can no longer be cancelled: an overwrite restore"},
		{"jrunning", "operator", tokens[gateway.RoleOperator], 202, `"job_id": "jrunning"`},
	} {
		status, body := e.do(t, "POST", "/api/v1/jobs/"+c.id+"/cancel", "", c.tok)
		if status != c.status || !strings.Contains(body, c.says) {
			t.Errorf("cancel %s as %s: %d %s; want %d saying %q", c.id, c.role, status, body, c.status, c.says)
		}
		if status >= 400 {
			var eb gateway.Error
			if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
				t.Errorf("cancel %s: %s is not the one error shape", c.id, body)
			}
		}
	}
	select {
	case ev := <-asked:
		if ev.GetMeta().GetJobId() != "jrunning" || !strings.HasPrefix(ev.GetBy(), "operator1") {
			t.Errorf("cancel asked for job %q by %q; want jrunning by operator1", ev.GetMeta().GetJobId(), ev.GetBy())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no JobCancelRequested published")
	}
	select {
	case ev := <-asked:
		t.Errorf("a refused cancel asked for job %s", ev.GetMeta().GetJobId())
	default:
	}
	_, body := e.do(t, "GET", "/api/v1/audit?user=operator1", "", tokens[gateway.RoleAdmin])
	if !strings.Contains(body, "/api/v1/jobs/jrunning/cancel") {
		t.Errorf("audit of operator1: %s; want the cancel", body)
	}
}

// TestJobDetail: GET /api/v1/jobs/{id} shows a job's steps, with their
// durations, and its log lines; the list shows neither. A record written
// before steps were kept reads as before.
func TestJobDetail(t *testing.T) {
	e := newEnv(t, "")
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	j := &cofferv1.Job{Id: "jsteps", Kind: cofferv1.JobKind_JOB_KIND_BACKUP, State: cofferv1.JobState_JOB_STATE_SUCCEEDED,
		Steps: []*cofferv1.JobStep{
			{Name: "backup", BeganAt: timestamppb.New(t0), EndedAt: timestamppb.New(t0.Add(90 * time.Second)), Outcome: "done"},
			{Name: "upload", BeganAt: timestamppb.New(t0.Add(90 * time.Second)), EndedAt: timestamppb.New(t0.Add(2 * time.Minute)), Outcome: "succeeded"},
		},
		Log: []*cofferv1.JobLogLine{{Time: timestamppb.New(t0), Level: "INFO", Service: "backup-streamer", Message: "backup streamed size=42"}}}
	old := &cofferv1.Job{Id: "jold", Kind: cofferv1.JobKind_JOB_KIND_BACKUP, State: cofferv1.JobState_JOB_STATE_FAILED, Step: "backup", Error: "boom"}
	for _, r := range []*cofferv1.Job{j, old} {
		if _, err := e.cat.Bucket(cofferv1.BucketJobs).Put(t.Context(), catalog.Key(r.Id), r); err != nil {
			t.Fatal(err)
		}
	}
	var got gateway.Job
	status, body := e.do(t, "GET", "/api/v1/jobs/jsteps", "", "")
	if err := json.Unmarshal([]byte(body), &got); status != 200 || err != nil {
		t.Fatalf("GET job: %d %s", status, body)
	}
	if len(got.Steps) != 2 || got.Steps[0].Name != "backup" || got.Steps[0].Seconds != 90 || got.Steps[1].Seconds != 30 ||
		got.Steps[1].Outcome != "succeeded" {
		t.Errorf("steps %+v; want backup 90 s, then upload 30 s succeeded", got.Steps)
	}
	if len(got.Log) != 1 || got.Log[0].Message != "backup streamed size=42" || got.Log[0].Service != "backup-streamer" {
		t.Errorf("log %+v; want the one line", got.Log)
	}
	status, body = e.do(t, "GET", "/api/v1/jobs/jold", "", "")
	got = gateway.Job{}
	if err := json.Unmarshal([]byte(body), &got); status != 200 || err != nil || got.State != "failed" || got.Step != "backup" || len(got.Steps) != 0 {
		t.Errorf("an older record: %d %s; want it as it was", status, body)
	}
	if _, body := e.do(t, "GET", "/api/v1/jobs", "", ""); strings.Contains(body, `"steps"`) || strings.Contains(body, `"log"`) {
		t.Errorf("the job list holds steps or log lines: %s", body)
	}
}
