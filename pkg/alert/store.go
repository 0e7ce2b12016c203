package alert

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/catalog"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// SettingsKey is the key of the settings in the `alert_settings` bucket.
const SettingsKey = "settings"

// Notification states: what a pending notification says.
const (
	Opened   = "open"
	Resolved = "resolved"
)

// Store keeps the alerts and their settings in the catalog. It is safe for
// concurrent use, by several processes too: every change is a
// compare-and-set.
type Store struct {
	alerts   *catalog.Bucket
	settings *catalog.Bucket
	// rules is where the rules and channels are published, without
	// secrets.
	rules *catalog.Bucket
}

// NewStore returns the store over cat's `alerts`, `alert_settings` and
// `alert_rules` buckets (as topology.Setup opens them).
func NewStore(cat *catalog.Catalog) *Store {
	return &Store{alerts: cat.Bucket(cofferv1.BucketAlerts), settings: cat.Bucket(cofferv1.BucketAlertSettings),
		rules: cat.Bucket(cofferv1.BucketAlertRules)}
}

// Settings reads the settings, first writing the defaults when there are
// none.
func (s *Store) Settings(ctx context.Context) (*cofferv1.AlertSettings, error) {
	for {
		var st cofferv1.AlertSettings
		_, err := s.settings.Get(ctx, SettingsKey, &st)
		if err == nil {
			return &st, nil
		}
		if !errors.Is(err, catalog.ErrNotFound) {
			return nil, fmt.Errorf("read alert settings: %w", err)
		}
		def := DefaultSettings()
		_, err = s.settings.Create(ctx, SettingsKey, def)
		if err == nil {
			return def, nil
		}
		if !errors.Is(err, catalog.ErrExists) {
			return nil, fmt.Errorf("write default alert settings: %w", err)
		}
	}
}

// Get reads the alert stored under key.
func (s *Store) Get(ctx context.Context, key string) (*cofferv1.AlertState, error) {
	var st cofferv1.AlertState
	if _, err := s.alerts.Get(ctx, key, &st); err != nil {
		return nil, fmt.Errorf("read alert %s: %w", key, err)
	}
	return &st, nil
}

// Apply records c. When c opens an alert that is not open (and its rule
// is on), or resolves one that is, it returns the alert as stored, with
// its notification pending when a person is to be told: an opening is
// told when notify is set, a resolution when its opening was. Otherwise
// (the alert already open, a replay of the event that opened it, a change
// older than the alert's last one) it returns nil.
func (s *Store) Apply(ctx context.Context, c Change, on, notify bool, now time.Time) (*cofferv1.AlertState, error) {
	if c.At.IsZero() {
		c.At = now
	}
	key := c.Key()
	for {
		var cur cofferv1.AlertState
		rev, err := s.alerts.Get(ctx, key, &cur)
		found := err == nil
		if err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return nil, fmt.Errorf("read alert %s: %w", key, err)
		}
		var prev *cofferv1.AlertState
		if found {
			prev = &cur
		}
		next := decide(prev, c, on, notify, now)
		if next == nil {
			return nil, nil
		}
		if found {
			_, err = s.alerts.Update(ctx, key, next, rev)
		} else {
			_, err = s.alerts.Create(ctx, key, next)
		}
		if errors.Is(err, catalog.ErrConflict) || errors.Is(err, catalog.ErrExists) {
			continue // another replica changed it: decide again on its change
		}
		if err != nil {
			return nil, fmt.Errorf("record alert %s: %w", key, err)
		}
		return next, nil
	}
}

// decide is the alert after c, or nil when c changes nothing.
func decide(cur *cofferv1.AlertState, c Change, on, notify bool, now time.Time) *cofferv1.AlertState {
	if c.Open {
		if !on || cur != nil && (cur.GetOpen() || cur.GetOpenedBy() == c.By || c.At.Before(cur.GetResolvedAt().AsTime())) {
			return nil
		}
		next := &cofferv1.AlertState{
			Rule: string(c.Rule), Instance: c.Instance, Database: c.Database, Vault: c.Vault, Kind: c.Kind, Open: true,
			Summary: c.Summary, Detail: c.Detail, OpenedAt: timestamppb.New(c.At), OpenedBy: c.By, Notify: notify,
		}
		if c.Notice { // sent once, closed at once: nothing will resolve it
			next.Open, next.ResolvedAt, next.ResolvedBy = false, next.OpenedAt, c.By
		}
		if notify {
			next.Pending, next.PendingSince = Opened, timestamppb.New(now)
		}
		return next
	}
	if cur == nil || !cur.GetOpen() || c.At.Before(cur.GetOpenedAt().AsTime()) {
		return nil
	}
	next := proto.CloneOf(cur)
	next.Open, next.ResolvedAt, next.ResolvedBy, next.Delivered = false, timestamppb.New(c.At), c.By, nil
	next.Pending, next.PendingSince = "", nil
	if cur.GetNotify() {
		next.Pending, next.PendingSince = Resolved, timestamppb.New(now)
	}
	return next
}

