package alerter_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/alert"
	"github.com/cofferhq/coffer/pkg/alert/alerttest"
	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/alerter"
)

// env is one test's world: an embedded NATS with coffer's topology, the
// endpoints alerts go to, and a clock the test moves.
type env struct {
	t                  *testing.T
	nats               *topologytest.Env
	json, slack, teams *alerttest.Hook
	mail               *alerttest.Mailbox
	offset             atomic.Int64 // added to the real time
	seq                atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, nats: topologytest.Start(t, bus.Config{NakDelay: 100 * time.Millisecond}),
		json: alerttest.NewHook(t, nil), slack: alerttest.NewHook(t, nil), teams: alerttest.NewHook(t, nil),
		mail: alerttest.NewMailbox(t, alerttest.Implicit)}
	return e
}

func (e *env) now() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) }

// run starts an alerter replica and returns the function that stops it,
// waiting for its sending, and returns Run's result.
func (e *env) run() (stop func() error) {
	e.t.Helper()
	svc := e.service()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- svc.Run(ctx) }()
	var once sync.Once
	var result error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-stopped:
			case <-time.After(15 * time.Second):
				result = errors.New("Run did not return after its context ended")
			}
		})
		return result
	}
	e.t.Cleanup(func() {
		if err := stop(); err != nil {
			e.t.Errorf("Run: %v", err)
		}
	})
	return stop
}

// service builds an alerter sending to every endpoint of e.
func (e *env) service() *alerter.Service {
	e.t.Helper()
	server := e.mail.Server(alert.ImplicitTLS)
	svc, err := alerter.New(e.nats.Bus, e.nats.Catalog, alerter.Config{
		Config: alert.Config{
			Channels: []alert.Channel{e.json.Channel("json", alert.FormatJSON), e.slack.Channel("slack", alert.FormatSlack),
				e.teams.Channel("teams", alert.FormatTeams), &alert.Mail{ChannelName: "mail", Server: server, To: []string{"dba@example.com"}}},
			InitialInterval: 10 * time.Millisecond, Now: e.now,
		},
		Interval: 20 * time.Millisecond, DrainTimeout: 10 * time.Second,
	})
	if err != nil {
		e.t.Fatalf("alerter.New: %v", err)
	}
	return svc
}

// publish stores msg on subject under a fresh message id (a republished
// event gets a new one, so JetStream does not deduplicate it).
func (e *env) publish(subject string, msg proto.Message) {
	e.t.Helper()
	id := fmt.Sprintf("test-%d", e.seq.Add(1))
	if err := e.nats.Bus.Publish(e.t.Context(), subject, msg, id); err != nil {
		e.t.Fatalf("publish %s: %v", subject, err)
	}
}

func meta(id string, at time.Time) *cofferv1.EventMeta { return event.Meta(id, "j-"+id, at) }

// counts is how many notifications each channel took.
func (e *env) counts() string {
	return fmt.Sprintf("json %d, slack %d, teams %d, mail %d", len(e.json.Got()), len(e.slack.Got()), len(e.teams.Got()), len(e.mail.Got()))
}

