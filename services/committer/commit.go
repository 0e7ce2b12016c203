package committer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/telemetry"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// rejection is a streamed backup that can never be committed: the job
// fails with reason.
type rejection struct{ reason string }

func (r *rejection) Error() string { return r.reason }

func reject(format string, args ...any) error {
	return &rejection{reason: fmt.Sprintf(format, args...)}
}

// backupStreamed commits a streamed backup: manifest (the commit), then
// the catalog record, the job's outcome and RecoveryPointCommitted. Each
// step is idempotent, so a redelivery after any of them finishes the rest.
func (s *Service) backupStreamed(ctx context.Context, e *cofferv1.BackupStreamed) error {
	jid, err := jobID(e.GetMeta())
	if err != nil {
		return err
	}
	db := e.GetDatabase()
	rpID := event.RecoveryPointID(jid)
	ctx, span := s.tracer.Start(ctx, "commit recovery point", trace.WithAttributes(
		attribute.String(telemetry.JobIDKey, jid),
		attribute.String(telemetry.InstanceKey, db.GetInstance()),
		attribute.String(telemetry.DatabaseKey, db.GetDatabase()),
		attribute.String(telemetry.RecoveryPointKey, rpID),
	))
	defer span.End()
	log := s.log.With(slog.String(telemetry.JobIDKey, jid), slog.String(telemetry.InstanceKey, db.GetInstance()),
		slog.String(telemetry.DatabaseKey, db.GetDatabase()), slog.String(telemetry.RecoveryPointKey, rpID))

	f := eventFacts(ctx, e.GetMeta())
	f.kind, f.database, f.backupType = cofferv1.JobKind_JOB_KIND_BACKUP, db, e.GetBackup().GetType()

	if by, err := s.cancelledBy(ctx, jid); err != nil || by != "" {
		if by != "" {
			// the backup's chunks and draft are garbage now, as a failed
			// backup's are
			log.InfoContext(ctx, "backup of a cancelled job not committed", slog.String("cancelled_by", by))
		}
		return err
	}
	rp, err := s.commit(ctx, log, rpID, jid, e)
	if r := (*rejection)(nil); errors.As(err, &r) {
		span.SetStatus(codes.Error, r.reason)
		log.WarnContext(ctx, "backup not committed", slog.String("reason", r.reason))
		return s.failJob(ctx, jid, e, f, r.reason)
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return fmt.Errorf("commit recovery point %s: %w", rpID, err)
	}
	if err := s.lockRecoveryPoint(ctx, log, rp); err != nil {
		return fmt.Errorf("commit recovery point %s: %w", rpID, err)
	}
	key := catalog.Key(rp.GetDatabase().GetInstance(), rp.GetDatabase().GetDatabase(), rp.GetId())
	var recorded cofferv1.RecoveryPoint
	if _, err := s.rps.Get(ctx, key, &recorded); err == nil && len(recorded.GetCopies()) > 0 {
		// a redelivery after a copy was made: the record knows it, the
		// manifest does not
		rp.Copies = recorded.GetCopies()
	}
	if _, err := s.rps.Put(ctx, key, rp); err != nil {
		return fmt.Errorf("record recovery point %s: %w", rpID, err)
	}
	if err := s.queueCopies(ctx, rp, s.cfg.Now()); err != nil {
		return fmt.Errorf("queue the copy of recovery point %s: %w", rpID, err)
	}
	if err := s.updateJob(ctx, jid, func(j *cofferv1.Job) { applySucceeded(j, rp.GetSize(), rp.GetId(), f) }); err != nil {
		return err
	}
	committed := &cofferv1.RecoveryPointCommitted{
		Meta:          event.Meta(event.ID("committed", rp.GetId()), jid, s.cfg.Now()),
		RecoveryPoint: rp,
	}
	if err := s.bus.Publish(ctx, cofferv1.SubjectRecoveryPointCommitted, committed, committed.Meta.EventId); err != nil {
		return fmt.Errorf("publish commit of %s: %w", rpID, err)
	}
	log.InfoContext(ctx, "recovery point committed", slog.Int64("size", rp.GetSize()), slog.Int64("new_bytes", rp.GetNewBytes()))
	return nil
}

