package streamer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/telemetry"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// The URL check. Whether SQL Server can back up to the streamer shows
// only when it tries: it must reach the advertised address and trust the
// certificate, which takes the operator's work on SQL Server's host. So
// `coffer instance add` and `coffer instance check` ask a streamer to
// try, with a copy-only backup of model to a throwaway URL whose upload
// the endpoint discards: a copy-only backup starts no differential base
// and leaves the log chain alone, so it changes no backup chain. What
// goes wrong is told as a problem and the exact fix.

// urlCheckTimeout bounds one URL check. A requester waits longer, so
// that even a check that ran out of time is answered.
const urlCheckTimeout = 90 * time.Second

// checkObject is the name of the throwaway backup under a check's prefix.
const checkObject = "model.bak"

// serveURLChecks answers URL checks until the returned stop is called;
// the streamers share them (one answers each).
func (s *Service) serveURLChecks(ctx context.Context) (stop func(), err error) {
	return s.bus.Serve(ctx, cofferv1.SubjectURLCheck, Name, func(ctx context.Context, data []byte) (proto.Message, error) {
		var req cofferv1.URLCheckRequested
		if err := proto.Unmarshal(data, &req); err != nil {
			return nil, fmt.Errorf("malformed URL check request: %w", err)
		}
		if req.GetInstance() == "" {
			return nil, errors.New("the URL check request names no instance")
		}
		return s.checkURL(ctx, req.GetInstance()), nil
	})
}

// checkURL checks that instance's jobs can run in the mode they use: in
// URL mode, that SQL Server backs up to this streamer's endpoint.
func (s *Service) checkURL(ctx context.Context, instance string) *cofferv1.URLCheckResult {
	ctx, cancel := context.WithTimeout(ctx, urlCheckTimeout)
	defer cancel()
	log := s.log.With(slog.String(telemetry.InstanceKey, instance))
	res := &cofferv1.URLCheckResult{Instance: instance}
	if s.url != nil {
		res.Streamer = s.url.cfg.Advertise
	}
	mode, err := s.backupMode(ctx, instance, func() (mssql.Server, error) {
		c, err := s.client(ctx, instance)
		if err != nil {
			return mssql.Server{}, err
		}
		return c.ServerInfo(ctx)
	})
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		res.Problem = fmt.Sprintf("instance %q is not registered", instance)
		res.Fix = fmt.Sprintf("register it: coffer instance add %s --dsn DSN", instance)
		return res
	case err != nil:
		res.Problem = fmt.Sprintf("coffer cannot ask the instance its version: %v", err)
		res.Fix = "check that SQL Server runs and that coffer's connection string reaches it (coffer instance list shows its health; coffer instance add NAME --dsn DSN replaces the connection string)"
		return res
	}
	res.Mode, res.ModeReason = "disk", mode.reason
	if mode.url {
		res.Mode = "url"
	}
	switch {
	case mode.problem != "":
		res.Problem, res.Fix = mode.problem, mode.fix
	case !mode.url:
		res.Ok = true // disk mode: SQL Server writes to the staging directory, nothing to check here
	default:
		res.Problem, res.Fix = s.tryURLBackup(ctx, log, instance)
		res.Ok = res.Problem == ""
	}
	log.InfoContext(ctx, "URL check", slog.String("mode", res.Mode), slog.Bool("ok", res.Ok), slog.String("problem", res.Problem))
	return res
}