func stopped(t *testing.T, stop ...func() error) {
	t.Helper()
	for _, s := range stop {
		if err := s(); err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
}

var sales = &cofferv1.DatabaseRef{Instance: "sql1", Database: "Sales"}

// TestFailedJob: a failed backup, published twice and followed by a
// second failure of the database, is sent once to each channel by two
// replicas; after a restart, the next committed backup of the database
// sends the resolution, once.
func TestFailedJob(t *testing.T) {
	e := newEnv(t)
	stop1, stop2 := e.run(), e.run()
	now := time.Now()
	failed := &cofferv1.JobFailed{Meta: meta("f1", now), Kind: cofferv1.JobKind_JOB_KIND_BACKUP, Database: sales,
		Reason: "BACKUP DATABASE failed: Msg 3201, cannot open backup device", Service: "backup-streamer"}
	e.publish(cofferv1.SubjectJobFailed, failed)
	e.publish(cofferv1.SubjectJobFailed, failed) // redelivered
	e.publish(cofferv1.SubjectJobFailed, &cofferv1.JobFailed{Meta: meta("f2", now.Add(time.Second)),
		Kind: cofferv1.JobKind_JOB_KIND_BACKUP, Database: sales, Reason: "again", Service: "backup-streamer"})
	all := func(n int) func() bool {
		return func() bool {
			return len(e.json.Got()) >= n && len(e.slack.Got()) >= n && len(e.teams.Got()) >= n && len(e.mail.Got()) >= n
		}
	}
	alerttest.Eventually(t, 10*time.Second, all(1), e.counts)
	stopped(t, stop1, stop2) // every event handled, every notification sent
	if got := e.counts(); got != "json 1, slack 1, teams 1, mail 1" {
		t.Fatalf("after the failures: %s; want 1 each", got)
	}
	if got := e.json.Got()[0]; got["rule"] != "job_failed" || got["state"] != "open" || !strings.Contains(got["detail"].(string), "Msg 3201") {
		t.Errorf("json alert %v; want job_failed, open, with the first failure's reason", got)
	}
	if got := e.slack.Got()[0]["text"]; got != "ALERT: backup job failed for database [Sales] on sql1" {
		t.Errorf("slack text %q", got)
	}

	stop := e.run() // the alert's state outlives the replicas
	e.publish(cofferv1.SubjectRecoveryPointCommitted, &cofferv1.RecoveryPointCommitted{Meta: meta("c1", now.Add(time.Minute)),
		RecoveryPoint: &cofferv1.RecoveryPoint{Id: "rp-c1", Database: sales, Backup: &cofferv1.BackupMetadata{Type: cofferv1.BackupType_BACKUP_TYPE_LOG}}})
	alerttest.Eventually(t, 10*time.Second, all(2), e.counts)
	stopped(t, stop)
	if got := e.counts(); got != "json 2, slack 2, teams 2, mail 2" {
		t.Fatalf("after the commit: %s; want 2 each", got)
	}
	if got := e.json.Got()[1]; got["state"] != "resolved" {
		t.Errorf("second json post %v; want the resolution", got)
	}
	if got := e.mail.Got()[1].Msg.Header.Get("X-Coffer-Alert"); got != "resolved" {
		t.Errorf("second mail is %q; want resolved", got)
	}
}

// TestUnhealthyInstance: an instance reported unhealthy (twice) opens one
// alert; its recovery resolves it.
func TestUnhealthyInstance(t *testing.T) {
	e := newEnv(t)
	stop := e.run()
	now := time.Now()
	down := &cofferv1.Instance{Name: "sql1", Healthy: false, Reason: "login failed for user 'coffer'", Fix: "grant the login"}
	e.publish(cofferv1.SubjectInstanceHealthChanged, &cofferv1.InstanceHealthChanged{Meta: meta("h1", now), Instance: down})
	e.publish(cofferv1.SubjectInstanceHealthChanged, &cofferv1.InstanceHealthChanged{Meta: meta("h2", now.Add(time.Second)), Instance: down})
	alerttest.Eventually(t, 10*time.Second, func() bool { return len(e.json.Got()) >= 1 && len(e.teams.Got()) >= 1 }, e.counts)
	e.publish(cofferv1.SubjectInstanceHealthChanged, &cofferv1.InstanceHealthChanged{Meta: meta("h3", now.Add(2*time.Second)),
		Instance: &cofferv1.Instance{Name: "sql1", Healthy: true}})
	alerttest.Eventually(t, 10*time.Second, func() bool { return len(e.json.Got()) >= 2 && len(e.teams.Got()) >= 2 }, e.counts)
	stopped(t, stop)
	got := e.json.Got()
	if len(got) != 2 || got[0]["state"] != "open" || got[0]["rule"] != "instance_unhealthy" || got[1]["state"] != "resolved" {
		t.Fatalf("json posts %v; want instance_unhealthy opened then resolved", got)
	}
	if d := got[0]["detail"].(string); !strings.Contains(d, "login failed") || !strings.Contains(d, "grant the login") {
		t.Errorf("detail %q; want the reason and the fix", d)
	}
	card := e.teams.Got()[0]["attachments"].([]any)[0].(map[string]any)["content"].(map[string]any)
	if title := card["body"].([]any)[0].(map[string]any)["text"]; title != "ALERT: instance sql1 is unhealthy" {
		t.Errorf("teams card title %q", title)
	}
}

// TestVaultCheckFailed: a vault check that found damage opens one alert
// per vault, which names the vault, the damage and the recovery points; a
// failed check of another vault is an alert of its own; a check that
// could not finish keeps the first open, and the next passing check of
// each vault resolves its alert, once.
func TestVaultCheckFailed(t *testing.T) {
	e := newEnv(t)
	stop := e.run()
	now := time.Now()
	const a, b = "s3://minio:9000/coffer-vault/", "/var/lib/coffer/vault"
	damage := make([]string, 12)
	for i := range damage {
		damage[i] = fmt.Sprintf("chunk c%d: missing (needed by rp-1)", i)
	}
	e.publish(cofferv1.SubjectVaultChecked, &cofferv1.VaultChecked{Meta: meta("v1", now), Vault: a, Mode: "full",
		RecoveryPoints: 3, Chunks: 40, Damage: damage, Affected: []string{"rp-1 sql1/Sales, full taken 2026-12-01 02:00:00"}})
	e.publish(cofferv1.SubjectVaultChecked, &cofferv1.VaultChecked{Meta: meta("v2", now.Add(time.Second)), Vault: a, Mode: "fast",
		Error: "vault check: list packs: connection refused"})
	e.publish(cofferv1.SubjectVaultChecked, &cofferv1.VaultChecked{Meta: meta("v3", now.Add(2*time.Second)), Vault: b, Mode: "fast",
		Error: "vault check: read index: permission denied"})
	alerttest.Eventually(t, 10*time.Second, func() bool { return len(e.json.Got()) >= 2 && len(e.mail.Got()) >= 2 }, e.counts)
	e.publish(cofferv1.SubjectVaultChecked, &cofferv1.VaultChecked{Meta: meta("v4", now.Add(3*time.Second)), Vault: a, Mode: "full", Passed: true})
	e.publish(cofferv1.SubjectVaultChecked, &cofferv1.VaultChecked{Meta: meta("v5", now.Add(4*time.Second)), Vault: b, Mode: "fast", Passed: true})
	alerttest.Eventually(t, 10*time.Second, func() bool { return len(e.json.Got()) >= 4 && len(e.mail.Got()) >= 4 }, e.counts)
	stopped(t, stop)
	if got := e.counts(); got != "json 4, slack 4, teams 4, mail 4" {
		t.Fatalf("%s; want each vault's alert and its resolution, 4 each", got)
	}
	byVault := map[string][]map[string]any{}
	for _, p := range e.json.Got() {
		if p["rule"] != "vault_check_failed" {
			t.Errorf("post %v; want rule vault_check_failed", p)
		}
		v, _ := p["vault"].(string)
		byVault[v] = append(byVault[v], p)
	}
	for _, v := range []string{a, b} {
		if got := byVault[v]; len(got) != 2 || got[0]["state"] != "open" || got[1]["state"] != "resolved" {
			t.Errorf("posts for vault %s: %v; want the alert, then its resolution", v, got)
		}
	}
	open := byVault[a][0]
	if title := open["title"]; title != "ALERT: vault check found damage in "+a+": 1 recovery points cannot be restored" {
		t.Errorf("title %q", title)
	}
	d, _ := open["detail"].(string)
	for _, want := range []string{"full check of 3 recovery points, 40 chunks", "chunk c0: missing", "chunk c9: missing", "and 2 more", "rp-1 sql1/Sales"} {
		if !strings.Contains(d, want) {
			t.Errorf("detail %q; want %q in it", d, want)
		}
	}
	if strings.Contains(d, "chunk c10:") {
		t.Errorf("detail %q lists more than 10 problems", d)
	}
	if d, _ := byVault[b][0]["detail"].(string); !strings.Contains(d, "permission denied") {
		t.Errorf("detail %q; want why the check could not finish", d)
	}
	for _, m := range e.mail.Got() {
		if body := string(m.Body); !strings.Contains(body, "vault: ") || strings.Contains(body, "instance:") {
			t.Errorf("mail body %q; want the vault named, and no empty instance", body)
		}
	}
}

// TestRPO: a protected database whose last backup falls more than twice
// its policy's log interval behind opens an rpo alert; its next backup
// resolves it; a database no longer protected has its alert resolved.
func TestRPO(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	protected := e.nats.Catalog.Bucket(cofferv1.BucketProtected)
	schedule := e.nats.Catalog.Bucket(cofferv1.BucketSchedule)
	key := catalog.Key(sales.GetInstance(), sales.GetDatabase())
	start := e.now()
	item := &cofferv1.ProtectedItem{Database: sales, Policy: "default", State: cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED,
		ProtectedAt: timestamppb.New(start.Add(-24 * time.Hour))}
	if _, err := protected.Put(ctx, key, item); err != nil {
		t.Fatal(err)
	}
	backedUp := func(at time.Time) {
		t.Helper()
		if _, err := schedule.Put(ctx, key, &cofferv1.ScheduleState{Database: sales, Policy: "default", LastBackupAt: timestamppb.New(at)}); err != nil {
			t.Fatal(err)
		}
	}
	backedUp(start.Add(-10 * time.Minute))
	// the default policy backs the log up every 15 minutes: 10 minutes
	// on the database is within its RPO (30 minutes), 35 minutes on not
	probe := e.service()
	if err := probe.Evaluate(ctx); err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	probe.Alerts().Wait()
	if got := e.counts(); got != "json 0, slack 0, teams 0, mail 0" {
		t.Fatalf("within the RPO: %s; want nothing sent", got)
	}
	e.run()
	e.offset.Store(int64(25 * time.Minute))
	alerttest.Eventually(t, 10*time.Second, func() bool { return len(e.json.Got()) >= 1 }, e.counts)
	got := e.json.Got()[0]
	if got["rule"] != "rpo" || got["state"] != "open" || got["title"] != "ALERT: database [Sales] on sql1 is out of its RPO" {
		t.Fatalf("json post %v; want the rpo alert", got)
	}
	if d := got["detail"].(string); !strings.Contains(d, "within 30m0s") {
		t.Errorf("detail %q; want the limit, 30m", d)
	}
	backedUp(e.now())
	alerttest.Eventually(t, 10*time.Second, func() bool { return len(e.json.Got()) >= 2 }, e.counts)
	if got := e.json.Got()[1]; got["state"] != "resolved" {
		t.Fatalf("second json post %v; want the resolution", got)
	}

	// out of its RPO again, then unprotected: resolved
	e.offset.Store(int64(2 * time.Hour))
	alerttest.Eventually(t, 10*time.Second, func() bool { return len(e.json.Got()) >= 3 }, e.counts)
	item.State = cofferv1.ProtectionState_PROTECTION_STATE_UNPROTECTED
	if _, err := protected.Put(ctx, key, item); err != nil {
		t.Fatal(err)
	}
	alerttest.Eventually(t, 10*time.Second, func() bool { return len(e.json.Got()) >= 4 }, e.counts)
	if got := e.json.Got(); got[2]["state"] != "open" || got[3]["state"] != "resolved" {
		t.Errorf("posts %v; want opened again, then resolved", got[2:])
	}
}

// TestRulesPublishedAndOldAlertsPruned: a running alerter publishes its
// rules and channels for the gateway, and its evaluation deletes an alert
// resolved longer ago than alert.ResolvedRetention.
func TestRulesPublishedAndOldAlertsPruned(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	st := &cofferv1.AlertState{Rule: string(alert.ChainBreak), Instance: "sql1", Database: "Gone",
		OpenedAt:   timestamppb.New(time.Now().Add(-alert.ResolvedRetention - 48*time.Hour)),
		ResolvedAt: timestamppb.New(time.Now().Add(-alert.ResolvedRetention - time.Hour))}
	key := catalog.Key(st.Rule, st.Instance, st.Database)
	alerts := e.nats.Catalog.Bucket(cofferv1.BucketAlerts)
	if _, err := alerts.Put(ctx, key, st); err != nil {
		t.Fatal(err)
	}
	e.run()
	var rules cofferv1.AlertRules
	alerttest.Eventually(t, 10*time.Second, func() bool {
		_, err := e.nats.Catalog.Bucket(cofferv1.BucketAlertRules).Get(ctx, alert.RulesKey, &rules)
		return err == nil
	}, func() string { return "no rules published" })
	if len(rules.GetRules()) != len(alert.Rules) || len(rules.GetChannels()) != 4 {
		t.Errorf("published %d rules, %d channels; want %d and 4", len(rules.GetRules()), len(rules.GetChannels()), len(alert.Rules))
	}
	alerttest.Eventually(t, 10*time.Second, func() bool {
		_, err := alerts.Get(ctx, key, &cofferv1.AlertState{})
		return errors.Is(err, catalog.ErrNotFound)
	}, func() string { return "the old resolved alert is still there" })
}
