package committer

import (
	"context"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/pkg/daemon"
)

// Declaration declares the committer once, for cmd/committer and `coffer
// up`. It creates the vault when the store holds none: run one replica
// first, so that only one process ever does.
var Declaration = daemon.Service{Name: Name, NeedMasterKey: true, Vault: daemon.CreatesVault, Register: register}

func register(f *daemon.Flags) daemon.Settings {
	s := &daemon.Config[Config]{Check: check, New: build}
	f.Duration(&s.Value.GCInterval, "gc-interval", "COFFER_GC_INTERVAL", time.Hour,
		"how often the vault's unreferenced chunks are collected")
	return s
}

// check validates the settings the flags set, naming the flags.
func check(c Config) error {
	if c.GCInterval <= 0 {
		return fmt.Errorf("--gc-interval %v: want a positive duration", c.GCInterval)
	}
	return nil
}

func build(_ context.Context, d daemon.Deps, c Config) (daemon.Runner, error) {
	c.Logger, c.TracerProvider, c.Metrics = d.Logger, d.TracerProvider, d.Metrics
	return New(d.Bus, d.Catalog, d.Vault, c)
}
