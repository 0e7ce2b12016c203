package alerter

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/cofferhq/coffer/pkg/alert"
)

// Config configures the alerter. Zero values mean the defaults.
type Config struct {
	// Channels are where every alert goes, besides the channels the
	// catalog's settings name.
	Channels []alert.Channel
	// SMTP is the mail server of the settings' mail channels; nil when
	// there is none.
	SMTP *alert.SMTP
	// HTTPClient posts to the settings' webhooks. Default: a 30s timeout.
	HTTPClient *http.Client
	// Interval is how often the RPO rule is evaluated and unsent
	// notifications are swept. Default 1m.
	Interval time.Duration
	// MaxEventAge: alerts opened by older events are recorded, not sent
	// (alert.Config.MaxEventAge). Default 1h.
	MaxEventAge time.Duration
	// Patience is how long one notification is retried on a channel
	// before a later sweep takes it over. Default 10m.
	Patience time.Duration
	// InitialInterval is the first wait between two tries of a channel.
	// Default 1s.
	InitialInterval time.Duration
	// DrainTimeout bounds how long Run waits, once its context is done,
	// for the running handlers and the sending. Default 30s.
	DrainTimeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the service's records. Default: discard.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Interval == 0 {
		c.Interval = time.Minute
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
}

// Validate reports every problem with c at once. Zero values are valid
// where they mean a default.
func (c Config) Validate() error {
	var errs []error
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("negative interval %v", c.Interval))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("negative drain timeout %v", c.DrainTimeout))
	}
	return errors.Join(errs...)
}

// alertConfig is the part of c package alert reads.
func (c Config) alertConfig() alert.Config {
	return alert.Config{Channels: c.Channels, SMTP: c.SMTP, HTTPClient: c.HTTPClient, MaxEventAge: c.MaxEventAge,
		Patience: c.Patience, InitialInterval: c.InitialInterval, Now: c.Now, Logger: c.Logger}
}
