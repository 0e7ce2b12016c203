package committer

import (
	"context"
	"errors"
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
	f.Duration(&s.Value.CopyInterval, "copy-interval", "COFFER_COPY_INTERVAL", time.Minute,
		"how often recovery points are swept for second copies that are due (a policy's copy rule)")
	f.Int(&s.Value.SoftDeleteDays, "soft-delete-days", "COFFER_SOFT_DELETE_DAYS", 14,
		"how many days a deleted recovery point stays restorable (coffer rp undelete) before garbage collection deletes it")
	return s
}

// check validates the settings the flags set, naming the flags.
func check(c Config) error {
	var errs []error
	if c.GCInterval <= 0 {
		errs = append(errs, fmt.Errorf("--gc-interval %v: want a positive duration", c.GCInterval))
	}
	if c.CopyInterval <= 0 {
		errs = append(errs, fmt.Errorf("--copy-interval %v: want a positive duration", c.CopyInterval))
	}
	if c.SoftDeleteDays < 1 {
		errs = append(errs, fmt.Errorf("--soft-delete-days %d: want at least 1", c.SoftDeleteDays))
	}
	return errors.Join(errs...)
}

func build(_ context.Context, d daemon.Deps, c Config) (daemon.Runner, error) {
	c.Logger, c.TracerProvider, c.Metrics, c.MasterKey = d.Logger, d.TracerProvider, d.Metrics, d.MasterKey
	return New(d.Bus, d.Catalog, d.Vault, c)
}
