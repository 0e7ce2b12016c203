package discovery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/pkg/daemon"
)

// Name is the service's name: its durable consumer and the service its
// poison reports name.
const Name = "discovery"

// Declaration declares discovery once, for cmd/discovery and `coffer up`:
// it opens the instances' sealed connection strings with the master key.
var Declaration = daemon.Service{Name: Name, NeedMasterKey: true, Register: register}

func register(f *daemon.Flags) daemon.Settings {
	s := &daemon.Config[Config]{Check: check, New: build}
	c := &s.Value
	f.Duration(&c.Interval, "discovery-interval", "COFFER_DISCOVERY_INTERVAL", 3*time.Second,
		"how often every instance is polled with one light query that notices a database created, dropped or changed")
	f.Duration(&c.FullInterval, "discovery-full-interval", "COFFER_DISCOVERY_FULL_INTERVAL", 5*time.Minute,
		"the longest an instance goes without a full listing of its databases")
	f.Duration(&c.Timeout, "discovery-timeout", "COFFER_DISCOVERY_TIMEOUT", 30*time.Second,
		"bound on the conversation with one instance")
	f.Int(&c.Concurrency, "discovery-concurrency", "COFFER_DISCOVERY_CONCURRENCY", 4,
		"instances discovered at once")
	return s
}

func build(_ context.Context, d daemon.Deps, c Config) (daemon.Runner, error) {
	c.MasterKey, c.Logger, c.TracerProvider = d.MasterKey, d.Logger, d.TracerProvider
	return New(d.Bus, d.Catalog, c)
}

// check validates the settings the flags set, naming the flags.
func check(c Config) error {
	var errs []error
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"discovery-interval", c.Interval}, {"discovery-full-interval", c.FullInterval}, {"discovery-timeout", c.Timeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s %v: want a positive duration", d.flag, d.v))
		}
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("--discovery-concurrency %d: want at least 1", c.Concurrency))
	}
	return errors.Join(errs...)
}
