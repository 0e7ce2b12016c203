package streamer

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// urlMode reports whether jobs on instance go through the S3 endpoint
// (see backupMode). An instance set to URL mode that cannot have it is a
// failure that says why and what to do.
func (s *Service) urlMode(ctx context.Context, c *mssql.Client, instance string) (bool, error) {
	m, err := s.backupMode(ctx, instance, func() (mssql.Server, error) { return c.ServerInfo(ctx) })
	if err != nil {
		return false, err
	}
	if m.problem != "" {
		return false, fail("%s: %s", m.problem, m.fix)
	}
	return m.url, nil
}

// backupMode is which way an instance's jobs take their backups, and why.
type backupMode struct {
	// url is true for URL mode, false for disk mode.
	url bool
	// reason says why, in an operator's words.
	reason string
	// problem, when set, says why the instance's jobs cannot run as it is
	// set (URL mode it cannot have), and fix what to do about it.
	problem, fix string
}

// backupMode decides the mode of instance's jobs: as the instance's
// backup mode says, or, by default, URL mode when the streamer serves an
// S3 endpoint and the instance is SQL Server 2022 or later (older versions
// have no s3:// URLs and keep disk mode). server reads the instance's
// version; it is called only when the decision needs it.
func (s *Service) backupMode(ctx context.Context, instance string, server func() (mssql.Server, error)) (backupMode, error) {
	var rec cofferv1.Instance
	if _, err := s.instances.Get(ctx, catalog.Key(instance), &rec); err != nil {
		return backupMode{}, fmt.Errorf("read instance %q: %w", instance, err)
	}
	mode := rec.GetBackupMode()
	switch {
	case mode == "disk":
		return backupMode{reason: "the instance is set to disk mode"}, nil
	case mode == "" && s.url == nil:
		return backupMode{reason: "this streamer serves no S3 endpoint (URL mode needs --url-listen, COFFER_URL_LISTEN)"}, nil
	case s.url == nil:
		return backupMode{url: true, reason: "the instance is set to URL mode",
			problem: fmt.Sprintf("instance %q is set to URL mode, but this streamer serves no S3 endpoint", instance),
			fix:     "start it with --url-listen (COFFER_URL_LISTEN), or " + toDiskMode(instance)}, nil
	}
	srv, err := server()
	if err != nil {
		return backupMode{}, s.sqlFailure(ctx, err, "read the version of instance %q", instance)
	}
	product := productName(srv.Version)
	if srv.MajorVersion() < 16 {
		m := backupMode{reason: product + " has no S3 connector (SQL Server 2022 and later have)"}
		if mode == "url" {
			m.url, m.reason = true, "the instance is set to URL mode"
			m.problem = fmt.Sprintf("instance %q is set to URL mode, but %s has no S3 connector (2022 and later)", instance, product)
			m.fix = toDiskMode(instance)
		}
		return m, nil
	}
	if mode == "url" {
		return backupMode{url: true, reason: "the instance is set to URL mode"}, nil
	}
	return backupMode{url: true, reason: product + " backs up to the streamer's S3 endpoint"}, nil
}

// toDiskMode tells how to set an instance to disk mode.
func toDiskMode(instance string) string {
	return fmt.Sprintf("set it to disk mode: coffer instance add %s --dsn DSN --mode disk registers it again so", instance)
}

// productName names a SQL Server version as DBAs do, "SQL Server 2019
// (15.0.4345.5)", from its ProductVersion.
func productName(version string) string {
	major, _, _ := strings.Cut(version, ".")
	year := map[string]string{"11": "2012", "12": "2014", "13": "2016", "14": "2017", "15": "2019", "16": "2022", "17": "2025"}[major]
	if year == "" {
		return "SQL Server " + version
	}
	return "SQL Server " + year + " (" + version + ")"
}

// withCredential runs fn with job jid's access key known to the endpoint
// and a credential for the job's URL prefix on the instance; both are gone
// when it returns, whatever happened.
func (s *Service) withCredential(ctx context.Context, log *slog.Logger, c *mssql.Client, jid string, setup func(*urlJob), fn func() error) error {
	j, err := s.url.open(jid)
	if err != nil {
		return err
	}
	defer s.url.close(jid)
	if setup != nil {
		setup(j)
	}
	prefix := s.url.prefix(jid)
	if err := c.CreateS3Credential(ctx, prefix, j.key.ID, j.key.Secret); err != nil {
		return s.sqlFailure(ctx, err, "create the job's credential on the instance")
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := c.DropCredential(dctx, prefix); err != nil {
			log.ErrorContext(ctx, "job credential not dropped; it is dropped when the streamer next meets the instance", slog.String("credential", prefix), slog.Any("error", err))
		}
	}()
	return fn()
}

// stripeNames are the objects a backup of size bytes is written to: one
// URL per Endpoint.StripeBytes of the database, up to SQL Server's 64.
// A database too large even for 64 URLs of twice that is refused: SQL
// Server would fail it after hours, on the 10,000th part of a URL.
func (e *urlEndpoint) stripeNames(size int64) ([]string, error) {
	per := e.cfg.StripeBytes
	n := int((size + per - 1) / per)
	if n > maxStripes {
		if size > maxStripes*2*per {
			return nil, fail("the database's files take %d bytes, more than a backup to %d URLs carries (about %d bytes): back it up in disk mode", size, maxStripes, maxStripes*2*per)
		}
		n = maxStripes
	}
	if n <= 1 {
		return []string{"backup.bak"}, nil
	}
	names := make([]string, n)
	for k := range names {
		names[k] = fmt.Sprintf("backup-%02d-of-%02d.bak", k+1, n)
	}
	return names, nil
}

