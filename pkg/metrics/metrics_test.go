package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/metrics"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

type backlogs []bus.Backlog

func (b backlogs) Backlog(context.Context) ([]bus.Backlog, error) { return b, nil }

type lags struct {
	l   []metrics.RPOLag
	err error
}

func (l lags) RPOLag(context.Context) ([]metrics.RPOLag, error) { return l.l, l.err }

// everything records one of each metric.
func everything(t *testing.T) *metrics.Metrics {
	t.Helper()
	m := metrics.New()
	m.JobStarted(cofferv1.JobKind_JOB_KIND_BACKUP, cofferv1.BackupType_BACKUP_TYPE_LOG)
	m.JobFinished(cofferv1.JobKind_JOB_KIND_BACKUP, cofferv1.BackupType_BACKUP_TYPE_LOG, true)
	m.Transferred(cofferv1.JobKind_JOB_KIND_BACKUP, cofferv1.BackupType_BACKUP_TYPE_LOG, 1<<20, time.Second)
	m.Committed(cofferv1.BackupType_BACKUP_TYPE_LOG, 1<<20, 1<<18)
	m.Freed(100)
	m.WatchConsumers(backlogs{{Stream: "COFFER_WORK", Consumer: "streamer", Pending: 3, AckPending: 1}})
	m.WatchRPO(lags{l: []metrics.RPOLag{{Instance: "sql1", Database: "Sales", Lag: 90 * time.Second}}})
	m.WatchRPO(lags{err: errors.New("catalog unreachable")})
	return m
}

// TestNames: Names lists exactly the coffer_ metrics a process exports.
func TestNames(t *testing.T) {
	fams, err := everything(t).Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "coffer_") {
			got = append(got, f.GetName())
		}
	}
	want := slices.Clone(metrics.Names())
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("exported %v; Names() %v", got, want)
	}
}

// TestNilRecordsNothing: a service without metrics may call every
// recorder.
func TestNilRecordsNothing(t *testing.T) {
	var m *metrics.Metrics
	m.JobStarted(cofferv1.JobKind_JOB_KIND_BACKUP, cofferv1.BackupType_BACKUP_TYPE_FULL)
	m.JobFinished(cofferv1.JobKind_JOB_KIND_BACKUP, cofferv1.BackupType_BACKUP_TYPE_FULL, false)
	m.Transferred(cofferv1.JobKind_JOB_KIND_RESTORE, 0, 1, time.Second)
	m.Committed(cofferv1.BackupType_BACKUP_TYPE_FULL, 1, 1)
	m.Freed(1)
	m.WatchConsumers(backlogs{})
	m.WatchRPO(lags{})
	m.SetReady(true)
}

// TestHealthz: /healthz answers 503 until the process says it is ready,
// 200 "ok" while it is, and 503 again once it is not.
func TestHealthz(t *testing.T) {
	m := metrics.New()
	addr, err := m.Serve(t.Context(), "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr.String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, step := range []struct {
		name       string
		ready      *bool
		wantStatus int
		wantBody   string
	}{
		{"starting", nil, http.StatusServiceUnavailable, "not ready\n"},
		{"running", ptr(true), http.StatusOK, "ok\n"},
		{"stopping", ptr(false), http.StatusServiceUnavailable, "not ready\n"},
	} {
		if step.ready != nil {
			m.SetReady(*step.ready)
		}
		if status, body := get(); status != step.wantStatus || body != step.wantBody {
			t.Errorf("%s: /healthz %d %q; want %d %q", step.name, status, body, step.wantStatus, step.wantBody)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestServe scrapes a served Metrics over HTTP.
func TestServe(t *testing.T) {
	m := everything(t)
	addr, err := m.Serve(t.Context(), "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`coffer_jobs_total{backup_type="log",kind="backup",state="started"} 1`,
		`coffer_jobs_total{backup_type="log",kind="backup",state="succeeded"} 1`,
		`coffer_transfer_bytes_total{backup_type="log",kind="backup"} 1.048576e+06`,
		`coffer_transfer_duration_seconds_count{backup_type="log",kind="backup"} 1`,
		`coffer_consumer_pending_messages{consumer="streamer",stream="COFFER_WORK"} 3`,
		`coffer_consumer_ack_pending_messages{consumer="streamer",stream="COFFER_WORK"} 1`,
		`coffer_rpo_lag_seconds{database="Sales",instance="sql1"} 90`,
		`coffer_vault_logical_bytes_total{backup_type="log"} 1.048576e+06`,
		`coffer_vault_stored_bytes_total{backup_type="log"} 262144`,
		`coffer_vault_freed_bytes_total 100`,
		`coffer_metrics_scrape_errors_total{source="rpo"} 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

// TestDashboard: deploy/grafana/coffer.json is valid JSON, and every
// PromQL expression in it names only metrics this package defines (so
// the dashboard cannot drift from the code), and it shows each of them.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("../../deploy/grafana/coffer.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("coffer.json: %v", err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "expr" {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(dash)
	if len(exprs) == 0 {
		t.Fatal("no PromQL expressions in the dashboard")
	}
	defined := map[string]bool{}
	for _, n := range metrics.Names() {
		defined[n] = true
	}
	histogram := map[string]bool{metrics.TransferDuration: true}
	used := map[string]bool{}
	name := regexp.MustCompile(`\b[a-zA-Z_:][a-zA-Z0-9_:]*\b`)
	for _, e := range exprs {
		for _, n := range name.FindAllString(e, -1) {
			if !strings.HasPrefix(n, "coffer_") {
				continue // functions, labels, keywords
			}
			base := n
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if h, ok := strings.CutSuffix(n, suf); ok && histogram[h] {
					base = h
				}
			}
			if !defined[base] {
				t.Errorf("expression %q names %s, which the code does not define", e, n)
			}
			used[base] = true
		}
	}
	for _, n := range metrics.Names() {
		if !used[n] && n != metrics.ScrapeErrorsTotal {
			t.Errorf("the dashboard does not show %s", n)
		}
	}
}
