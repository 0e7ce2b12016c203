package alerter

import (
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/pkg/alert"
)

// Config configures the alerter. Zero values mean the defaults.
type Config struct {
	// Config is how alerts are sent: the channels besides the catalog's
	// settings', the SMTP server of the settings' mail channels, the
	// retries, the clock and the logger.
	alert.Config
	// Interval is how often the RPO rule is evaluated and unsent
	// notifications are swept. Default 1m.
	Interval time.Duration
	// DrainTimeout bounds how long Run waits, once its context is done,
	// for the running handlers and the sending. Default 30s.
	DrainTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	c.Config = c.Config.WithDefaults()
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
	return errors.Join(append(errs, c.Config.Validate())...)
}