// backupToURL takes a backup with BACKUP ... TO URL, the streamer's own
// endpoint receiving it straight into the vault: no staging file. A large
// database is striped over several URLs, each its own stream in the
// vault.
func (s *Service) backupToURL(ctx context.Context, log *slog.Logger, jid string, req *cofferv1.BackupRequested, c *mssql.Client,
	on string, typ mssql.BackupType, opt backupOptions, chainBreak string, prog *progress) (*streamedBackup, error) {
	db := req.GetDatabase()
	data, logSize, err := c.DatabaseSize(ctx, db.GetDatabase())
	if err != nil {
		return nil, s.sqlFailure(ctx, err, "read the size of database %q", db.GetDatabase())
	}
	size := data + logSize
	if typ == mssql.Log {
		size = logSize
	}
	names, err := s.url.stripeNames(size)
	if err != nil {
		return nil, err
	}
	v, sess, err := s.openSession(ctx, req)
	if err != nil {
		return nil, err
	}
	defer s.closeSession(ctx, log, sess)
	// until they are closed successfully the streams are aborted: their
	// chunks become garbage, and with no manifest nothing refers to them
	wctx, abort := context.WithCancel(ctx)
	defer abort()
	// stripes share the streamer's workers, and each holds fewer and
	// smaller packs, so that memory does not grow with them
	opts := vault.WriterOptions{Workers: s.cfg.VaultWorkers, Compression: vaultCompression(ctx, log, req), Session: sess}
	if n := len(names); n > 1 {
		opts.Workers = max(1, max(opts.Workers, runtime.GOMAXPROCS(0))/n)
		opts.Uploads, opts.PackSize = 1, max(4<<20, 32<<20/n)
	}
	writers := make([]*vault.Writer, len(names))
	stripes := make([]*stripe, len(names))
	urls := make([]string, len(names))
	for k, name := range names {
		writers[k] = v.NewWriter(wctx, opts)
		stripes[k] = &stripe{writer: writers[k]}
		urls[k] = s.url.url(jid, name)
	}
	closed := false
	defer func() {
		if !closed {
			for _, w := range writers {
				w.Close()
			}
		}
	}()
	var job *urlJob
	var streamed *streamedBackup
	setup := func(j *urlJob) {
		job = j
		for k, name := range names {
			j.stripes[name] = stripes[k]
		}
	}
	err = s.withCredential(ctx, log, c, jid, setup, func() error {
		noCompression := false
		var percent atomic.Int64
		sctx, sqlSpan := s.tracer.Start(ctx, "mssql backup", trace.WithAttributes(dbAttrs(jid, db)...),
			trace.WithAttributes(attribute.String("db.operation.name", "BACKUP"), attribute.String("backup.url", urls[0]),
				attribute.Int("backup.stripes", len(urls))))
		done := make(chan struct{})
		go func() {
			// progress while SQL Server uploads
			t := time.NewTicker(s.cfg.ProgressInterval)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					prog.report("backup", float64(percent.Load()), 0, false)
				}
			}
		}()
		err := s.backupInTurn(sctx, log, c, mssql.BackupRequest{
			Database: db.GetDatabase(), Type: typ, Files: urls, Compression: &noCompression,
			NoRecovery: opt.tail,
			OnProgress: func(p int) { percent.Store(int64(p)) },
		})
		close(done)
		if err != nil {
			sqlSpan.RecordError(err)
			sqlSpan.SetStatus(codes.Error, err.Error())
		}
		sqlSpan.End()
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("backup of %q interrupted: %w", db.GetDatabase(), context.Cause(ctx))
		case err != nil:
			return fail("BACKUP of database %q on instance %q failed: %v", db.GetDatabase(), on, err)
		}
		s.url.mu.Lock()
		for k, st := range stripes {
			if !st.completed {
				s.url.mu.Unlock()
				return fail("SQL Server reported the backup of database %q done, but its upload to %s never completed (%v)", db.GetDatabase(), urls[k], st.aborted)
			}
		}
		s.url.mu.Unlock()
		closed = true
		results := make([]vault.Result, len(stripes))
		var closeErr error
		for k, w := range writers {
			if err := w.Close(); err != nil && closeErr == nil {
				closeErr = err
			}
			results[k] = w.Result()
		}
		if closeErr != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("backup of %q interrupted: %w", db.GetDatabase(), context.Cause(ctx))
			}
			return fail("store the backup of database %q in the vault: %v", db.GetDatabase(), closeErr)
		}
		// RESTORE HEADERONLY reads the backup back from the endpoint
		s.url.mu.Lock()
		for k, name := range names {
			job.objects[name] = results[k].Chunks
			job.from[name] = v
			job.siblings[name] = len(names)
		}
		s.url.mu.Unlock()
		meta, err := s.readHeader(ctx, c, jid, db, urls)
		if err != nil {
			return err
		}
		streamed, err = s.streamed(ctx, log, c, jid, req, meta, results, chainBreak)
		return err
	})
	if err != nil {
		return nil, err
	}
	return streamed, nil
}
