package autoprotect

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Config configures the auto-protection service. Zero values mean the
// defaults.
type Config struct {
	// InitialInterval is the wait before the first retry; each further
	// wait is Multiplier times the one before. Default 5s (tests use
	// milliseconds).
	InitialInterval time.Duration
	// Multiplier grows the wait from one retry to the next. Default 2.
	Multiplier float64
	// RandomizationFactor spreads each wait by up to this fraction either
	// way, so that many databases failing together do not retry together.
	// Default 0 (exact waits); below 1/3 each wait stays longer than the
	// one before it.
	RandomizationFactor float64
	// MaxInterval caps one wait. Default 10m.
	MaxInterval time.Duration
	// Attempts is how many times a database is asked for before the
	// failure is reported: the first try and the retries. Default 4.
	Attempts int
	// RetryConcurrency is how many failures are handled (and waited on) at
	// once. Default 32.
	RetryConcurrency int
	// DrainTimeout bounds how long Run waits for running handlers once its
	// context is done. A retry waiting out its backoff is not waited for:
	// it is given back, and redelivered after a restart. Default 30s.
	DrainTimeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the service's records. Default: discard.
	Logger *slog.Logger
	// TracerProvider makes the service's spans. Default: no-op.
	TracerProvider trace.TracerProvider
}

func (c *Config) setDefaults() {
	if c.InitialInterval == 0 {
		c.InitialInterval = 5 * time.Second
	}
	if c.Multiplier == 0 {
		c.Multiplier = 2
	}
	if c.MaxInterval == 0 {
		c.MaxInterval = 10 * time.Minute
	}
	if c.Attempts == 0 {
		c.Attempts = 4
	}
	if c.RetryConcurrency == 0 {
		c.RetryConcurrency = 32
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
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
	if c.InitialInterval < 0 {
		errs = append(errs, fmt.Errorf("negative initial interval %v", c.InitialInterval))
	}
	if c.Multiplier != 0 && c.Multiplier < 1 {
		errs = append(errs, fmt.Errorf("multiplier %v below 1: retries must not come faster", c.Multiplier))
	}
	if c.RandomizationFactor < 0 || c.RandomizationFactor >= 1 {
		errs = append(errs, fmt.Errorf("randomization factor %v outside [0, 1)", c.RandomizationFactor))
	}
	if c.MaxInterval < 0 {
		errs = append(errs, fmt.Errorf("negative max interval %v", c.MaxInterval))
	}
	if c.Attempts < 0 {
		errs = append(errs, fmt.Errorf("negative attempts %d", c.Attempts))
	}
	if c.RetryConcurrency < 0 {
		errs = append(errs, fmt.Errorf("negative retry concurrency %d", c.RetryConcurrency))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("negative drain timeout %v", c.DrainTimeout))
	}
	return errors.Join(errs...)
}
