package alert_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/alert"
	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// TestPublishRules: the rules and channels are published for the
// gateway, each channel by its kind and host, never its URL's path or
// query (a webhook's token) nor any password; a change of the settings
// is published on the next call.
func TestPublishRules(t *testing.T) {
	env := topologytest.Start(t, bus.Config{})
	const token = "T000/B000/secret-token"
	a := newAlerter(t, env.Catalog, alert.Config{
		Channels: []alert.Channel{
			&alert.Webhook{ChannelName: "slack-1", URL: "https://user:pw@hooks.slack.example/services/" + token, Format: alert.FormatSlack},
			&alert.Mail{ChannelName: "mail", Server: alert.SMTP{Host: "smtp.example", Port: 587, Password: "mail-password"}, To: []string{"dba@example.com"}},
		},
		SMTP: &alert.SMTP{Host: "smtp.example", Port: 587, TLS: alert.StartTLS, From: "coffer@example.com"},
	})
	ctx := t.Context()
	if err := a.PublishRules(ctx); err != nil {
		t.Fatal(err)
	}
	rules := env.Catalog.Bucket(cofferv1.BucketAlertRules)
	var got cofferv1.AlertRules
	rev1, err := rules.Get(ctx, alert.RulesKey, &got)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetRules()) != len(alert.Rules) || got.GetResolvedRetentionSeconds() != int64(alert.ResolvedRetention/time.Second) {
		t.Errorf("published %v; want every rule and the retention", &got)
	}
	for _, r := range got.GetRules() {
		if !r.GetEnabled() || r.GetDescription() == "" {
			t.Errorf("rule %v; want it on, with a description", r)
		}
	}
	want := []string{"slack-1 slack hooks.slack.example [] flags", "mail email smtp.example:587 [dba@example.com] flags"}
	if s := channelLines(&got); strings.Join(s, "|") != strings.Join(want, "|") {
		t.Errorf("channels %q; want %q", s, want)
	}
	text := protojson.Format(&got)
	for _, secret := range []string{"secret-token", "services", "pw", "mail-password"} {
		if strings.Contains(text, secret) {
			t.Errorf("published rules hold %q: %s", secret, text)
		}
	}

	// unchanged: not written again
	if err := a.PublishRules(ctx); err != nil {
		t.Fatal(err)
	}
	if rev, _ := rules.Get(ctx, alert.RulesKey, &got); rev != rev1 {
		t.Errorf("unchanged rules written again: revision %d; want %d", rev, rev1)
	}

	// a rule turned off and a channel added in the settings
	s, err := a.Store().Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Rules[1].Enabled = false // chain_break
	s.Channels = []*cofferv1.AlertChannel{{Name: "teams-ops", Format: alert.FormatTeams, Url: "https://teams.example/workflows/" + token}}
	if _, err := env.Catalog.Bucket(cofferv1.BucketAlertSettings).Put(ctx, alert.SettingsKey, s); err != nil {
		t.Fatal(err)
	}
	if err := a.PublishRules(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rules.Get(ctx, alert.RulesKey, &got); err != nil {
		t.Fatal(err)
	}
	if r := got.GetRules()[1]; r.GetName() != string(alert.ChainBreak) || r.GetEnabled() {
		t.Errorf("rule %v; want chain_break off", r)
	}
	if s := channelLines(&got); len(s) != 3 || s[2] != "teams-ops teams teams.example [] settings" {
		t.Errorf("channels %q; want the settings' Teams webhook last, by its host", s)
	}
	if strings.Contains(protojson.Format(&got), "secret-token") {
		t.Errorf("published rules hold the settings' webhook token")
	}
}

// TestPublishedMailWithoutServer: a mail channel of the settings, on an
// alerter given no SMTP server, is published with the problem, not as a
// place alerts go.
func TestPublishedMailWithoutServer(t *testing.T) {
	env := topologytest.Start(t, bus.Config{})
	a := newAlerter(t, env.Catalog, alert.Config{})
	s := alert.DefaultSettings()
	s.Channels = []*cofferv1.AlertChannel{{Name: "ops-mail", Format: alert.FormatEmail, To: []string{"ops@example.com"}}}
	got := a.Published(s).GetChannels()
	if len(got) != 1 || got[0].GetProblem() == "" || got[0].GetHost() != "" || strings.Join(got[0].GetTo(), ",") != "ops@example.com" {
		t.Errorf("published %v; want the mail channel with its problem", got)
	}
}

func channelLines(r *cofferv1.AlertRules) []string {
	var out []string
	for _, c := range r.GetChannels() {
		out = append(out, c.GetName()+" "+c.GetKind()+" "+c.GetHost()+" ["+strings.Join(c.GetTo(), ",")+"] "+c.GetSource())
	}
	return out
}

// TestPrune: resolved alerts older than the cut are deleted, open ones
// and those with a notification still pending are kept, and a pruned
// alert's condition opens it anew.
func TestPrune(t *testing.T) {
	env := topologytest.Start(t, bus.Config{})
	a := newAlerter(t, env.Catalog, alert.Config{})
	ctx := t.Context()
	now := time.Now()
	old := now.Add(-40 * 24 * time.Hour)
	ref := func(db string) *cofferv1.DatabaseRef { return &cofferv1.DatabaseRef{Instance: "sql1", Database: db} }
	chainBroken := func(id, db string, at time.Time) []alert.Change {
		return alert.OnChainBroken(&cofferv1.ChainBroken{Meta: &cofferv1.EventMeta{EventId: id, Time: timestamppb.New(at)}, Database: ref(db)})
	}
	full := func(id, db string, at time.Time) []alert.Change {
		rp := committed(id, at, cofferv1.BackupType_BACKUP_TYPE_FULL)
		rp.RecoveryPoint.Database = ref(db)
		return alert.OnCommitted(rp)
	}
	apply(t, a, chainBroken("o1", "OldResolved", old))
	apply(t, a, full("f1", "OldResolved", old.Add(time.Hour)))
	apply(t, a, chainBroken("o2", "OldOpen", old))
	apply(t, a, chainBroken("o3", "NewResolved", now.Add(-time.Hour)))
	apply(t, a, full("f3", "NewResolved", now))
	a.Wait()

	n, err := a.Store().Prune(ctx, now.Add(-alert.ResolvedRetention))
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("pruned %d alerts; want 1", n)
	}
	key := func(db string) string { return chainBroken("x", db, now)[0].Key() }
	if _, err := a.Store().Get(ctx, key("OldResolved")); err == nil {
		t.Error("an alert resolved 40 days ago is kept")
	}
	for _, db := range []string{"OldOpen", "NewResolved"} {
		if _, err := a.Store().Get(ctx, key(db)); err != nil {
			t.Errorf("alert of %s: %v; want it kept", db, err)
		}
	}
	// the pruned alert opens again on a new break
	apply(t, a, chainBroken("o4", "OldResolved", now))
	if st, err := a.Store().Get(ctx, key("OldResolved")); err != nil || !st.GetOpen() {
		t.Errorf("after a new break: %v, %v; want the alert open", st, err)
	}
}
