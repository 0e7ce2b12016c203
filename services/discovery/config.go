package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Config configures the discovery service. Zero values mean the defaults,
// except MasterKey, which is required.
type Config struct {
	// MasterKey is the operator's 32-byte master key. Connection strings
	// are sealed with a key derived from it for the purpose
	// "instance-credentials", bound to the instance name.
	MasterKey []byte
	// Interval is how often every registered instance is polled: one
	// light query (mssql.Client.Fingerprint) that notices a database
	// created, dropped or changed, followed by the full listing only when
	// it did. Default 3s, so a new database is seen within seconds.
	Interval time.Duration
	// FullInterval is the longest an instance goes without a full listing
	// even when the light query sees no change: the listing also brings
	// log chain positions, file sizes and availability group roles, which
	// the light query does not cover. Default 5m.
	FullInterval time.Duration
	// Ticks, when not nil, replaces the Interval timer: Run polls every
	// instance each time a value arrives. Tests drive rediscovery with it.
	Ticks <-chan time.Time
	// Timeout bounds the conversation with one instance: connect, log in,
	// read the server and its databases. Default 30s.
	Timeout time.Duration
	// Concurrency is how many discovery requests are handled at once, and
	// how many instances DiscoverAll discovers at once. Default 4.
	Concurrency int
	// DrainTimeout bounds how long Run waits for running handlers once its
	// context is done. Default Timeout + 15s.
	DrainTimeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the service's records. Default: discard.
	Logger *slog.Logger
	// TracerProvider makes the service's spans. Default: no-op.
	TracerProvider trace.TracerProvider
}

func (c *Config) setDefaults() {
	if c.Interval == 0 {
		c.Interval = 3 * time.Second
	}
	if c.FullInterval == 0 {
		c.FullInterval = 5 * time.Minute
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.DrainTimeout == 0 {
		// Long enough for a discovery under way to finish its look.
		c.DrainTimeout = c.Timeout + 15*time.Second
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

// Validate reports every problem with c at once. Zero values are valid
// where they mean a default.
func (c Config) Validate() error {
	var errs []error
	if len(c.MasterKey) == 0 {
		errs = append(errs, errors.New("master key is required (it opens the instances' connection strings)"))
	} else if len(c.MasterKey) != 32 {
		errs = append(errs, fmt.Errorf("master key is %d bytes, want 32", len(c.MasterKey)))
	}
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("negative interval %v", c.Interval))
	}
	if c.FullInterval < 0 {
		errs = append(errs, fmt.Errorf("negative full interval %v", c.FullInterval))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("negative timeout %v", c.Timeout))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("negative concurrency %d", c.Concurrency))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("negative drain timeout %v", c.DrainTimeout))
	}
	return errors.Join(errs...)
}
