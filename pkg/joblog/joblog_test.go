package joblog_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/joblog"
	"github.com/cofferhq/coffer/pkg/telemetry"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// TestForwarder: records at info and above that carry a job_id (given
// With, or on the record) are published as JobLogged, one per job, with
// their message and attributes but not the attributes the job shows
// otherwise; others are not; the wrapped handler still gets what its
// level lets through, and only that.
func TestForwarder(t *testing.T) {
	env := topologytest.Start(t, bus.Config{})
	got := make(chan *cofferv1.JobLogged, 16)
	sub, err := env.Bus.Consume(t.Context(), bus.ConsumerSpec{Stream: cofferv1.StreamJobs, Durable: "logs",
		FilterSubjects: []string{cofferv1.SubjectJobLogged}},
		func(_ context.Context, m *bus.Message) error {
			var e cofferv1.JobLogged
			if err := m.Decode(&e); err != nil {
				return err
			}
			got <- &e
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Stop)

	var out bytes.Buffer
	fwd := joblog.New(env.Bus, "backup-streamer", time.Hour) // flushed by the test
	log := slog.New(fwd.Handler(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn})))
	jlog := log.With(slog.String(telemetry.JobIDKey, "j1"), slog.String(telemetry.DatabaseKey, "Sales"))
	jlog.Info("backup streamed", slog.Int("size", 42), slog.String("draft", "a b"))
	jlog.Debug("chatty")
	jlog.Warn("progress not reported", slog.Group("g", slog.String("k", "v")))
	log.Info("queued", slog.String(telemetry.JobIDKey, "j2"))
	log.Info("about no job")
	log.WithGroup("req").Info("grouped", slog.String(telemetry.JobIDKey, "nested"))
	fwd.Flush(t.Context())

	lines := map[string][]string{}
	deadline := time.After(10 * time.Second)
	for len(lines) < 2 {
		select {
		case e := <-got:
			for _, l := range e.GetLines() {
				lines[e.GetMeta().GetJobId()] = append(lines[e.GetMeta().GetJobId()], fmt.Sprintf("%s %s %s", l.GetLevel(), l.GetService(), l.GetMessage()))
			}
		case <-deadline:
			t.Fatalf("lines %v; want those of j1 and j2", lines)
		}
	}
	want := map[string][]string{
		"j1": {`INFO backup-streamer backup streamed size=42 draft="a b"`, "WARN backup-streamer progress not reported g.k=v"},
		"j2": {"INFO backup-streamer queued"},
	}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("lines %q;\nwant %q", lines, want)
	}
	if s := out.String(); strings.Count(s, "\n") != 1 || !strings.Contains(s, "progress not reported") {
		t.Errorf("the wrapped handler wrote %q; want the warning alone", s)
	}
	select {
	case e := <-got:
		t.Errorf("more lines: %v", e.GetLines())
	case <-time.After(200 * time.Millisecond):
	}
	if n := fwd.Dropped(); n != 0 {
		t.Errorf("%d lines dropped; want none", n)
	}
}
