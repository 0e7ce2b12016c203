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
		err := s.expirePoint(ctx, db, id, s.cfg.Now())
		if errors.Is(err, blob.ErrLocked) {
			// An immutable vault's store keeps it until its lock passes
			// (by the store's clock). It stays recorded, and the points
			// after it in the list, which it may depend on, stay too: a
			// later sweep expires them again.
			s.log.InfoContext(ctx, "recovery point still locked by the store; kept for a later sweep",
				slog.String("recovery_point", id), slog.String("instance", db.GetInstance()), slog.String("database", db.GetDatabase()))
			break
		}
		if err != nil {
			return err
		}
		deleted = append(deleted, id)
	}
	if len(deleted) == 0 {
		return nil
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

// collector serializes this process's garbage collections; vault.Collect
// keeps those of different processes apart.
type collector struct {
	mu sync.Mutex
	// relocked is, by recovery point, the date this process extended its
	// lock to (relockChains)
	relocked map[string]time.Time
}

// CollectGarbage runs one garbage collection at now and returns what it
// freed. The vault decides what is garbage (vault.Collect): chunks no
// recovery point or draft names are condemned by one collection and
// deleted by a later one, once no backup that may have deduplicated
// against them still runs, so a backup in flight, in any process, never
// loses a chunk. now dates the job record; the vault's own rules run on
// its store's clock. A collection that finds another running (another
// committer's) gives way and returns nothing freed. Before it, it deletes
// the records of jobs finished more than Config.JobRetention ago and the
// soft-deleted recovery points whose window ended by now (their chunks
// are then condemned like any others).
func (s *Service) CollectGarbage(ctx context.Context, now time.Time) (chunks int, bytes int64, err error) {
	s.gc.mu.Lock()
	defer s.gc.mu.Unlock()
	if err := s.trimJobs(ctx, now); err != nil {
		return 0, 0, err
	}
	if _, err := s.purgeDeleted(ctx, now); err != nil {
		return 0, 0, err
	}
	if err := s.relockChains(ctx, now); err != nil {
		return 0, 0, err
	}
	if err := s.expireCopies(ctx, now); err != nil {
		return 0, 0, err
	}
	// each vault is collected on its own; one that fails (a named vault
	// unreachable) does not keep the others from theirs
	var st vault.CollectStats
	failed, collectErr := s.eachVault(ctx, func(name string, v *vault.Vault) error {
		log := s.log
		if name != "" {
			log = log.With(slog.String("vault", name))
		}
		one, err := v.Collect(ctx, vault.CollectOptions{MinAge: s.cfg.GCGrace, DraftTTL: s.cfg.DraftTTL})
		if errors.Is(err, vault.ErrCollecting) {
			log.InfoContext(ctx, "garbage collection skipped: another is running")
			return nil
		}
		if err != nil {
			return err
		}
		log.DebugContext(ctx, "garbage collection", slog.Int("condemned", one.Condemned), slog.Int("unlisted_packs_condemned", one.Unlisted),
			slog.Int("generations_processed", one.Processed), slog.Int("generations_waiting", one.Waiting),
			slog.Int("dead_sessions", one.DeadSessions))
		if one.Drafts > 0 {
			log.WarnContext(ctx, "drafts of backups that never committed deleted", slog.Int("drafts", one.Drafts),
				slog.Duration("older_than", s.cfg.DraftTTL))
		}
		st.Chunks += one.Chunks
		st.Bytes += one.Bytes
		st.Orphans += one.Orphans
		st.Deleted += one.Deleted
		st.Repacked += one.Repacked
		return nil
	})
	collectErr = errors.Join(append(failed, collectErr)...)
	if collectErr != nil && st.Chunks == 0 && st.Orphans == 0 {
		return 0, 0, collectErr
	}
	chunks, bytes = st.Chunks, st.Bytes
	s.cfg.Metrics.Freed(bytes)
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
	return chunks, bytes, collectErr
}

// trimJobs deletes the records of jobs finished more than
// Config.JobRetention before now.
func (s *Service) trimJobs(ctx context.Context, now time.Time) error {
	var old []string
	err := s.jobs.List(ctx, "", func() proto.Message { return &cofferv1.Job{} }, func(key string, m proto.Message) error {
		j := m.(*cofferv1.Job)
		if final(j.GetState()) && j.GetUpdatedAt() != nil && now.Sub(j.GetUpdatedAt().AsTime()) > s.cfg.JobRetention {
			old = append(old, key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, key := range old {
		if err := s.jobs.Delete(ctx, key); err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return fmt.Errorf("trim old job records: %w", err)
		}
	}
	if len(old) > 0 {
		s.log.InfoContext(ctx, "old job records trimmed", slog.Int("jobs", len(old)))
	}
	return nil
}