// NotificationID names the notification st has pending: what it says and
// the event that caused it.
func NotificationID(st *cofferv1.AlertState) string {
	if st.GetPending() == Resolved {
		return Resolved + ":" + st.GetResolvedBy()
	}
	return st.GetPending() + ":" + st.GetOpenedBy()
}

// update changes the alert under key with fn while its pending
// notification is id; it reports false when it no longer is.
func (s *Store) update(ctx context.Context, key, id string, fn func(*cofferv1.AlertState)) (bool, error) {
	for {
		var st cofferv1.AlertState
		rev, err := s.alerts.Get(ctx, key, &st)
		if err != nil {
			return false, fmt.Errorf("read alert %s: %w", key, err)
		}
		if st.GetPending() == "" || NotificationID(&st) != id {
			return false, nil
		}
		fn(&st)
		_, err = s.alerts.Update(ctx, key, &st, rev)
		if errors.Is(err, catalog.ErrConflict) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("record alert %s: %w", key, err)
		}
		return true, nil
	}
}

// Delivered records that channel took the notification id of the alert
// under key, so that it is not sent there again.
func (s *Store) Delivered(ctx context.Context, key, id, channel string) error {
	_, err := s.update(ctx, key, id, func(st *cofferv1.AlertState) {
		if !slices.Contains(st.Delivered, channel) {
			st.Delivered = append(st.Delivered, channel)
		}
	})
	return err
}

// Done records that every channel took the notification id of the alert
// under key.
func (s *Store) Done(ctx context.Context, key, id string) error {
	_, err := s.update(ctx, key, id, func(st *cofferv1.AlertState) {
		st.Pending, st.PendingSince, st.Delivered = "", nil, nil
	})
	return err
}

// Claim takes over the notifications pending since before `before` (a
// process sending them stopped, or gave up): it marks each claimed at now
// and returns them by key. Of several replicas claiming at once, one gets
// each.
func (s *Store) Claim(ctx context.Context, before, now time.Time) (map[string]*cofferv1.AlertState, error) {
	var stale []string
	err := s.alerts.List(ctx, "", func() proto.Message { return &cofferv1.AlertState{} }, func(key string, m proto.Message) error {
		st := m.(*cofferv1.AlertState)
		if st.GetPending() != "" && st.GetPendingSince().AsTime().Before(before) {
			stale = append(stale, key)
		}
		return nil
	})
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	out := map[string]*cofferv1.AlertState{}
	for _, key := range stale {
		var st cofferv1.AlertState
		rev, err := s.alerts.Get(ctx, key, &st)
		if err != nil {
			return out, fmt.Errorf("read alert %s: %w", key, err)
		}
		if st.GetPending() == "" || !st.GetPendingSince().AsTime().Before(before) {
			continue
		}
		st.PendingSince = timestamppb.New(now)
		if _, err := s.alerts.Update(ctx, key, &st, rev); errors.Is(err, catalog.ErrConflict) {
			continue // another replica claimed it, or the alert changed
		} else if err != nil {
			return out, fmt.Errorf("claim alert %s: %w", key, err)
		}
		out[key] = &st
	}
	return out, nil
}

// Renew takes the sending of held's pending notification, as held
// shows it (its pending_since is the claim), marking it claimed at now;
// it returns the record as stored, or nil when the notification was sent,
// replaced or claimed by another since held was read.
func (s *Store) Renew(ctx context.Context, key string, held *cofferv1.AlertState, now time.Time) (*cofferv1.AlertState, error) {
	for {
		var st cofferv1.AlertState
		rev, err := s.alerts.Get(ctx, key, &st)
		if err != nil {
			return nil, fmt.Errorf("read alert %s: %w", key, err)
		}
		if st.GetPending() == "" || NotificationID(&st) != NotificationID(held) ||
			!st.GetPendingSince().AsTime().Equal(held.GetPendingSince().AsTime()) {
			return nil, nil
		}
		st.PendingSince = timestamppb.New(now)
		_, err = s.alerts.Update(ctx, key, &st, rev)
		if errors.Is(err, catalog.ErrConflict) {
			continue // a channel recorded, or another claimed: look again
		}
		if err != nil {
			return nil, fmt.Errorf("claim alert %s: %w", key, err)
		}
		return &st, nil
	}
}

// OpenKeys returns the open alerts of rule by key.
func (s *Store) OpenKeys(ctx context.Context, rule Rule) (map[string]*cofferv1.AlertState, error) {
	out := map[string]*cofferv1.AlertState{}
	err := s.alerts.List(ctx, catalog.Key(string(rule)), func() proto.Message { return &cofferv1.AlertState{} },
		func(key string, m proto.Message) error {
			if st := m.(*cofferv1.AlertState); st.GetOpen() {
				out[key] = st
			}
			return nil
		})
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return nil, fmt.Errorf("list %s alerts: %w", rule, err)
	}
	return out, nil
}
