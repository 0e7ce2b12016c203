package scheduler_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/scheduler"
)

type env struct {
	bus *bus.Bus
	cat *catalog.Catalog
	mu  sync.Mutex
	got map[string][]*bus.Message
}

func newEnv(t *testing.T) *env {
	t.Helper()
	n := topologytest.Start(t, bus.Config{})
	b, cat := n.Bus, n.Catalog
	e := &env{bus: b, cat: cat, got: map[string][]*bus.Message{}}
	record := func(ctx context.Context, m *bus.Message) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.got[m.Subject] = append(e.got[m.Subject], m)
		return nil
	}
	for _, spec := range []bus.ConsumerSpec{
		{Stream: cofferv1.StreamEvents, Durable: "observer", FilterSubjects: []string{
			cofferv1.SubjectProtectionConfigured, cofferv1.SubjectProtectionFailed}},
		{Stream: cofferv1.StreamJobs, Durable: "observer", FilterSubjects: []string{
			cofferv1.SubjectJobQueued, cofferv1.SubjectJobFailed}},
		{Stream: cofferv1.StreamWork, Durable: "streamer"},
	} {
		sub, err := b.Consume(t.Context(), spec, record)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Stop)
	}
	s, err := scheduler.New(b, cat, scheduler.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("scheduler: %v", err)
		}
	})
	return e
}

// wait polls until subject has n messages and returns them.
func (e *env) wait(t *testing.T, subject string, n int) []*bus.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.mu.Lock()
		got := append([]*bus.Message(nil), e.got[subject]...)
		e.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %d messages, want %d", subject, len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) count(subject string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.got[subject])
}

func (e *env) publish(t *testing.T, subject string, m proto.Message, id string) {
	t.Helper()
	if err := e.bus.Publish(t.Context(), subject, m, id); err != nil {
		t.Fatal(err)
	}
}

