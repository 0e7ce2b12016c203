package topologytest_test

import (
	"slices"
	"testing"
	"time"

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
