package autoprotect

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/pkg/daemon"
)

// Name is the service's name: its durable consumers' prefix and the
// service its poison reports name.
const Name = "autoprotect"

// Declaration declares autoprotect once, for cmd/autoprotect and
// `coffer up`.
var Declaration = daemon.Service{Name: Name, Register: register}

func register(f *daemon.Flags) daemon.Settings {
	s := &daemon.Config[Config]{Check: check, New: build}
	c := &s.Value
	f.Duration(&c.InitialInterval, "autoprotect-initial-interval", "COFFER_AUTOPROTECT_INITIAL_INTERVAL", 5*time.Second,
		"wait before the first retry of a failed protection, doubling at each retry")
	f.Int(&c.Attempts, "autoprotect-attempts", "COFFER_AUTOPROTECT_ATTEMPTS", 4,
		"tries before a failed protection is reported as a failed job")
	return s
}

// check validates the settings the flags set, naming the flags.
func check(c Config) error {
	var errs []error
	if c.InitialInterval <= 0 {
		errs = append(errs, fmt.Errorf("--autoprotect-initial-interval %v: want a positive duration", c.InitialInterval))
	}
	if c.Attempts < 1 {
		errs = append(errs, fmt.Errorf("--autoprotect-attempts %d: want at least 1", c.Attempts))
	}
	return errors.Join(errs...)
}

func build(_ context.Context, d daemon.Deps, c Config) (daemon.Runner, error) {
	c.Logger, c.TracerProvider = d.Logger, d.TracerProvider
	return New(d.Bus, d.Catalog, c)
}