func decode[T proto.Message](t *testing.T, m *bus.Message, v T) T {
	t.Helper()
	if err := m.Decode(v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestProtectQueuesFirstFullOnce(t *testing.T) {
	e := newEnv(t)
	name := "it's ]odd "
	ref := &cofferv1.DatabaseRef{Instance: "sql1", Database: name}
	if _, err := e.cat.Bucket(cofferv1.BucketInventory).Put(t.Context(), catalog.Key("sql1", name),
		&cofferv1.DatabaseInfo{Name: name, State: "ONLINE", RecoveryModel: "FULL"}); err != nil {
		t.Fatal(err)
	}
	req := &cofferv1.ProtectionRequested{Meta: event.Meta("req-1", "", time.Now()), Database: ref, RequestedBy: "user"}
	e.publish(t, cofferv1.SubjectProtectionRequested, req, "req-1")
	// the same request again, as a redelivery would bring it
	e.publish(t, cofferv1.SubjectProtectionRequested, req, "req-1-again")

	conf := e.wait(t, cofferv1.SubjectProtectionConfigured, 2)
	c := decode(t, conf[0], &cofferv1.ProtectionConfigured{})
	if c.GetItem().GetPolicy() != scheduler.DefaultPolicy || c.GetItem().GetDatabase().GetDatabase() != name {
		t.Errorf("configured %+v", c.GetItem())
	}
	work := e.wait(t, cofferv1.SubjectWorkBackup, 1)
	w := decode(t, work[0], &cofferv1.BackupRequested{})
	if w.GetType() != cofferv1.BackupType_BACKUP_TYPE_FULL || w.GetReason() != "first-full" || w.GetMeta().GetJobId() != c.GetItem().GetFirstFullJob() {
		t.Errorf("work %+v, want the first full of job %s", w, c.GetItem().GetFirstFullJob())
	}
	queued := e.wait(t, cofferv1.SubjectJobQueued, 1)
	if q := decode(t, queued[0], &cofferv1.JobQueued{}); q.GetMeta().GetJobId() != w.GetMeta().GetJobId() {
		t.Errorf("queued job %s, work job %s", q.GetMeta().GetJobId(), w.GetMeta().GetJobId())
	}
	var item cofferv1.ProtectedItem
	if _, err := e.cat.Bucket(cofferv1.BucketProtected).Get(t.Context(), catalog.Key("sql1", name), &item); err != nil {
		t.Fatal(err)
	}
	if item.GetState() != cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED {
		t.Errorf("protected item state %v", item.GetState())
	}
	if n := e.count(cofferv1.SubjectWorkBackup); n != 1 {
		t.Errorf("first fulls queued: %d, want 1", n)
	}

	// on demand, once protected
	od := &cofferv1.BackupOnDemandRequested{Meta: event.Meta("od-1", "job-od-1", time.Now()), Database: ref, Type: cofferv1.BackupType_BACKUP_TYPE_COPY_ONLY_FULL}
	e.publish(t, cofferv1.SubjectBackupOnDemand, od, "od-1")
	work = e.wait(t, cofferv1.SubjectWorkBackup, 2)
	if w := decode(t, work[1], &cofferv1.BackupRequested{}); w.GetMeta().GetJobId() != "job-od-1" || w.GetType() != cofferv1.BackupType_BACKUP_TYPE_COPY_ONLY_FULL {
		t.Errorf("on-demand work %+v", w)
	}

	// unprotected: on-demand refused with a reason
	e.publish(t, cofferv1.SubjectUnprotectRequested, &cofferv1.UnprotectRequested{Meta: event.Meta("un-1", "", time.Now()), Database: ref}, "un-1")
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.cat.Bucket(cofferv1.BucketProtected).Get(t.Context(), catalog.Key("sql1", name), &item)
		if item.GetState() == cofferv1.ProtectionState_PROTECTION_STATE_UNPROTECTED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("unprotect did not take effect")
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.publish(t, cofferv1.SubjectBackupOnDemand, &cofferv1.BackupOnDemandRequested{Meta: event.Meta("od-2", "job-od-2", time.Now()), Database: ref, Type: cofferv1.BackupType_BACKUP_TYPE_FULL}, "od-2")
	failed := e.wait(t, cofferv1.SubjectJobFailed, 1)
	if f := decode(t, failed[0], &cofferv1.JobFailed{}); f.GetMeta().GetJobId() != "job-od-2" || f.GetReason() == "" {
		t.Errorf("failure %+v", f)
	}
}

func TestProtectRefusals(t *testing.T) {
	e := newEnv(t)
	e.cat.Bucket(cofferv1.BucketInventory).Put(t.Context(), catalog.Key("sql1", "snap"), &cofferv1.DatabaseInfo{Name: "snap", Snapshot: true})
	e.cat.Bucket(cofferv1.BucketInventory).Put(t.Context(), catalog.Key("sql1", "ok"), &cofferv1.DatabaseInfo{Name: "ok"})
	cases := []struct {
		db, policy, want string
	}{
		{"missing", "", "not known"},
		{"snap", "", "snapshot"},
		{"ok", "gold", "unknown policy"},
	}
	for k, c := range cases {
		id := "r" + string(rune('0'+k))
		e.publish(t, cofferv1.SubjectProtectionRequested, &cofferv1.ProtectionRequested{Meta: event.Meta(id, "", time.Now()),
			Database: &cofferv1.DatabaseRef{Instance: "sql1", Database: c.db}, Policy: c.policy, Attempt: 2, RequestedBy: "autoprotect"}, id)
	}
	got := e.wait(t, cofferv1.SubjectProtectionFailed, len(cases))
	reasons := map[string]string{}
	for _, m := range got {
		f := decode(t, m, &cofferv1.ProtectionFailed{})
		if f.GetAttempt() != 2 || f.GetRequestedBy() != "autoprotect" {
			t.Errorf("failure does not carry the attempt: %+v", f)
		}
		reasons[f.GetDatabase().GetDatabase()] = f.GetReason()
	}
	for _, c := range cases {
		if r := reasons[c.db]; !strings.Contains(r, c.want) {
			t.Errorf("%s: reason %q, want it to mention %q", c.db, r, c.want)
		}
	}
	if n := e.count(cofferv1.SubjectWorkBackup); n != 0 {
		t.Errorf("work queued for refused protections: %d", n)
	}
}
