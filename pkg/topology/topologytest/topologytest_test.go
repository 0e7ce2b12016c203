package topologytest_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/topology"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func newJobFailed() *cofferv1.JobFailed { return &cofferv1.JobFailed{} }

// TestStartSetsUpTopology: every stream and bucket of the topology exists,
// and the fields all speak to the same server.
func TestStartSetsUpTopology(t *testing.T) {
	e := topologytest.Start(t, bus.Config{})
	if e.Server == nil || e.Bus == nil || e.JS == nil || e.Catalog == nil {
		t.Fatalf("Start returned a partial Env: %+v", e)
	}
	for _, s := range topology.Streams {
		if _, err := e.JS.Stream(t.Context(), s.Name); err != nil {
			t.Errorf("stream %s: %v", s.Name, err)
		}
	}
	for _, b := range topology.Buckets {
		if _, err := e.JS.KeyValue(t.Context(), b.Name); err != nil {
			t.Errorf("bucket %s: %v", b.Name, err)
		}
	}
	rec := &cofferv1.Instance{Name: "sql01", Healthy: true}
	if _, err := e.Catalog.Bucket(cofferv1.BucketInstances).Put(t.Context(), catalog.Key("sql01"), rec); err != nil {
		t.Fatalf("put: %v", err)
	}
}

// TestEvents: Events returns nil for a subject with no events, and every
// event of a subject in stream order, not those of other subjects.
func TestEvents(t *testing.T) {
	e := topologytest.Start(t, bus.Config{})
	if got := topologytest.Events(t, e, cofferv1.SubjectJobFailed, newJobFailed); got != nil {
		t.Fatalf("no events published: got %v; want nil", got)
	}
	publish := func(subject, id, reason string) {
		t.Helper()
		m := &cofferv1.JobFailed{Meta: event.Meta(id, id, time.Now()), Reason: reason}
		if err := e.Bus.Publish(t.Context(), subject, m, id); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	publish(cofferv1.SubjectJobFailed, "j1", "first")
	publish(cofferv1.SubjectJobProgress, "p1", "other subject")
	publish(cofferv1.SubjectJobFailed, "j2", "second")
	publish(cofferv1.SubjectJobFailed, "j3", "third")
	got := topologytest.Events(t, e, cofferv1.SubjectJobFailed, newJobFailed)
	var reasons []string
	for _, m := range got {
		reasons = append(reasons, m.GetReason())
	}
	if want := []string{"first", "second", "third"}; !slices.Equal(reasons, want) {
		t.Errorf("events: %q; want %q", reasons, want)
	}
}

// TestStreamFor: every stored subject lands in the stream StreamFor names,
// and the request/reply subject in none: publishing to it finds no stream,
// so a request on it is never stored, and StreamFor says "".
func TestStreamFor(t *testing.T) {
	e := topologytest.Start(t, bus.Config{})
	for _, subject := range []string{cofferv1.SubjectInstanceAddRequested, cofferv1.SubjectJobFailed, cofferv1.SubjectWorkBackup} {
		m := &cofferv1.JobFailed{Meta: event.Meta(subject, "", time.Now())}
		if err := e.Bus.Publish(t.Context(), subject, m, subject); err != nil {
			t.Fatalf("publish %s: %v", subject, err)
		}
		st, err := e.JS.Stream(t.Context(), cofferv1.StreamFor(subject))
		if err != nil {
			t.Fatalf("StreamFor(%s) = %q: %v", subject, cofferv1.StreamFor(subject), err)
		}
		info, err := st.Info(t.Context(), jetstream.WithSubjectFilter(subject))
		if err != nil {
			t.Fatal(err)
		}
		if n := info.State.Subjects[subject]; n != 1 {
			t.Errorf("stream %s holds %d messages on %s; want the one published", info.Config.Name, n, subject)
		}
	}
	if got := cofferv1.StreamFor(cofferv1.SubjectURLCheck); got != "" {
		t.Errorf("StreamFor(%s) = %q; want \"\" (no stream)", cofferv1.SubjectURLCheck, got)
	}
	err := e.Bus.Publish(t.Context(), cofferv1.SubjectURLCheck, &cofferv1.URLCheckRequested{Instance: "sql1"}, "check-1")
	if !errors.Is(err, bus.ErrNoStream) {
		t.Errorf("publish %s: %v; want ErrNoStream (no stream captures it)", cofferv1.SubjectURLCheck, err)
	}
}
