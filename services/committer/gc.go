package committer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/telemetry"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// expire deletes recovery points whose retention ended: the manifest first
// (after which the backup no longer exists), then the catalog record. The
// deletion is a job of its own, with what was deleted.
func (s *Service) expire(ctx context.Context, e *cofferv1.RecoveryPointsExpired) error {
	db := e.GetDatabase()
	var deleted []string
	for _, id := range e.GetRecoveryPoints() {
		if err := s.vault.DeleteManifest(ctx, id); err != nil && !errors.Is(err, blob.ErrNotExist) {
			return fmt.Errorf("delete manifest %s: %w", id, err)
		}
		if err := s.rps.Delete(ctx, catalog.Key(db.GetInstance(), db.GetDatabase(), id)); err != nil {
			return fmt.Errorf("delete recovery point %s: %w", id, err)
		}
		deleted = append(deleted, id)
	}
	jid := e.GetMeta().GetJobId()
	if jid == "" {
		jid = event.DerivedJobID(e.GetMeta().GetTime().AsTime(), "expire", e.GetMeta().GetEventId())
	}
	now := s.cfg.Now()
	j := &cofferv1.Job{Id: jid, Kind: cofferv1.JobKind_JOB_KIND_DELETE, State: cofferv1.JobState_JOB_STATE_SUCCEEDED,
		Database: db, Percent: 100, Step: "expired", CreatedAt: timestamppb.New(now), UpdatedAt: timestamppb.New(now),
		Detail: fmt.Sprintf("deleted %d expired recovery point(s): %s; their chunks are freed by the next garbage collection",
			len(deleted), strings.Join(deleted, ", "))}
	if _, err := s.jobs.Put(ctx, catalog.Key(jid), j); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "recovery points expired", slog.String("instance", db.GetInstance()),
		slog.String("database", db.GetDatabase()), slog.Int("count", len(deleted)))
	return nil
}

// collector deletes chunks that no manifest references, in two phases so
// that a running backup never loses a chunk it is about to reference: a
// chunk is a candidate when a collection finds it unreferenced; it is
// deleted by a collection at least the grace period later that still finds
// it unreferenced and runs while no backup is queued or running (so any
// backup that could have meant to reference it has committed its manifest
// or failed). A backup that deduplicated
// against a chunk deleted in the instant between that check and the
// deletion fails its commit (the manifest's chunks are verified), visibly,
// and never becomes a recovery point that cannot be restored.
type collector struct {
	mu         sync.Mutex
	candidates map[string]time.Time // chunk id -> when first found unreferenced
}

// CollectGarbage runs one collection at now and returns what it freed.
func (s *Service) CollectGarbage(ctx context.Context, now time.Time) (chunks int, bytes int64, err error) {
	s.gc.mu.Lock()
	defer s.gc.mu.Unlock()
	if s.gc.candidates == nil {
		s.gc.candidates = map[string]time.Time{}
	}
	live := map[string]bool{}
	err = s.vault.ListManifests(ctx, func(id string) error {
		m, err := s.vault.GetManifest(ctx, id)
		if err != nil {
			// a manifest that cannot be read still protects its chunks:
			// give up this round rather than delete what it might need
			return fmt.Errorf("read manifest %s: %w", id, err)
		}
		for _, c := range m.Chunks {
			live[c.ID] = true
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	busy, err := s.backupsInFlight(ctx, now)
	if err != nil {
		return 0, 0, err
	}
	var doomed []vault.ChunkInfo
	seen := map[string]bool{}
	err = s.vault.ListChunks(ctx, func(c vault.ChunkInfo) error {
		if live[c.ID] {
			return nil
		}
		seen[c.ID] = true
		first, ok := s.gc.candidates[c.ID]
		if !ok {
			s.gc.candidates[c.ID] = now
			return nil
		}
		if !busy && now.Sub(first) >= s.cfg.GCGrace {
			doomed = append(doomed, c)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	for id := range s.gc.candidates {
		if !seen[id] {
			delete(s.gc.candidates, id) // referenced again, or gone
		}
	}
	if len(doomed) == 0 && busy {
		return 0, 0, nil
	}
	ids := make(map[string]bool, len(doomed))
	for _, c := range doomed {
		ids[c.ID] = true
	}
	// packs no index lists and older than the grace period belong to no
	// backup in flight (none is, when busy is false)
	orphansBefore := time.Time{}
	if !busy {
		orphansBefore = now.Add(-s.cfg.GCGrace)
	}
	st, err := s.vault.Collect(ctx, ids, orphansBefore)
	if err != nil {
		return 0, 0, err
	}
	for id := range ids {
		delete(s.gc.candidates, id)
	}
	chunks, bytes = st.Chunks, st.Bytes
	if chunks == 0 && st.Orphans == 0 {
		return 0, 0, nil
	}
	jid := event.DerivedJobID(now, "gc", now.String())
	j := &cofferv1.Job{Id: jid, Kind: cofferv1.JobKind_JOB_KIND_DELETE, State: cofferv1.JobState_JOB_STATE_SUCCEEDED,
		Percent: 100, Step: "garbage collection", Bytes: bytes, CreatedAt: timestamppb.New(now), UpdatedAt: timestamppb.New(now),
		Detail: fmt.Sprintf("deleted %d chunk(s) no recovery point references (%d pack(s) deleted, %d repacked, %d left by failed writers), freeing %d bytes",
			chunks, st.Deleted, st.Repacked, st.Orphans, bytes)}
	if _, err := s.jobs.Put(ctx, catalog.Key(jid), j); err != nil {
		return chunks, bytes, err
	}
	s.log.InfoContext(ctx, "garbage collected", slog.Int("chunks", chunks), slog.Int64("bytes", bytes),
		slog.Int("packs_deleted", st.Deleted), slog.Int("packs_repacked", st.Repacked), slog.Int("unlisted_packs", st.Orphans))
	return chunks, bytes, nil
}

// backupsInFlight reports whether any backup job is queued or running at
// now. One with no news for Config.StaleAfter no longer counts (its worker
// is gone; a backup that still commits after all finds its chunks checked
// by PutManifest, and fails visibly if one was collected). Along the way
// it deletes the records of jobs finished more than Config.JobRetention
// ago.
func (s *Service) backupsInFlight(ctx context.Context, now time.Time) (bool, error) {
	busy := false
	var old []string
	err := s.jobs.List(ctx, "", func() proto.Message { return &cofferv1.Job{} }, func(key string, m proto.Message) error {
		j := m.(*cofferv1.Job)
		updated := j.GetUpdatedAt().AsTime()
		switch {
		case final(j.GetState()):
			if j.GetUpdatedAt() != nil && now.Sub(updated) > s.cfg.JobRetention {
				old = append(old, key)
			}
		case j.GetKind() != cofferv1.JobKind_JOB_KIND_BACKUP:
		case j.GetUpdatedAt() != nil && now.Sub(updated) > s.cfg.StaleAfter:
			s.log.WarnContext(ctx, "backup job without news; garbage collection no longer waits for it",
				slog.String(telemetry.JobIDKey, j.GetId()), slog.String("state", j.GetState().String()), slog.Time("updated", updated))
		default:
			busy = true
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	for _, key := range old {
		if err := s.jobs.Delete(ctx, key); err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return busy, fmt.Errorf("trim old job records: %w", err)
		}
	}
	if len(old) > 0 {
		s.log.InfoContext(ctx, "old job records trimmed", slog.Int("jobs", len(old)))
	}
	return busy, nil
}
