package scheduler

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/policy"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// sweepRetention asks the committer to delete the recovery points whose
// retention has ended and that no kept point depends on (a full lives
// until the last log or differential that needs it expires). It runs at
// most every RetentionInterval.
func (s *Service) sweepRetention(ctx context.Context, now time.Time) error {
	s.sweepMu.Lock()
	if !s.lastSweep.IsZero() && now.Sub(s.lastSweep) < s.cfg.RetentionInterval {
		s.sweepMu.Unlock()
		return nil
	}
	s.lastSweep = now
	s.sweepMu.Unlock()

	type dbPoints struct {
		ref    *cofferv1.DatabaseRef
		points []policy.Point
	}
	byDB := map[string]*dbPoints{}
	err := s.rps.List(ctx, "", func() proto.Message { return &cofferv1.RecoveryPoint{} }, func(key string, m proto.Message) error {
		rp := m.(*cofferv1.RecoveryPoint)
		s.last.saw(rp)
		parts, err := catalog.SplitKey(key)
		if err != nil || len(parts) != 3 {
			return nil
		}
		pt, err := policy.PointFromRecord(rp)
		if err != nil {
			s.cfg.Logger.WarnContext(ctx, "recovery point not understood; kept", "recovery_point", rp.GetId(), "err", err)
			pt.Expires = time.Time{} // never expired when not understood
		}
		dk := catalog.Key(parts[0], parts[1])
		if byDB[dk] == nil {
			byDB[dk] = &dbPoints{ref: rp.GetDatabase()}
		}
		byDB[dk].points = append(byDB[dk].points, pt)
		return nil
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range byDB {
		_, expire := policy.Retain(d.points, now)
		if len(expire) == 0 {
			continue
		}
		sort.Strings(expire)
		// the latest expiry among them tells apart a later expiry of the
		// same points: those kept on in a copy expire again when it ends
		var latest time.Time
		for _, pt := range d.points {
			if slices.Contains(expire, pt.ID) && pt.Expires.After(latest) {
				latest = pt.Expires
			}
		}
		id := event.ID("expire", d.ref.GetInstance(), d.ref.GetDatabase(), strings.Join(expire, ","), latest.UTC().Format(time.RFC3339Nano))
		ev := &cofferv1.RecoveryPointsExpired{Meta: event.Meta(id, event.DerivedJobID(now, "expire", id), now),
			Database: d.ref, RecoveryPoints: expire}
		if err := s.bus.Publish(ctx, cofferv1.SubjectRecoveryPointsExpired, ev, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
