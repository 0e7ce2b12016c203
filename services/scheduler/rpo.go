package scheduler

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/metrics"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// lastBackups remembers when each database's last committed backup
// ended, for its RPO lag. It learns them from the recovery points once
// (the first scrape lists them), then from every commit and every
// retention sweep, which lists them anyway.
type lastBackups struct {
	mu     sync.Mutex
	seeded bool
	at     map[string]time.Time // by catalog.Key(instance, database)
}

// backupEnd is when the backup of rp ended, or when rp was committed for
// a recovery point that does not say.
func backupEnd(rp *cofferv1.RecoveryPoint) time.Time {
	if rp.GetBackup().GetBackupFinish() == nil {
		return rp.GetCommittedAt().AsTime()
	}
	return rp.GetBackup().GetBackupFinish().AsTime()
}

// saw records rp, a committed recovery point.
func (l *lastBackups) saw(rp *cofferv1.RecoveryPoint) {
	t := backupEnd(rp)
	key := catalog.Key(rp.GetDatabase().GetInstance(), rp.GetDatabase().GetDatabase())
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at == nil {
		l.at = map[string]time.Time{}
	}
	if t.After(l.at[key]) {
		l.at[key] = t
	}
}

// RPOLag reports, for every protected database, the time since its last
// committed backup (full, differential or log) ended, or since it was
// protected when it has none yet. It reads the fleet's copy of the
// schedules, which record each commit whichever replica handled it, and,
// the first time, the recovery points (for schedules written before they
// recorded it).
func (s *Service) RPOLag(ctx context.Context) ([]metrics.RPOLag, error) {
	s.last.mu.Lock()
	seeded := s.last.seeded
	s.last.mu.Unlock()
	if !seeded {
		err := s.rps.List(ctx, "", func() proto.Message { return &cofferv1.RecoveryPoint{} }, func(_ string, m proto.Message) error {
			s.last.saw(m.(*cofferv1.RecoveryPoint))
			return nil
		})
		if err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return nil, err
		}
		s.last.mu.Lock()
		s.last.seeded = true
		s.last.mu.Unlock()
	}
	now := s.cfg.Now()
	var out []metrics.RPOLag
	s.fleet.each(func(key string, st *cofferv1.ScheduleState, item *cofferv1.ProtectedItem) {
		if item.GetState() != cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED {
			return
		}
		s.last.mu.Lock()
		since, ok := s.last.at[key]
		s.last.mu.Unlock()
		if at := timeOf(st.GetLastBackupAt()); at.After(since) {
			since, ok = at, true
		}
		if !ok {
			since = item.GetProtectedAt().AsTime()
		}
		out = append(out, metrics.RPOLag{Instance: st.GetDatabase().GetInstance(), Database: st.GetDatabase().GetDatabase(),
			Lag: max(now.Sub(since), 0)})
	})
	return out, nil
}
