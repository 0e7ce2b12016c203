package alert

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/catalog"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// RulesKey is the key of the published rules in the `alert_rules` bucket.
const RulesKey = "rules"

// ResolvedRetention is how long a resolved alert (a notice included) is
// kept before the sweep deletes it, so that the `alerts` bucket does not
// grow forever. It is longer than the streams keep events (7 days): an
// event replayed from them still finds the alert it resolved, and does
// not open it again. Open alerts are kept until they resolve.
const ResolvedRetention = 30 * 24 * time.Hour

// Descriptions say what opens each rule, as the dashboard shows it.
var Descriptions = map[Rule]string{
	JobFailed:         "a job failed: backup, protection, restore, test restore, discovery; a failure nothing resolves is sent once",
	ChainBreak:        "a database's log chain broke; resolved by its next full that is not copy-only",
	RPO:               "a protected database has no backup within twice its policy's interval",
	VerifyFailed:      "a test restore (or its DBCC CHECKDB) failed",
	InstanceUnhealthy: "discovery cannot reach an instance; the alert says why and the fix",
	VaultCheckFailed:  "coffer vault check found damage in a vault, or could not finish",
}

// describer is a channel that can say where it sends without its
// secrets.
type describer interface {
	Info() *cofferv1.AlertChannelInfo
}

// Info names the webhook by its kind and host: its URL often holds a
// token, so neither its path nor its query is shown.
func (w *Webhook) Info() *cofferv1.AlertChannelInfo {
	kind := w.Format
	if kind == "" {
		kind = FormatJSON
	}
	info := &cofferv1.AlertChannelInfo{Name: w.ChannelName, Kind: kind}
	if u, err := url.Parse(w.URL); err == nil {
		info.Host = u.Host // never u.User: a password may be there
	}
	return info
}

// Info names the mail channel by its server and recipients.
func (m *Mail) Info() *cofferv1.AlertChannelInfo {
	host := m.Server.Host
	if m.Server.Port != 0 {
		host = net.JoinHostPort(host, strconv.Itoa(m.Server.Port))
	}
	return &cofferv1.AlertChannelInfo{Name: m.ChannelName, Kind: FormatEmail, Host: host, To: m.To}
}

// channelInfo describes ch, set in source; a channel that cannot
// describe itself is named only.
func channelInfo(ch Channel, source string) *cofferv1.AlertChannelInfo {
	info := &cofferv1.AlertChannelInfo{Name: ch.Name()}
	if d, ok := ch.(describer); ok {
		info = d.Info()
	}
	info.Source = source
	return info
}

// Published is what the alerter publishes of its configuration under
// settings: every rule, on or off, and the flags' channels and the
// settings', without secrets.
func (a *Alerter) Published(settings *cofferv1.AlertSettings) *cofferv1.AlertRules {
	out := &cofferv1.AlertRules{ResolvedRetentionSeconds: int64(ResolvedRetention / time.Second)}
	for _, r := range Rules {
		out.Rules = append(out.Rules, &cofferv1.AlertRuleInfo{Name: string(r), Enabled: enabled(settings, r), Description: Descriptions[r]})
	}
	for _, ch := range a.cfg.Channels {
		out.Channels = append(out.Channels, channelInfo(ch, "flags"))
	}
	for _, c := range settings.GetChannels() {
		info := channelInfo(&Webhook{ChannelName: c.GetName(), URL: c.GetUrl(), Format: c.GetFormat()}, "settings")
		if c.GetFormat() == FormatEmail {
			info = &cofferv1.AlertChannelInfo{Name: c.GetName(), Kind: FormatEmail, To: c.GetTo(), Source: "settings",
				Problem: "no SMTP server: give the alerter --alert-smtp-host"}
			if a.cfg.SMTP != nil {
				info = channelInfo(&Mail{ChannelName: c.GetName(), Server: *a.cfg.SMTP, To: c.GetTo()}, "settings")
			}
		}
		out.Channels = append(out.Channels, info)
	}
	return out
}

// PublishRules writes the rules and channels the alerter uses into the
// `alert_rules` bucket when they differ from what is there, for the
// gateway to show (it may not read `alert_settings`, whose webhook URLs
// hold tokens).
func (a *Alerter) PublishRules(ctx context.Context) error {
	settings, err := a.store.Settings(ctx)
	if err != nil {
		return err
	}
	next := a.Published(settings)
	var cur cofferv1.AlertRules
	_, err = a.store.rules.Get(ctx, RulesKey, &cur)
	if err == nil && proto.Equal(&cur, next) {
		return nil
	}
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return fmt.Errorf("read published alert rules: %w", err)
	}
	if _, err := a.store.rules.Put(ctx, RulesKey, next); err != nil {
		return fmt.Errorf("publish alert rules: %w", err)
	}
	return nil
}

// Prune deletes the alerts resolved before `before` whose notification
// is no longer pending, and returns how many it deleted. An alert that
// changes meanwhile (opened again) is kept: each delete is conditional on
// the revision that was read.
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	var old []string
	err := s.alerts.List(ctx, "", func() proto.Message { return &cofferv1.AlertState{} }, func(key string, m proto.Message) error {
		if prunable(m.(*cofferv1.AlertState), before) {
			old = append(old, key)
		}
		return nil
	})
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return 0, fmt.Errorf("list alerts: %w", err)
	}
	n := 0
	for _, key := range old {
		var st cofferv1.AlertState
		rev, err := s.alerts.Get(ctx, key, &st)
		if errors.Is(err, catalog.ErrNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("read alert %s: %w", key, err)
		}
		if !prunable(&st, before) {
			continue
		}
		if err := s.alerts.DeleteIf(ctx, key, rev); errors.Is(err, catalog.ErrConflict) {
			continue // changed since it was read: kept
		} else if err != nil {
			return n, fmt.Errorf("delete alert %s: %w", key, err)
		}
		n++
	}
	return n, nil
}

// prunable reports whether st was resolved before `before`, with nothing
// left to send.
func prunable(st *cofferv1.AlertState, before time.Time) bool {
	return !st.GetOpen() && st.GetPending() == "" && st.GetResolvedAt() != nil && st.GetResolvedAt().AsTime().Before(before)
}