// commit writes the manifest of the streamed backup, unless an earlier
// delivery did, and returns the recovery point it records. A *rejection
// means the stream can never be committed; any other error is transient.
func (s *Service) commit(ctx context.Context, log *slog.Logger, rpID, jid string, e *cofferv1.BackupStreamed) (*cofferv1.RecoveryPoint, error) {
	v, err := s.vaultOf(ctx, e.GetVault())
	if err != nil {
		return nil, err
	}
	existing, err := v.GetManifest(ctx, rpID)
	switch {
	case err == nil:
		rp, err := RecoveryPointOf(existing)
		if err != nil {
			return nil, reject("manifest %s is already written but holds no recovery point: %v", rpID, err)
		}
		if existing.Size != e.GetSize() || existing.Checksum != e.GetChecksum() {
			// The commit happened; a second stream for the same job (a
			// backup rerun after a lost acknowledgement) never replaces it.
			log.WarnContext(ctx, "job streamed again after its commit; keeping the committed stream",
				slog.String("committed_checksum", existing.Checksum), slog.String("streamed_checksum", e.GetChecksum()))
		}
		s.deleteDraft(ctx, v, log, e)
		return rp, nil
	case errors.Is(err, blob.ErrNotExist):
	case errors.Is(err, vault.ErrCorrupt):
		// Never a commit that could be read: write it again.
		log.WarnContext(ctx, "overwriting unreadable manifest", slog.Any("error", err))
	default:
		return nil, fmt.Errorf("read manifest: %w", err)
	}

	db := e.GetDatabase()
	if db.GetInstance() == "" || db.GetDatabase() == "" {
		return nil, reject("the streamed backup names no database")
	}
	chunks, stripes, err := s.streamedChunks(ctx, v, e)
	if err != nil {
		return nil, err
	}
	var stored int64
	seen := make(map[string]bool, len(chunks))
	for _, c := range chunks {
		if !seen[c.ID] {
			seen[c.ID] = true
			stored += c.StoredSize
		}
	}
	now := s.cfg.Now()
	rp := &cofferv1.RecoveryPoint{
		Id:          rpID,
		Database:    db,
		Backup:      e.GetBackup(),
		Manifest:    rpID,
		Size:        e.GetSize(),
		StoredBytes: stored,
		NewBytes:    e.GetNewBytes(),
		Chunks:      int32(len(chunks)),
		Checksum:    e.GetChecksum(),
		Stripes:     int32(len(stripes)),
		JobId:       jid,
		CommittedAt: timestamppb.New(now),
		OnDemand:    e.GetReason() == "on-demand",
		ChainBreak:  e.GetChainBreak(),
		Vault:       vaultName(e.GetVault()),
	}
	if rp.ChainBreak != "" {
		healed, err := s.healedBy(ctx, rp)
		if err != nil {
			return nil, err
		}
		if healed != "" {
			// two fulls queued to heal one break (a scheduled one and an
			// on-demand one): the break lies before the first of them
			log.InfoContext(ctx, "chain break already healed by an earlier full", slog.String("healed_by", healed))
			rp.ChainBreak = ""
		}
	}
	if err := s.assignRetention(ctx, rp); err != nil {
		return nil, err
	}
	meta, err := protojson.Marshal(rp)
	if err != nil {
		return nil, fmt.Errorf("encode recovery point: %w", err)
	}
	created := now
	if t := e.GetBackup().GetBackupFinish(); t != nil {
		created = t.AsTime()
	}
	m := &vault.Manifest{ID: rpID, CreatedAt: created.UTC().Truncate(time.Microsecond), Size: e.GetSize(),
		Checksum: e.GetChecksum(), Chunks: chunks, Stripes: stripes, Meta: meta}
	if err := v.PutManifest(ctx, rpID, m); err != nil {
		var ce *vault.ChunkError
		if errors.As(err, &ce) && (errors.Is(err, blob.ErrNotExist) || errors.Is(err, vault.ErrCorrupt)) {
			return nil, reject("cannot commit the backup: %v", ce)
		}
		return nil, err
	}
	s.cfg.Metrics.Committed(rp.GetBackup().GetType(), rp.GetSize(), rp.GetNewBytes())
	s.deleteDraft(ctx, v, log, e)
	return rp, nil
}

