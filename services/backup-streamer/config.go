package streamer

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/cofferhq/coffer/pkg/metrics"
)

// defaultWorkers is Config.Workers's default.
const defaultWorkers = 2

// defaultAckWait is Config.AckWait's default.
const defaultAckWait = 2 * time.Minute

// Config configures the streamer. Zero values mean the defaults, except
// where Validate says a field is required.
type Config struct {
	// MasterKey is the operator's 32-byte master key; it opens the sealed
	// connection strings of the instances. Required.
	MasterKey []byte
	// StagingDir is the directory, shared with the SQL Server instances,
	// where backups are written and restores reassembled. Required.
	StagingDir string
	// StagingMaxAge is how old a staging file may be before the streamer
	// takes it for the leftover of a crashed job and deletes it at start.
	// Default 24h (longer than any backup file stays).
	StagingMaxAge time.Duration
	// ServerStagingDir is StagingDir as SQL Server sees it, when that path
	// differs (a container's volume, a share). Default StagingDir.
	ServerStagingDir string
	// Workers is how many jobs this process runs at once. Default 2
	// (defaultWorkers).
	Workers int
	// AckWait is how long JetStream waits before handing a job to another
	// worker; the bus tells it every AckWait/3 that a job still runs.
	// Default 2m.
	AckWait time.Duration
	// MaxDeliver is how many times a job is tried when it fails for a
	// transient reason (catalog or bus unreachable, instance unreachable)
	// before it is failed. Default 5.
	MaxDeliver int
	// Backoff is the delay before each redelivery. Default 5s, 30s, 2m,
	// the last repeating.
	Backoff []time.Duration
	// PollInterval is how long the streamer waits for a growing backup
	// file before reading on. Default 20ms.
	PollInterval time.Duration
	// SerializedRetry is the first wait before a BACKUP that SQL Server
	// refused because another backup of the database runs (3023) is tried
	// again; the waits double up to 30 s. Default 1s.
	SerializedRetry time.Duration
	// ProgressInterval is the least time between two progress reports of
	// a job. Default 2s.
	ProgressInterval time.Duration
	// DrainTimeout bounds the wait for running jobs at shutdown; jobs still
	// running then are cancelled and handed back. Default 30s.
	DrainTimeout time.Duration
	// VaultWorkers is how many chunks are compressed, sealed and uploaded
	// at once for one job (vault.WriterOptions.Workers). Default: the
	// vault's (GOMAXPROCS).
	VaultWorkers int
	// SessionRefresh is how often a backup's vault session is stored
	// again; garbage collection takes the session of a writer that died
	// for dead ten refreshes after its last. Default
	// vault.DefaultSessionRefresh (a minute).
	SessionRefresh time.Duration
	// ReadBuffer is the size of the reads from a staging file. Default
	// 1 MiB.
	ReadBuffer int
	// Endpoint, when its TLS is set, makes the streamer the S3 endpoint
	// of URL mode: SQL Server 2022 and later back up to it and restore
	// from it, with no staging file. Older instances keep disk mode.
	Endpoint Endpoint
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives the service's records; default discard.
	Logger *slog.Logger
	// TracerProvider makes the service's spans; default no-op.
	TracerProvider trace.TracerProvider
	// Metrics counts the jobs taken and the bytes moved; nil records
	// nothing.
	Metrics *metrics.Metrics
}

func (c *Config) setDefaults() {
	if c.ServerStagingDir == "" {
		c.ServerStagingDir = c.StagingDir
	}
	if c.StagingMaxAge == 0 {
		c.StagingMaxAge = 24 * time.Hour
	}
	if c.Workers == 0 {
		c.Workers = defaultWorkers
	}
	if c.AckWait == 0 {
		c.AckWait = defaultAckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 5
	}
	if c.Backoff == nil {
		c.Backoff = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute}
	}
	if c.SerializedRetry == 0 {
		c.SerializedRetry = time.Second
	}
	if c.PollInterval == 0 {
		c.PollInterval = 20 * time.Millisecond
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = 2 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.ReadBuffer == 0 {
		c.ReadBuffer = 1 << 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TracerProvider == nil {
		c.TracerProvider = noop.NewTracerProvider()
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.MasterKey) != 32 {
		errs = append(errs, fmt.Errorf("master key: %d bytes, want 32", len(c.MasterKey)))
	}
	if c.StagingDir == "" {
		errs = append(errs, errors.New("no staging directory"))
	}
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("workers %d: want at least 1", c.Workers))
	}
	if c.AckWait < 0 || (c.AckWait > 0 && c.AckWait < time.Second) {
		errs = append(errs, fmt.Errorf("ack wait %v: want at least 1s", c.AckWait))
	}
	if c.MaxDeliver < -1 {
		errs = append(errs, fmt.Errorf("max deliver %d: want -1 (unlimited) or at least 1", c.MaxDeliver))
	}
	for i, d := range c.Backoff {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("backoff[%d] %v: want a positive duration", i, d))
		}
	}
	if c.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("poll interval %v: want a positive duration", c.PollInterval))
	}
	if c.ProgressInterval < 0 {
		errs = append(errs, fmt.Errorf("progress interval %v: want a positive duration", c.ProgressInterval))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("drain timeout %v: want a positive duration", c.DrainTimeout))
	}
	if c.VaultWorkers < 0 {
		errs = append(errs, fmt.Errorf("vault workers %d: want 0 (default) or more", c.VaultWorkers))
	}
	if c.ReadBuffer < 0 {
		errs = append(errs, fmt.Errorf("read buffer %d: want 0 (default) or more", c.ReadBuffer))
	}
	if c.SessionRefresh < 0 || (c.SessionRefresh > 0 && c.SessionRefresh < 100*time.Millisecond) {
		errs = append(errs, fmt.Errorf("session refresh %v: want 0 (default) or at least 100ms", c.SessionRefresh))
	}
	return errors.Join(errs...)
}
