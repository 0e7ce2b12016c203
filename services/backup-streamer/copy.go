package streamer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// copyPoint copies a recovery point to a second vault (a policy's copy
// rule): each stream is read from the point's vault, every chunk
// authenticated, and written to the target through a vault writer, which
// uploads only the chunks the target lacks (a copy run again after a
// failure uploads only what the first run did not). The chunk list goes
// to a draft in the target, and CopyStreamed asks the committer to write
// the copy's manifest, the commit.
func (s *Service) copyPoint(ctx context.Context, m *bus.Message, req *cofferv1.CopyRequested) error {
	jid, db := req.GetMeta().GetJobId(), req.GetDatabase()
	if err := checkJobID(jid); err != nil {
		return err
	}
	log := s.jobLogger(jid, db).With(slog.String("recovery_point", req.GetRecoveryPoint()), slog.String("vault", req.GetVault()))
	if done, err := s.jobDone(ctx, jid); err != nil || done {
		return err
	}
	e, err := s.runCopy(ctx, jid, req)
	if err == nil {
		err = s.publish(ctx, cofferv1.SubjectCopyStreamed, e, e.Meta.EventId)
	}
	if err == nil {
		log.InfoContext(ctx, "recovery point copied", slog.Int64("size", e.GetSize()), slog.Int64("new_bytes", e.GetNewBytes()))
	}
	return s.settle(ctx, m, log, err, func(reason string) *cofferv1.JobFailed {
		return &cofferv1.JobFailed{Meta: event.Meta(event.ID("failed", jid, Name), jid, s.cfg.Now()),
			Kind: cofferv1.JobKind_JOB_KIND_COPY, Database: db, Reason: reason, Service: Name}
	})
}

// runCopy writes the point's streams to the target vault and its draft
// there, and returns the event that reports them.
func (s *Service) runCopy(ctx context.Context, jid string, req *cofferv1.CopyRequested) (*cofferv1.CopyStreamed, error) {
	db := req.GetDatabase()
	var rp cofferv1.RecoveryPoint
	if _, err := s.rps.Get(ctx, catalog.Key(db.GetInstance(), db.GetDatabase(), req.GetRecoveryPoint()), &rp); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			return nil, fail("recovery point %s is not in the catalog (deleted?): nothing to copy", req.GetRecoveryPoint())
		}
		return nil, err
	}
	src, err := s.vaultOf(ctx, rp.GetVault())
	if err != nil {
		return nil, err
	}
	dst, err := s.vaultOf(ctx, req.GetVault())
	if err != nil {
		return nil, err
	}
	e := &cofferv1.CopyStreamed{Meta: event.Meta(event.ID("copied", jid), jid, s.cfg.Now()), Database: db,
		RecoveryPoint: rp.GetId(), Vault: req.GetVault(), Size: rp.GetSize()}
	switch _, err := dst.GetManifest(ctx, rp.GetManifest()); {
	case err == nil:
		return e, nil // copied before: the committer records it
	case !errors.Is(err, blob.ErrNotExist) && !errors.Is(err, vault.ErrCorrupt):
		return nil, err
	}
	m, err := src.GetManifest(ctx, rp.GetManifest())
	if err != nil {
		return nil, fail("recovery point %s cannot be read from its vault: %v", rp.GetId(), err)
	}
	sess, err := dst.OpenSession(ctx, vault.SessionOptions{Refresh: s.cfg.SessionRefresh})
	if err != nil {
		return nil, fmt.Errorf("copy recovery point %s: %w", rp.GetId(), err)
	}
	defer s.closeSession(ctx, s.log, sess)
	draft := &vault.Manifest{CreatedAt: s.cfg.Now().UTC(), Size: m.Size, Checksum: m.Checksum}
	streams := m.Streams()
	for k, st := range streams {
		res, err := s.copyStream(ctx, src, dst, sess, st)
		if err != nil {
			return nil, fmt.Errorf("copy recovery point %s, stream %d: %w", rp.GetId(), k+1, err)
		}
		draft.Chunks = append(draft.Chunks, res.Chunks...)
		if len(streams) > 1 {
			draft.Stripes = append(draft.Stripes, vault.Stripe{Chunks: len(res.Chunks), Size: res.Size, Checksum: res.Checksum})
		}
		e.NewBytes += res.NewBytes
	}
	e.Draft = rp.GetId() + ".copy." + rand.Text()[:10]
	if err := dst.PutDraft(ctx, e.Draft, draft); err != nil {
		return nil, fmt.Errorf("copy recovery point %s: store its chunk list: %w", rp.GetId(), err)
	}
	return e, nil
}

// copyStream writes one stream of src to dst and checks that what was
// written is the stream: its length and checksum.
func (s *Service) copyStream(ctx context.Context, src, dst *vault.Vault, sess *vault.Session, st vault.Stream) (vault.Result, error) {
	wctx, abort := context.WithCancel(ctx)
	defer abort()
	w := dst.NewWriter(wctx, vault.WriterOptions{Workers: s.cfg.VaultWorkers, Session: sess})
	r := src.NewReader(ctx, st.Chunks)
	defer r.Close()
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		if errors.Is(err, vault.ErrCorrupt) || errors.Is(err, blob.ErrNotExist) {
			return vault.Result{}, fail("the source cannot be read: %v", err)
		}
		return vault.Result{}, err
	}
	if err := w.Close(); err != nil {
		return vault.Result{}, err
	}
	res := w.Result()
	if res.Size != st.Size || res.Checksum != st.Checksum {
		return vault.Result{}, fail("the copy is %d bytes (%s), the stream %d bytes (%s)", res.Size, res.Checksum, st.Size, st.Checksum)
	}
	return res, nil
}