// streamedChunks returns the chunks and stripes of a streamed backup:
// from its draft in the vault, or from the event itself when it is from a
// streamer older than drafts. They must add up to the event's size, and a
// draft must record the event's stream (its size, checksum and stripes),
// or the backup is rejected.
func (s *Service) streamedChunks(ctx context.Context, v *vault.Vault, e *cofferv1.BackupStreamed) ([]vault.ChunkRef, []vault.Stripe, error) {
	if e.GetDraft() == "" {
		chunks := make([]vault.ChunkRef, len(e.GetChunks()))
		var total int64
		for i, c := range e.GetChunks() {
			if c.GetSize() <= 0 {
				return nil, nil, reject("chunk %d (%s) of the streamed backup has size %d", i, c.GetId(), c.GetSize())
			}
			total += c.GetSize()
			chunks[i] = vault.ChunkRef{ID: c.GetId(), Size: c.GetSize(), StoredSize: c.GetStoredSize()}
		}
		if total != e.GetSize() {
			return nil, nil, reject("the chunks of the streamed backup add up to %d bytes, but the stream is %d bytes", total, e.GetSize())
		}
		stripes, err := streamedStripes(e, chunks)
		return chunks, stripes, err
	}
	if len(e.GetChunks()) > 0 {
		return nil, nil, reject("the streamed backup lists chunks and names draft %s too", e.GetDraft())
	}
	d, err := v.GetDraft(ctx, e.GetDraft())
	switch {
	case errors.Is(err, blob.ErrNotExist), errors.Is(err, vault.ErrCorrupt):
		return nil, nil, reject("the chunk list of the streamed backup cannot be read from the vault: %v", err)
	case err != nil:
		return nil, nil, err
	}
	if d.Size != e.GetSize() || d.Checksum != e.GetChecksum() || len(d.Stripes) != len(e.GetStripes()) {
		return nil, nil, reject("draft %s records a stream of %d bytes (checksum %q, %d stripes), not the streamed backup's %d bytes (checksum %q, %d stripes)",
			e.GetDraft(), d.Size, d.Checksum, len(d.Stripes), e.GetSize(), e.GetChecksum(), len(e.GetStripes()))
	}
	for k, st := range e.GetStripes() {
		if d.Stripes[k].Size != st.GetSize() || d.Stripes[k].Checksum != st.GetChecksum() || d.Stripes[k].Chunks != int(st.GetChunks()) {
			return nil, nil, reject("draft %s: stripe %d is not the streamed backup's", e.GetDraft(), k+1)
		}
	}
	return d.Chunks, d.Stripes, nil
}

// deleteDraft deletes the draft of a committed backup, if it has one. A
// draft left behind costs nothing but its object until garbage collection
// removes it, so a failure is only logged.
func (s *Service) deleteDraft(ctx context.Context, v *vault.Vault, log *slog.Logger, e *cofferv1.BackupStreamed) {
	if e.GetDraft() == "" {
		return
	}
	if err := v.DeleteDraft(ctx, e.GetDraft()); err != nil {
		log.WarnContext(ctx, "draft of a committed backup not deleted; garbage collection will", slog.String("draft", e.GetDraft()), slog.Any("error", err))
	}
}

// healedBy returns the committed full of rp's database that already heals
// the chain break rp carries and was taken before rp, or "" when there is
// none: the chain as committed decides whether a break lies before rp.
func (s *Service) healedBy(ctx context.Context, rp *cofferv1.RecoveryPoint) (string, error) {
	db := rp.GetDatabase()
	start := rp.GetBackup().GetBackupStart().AsTime()
	found := ""
	err := s.rps.List(ctx, catalog.Key(db.GetInstance(), db.GetDatabase()), func() proto.Message { return &cofferv1.RecoveryPoint{} },
		func(_ string, m proto.Message) error {
			q := m.(*cofferv1.RecoveryPoint)
			b := q.GetBackup()
			if q.GetId() != rp.GetId() && q.GetChainBreak() == rp.GetChainBreak() && !b.GetCopyOnly() &&
				b.GetType() == cofferv1.BackupType_BACKUP_TYPE_FULL && b.GetBackupStart().AsTime().Before(start) {
				found = q.GetId()
			}
			return nil
		})
	if err != nil {
		return "", fmt.Errorf("list recovery points of %s/%s: %w", db.GetInstance(), db.GetDatabase(), err)
	}
	return found, nil
}

