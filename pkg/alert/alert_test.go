package alert_test

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/alert"
	"github.com/cofferhq/coffer/pkg/alert/alerttest"
	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/policy"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// newAlerter builds an alerter over cat that Close stops when the test
// ends.
func newAlerter(t *testing.T, cat *catalog.Catalog, cfg alert.Config) *alert.Alerter {
	t.Helper()
	if cfg.InitialInterval == 0 {
		cfg.InitialInterval = 10 * time.Millisecond
	}
	a, err := alert.New(cat, cfg)
	if err != nil {
		t.Fatalf("alert.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return a
}

func apply(t *testing.T, a *alert.Alerter, changes []alert.Change) {
	t.Helper()
	if err := a.Apply(t.Context(), changes); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

var sales = &cofferv1.DatabaseRef{Instance: "sql1", Database: "Sales DB"}

func jobFailed(id string, at time.Time, kind cofferv1.JobKind) *cofferv1.JobFailed {
	return &cofferv1.JobFailed{
		Meta: &cofferv1.EventMeta{EventId: id, JobId: "j-" + id, Time: timestamppb.New(at)},
		Kind: kind, Database: sales, Reason: "BACKUP failed: disk full", Service: "backup-streamer",
	}
}

func committed(id string, at time.Time, typ cofferv1.BackupType) *cofferv1.RecoveryPointCommitted {
	return &cofferv1.RecoveryPointCommitted{
		Meta: &cofferv1.EventMeta{EventId: id, Time: timestamppb.New(at)},
		RecoveryPoint: &cofferv1.RecoveryPoint{Id: "rp-" + id, Database: sales,
			Backup: &cofferv1.BackupMetadata{Type: typ}},
	}
}

// TestJobFailedSentOnceThenResolved: a failed backup opens one alert,
// sent once to each channel although two alerters handle the event at
// once, one of them twice, and a second failure of the same database
// follows;
// the next committed backup resolves it, once.
func TestJobFailedSentOnceThenResolved(t *testing.T) {
	env := topologytest.Start(t, bus.Config{})
	generic, slack, teams := alerttest.NewHook(t, nil), alerttest.NewHook(t, nil), alerttest.NewHook(t, nil)
	mb := alerttest.NewMailbox(t, alerttest.Plain)
	server := mb.Server(alert.StartTLS)
	channels := func() []alert.Channel {
		return []alert.Channel{generic.Channel("ops-json", alert.FormatJSON), slack.Channel("ops-slack", alert.FormatSlack),
			teams.Channel("ops-teams", alert.FormatTeams),
			&alert.Mail{ChannelName: "dba-mail", Server: server, To: []string{"dba@example.com", "oncall@example.com"}}}
	}
	a1 := newAlerter(t, env.Catalog, alert.Config{Channels: channels()})
	a2 := newAlerter(t, env.Catalog, alert.Config{Channels: channels()})

	now := time.Now()
	first := alert.OnJobFailed(jobFailed("e1", now, cofferv1.JobKind_JOB_KIND_BACKUP))
	second := alert.OnJobFailed(jobFailed("e2", now.Add(time.Second), cofferv1.JobKind_JOB_KIND_BACKUP))
	var wg sync.WaitGroup
	for _, step := range []struct {
		a       *alert.Alerter
		changes []alert.Change
	}{{a1, first}, {a2, first}, {a1, first}} {
		wg.Go(func() {
			if err := step.a.Apply(t.Context(), step.changes); err != nil {
				t.Errorf("Apply: %v", err)
			}
		})
	}
	wg.Wait()
	apply(t, a2, second)
	a1.Wait()
	a2.Wait()

	key := first[0].Key()
	st, err := a1.Store().Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if !st.GetOpen() || st.GetPending() != "" {
		t.Fatalf("alert open %v, pending %q; want open with nothing pending", st.GetOpen(), st.GetPending())
	}
	hooks := map[string]*alerttest.Hook{"json": generic, "slack": slack, "teams": teams}
	for name, h := range hooks {
		if got := h.Got(); len(got) != 1 {
			t.Errorf("%s webhook got %d posts; want 1: %v", name, len(got), got)
		}
	}
	if got := mb.Got(); len(got) != 1 {
		t.Fatalf("mailbox got %d messages; want 1", len(got))
	}
	body := generic.Got()[0]
	for k, want := range map[string]any{"state": "open", "rule": "job_failed", "instance": "sql1", "database": "Sales DB",
		"title": "ALERT: backup job failed for database [Sales DB] on sql1"} {
		if body[k] != want {
			t.Errorf("json body %s = %v; want %v", k, body[k], want)
		}
	}
	if d, _ := body["detail"].(string); !strings.Contains(d, "disk full") || !strings.Contains(d, "j-e1") {
		t.Errorf("json body detail %q; want the first failure's reason and job", d)
	}
	m := mb.Got()[0]
	if !m.TLS || m.From != "coffer@example.com" || strings.Join(m.To, ",") != "dba@example.com,oncall@example.com" {
		t.Errorf("mail over TLS %v from %q to %q; want TLS, coffer@example.com to both", m.TLS, m.From, m.To)
	}
	if got, want := m.Msg.Header.Get("Subject"), "[coffer] ALERT: backup job failed for database [Sales DB] on sql1"; decodeHeader(t, got) != want {
		t.Errorf("subject %q; want %q", decodeHeader(t, got), want)
	}
	if !strings.Contains(m.Body, "disk full") {
		t.Errorf("mail body %q lacks the reason", m.Body)
	}

	// a differential commits: the backup alert resolves, once
	resolve := alert.OnCommitted(committed("c1", now.Add(time.Minute), cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL))
	apply(t, a1, resolve)
	apply(t, a2, resolve)
	a1.Wait()
	a2.Wait()
	for name, h := range hooks {
		got := h.Got()
		if len(got) != 2 {
			t.Errorf("%s webhook got %d posts; want 2 (the alert and its resolution)", name, len(got))
		}
	}
	if got := generic.Got(); len(got) == 2 && (got[1]["state"] != "resolved" || got[1]["resolved_at"] == nil) {
		t.Errorf("second json post %v; want state resolved with resolved_at", got[1])
	}
	msgs := mb.Got()
	if len(msgs) != 2 {
		t.Fatalf("mailbox got %d messages; want 2", len(msgs))
	}
	if got := decodeHeader(t, msgs[1].Msg.Header.Get("Subject")); !strings.HasPrefix(got, "[coffer] RESOLVED: backup job failed") {
		t.Errorf("resolution subject %q", got)
	}
	if msgs[0].Msg.Header.Get("Message-ID") == msgs[1].Msg.Header.Get("Message-ID") {
		t.Errorf("alert and resolution share Message-ID %s", msgs[0].Msg.Header.Get("Message-ID"))
	}

	// the first failure, delivered again after its resolution, does not
	// open the alert again; a new failure does
	apply(t, a1, first)
	a1.Wait()
	if got := generic.Got(); len(got) != 2 {
		t.Fatalf("json webhook got %d posts after a replayed failure; want 2", len(got))
	}
	apply(t, a2, alert.OnJobFailed(jobFailed("e3", now.Add(2*time.Minute), cofferv1.JobKind_JOB_KIND_BACKUP)))
	a2.Wait()
	if got := generic.Got(); len(got) != 3 || got[2]["state"] != "open" {
		t.Fatalf("json webhook got %v after a new failure; want a third post, open", got)
	}
}

func decodeHeader(t *testing.T, s string) string {
	t.Helper()
	out, err := new(mime.WordDecoder).DecodeHeader(s)
	if err != nil {
		t.Fatalf("decode header %q: %v", s, err)
	}
	return out
}

// TestOldEventNotSent: an alert opened by an event older than
// MaxEventAge (a new alerter reading a week of stream) is recorded and
// sent neither open nor resolved.
func TestOldEventNotSent(t *testing.T) {
	env := topologytest.Start(t, bus.Config{})
	h := alerttest.NewHook(t, nil)
	a := newAlerter(t, env.Catalog, alert.Config{Channels: []alert.Channel{h.Channel("ops", alert.FormatJSON)}})
	old := time.Now().Add(-3 * time.Hour)
	open := alert.OnJobFailed(jobFailed("old", old, cofferv1.JobKind_JOB_KIND_BACKUP))
	apply(t, a, open)
	apply(t, a, alert.OnCommitted(committed("c", old.Add(time.Minute), cofferv1.BackupType_BACKUP_TYPE_LOG)))
	a.Wait()
	st, err := a.Store().Get(t.Context(), open[0].Key())
	if err != nil {
		t.Fatal(err)
	}
	if st.GetOpen() || st.GetNotify() || st.GetResolvedBy() != "c" {
		t.Errorf("alert open %v notify %v resolved by %q; want resolved by c, never notified", st.GetOpen(), st.GetNotify(), st.GetResolvedBy())
	}
	if got := h.Got(); len(got) != 0 {
		t.Errorf("webhook got %v; want nothing", got)
	}
}

// TestSettings: the defaults are written once, every rule on; a rule
// turned off opens nothing; a channel named in the settings is sent to.
func TestSettings(t *testing.T) {
	env := topologytest.Start(t, bus.Config{})
	a := newAlerter(t, env.Catalog, alert.Config{})
	s, err := a.Store().Settings(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.GetRules()) != len(alert.Rules) || len(s.GetChannels()) != 0 {
		t.Fatalf("default settings %v; want every rule, no channel", s)
	}
	for _, r := range s.GetRules() {
		if !r.GetEnabled() {
			t.Errorf("rule %s is off by default", r.GetName())
		}
	}
	h := alerttest.NewHook(t, nil)
	s.Rules[0].Enabled = false // job_failed
	s.Channels = []*cofferv1.AlertChannel{{Name: "catalog-hook", Format: alert.FormatSlack, Url: h.URL}}
	if _, err := env.Catalog.Bucket(cofferv1.BucketAlertSettings).Put(t.Context(), alert.SettingsKey, s); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	failed := alert.OnJobFailed(jobFailed("e1", now, cofferv1.JobKind_JOB_KIND_BACKUP))
	apply(t, a, failed)
	if _, err := a.Store().Get(t.Context(), failed[0].Key()); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("alert of a rule turned off: %v; want none recorded", err)
	}
	apply(t, a, alert.OnChainBroken(&cofferv1.ChainBroken{Meta: &cofferv1.EventMeta{EventId: "b1", Time: timestamppb.New(now)},
		Database: sales, Reason: "a log backup taken outside coffer"}))
	a.Wait()
	got := h.Got()
	if len(got) != 1 || got[0]["text"] != "ALERT: log chain broken for database [Sales DB] on sql1" {
		t.Fatalf("catalog channel got %v; want the chain break, as Slack reads it", got)
	}
	// a copy-only full does not heal the chain; a full does
	apply(t, a, alert.OnCommitted(committed("c1", now.Add(time.Minute), cofferv1.BackupType_BACKUP_TYPE_COPY_ONLY_FULL)))
	apply(t, a, alert.OnCommitted(committed("c2", now.Add(2*time.Minute), cofferv1.BackupType_BACKUP_TYPE_LOG)))
	a.Wait()
	if got := h.Got(); len(got) != 1 {
		t.Fatalf("chain break resolved by a copy-only full or a log: %v", got)
	}
	apply(t, a, alert.OnCommitted(committed("c3", now.Add(3*time.Minute), cofferv1.BackupType_BACKUP_TYPE_FULL)))
	a.Wait()
	if got := h.Got(); len(got) != 2 || !strings.HasPrefix(got[1]["text"].(string), "RESOLVED: log chain broken") {
		t.Fatalf("after a full the catalog channel got %v; want the resolution", got)
	}
}

// TestNotices: a failure nothing will report cleared (a poison message,
// a failed delete) is sent once per event, with no resolution, and each
// new one is sent.
func TestNotices(t *testing.T) {
	env := topologytest.Start(t, bus.Config{})
	h := alerttest.NewHook(t, nil)
	a := newAlerter(t, env.Catalog, alert.Config{Channels: []alert.Channel{h.Channel("ops", alert.FormatJSON)}})
	now := time.Now()
	poison := &cofferv1.JobFailed{Meta: &cofferv1.EventMeta{EventId: "p1", Time: timestamppb.New(now)},
		Reason: "committer could not process coffer.job.streamed: malformed", Service: "committer"}
	deleteFailed := jobFailed("d1", now, cofferv1.JobKind_JOB_KIND_DELETE)
	for _, ev := range []*cofferv1.JobFailed{poison, poison, deleteFailed, deleteFailed} {
		apply(t, a, alert.OnJobFailed(ev))
	}
	poison2 := proto.CloneOf(poison)
	poison2.Meta.EventId, poison2.Meta.Time = "p2", timestamppb.New(now.Add(time.Second))
	apply(t, a, alert.OnJobFailed(poison2))
	a.Wait()
	var titles []string
	for _, b := range h.Got() {
		titles = append(titles, b["state"].(string)+" "+b["title"].(string))
	}
	slices.Sort(titles) // sent in the background: in any order
	want := []string{"open ALERT: committer could not do its work", "open ALERT: committer could not do its work",
		"open ALERT: delete job failed for database [Sales DB] on sql1"}
	if strings.Join(titles, "|") != strings.Join(want, "|") {
		t.Errorf("sent %q; want %q", titles, want)
	}
}

// TestResolutionAfterAlert: an alert resolved while it is being sent
// goes out before its resolution, never after; one resolved before its
// sending started is sent as the resolution alone.
func TestResolutionAfterAlert(t *testing.T) {
	env := topologytest.Start(t, bus.Config{})
	h := alerttest.NewHook(t, func(n int) int {
		if n == 1 { // the first post is slow
			<-time.After(100 * time.Millisecond) // a slow endpoint, not a wait for a condition
		}
		return 0
	})
	a := newAlerter(t, env.Catalog, alert.Config{Channels: []alert.Channel{h.Channel("ops", alert.FormatJSON)}})
	now := time.Now()
	for i := range 5 {
		id := fmt.Sprint(i)
		apply(t, a, alert.OnJobFailed(jobFailed("f"+id, now.Add(time.Duration(2*i)*time.Second), cofferv1.JobKind_JOB_KIND_BACKUP)))
		apply(t, a, alert.OnCommitted(committed("c"+id, now.Add(time.Duration(2*i+1)*time.Second), cofferv1.BackupType_BACKUP_TYPE_LOG)))
	}
	a.Wait()
	var states []string
	for _, b := range h.Got() {
		states = append(states, b["id"].(string))
	}
	// each cycle: open:fN then resolved:cN, or resolved:cN alone
	last := -1
	for _, id := range states {
		kind, ev, _ := strings.Cut(id, ":")
		n := int(ev[1] - '0')
		if n < last || kind == "open" && n == last {
			t.Fatalf("sent out of order: %v", states)
		}
		last = n
	}
	if len(states) == 0 || !strings.HasPrefix(states[len(states)-1], "resolved:c4") {
		t.Errorf("sent %v; want the last resolution last", states)
	}
}

// TestDeliveryRetriesInBackground: Apply returns while a webhook hangs;
// a webhook that answers 503 is tried again until it takes the alert,
// which it gets once; one that answers 400 is not tried again.
func TestDeliveryRetriesInBackground(t *testing.T) {
	env := topologytest.Start(t, bus.Config{})
	release := make(chan struct{})
	slow := alerttest.NewHook(t, func(int) int { <-release; return 0 })
	flaky := alerttest.NewHook(t, func(n int) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	refusing := alerttest.NewHook(t, func(int) int { return http.StatusBadRequest })
	a := newAlerter(t, env.Catalog, alert.Config{Channels: []alert.Channel{
		slow.Channel("slow", alert.FormatJSON), flaky.Channel("flaky", alert.FormatJSON), refusing.Channel("refusing", alert.FormatJSON)}})

	changes := alert.OnJobFailed(jobFailed("e1", time.Now(), cofferv1.JobKind_JOB_KIND_BACKUP))
	applied := make(chan error, 1)
	go func() { applied <- a.Apply(t.Context(), changes) }()
	select {
	case err := <-applied:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Apply waits for a webhook that hangs")
	}
	alerttest.Eventually(t, 10*time.Second, func() bool { return len(flaky.Got()) == 1 }, func() string {
		return fmt.Sprintf("flaky webhook took %d posts", len(flaky.Got()))
	})
	close(release)
	a.Wait()
	if hits := flaky.Hits(); hits != 3 || len(flaky.Got()) != 1 {
		t.Errorf("flaky webhook: %d requests, %d taken; want 3 and 1", hits, len(flaky.Got()))
	}
	if hits := refusing.Hits(); hits != 1 {
		t.Errorf("refusing webhook: %d requests; want 1", hits)
	}
	if len(slow.Got()) != 1 {
		t.Errorf("slow webhook took %d posts; want 1", len(slow.Got()))
	}
	st, err := a.Store().Get(t.Context(), changes[0].Key())
	if err != nil {
		t.Fatal(err)
	}
	if st.GetPending() != "" {
		t.Errorf("pending %q after every channel answered; want none", st.GetPending())
	}
}

// TestSweepSendsWhatWasLeft: a notification whose channel stayed down
// past Patience is left pending; a sweep (here another replica's, later)
// sends it to that channel only, not again to the one that had it.
func TestSweepSendsWhatWasLeft(t *testing.T) {
	env := topologytest.Start(t, bus.Config{})
	var up sync.Mutex
	isDown := true
	ok := alerttest.NewHook(t, nil)
	down := alerttest.NewHook(t, func(int) int {
		up.Lock()
		defer up.Unlock()
		if isDown {
			return http.StatusBadGateway
		}
		return 0
	})
	channels := []alert.Channel{ok.Channel("ok", alert.FormatJSON), down.Channel("down", alert.FormatJSON)}
	a1 := newAlerter(t, env.Catalog, alert.Config{Channels: channels, Patience: 100 * time.Millisecond})
	changes := alert.OnJobFailed(jobFailed("e1", time.Now(), cofferv1.JobKind_JOB_KIND_BACKUP))
	apply(t, a1, changes)
	a1.Wait()
	st, err := a1.Store().Get(t.Context(), changes[0].Key())
	if err != nil {
		t.Fatal(err)
	}
	if st.GetPending() != alert.Opened || strings.Join(st.GetDelivered(), ",") != "ok" {
		t.Fatalf("pending %q delivered %v; want open pending, delivered to ok", st.GetPending(), st.GetDelivered())
	}
	// not yet stale: nothing is claimed
	if err := a1.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	a1.Wait()
	up.Lock()
	isDown = false
	up.Unlock()
	later := func() time.Time { return time.Now().Add(time.Hour) }
	a2 := newAlerter(t, env.Catalog, alert.Config{Channels: channels, Now: later})
	if err := a2.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	a2.Wait()
	if len(ok.Got()) != 1 || len(down.Got()) != 1 {
		t.Errorf("ok took %d, down took %d; want 1 each", len(ok.Got()), len(down.Got()))
	}
	if st, _ := a1.Store().Get(t.Context(), changes[0].Key()); st.GetPending() != "" {
		t.Errorf("pending %q after the sweep; want none", st.GetPending())
	}
}

// TestRenew: of two holders of one read of a pending notification, the
// first to claim it sends it; the other finds it claimed.
func TestRenew(t *testing.T) {
	env := topologytest.Start(t, bus.Config{})
	store := alert.NewStore(env.Catalog)
	c := alert.OnJobFailed(jobFailed("e1", time.Now(), cofferv1.JobKind_JOB_KIND_BACKUP))[0]
	held, err := store.Apply(t.Context(), c, true, true, time.Now())
	if err != nil || held == nil {
		t.Fatalf("Apply: %v, %v", held, err)
	}
	first, err := store.Renew(t.Context(), c.Key(), held, time.Now().Add(time.Second))
	if err != nil || first == nil {
		t.Fatalf("first Renew: %v, %v; want the claim", first, err)
	}
	if second, err := store.Renew(t.Context(), c.Key(), held, time.Now().Add(2*time.Second)); err != nil || second != nil {
		t.Errorf("second Renew of the same read: %v, %v; want it claimed already", second, err)
	}
	if again, err := store.Renew(t.Context(), c.Key(), first, time.Now().Add(3*time.Second)); err != nil || again == nil {
		t.Errorf("Renew by the claim's holder: %v, %v; want it renewed", again, err)
	}
}

// TestMail: implicit TLS with a sign-in; a server that offers no
// STARTTLS is refused for good, before the password is sent.
func TestMail(t *testing.T) {
	n := alert.Notification{ID: "open:e1", Key: "rpo.sql1.x", State: alert.Opened, Rule: alert.RPO, Instance: "sql1",
		Database: "weird\r\nBcc: victim@example.com", Summary: "database [weird\r\nBcc: victim@example.com] on sql1 is out of its RPO",
		Detail: ".\r\nnot the end", OpenedAt: time.Now()}
	t.Run("implicit TLS", func(t *testing.T) {
		mb := alerttest.NewMailbox(t, alerttest.Implicit)
		m := &alert.Mail{ChannelName: "mail", Server: mb.Server(alert.ImplicitTLS), To: []string{"DBA <dba@example.com>"}}
		if err := m.Send(t.Context(), n); err != nil {
			t.Fatalf("Send: %v", err)
		}
		got := mb.Got()
		if len(got) != 1 {
			t.Fatalf("got %d messages; want 1", len(got))
		}
		if !got[0].TLS || strings.Join(got[0].To, ",") != "dba@example.com" {
			t.Errorf("TLS %v to %v; want TLS to dba@example.com", got[0].TLS, got[0].To)
		}
		if b := got[0].Msg.Header.Get("Bcc"); b != "" {
			t.Errorf("a database name wrote a Bcc header: %q", b)
		}
		if !strings.Contains(got[0].Body, ".\r\nnot the end") && !strings.Contains(got[0].Body, ".\nnot the end") {
			t.Errorf("body %q lost the detail's lone dot line", got[0].Body)
		}
	})
	t.Run("no STARTTLS", func(t *testing.T) {
		mb := alerttest.NewMailbox(t, alerttest.NoTLS)
		m := &alert.Mail{ChannelName: "mail", Server: mb.Server(alert.StartTLS), To: []string{"dba@example.com"}}
		err := m.Send(t.Context(), n)
		var perm *backoff.PermanentError
		if err == nil || !errors.As(err, &perm) || !strings.Contains(err.Error(), "STARTTLS") {
			t.Fatalf("Send: %v; want a permanent error naming STARTTLS", err)
		}
		if len(mb.Got()) != 0 {
			t.Errorf("a message was taken in the clear")
		}
	})
}

// TestBodies: the Slack body is text and blocks, escaped; the Teams body
// a message holding one Adaptive Card.
func TestBodies(t *testing.T) {
	opened := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	n := alert.Notification{ID: "resolved:x", State: alert.Resolved, Rule: alert.InstanceUnhealthy, Instance: "sql<1>&",
		Summary: "instance sql<1>& is unhealthy", Detail: "login failed", OpenedAt: opened, ResolvedAt: opened.Add(time.Hour)}
	h := alerttest.NewHook(t, nil)
	for _, f := range []string{alert.FormatSlack, alert.FormatTeams} {
		if err := h.Channel(f, f).Send(t.Context(), n); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	got := h.Got()
	slack, teams := got[0], got[1]
	if slack["text"] != "RESOLVED: instance sql<1>& is unhealthy" {
		t.Errorf("slack text %v", slack["text"])
	}
	blocks, _ := slack["blocks"].([]any)
	if len(blocks) != 2 {
		t.Fatalf("slack blocks %v; want a header and a section", slack["blocks"])
	}
	section := blocks[1].(map[string]any)["text"].(map[string]any)
	if section["type"] != "mrkdwn" || !strings.Contains(section["text"].(string), "sql&lt;1&gt;&amp;") ||
		!strings.Contains(section["text"].(string), "resolved: 2026-12-01T11:00:00Z") {
		t.Errorf("slack section %v; want mrkdwn, escaped, with the resolution time", section)
	}
	if teams["type"] != "message" {
		t.Errorf("teams type %v; want message", teams["type"])
	}
	att := teams["attachments"].([]any)
	if len(att) != 1 {
		t.Fatalf("teams attachments %v; want one", att)
	}
	card := att[0].(map[string]any)
	content := card["content"].(map[string]any)
	if card["contentType"] != "application/vnd.microsoft.card.adaptive" || content["type"] != "AdaptiveCard" || content["version"] == "" {
		t.Errorf("teams attachment %v; want an Adaptive Card", card)
	}
	body := content["body"].([]any)
	title := body[0].(map[string]any)
	if title["text"] != "RESOLVED: instance sql<1>& is unhealthy" || title["color"] != "good" {
		t.Errorf("teams title %v", title)
	}
	if got, want := teamsFacts(teams), "Rule=instance_unhealthy,Instance=sql<1>&,Opened=2026-12-01T10:00:00Z,Resolved=2026-12-01T11:00:00Z"; got != want {
		t.Errorf("teams facts %s; want %s", got, want)
	}
}

// teamsFacts is the fact set of a Teams post's card, as title=value
// pairs joined by commas.
func teamsFacts(post map[string]any) string {
	content := post["attachments"].([]any)[0].(map[string]any)["content"].(map[string]any)
	var names []string
	for _, f := range content["body"].([]any)[1].(map[string]any)["facts"].([]any) {
		names = append(names, f.(map[string]any)["title"].(string)+"="+f.(map[string]any)["value"].(string))
	}
	return strings.Join(names, ",")
}

// TestVaultChecked: a failed check opens an alert keyed by its vault
// alone, which a passing check of that vault resolves and one of another
// vault does not; its notification names the vault, not an instance.
func TestVaultChecked(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	check := func(id, vault string, passed bool) alert.Change {
		t.Helper()
		ev := &cofferv1.VaultChecked{Meta: &cofferv1.EventMeta{EventId: id, Time: timestamppb.New(at)}, Vault: vault, Mode: "fast",
			Passed: passed, Damage: []string{"chunk c1: missing (needed by rp-1)"}, Affected: []string{"rp-1 sql1/Sales, full"}}
		if passed {
			ev.Damage, ev.Affected = nil, nil
		}
		changes := alert.OnVaultChecked(ev)
		if len(changes) != 1 || changes[0].Rule != alert.VaultCheckFailed || changes[0].Open == passed {
			t.Fatalf("OnVaultChecked(passed %v): %+v; want one vault_check_failed change, open %v", passed, changes, !passed)
		}
		return changes[0]
	}
	failed, passed, other := check("v1", "s3://minio:9000/vault/", false), check("v2", "s3://minio:9000/vault/", true), check("v3", "/srv/vault", true)
	if failed.Key() != passed.Key() || failed.Key() == other.Key() {
		t.Errorf("keys %q, %q (same vault), %q (another); want the same vault's equal and the other's apart", failed.Key(), passed.Key(), other.Key())
	}
	if !strings.Contains(failed.Summary, "s3://minio:9000/vault/") || !strings.Contains(failed.Detail, "chunk c1: missing") {
		t.Errorf("summary %q, detail %q; want the vault and the damage", failed.Summary, failed.Detail)
	}

	n := alert.Notification{ID: "open:v1", State: alert.Opened, Rule: alert.VaultCheckFailed, Vault: "/srv/vault",
		Summary: "vault check of /srv/vault could not finish", OpenedAt: at}
	if text := n.Text(); !strings.Contains(text, "vault: /srv/vault\n") || strings.Contains(text, "instance:") {
		t.Errorf("text %q; want the vault and no empty instance", text)
	}
	h := alerttest.NewHook(t, nil)
	if err := h.Channel("teams", alert.FormatTeams).Send(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	if got, want := teamsFacts(h.Got()[0]), "Rule=vault_check_failed,Vault=/srv/vault,Opened=2026-12-01T10:00:00Z"; got != want {
		t.Errorf("teams facts %s; want %s", got, want)
	}
}

// TestRPO: the interval a policy allows, and which databases are out of
// twice it.
func TestRPO(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC) // a Wednesday
	def := policy.Default()
	weekly := policy.Policy{Name: "weekly", Full: policy.Schedule{Frequency: policy.Weekly, Days: []time.Weekday{time.Sunday}, Hour: 1}}
	weeklyDiff := weekly
	weeklyDiff.Differential = &policy.Schedule{Days: []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday, time.Saturday}, Hour: 1}
	for _, c := range []struct {
		name      string
		p         policy.Policy
		logPaused bool
		want      time.Duration
	}{
		{"log every 15m", def, false, 15 * time.Minute},
		{"log paused: daily full", def, true, 24 * time.Hour},
		{"weekly full", weekly, false, 7 * 24 * time.Hour},
		{"weekly full, daily differentials", weeklyDiff, false, 24 * time.Hour},
	} {
		if got := alert.Interval(&c.p, c.logPaused, now); got != c.want {
			t.Errorf("%s: Interval = %v; want %v", c.name, got, c.want)
		}
	}
	dbs := []alert.Protection{
		{Instance: "sql1", Database: "fresh", Policy: &def, LastBackup: now.Add(-29 * time.Minute)},
		{Instance: "sql1", Database: "late", Policy: &def, LastBackup: now.Add(-31 * time.Minute)},
		{Instance: "sql1", Database: "never", Policy: &def, ProtectedAt: now.Add(-time.Hour)},
		{Instance: "sql1", Database: "simple", Policy: &def, LogPaused: true, LastBackup: now.Add(-47 * time.Hour)},
	}
	var open []string
	for _, c := range alert.EvaluateRPO(now, dbs, "rpo") {
		if c.Open {
			open = append(open, c.Database)
		}
	}
	if got, want := strings.Join(open, ","), "late,never"; got != want {
		t.Errorf("out of RPO: %s; want %s", got, want)
	}
}

// TestCancelledJobNoAlert: a job a person cancelled ends with a JobFailed
// that says so (cancelled_by); it opens no alert, where the same failure
// does.
func TestCancelledJobNoAlert(t *testing.T) {
	ev := jobFailed("c1", time.Now(), cofferv1.JobKind_JOB_KIND_BACKUP)
	if got := alert.OnJobFailed(ev); len(got) != 1 || !got[0].Open {
		t.Fatalf("a failed backup: %+v; want one alert opened", got)
	}
	ev.CancelledBy = "operator1"
	if got := alert.OnJobFailed(ev); len(got) != 0 {
		t.Errorf("a cancelled backup: %+v; want no alert", got)
	}
}
