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

// saw records rp, a committed recovery point.
func (l *lastBackups) saw(rp *cofferv1.RecoveryPoint) {
	t := rp.GetBackup().GetBackupFinish().AsTime()
	if rp.GetBackup().GetBackupFinish() == nil {
		t = rp.GetCommittedAt().AsTime()
	}
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
// protected when it has none yet. It reads the protections (one listing)
// and, the first time, the recovery points.
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
	items := map[string]*cofferv1.ProtectedItem{}
	if err := listInto(ctx, s.protected, func() *cofferv1.ProtectedItem { return &cofferv1.ProtectedItem{} }, items); err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	s.last.mu.Lock()
	defer s.last.mu.Unlock()
	out := make([]metrics.RPOLag, 0, len(items))
	for key, it := range items {
		if it.GetState() != cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED {
			continue
		}
		since, ok := s.last.at[key]
		if !ok {
			since = it.GetProtectedAt().AsTime()
		}
		out = append(out, metrics.RPOLag{Instance: it.GetDatabase().GetInstance(), Database: it.GetDatabase().GetDatabase(),
			Lag: max(now.Sub(since), 0)})
	}
	return out, nil
}
