package main

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/telemetry"
	"github.com/cofferhq/coffer/pkg/telemetry/telemetrytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/gateway"
)

// logEvery15m is a policy with a log backup every 15 minutes.
const logEvery15m = `{"full":{"frequency":"weekly","days":[0],"hour":1},"log":{"every":"15m"},
	"retention":{"full":"14d","log":"7d"}}`

// TestScheduledBackupIsOneTrace: a backup the scheduler's tick queues is
// one trace from the tick's span for it, through the streamer, to the
// committer, and the job record names that trace.
func TestScheduledBackupIsOneTrace(t *testing.T) {
	h, clk, start := clockedHarness(t)
	const db = "Ticked"
	h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{})
	h.register(db)
	h.setPolicy("p", logEvery15m)
	h.mustCoffer("protect", "sql1/"+db, "--policy", "p")
	h.waitIdle(db)
	h.tickAt(clk, db, start.Add(15*time.Minute), time.Minute)

	var job gateway.Job
	for _, j := range h.jobs() {
		if j.Database == db && j.BackupType == "log" {
			job = j
		}
	}
	if job.State != "succeeded" {
		t.Fatalf("scheduled log backup: %+v; want a succeeded job", job)
	}
	var root string
	for _, s := range h.traces.Named("schedule backup") {
		for _, a := range s.Attributes() {
			if a.Key == attribute.Key(telemetry.JobIDKey) && a.Value.AsString() == job.ID {
				telemetrytest.AssertRoot(t, s)
				if len(s.Links()) != 1 || len(h.traces.Named("scheduler tick")) == 0 ||
					s.Links()[0].SpanContext.SpanID() != h.traces.Named("scheduler tick")[0].SpanContext().SpanID() {
					t.Errorf("the job's span links %v; want the tick's span", s.Links())
				}
				root = s.SpanContext().TraceID().String()
			}
		}
	}
	if root == "" {
		t.Fatalf("no scheduler span for job %s", job.ID)
	}
	if job.TraceID != root {
		t.Errorf("job trace %s; want the scheduler's trace %s", job.TraceID, root)
	}
	want := map[string]string{
		"process " + cofferv1.SubjectWorkBackup:     "the streamer's work",
		"process " + cofferv1.SubjectBackupStreamed: "the committer's work",
		"commit recovery point":                     "the commit",
	}
	seen := func() map[string]bool {
		got := map[string]bool{}
		for _, s := range h.traces.Ended() {
			if s.SpanContext().TraceID().String() == root {
				got[s.Name()] = true
			}
		}
		return got
	}
	deadline := time.Now().Add(10 * time.Second)
	for got := seen(); time.Now().Before(deadline); got = seen() {
		if got["commit recovery point"] && got["process "+cofferv1.SubjectWorkBackup] && got["process "+cofferv1.SubjectBackupStreamed] {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := seen()
	for name, what := range want {
		if !got[name] {
			t.Errorf("%s (span %q) is not in the scheduled backup's trace %s", what, name, root)
		}
	}
}

// TestMetrics scrapes coffer up's /metrics (on the gateway's address): a
// backup moves the job counters, the bytes moved and the vault's bytes,
// the streamer's consumer is reported, and the protected database's RPO
// lag grows with the clock and falls back when a log backup commits.
func TestMetrics(t *testing.T) {
	h, clk, start := clockedHarness(t)
	const db = "Metered"
	h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{})
	h.sim.Commit(db, 4)
	h.register(db)
	before := h.scrape()
	h.setPolicy("p", logEvery15m)
	h.mustCoffer("protect", "sql1/"+db, "--policy", "p")
	h.waitIdle(db)
	after := h.scrape()

	full := `kind="backup",backup_type="full"`
	for _, c := range []struct{ series, labels string }{
		{"coffer_jobs_total", full + `,state="started"`},
		{"coffer_jobs_total", full + `,state="succeeded"`},
		{"coffer_transfer_bytes_total", full},
		{"coffer_transfer_duration_seconds_count", full},
		{"coffer_vault_logical_bytes_total", `backup_type="full"`},
		{"coffer_vault_stored_bytes_total", `backup_type="full"`},
	} {
		b, _ := before.get(c.series, c.labels)
		a, ok := after.get(c.series, c.labels)
		if !ok || a <= b {
			t.Errorf("%s{%s} = %v before the first full, %v (present %v) after; want it to grow", c.series, c.labels, b, a, ok)
		}
	}
	if v, ok := after.get("coffer_jobs_total", full+`,state="failed"`); ok && v != 0 {
		t.Errorf("failed full backups counted: %v", v)
	}
	if _, ok := after.get("coffer_consumer_pending_messages", `stream="`+cofferv1.StreamWork+`",consumer="streamer"`); !ok {
		t.Errorf("no backlog for the streamer's consumer in\n%s", after.text)
	}

	dbLabels := `instance="sql1",database="` + db + `"`
	lag := func(m *scraped) float64 {
		t.Helper()
		v, ok := m.get("coffer_rpo_lag_seconds", dbLabels)
		if !ok {
			t.Fatalf("no RPO lag for sql1/%s in\n%s", db, m.text)
		}
		return v
	}
	if l := lag(after); l > 60 {
		t.Errorf("RPO lag just after the first full: %vs; want under a minute", l)
	}
	clk.Set(start.Add(2 * time.Hour))
	if l := lag(h.scrape()); l < 2*3600-60 || l > 2*3600+60 {
		t.Errorf("RPO lag two hours after the first full: %vs; want about 7200", l)
	}
	h.tickAt(clk, db, start.Add(2*time.Hour), time.Minute)
	if l := lag(h.scrape()); l > 120 {
		t.Errorf("RPO lag after a log backup: %vs; want under two minutes", l)
	}
}

// scraped is one scrape of /metrics in the text format.
type scraped struct {
	text   string
	series map[string]float64 // by series as written: name{labels}
}

// get returns the sum of the series called name whose labels include
// every label in labels (k="v" pairs, comma-separated, any order).
func (m *scraped) get(name, labels string) (float64, bool) {
	want := strings.Split(labels, ",")
	sum, found := 0.0, false
	for s, v := range m.series {
		n, ls, _ := strings.Cut(s, "{")
		if n != name {
			continue
		}
		have := strings.Split(strings.TrimSuffix(ls, "}"), ",")
		ok := true
		for _, w := range want {
			if w != "" && !contains(have, w) {
				ok = false
			}
		}
		if ok {
			sum, found = sum+v, true
		}
	}
	return sum, found
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// scrape reads the harness's /metrics.
func (h *harness) scrape() *scraped {
	h.t.Helper()
	return scrapeMetrics(h.t, h.api)
}

// scrapeMetrics reads /metrics from the API at api.
func scrapeMetrics(t testing.TB, api string) *scraped {
	t.Helper()
	resp, err := http.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	m := &scraped{series: map[string]float64{}}
	var text strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "coffer_") {
			text.WriteString(line + "\n")
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m.series[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	m.text = text.String()
	return m
}