// failJob records a streamed backup that cannot be committed as the
// job's failure, and reports it to everyone else.
func (s *Service) failJob(ctx context.Context, jid string, e *cofferv1.BackupStreamed, f facts, reason string) error {
	failed := &cofferv1.JobFailed{
		Meta:       event.Meta(event.ID("failed", jid, Name), jid, s.cfg.Now()),
		Kind:       cofferv1.JobKind_JOB_KIND_BACKUP,
		Database:   e.GetDatabase(),
		Reason:     reason,
		Service:    Name,
		BackupType: e.GetBackup().GetType(),
	}
	return s.reportFailure(ctx, jid, failed, f)
}

// reportFailure records failed as job jid's outcome and publishes it, so
// that the gateway shows it to a person.
func (s *Service) reportFailure(ctx context.Context, jid string, failed *cofferv1.JobFailed, f facts) error {
	if err := s.updateJob(ctx, jid, func(j *cofferv1.Job) { applyFailed(j, failed, f) }); err != nil {
		return err
	}
	if err := s.bus.Publish(ctx, cofferv1.SubjectJobFailed, failed, failed.Meta.EventId); err != nil {
		return fmt.Errorf("publish failure of job %s: %w", jid, err)
	}
	return nil
}

// RecoveryPointOf decodes the recovery point record a manifest carries in
// its Meta (the commit writes it there; Rebuild and vault checks read it).
func RecoveryPointOf(m *vault.Manifest) (*cofferv1.RecoveryPoint, error) {
	if len(m.Meta) == 0 {
		return nil, errors.New("no metadata")
	}
	rp := &cofferv1.RecoveryPoint{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(m.Meta, rp); err != nil {
		return nil, fmt.Errorf("decode metadata: %w", err)
	}
	if rp.GetId() != m.ID || rp.GetDatabase().GetInstance() == "" || rp.GetDatabase().GetDatabase() == "" {
		return nil, fmt.Errorf("metadata names recovery point %q of %q on %q", rp.GetId(),
			rp.GetDatabase().GetDatabase(), rp.GetDatabase().GetInstance())
	}
	return rp, nil
}

// streamedStripes returns the stripes of a striped backup, refusing
// stripes that do not cut its chunks exactly; nil for one stream.
func streamedStripes(e *cofferv1.BackupStreamed, chunks []vault.ChunkRef) ([]vault.Stripe, error) {
	if len(e.GetStripes()) == 0 {
		return nil, nil
	}
	if len(e.GetStripes()) == 1 {
		return nil, reject("the streamed backup has one stripe; a backup to one URL has none")
	}
	out := make([]vault.Stripe, len(e.GetStripes()))
	at := 0
	for k, st := range e.GetStripes() {
		n := int(st.GetChunks())
		if n <= 0 || at+n > len(chunks) {
			return nil, reject("stripe %d of the streamed backup names %d chunks, past the %d it has", k+1, n, len(chunks))
		}
		var size int64
		for _, c := range chunks[at : at+n] {
			size += c.Size
		}
		if size != st.GetSize() {
			return nil, reject("the chunks of stripe %d of the streamed backup add up to %d bytes, but the stripe is %d bytes", k+1, size, st.GetSize())
		}
		out[k] = vault.Stripe{Chunks: n, Size: size, Checksum: st.GetChecksum()}
		at += n
	}
	if at != len(chunks) {
		return nil, reject("the stripes of the streamed backup hold %d of its %d chunks", at, len(chunks))
	}
	return out, nil
}

// lockRecoveryPoint locks a committed recovery point's objects in an
// immutable vault until it expires (vault.RetainManifest); a later
// delivery of the same commit locks them again, which is harmless. It is
// done before the recovery point is recorded, so that every recorded
// recovery point is locked.
func (s *Service) lockRecoveryPoint(ctx context.Context, log *slog.Logger, rp *cofferv1.RecoveryPoint) error {
	v, err := s.vaultOf(ctx, rp.GetVault())
	if err != nil {
		return err
	}
	if v.ObjectLock() == "" {
		return nil
	}
	if rp.GetExpiresAt() == nil {
		log.WarnContext(ctx, "recovery point has no expiry; not locked")
		return nil
	}
	return v.RetainManifest(ctx, rp.GetId(), rp.GetExpiresAt().AsTime())
}
