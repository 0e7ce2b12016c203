package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/pkg/daemon"
)

// Name is the service's name: its durable consumers' prefix and the
// service its poison reports name.
const Name = "scheduler"

// Declaration declares the scheduler once, for cmd/scheduler and `coffer
// up`.
var Declaration = daemon.Service{Name: Name, Register: register}

func register(f *daemon.Flags) daemon.Settings {
	s := &daemon.Config[Config]{Check: check, New: build}
	c := &s.Value
	f.Duration(&c.TickInterval, "scheduler-tick-interval", "COFFER_SCHEDULER_TICK_INTERVAL", 15*time.Second,
		"how often due backups are queued")
	f.Int(&c.MaxConcurrentPerInstance, "scheduler-max-per-instance", "COFFER_SCHEDULER_MAX_PER_INSTANCE", 20,
		"backups queued and running at once per instance")
	f.Duration(&c.LeaseTTL, "scheduler-lease-ttl", "COFFER_SCHEDULER_LEASE_TTL", 5*time.Second,
		"how long a scheduler replica holds its partitions of the fleet without renewing them: one that dies loses them to the others after this")
	return s
}

// check validates the settings the flags set, naming the flags.
func check(c Config) error {
	var errs []error
	if c.TickInterval <= 0 {
		errs = append(errs, fmt.Errorf("--scheduler-tick-interval %v: want a positive duration", c.TickInterval))
	}
	if c.MaxConcurrentPerInstance < 1 {
		errs = append(errs, fmt.Errorf("--scheduler-max-per-instance %d: want at least 1", c.MaxConcurrentPerInstance))
	}
	if c.LeaseTTL < 2*time.Second {
		errs = append(errs, fmt.Errorf("--scheduler-lease-ttl %v: want at least 2s", c.LeaseTTL))
	}
	return errors.Join(errs...)
}

func build(_ context.Context, d daemon.Deps, c Config) (daemon.Runner, error) {
	c.Logger, c.TracerProvider, c.Metrics = d.Logger, d.TracerProvider, d.Metrics
	return New(d.Bus, d.Catalog, c)
}
