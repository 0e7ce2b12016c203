package gateway

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/alert"
	"github.com/cofferhq/coffer/pkg/catalog"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Alert is an alert the alerter raised (docs/alerts.md), open or
// resolved.
type Alert struct {
	// Key is the alert's key in the alerts bucket: its rule and subject.
	Key string `json:"key"`
	// Rule is job_failed, chain_break, rpo, verify_failed,
	// instance_unhealthy or vault_check_failed.
	Rule     string `json:"rule"`
	Instance string `json:"instance,omitempty"`
	Database string `json:"database,omitempty"`
	// Vault is the vault a vault_check_failed alert is about.
	Vault string `json:"vault,omitempty"`
	// Kind is the failed job's kind, for job_failed.
	Kind    string `json:"kind,omitempty"`
	Open    bool   `json:"open"`
	Summary string `json:"summary"`
	Detail  string `json:"detail,omitempty"`
	// Notice: a failure nothing reports cleared, sent once and closed at
	// once.
	Notice     bool       `json:"notice,omitempty"`
	OpenedAt   time.Time  `json:"opened_at"`
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
	// Notified: the alert was sent (an alert opened by an event too old
	// is recorded only). Pending is the notification not yet taken by
	// every channel ("open" or "resolved"), Delivered the channels that
	// have it.
	Notified  bool     `json:"notified"`
	Pending   string   `json:"pending,omitempty"`
	Delivered []string `json:"delivered,omitempty"`
}

// AlertRules are the alert rules and where alerts go, as the alerter
// publishes them: no channel's secret (a webhook is its kind and host).
type AlertRules struct {
	Rules    []AlertRule    `json:"rules"`
	Channels []AlertChannel `json:"channels"`
	// ResolvedRetentionSeconds is how long a resolved alert is kept.
	ResolvedRetentionSeconds int64 `json:"resolved_retention_seconds,omitempty"`
	// Published says whether the alerter has published them: false when
	// no alerter has run, and then every list is empty.
	Published bool `json:"published"`
}

// AlertRule is one rule: every rule that is on is sent to every channel.
type AlertRule struct {
	Name        string `json:"name"`
	Enabled     bool   `json:"enabled"`
	Description string `json:"description,omitempty"`
	// Channels names the channels its alerts go to.
	Channels []string `json:"channels"`
}

// AlertChannel is one place alerts go.
type AlertChannel struct {
	Name string `json:"name"`
	// Kind is json, slack, teams (webhooks) or email.
	Kind string `json:"kind"`
	// Host is a webhook's host, or the mail server's host and port.
	Host string   `json:"host,omitempty"`
	To   []string `json:"to,omitempty"`
	// Source is flags (the alerter's flags) or settings (the
	// alert_settings bucket).
	Source string `json:"source,omitempty"`
	// Problem says why nothing is sent there (a mail channel with no SMTP
	// server); empty when alerts go there.
	Problem string `json:"problem,omitempty"`
}

func alertFromProto(key string, st *cofferv1.AlertState) Alert {
	a := Alert{Key: key, Rule: st.GetRule(), Instance: st.GetInstance(), Database: st.GetDatabase(), Vault: st.GetVault(),
		Kind: jobKinds[st.GetKind()], Open: st.GetOpen(), Summary: st.GetSummary(), Detail: st.GetDetail(),
		Notified: st.GetNotify(), Pending: st.GetPending(), Delivered: st.GetDelivered()}
	if t := st.GetOpenedAt(); t != nil {
		a.OpenedAt = t.AsTime()
	}
	if !st.GetOpen() {
		a.ResolvedAt = ts(st.GetResolvedAt())
		a.Notice = st.GetResolvedBy() != "" && st.GetResolvedBy() == st.GetOpenedBy()
	}
	return a
}

// changed is when an alert last changed: its resolution, or its opening.
func (a Alert) changed() time.Time {
	if a.ResolvedAt != nil {
		return *a.ResolvedAt
	}
	return a.OpenedAt
}

// listAlerts lists the alerts, newest change first: ?open=true keeps the
// open ones, ?limit=N the first N.
func (s *Service) listAlerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	onlyOpen := false
	if v := q.Get("open"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "open=%q: want true or false", v)
			return
		}
		onlyOpen = b
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit=%q: want a positive number", v)
			return
		}
		limit = n
	}
	out := []Alert{}
	err := s.cat.Bucket(cofferv1.BucketAlerts).List(r.Context(), "", func() proto.Message { return &cofferv1.AlertState{} },
		func(key string, m proto.Message) error {
			if st := m.(*cofferv1.AlertState); !onlyOpen || st.GetOpen() {
				out = append(out, alertFromProto(key, st))
			}
			return nil
		})
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		s.unavailable(w, r, err)
		return
	}
	slices.SortStableFunc(out, func(a, b Alert) int {
		if c := b.changed().Compare(a.changed()); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	writeJSON(w, http.StatusOK, out)
}

// listAlertRules answers the rules and channels the alerter published.
func (s *Service) listAlertRules(w http.ResponseWriter, r *http.Request) {
	var pub cofferv1.AlertRules
	out := AlertRules{Rules: []AlertRule{}, Channels: []AlertChannel{}}
	_, err := s.cat.Bucket(cofferv1.BucketAlertRules).Get(r.Context(), alert.RulesKey, &pub)
	if errors.Is(err, catalog.ErrNotFound) {
		writeJSON(w, http.StatusOK, out)
		return
	}
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	out.Published, out.ResolvedRetentionSeconds = true, pub.GetResolvedRetentionSeconds()
	names := []string{}
	for _, c := range pub.GetChannels() {
		out.Channels = append(out.Channels, AlertChannel{Name: c.GetName(), Kind: c.GetKind(), Host: c.GetHost(), To: c.GetTo(),
			Source: c.GetSource(), Problem: c.GetProblem()})
		if c.GetProblem() == "" {
			names = append(names, c.GetName())
		}
	}
	for _, rl := range pub.GetRules() {
		rule := AlertRule{Name: rl.GetName(), Enabled: rl.GetEnabled(), Description: rl.GetDescription(), Channels: []string{}}
		if rl.GetEnabled() {
			rule.Channels = names
		}
		out.Rules = append(out.Rules, rule)
	}
	writeJSON(w, http.StatusOK, out)
}