// tryURLBackup has SQL Server back up model, copy-only, to a throwaway
// URL of the endpoint, under a key and credential of its own that are
// gone when it returns. It returns what went wrong and how to fix it, or
// "" when SQL Server's backup reached the endpoint whole.
func (s *Service) tryURLBackup(ctx context.Context, log *slog.Logger, instance string) (problem, fix string) {
	c, err := s.client(ctx, instance)
	if err != nil {
		return fmt.Sprintf("coffer cannot connect to the instance: %v", err),
			"check that SQL Server runs and that coffer's connection string reaches it (coffer instance list shows its health)"
	}
	jid, err := checkID()
	if err != nil {
		return fmt.Sprintf("the streamer could not make a key for the check: %v", err), "try again"
	}
	sink := &stripe{writer: io.Discard}
	url := s.url.url(jid, checkObject)
	err = s.withCredential(ctx, log, c, jid, func(j *urlJob) { j.stripes[checkObject] = sink }, func() error {
		noCompression := false
		return c.Backup(ctx, mssql.BackupRequest{Database: "model", Type: mssql.CopyOnlyFull, Files: []string{url}, Compression: &noCompression})
	})
	if err != nil {
		return s.urlProblem(ctx, err)
	}
	s.url.mu.Lock()
	completed, aborted := sink.completed, sink.aborted
	s.url.mu.Unlock()
	if !completed {
		return fmt.Sprintf("SQL Server reported its backup to %s done, but the upload never completed at the streamer (%v)", url, aborted),
			"make sure the advertised address " + s.url.cfg.Advertise + " leads to this streamer and to nothing else (no proxy or load balancer in between)"
	}
	return "", ""
}

// checkID is the id of a URL check: its access key and the name under
// which its upload goes, as a job id is for a job. It never names a
// staging file.
func checkID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "check-" + hex.EncodeToString(b), nil
}

// osErrorRE finds the operating system error in SQL Server's message on a
// backup device ("Operating system error 12175(...)"): the number is the
// WinHTTP error of its S3 connector.
var osErrorRE = regexp.MustCompile(`Operating system error (\d+)`)

// urlProblem turns the failure of the check's backup into what went wrong
// and the exact fix.
func (s *Service) urlProblem(ctx context.Context, err error) (problem, fix string) {
	addr := s.url.cfg.Advertise
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Sprintf("SQL Server did not finish a backup of model to the streamer at %s within %v", addr, urlCheckTimeout),
			fmt.Sprintf("a firewall that drops packets to %s (rather than refusing them) makes SQL Server wait: let TCP from SQL Server's host to that port through, then check again", addr)
	case ctx.Err() != nil:
		return "the streamer stopped during the check", "check again"
	}
	var oserr int
	if m := osErrorRE.FindStringSubmatch(err.Error()); m != nil {
		oserr, _ = strconv.Atoi(m[1])
	}
	switch oserr {
	case 12175: // ERROR_WINHTTP_SECURE_FAILURE
		return fmt.Sprintf("SQL Server does not trust the certificate of the streamer at %s (operating system error 12175): its host does not trust coffer's CA", addr),
			s.trustFix()
	case 12029, 12002, 12007: // cannot connect, timed out, name not resolved
		return fmt.Sprintf("SQL Server cannot reach the streamer at the advertised address %s (operating system error %d)", addr, oserr),
			fmt.Sprintf("set --url-advertise (COFFER_URL_ADVERTISE) to a host:port that SQL Server's host can connect to, as that host resolves the name, "+
				"and open that port to it through any firewall; the address is now %s", addr)
	case 5: // access denied: the endpoint refused the signed request
		return fmt.Sprintf("the streamer at %s refused SQL Server's signed request (operating system error 5, access denied)", addr),
			"the request's signature holds for 15 minutes: set the clocks of SQL Server's host and the streamer's host right (NTP), " +
				"and let SQL Server reach the streamer directly, with no proxy that alters requests"
	}
	return fmt.Sprintf("the check's backup of model to the streamer at %s failed: %v", addr, err),
		"SQL Server's message says what it met; docs/url-mode.md lists what URL mode needs"
}

// trustFix tells how to make SQL Server's host trust coffer's CA.
func (s *Service) trustFix() string {
	cert := "coffer's CA certificate (ca.pem in the streamer's CA directory, COFFER_CA_DIR; coffer ca init prints where it is)"
	if f := s.url.cfg.CAFile; f != "" {
		cert = "coffer's CA certificate, " + f + " on the streamer's host,"
	}
	return "copy " + cert + " to SQL Server's host, then on Linux: save it as /var/opt/mssql/security/ca-certificates/coffer-ca.crt " +
		"(coffer ca init --copy-to that path does it where the CA directory is at hand) and restart SQL Server; " +
		"on Windows, in an elevated PowerShell: Import-Certificate -FilePath coffer-ca.crt -CertStoreLocation Cert:\\LocalMachine\\Root. " +
		"Then check again (docs/url-mode.md)"
}
