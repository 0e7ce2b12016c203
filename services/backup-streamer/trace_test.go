package streamer_test

import (
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/cofferhq/coffer/pkg/telemetry"
	"github.com/cofferhq/coffer/pkg/telemetry/telemetrytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// TestBackupIsOneTrace checks that a backup job is one trace: the
// publisher of BackupRequested, the streamer's processing with its SQL,
// upload and header spans, and the committer's processing.
func TestBackupIsOneTrace(t *testing.T) {
	rec := telemetrytest.New(t)
	e := newEnv(t, envOptions{tp: rec.TracerProvider()})
	const db = "Traced"
	e.createFilled(db, 256)
	e.startCommitter()
	e.startStreamer(e.streamerConfig())

	ctx, root := rec.Tracer().Start(t.Context(), "on-demand backup")
	jid := e.backup(ctx, db, full)
	root.End()
	job := e.mustSucceed(jid)

	pub := rec.Span(t, "publish "+cofferv1.SubjectWorkBackup)
	proc := rec.Span(t, "process "+cofferv1.SubjectWorkBackup)
	telemetrytest.AssertRemoteChildOf(t, proc, pub)
	for _, name := range []string{"mssql backup", "vault upload", "mssql restore headeronly"} {
		s := rec.Span(t, name)
		telemetrytest.AssertChildOf(t, s, proc)
		if got := attr(s, telemetry.JobIDKey); got != jid {
			t.Errorf("span %s: job_id %q; want %q", name, got, jid)
		}
		if got := attr(s, telemetry.DatabaseKey); got != db {
			t.Errorf("span %s: database %q; want %q", name, got, db)
		}
	}
	commitProc := rec.Span(t, "process "+cofferv1.SubjectBackupStreamed)
	if commitProc.SpanContext().TraceID() != pub.SpanContext().TraceID() {
		t.Errorf("committer's span in trace %s; want the publisher's %s", commitProc.SpanContext().TraceID(), pub.SpanContext().TraceID())
	}
	telemetrytest.AssertChildOf(t, rec.Span(t, "commit recovery point"), commitProc)
	if job.TraceId != pub.SpanContext().TraceID().String() {
		t.Errorf("job trace id %q; want %s", job.TraceId, pub.SpanContext().TraceID())
	}
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if kv.Key == attribute.Key(key) {
			return kv.Value.Emit()
		}
	}
	return ""
}
