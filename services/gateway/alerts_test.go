package gateway_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/alert"
	"github.com/cofferhq/coffer/pkg/catalog"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/gateway"
)

// TestAlerts: the alerts the alerter recorded are listed newest change
// first, ?open=true keeps the open ones and ?limit the newest; the rules
// are answered as the alerter published them, each with the channels it
// goes to, and as unpublished before any alerter ran.
func TestAlerts(t *testing.T) {
	e := newEnv(t, "")
	ctx := t.Context()
	status, body := e.do(t, "GET", "/api/v1/alerts", "", "")
	if status != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("alerts before any: %d %s; want []", status, body)
	}
	status, body = e.do(t, "GET", "/api/v1/alerts/rules", "", "")
	var rules gateway.AlertRules
	if err := json.Unmarshal([]byte(body), &rules); status != 200 || err != nil || rules.Published || rules.Rules == nil {
		t.Errorf("rules before an alerter ran: %d %s; want unpublished, empty lists", status, body)
	}

	now := time.Now()
	at := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(d)) }
	put := func(st *cofferv1.AlertState, parts ...string) {
		if _, err := e.cat.Bucket(cofferv1.BucketAlerts).Put(ctx, catalog.Key(parts...), st); err != nil {
			t.Fatal(err)
		}
	}
	// resolved an hour ago; open since two hours ago; a notice of 30 min ago
	put(&cofferv1.AlertState{Rule: "chain_break", Instance: "sql1", Database: "HR", OpenedAt: at(-3 * time.Hour), OpenedBy: "b1",
		ResolvedAt: at(-time.Hour), ResolvedBy: "c1", Summary: "log chain broken"}, "chain_break", "sql1", "HR")
	put(&cofferv1.AlertState{Rule: "job_failed", Instance: "sql1", Database: "Sales", Kind: cofferv1.JobKind_JOB_KIND_BACKUP, Open: true,
		OpenedAt: at(-2 * time.Hour), OpenedBy: "f1", Summary: "backup job failed", Notify: true, Pending: "open", Delivered: []string{"slack-1"}},
		"job_failed", "sql1", "Sales", "backup")
	put(&cofferv1.AlertState{Rule: "job_failed", Kind: cofferv1.JobKind_JOB_KIND_DELETE, OpenedAt: at(-30 * time.Minute), OpenedBy: "d1",
		ResolvedAt: at(-30 * time.Minute), ResolvedBy: "d1", Summary: "delete job failed in committer"}, "job_failed", "", "", "delete", "d1")

	list := func(query string) []gateway.Alert {
		t.Helper()
		status, body := e.do(t, "GET", "/api/v1/alerts"+query, "", "")
		var out []gateway.Alert
		if err := json.Unmarshal([]byte(body), &out); status != 200 || err != nil {
			t.Fatalf("alerts%s: %d %s", query, status, body)
		}
		return out
	}
	summaries := func(as []gateway.Alert) string {
		var s []string
		for _, a := range as {
			s = append(s, a.Summary)
		}
		return strings.Join(s, "|")
	}
	all := list("")
	if got, want := summaries(all), "delete job failed in committer|log chain broken|backup job failed"; got != want {
		t.Errorf("alerts %q; want newest change first: %q", got, want)
	}
	if a := all[0]; !a.Notice || a.Open || a.Kind != "delete" {
		t.Errorf("notice %+v; want notice, closed, kind delete", a)
	}
	if a := all[2]; !a.Open || a.Kind != "backup" || a.Pending != "open" || !a.Notified || a.ResolvedAt != nil || a.Key != "job_failed.sql1.Sales.backup" {
		t.Errorf("open alert %+v; want open, backup, pending, notified, unresolved, keyed", a)
	}
	if a := all[1]; a.Notice || a.ResolvedAt == nil || a.ResolvedAt.Sub(now.Add(-time.Hour)).Abs() > time.Millisecond {
		t.Errorf("resolved alert %+v; want resolved an hour ago, not a notice", a)
	}
	if got := summaries(list("?open=true")); got != "backup job failed" {
		t.Errorf("open alerts %q; want the backup's alone", got)
	}
	if got := summaries(list("?limit=1")); got != "delete job failed in committer" {
		t.Errorf("alerts?limit=1 %q; want the newest", got)
	}
	for _, q := range []string{"?open=maybe", "?limit=0", "?limit=x"} {
		if status, body := e.do(t, "GET", "/api/v1/alerts"+q, "", ""); status != 400 {
			t.Errorf("alerts%s: %d %s; want 400", q, status, body)
		}
	}

	pub := &cofferv1.AlertRules{ResolvedRetentionSeconds: 86400,
		Rules: []*cofferv1.AlertRuleInfo{{Name: "job_failed", Enabled: true, Description: "a job failed"}, {Name: "rpo"}},
		Channels: []*cofferv1.AlertChannelInfo{{Name: "slack-1", Kind: "slack", Host: "hooks.slack.com", Source: "flags"},
			{Name: "mail", Kind: "email", Host: "smtp.example:587", To: []string{"dba@example.com"}, Source: "settings"},
			{Name: "nomail", Kind: "email", To: []string{"ops@example.com"}, Source: "settings", Problem: "no SMTP server"}}}
	if _, err := e.cat.Bucket(cofferv1.BucketAlertRules).Put(ctx, alert.RulesKey, pub); err != nil {
		t.Fatal(err)
	}
	_, body = e.do(t, "GET", "/api/v1/alerts/rules", "", "")
	rules = gateway.AlertRules{}
	if err := json.Unmarshal([]byte(body), &rules); err != nil {
		t.Fatal(err)
	}
	if !rules.Published || rules.ResolvedRetentionSeconds != 86400 || len(rules.Rules) != 2 || len(rules.Channels) != 3 {
		t.Fatalf("rules %s; want the published ones", body)
	}
	if r := rules.Rules[0]; !r.Enabled || strings.Join(r.Channels, ",") != "slack-1,mail" {
		t.Errorf("rule %+v; want on, to the two channels without a problem", r)
	}
	if r := rules.Rules[1]; r.Enabled || len(r.Channels) != 0 {
		t.Errorf("rule %+v; want off, to no channel", r)
	}
	if c := rules.Channels[1]; c.Kind != "email" || c.Host != "smtp.example:587" || strings.Join(c.To, ",") != "dba@example.com" || c.Source != "settings" {
		t.Errorf("mail channel %+v", c)
	}
	if c := rules.Channels[2]; c.Problem != "no SMTP server" {
		t.Errorf("mail channel without a server %+v; want its problem", c)
	}
}
