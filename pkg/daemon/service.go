package daemon

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/metrics"
	"github.com/cofferhq/coffer/pkg/vault"
)

// Service declares one coffer service, once: its name, what it needs of
// the process, its settings and how it is built. The standalone binary
// (Main) and `coffer up` are both made from the declarations, so every
// setting reads and means the same in either.
type Service struct {
	// Name names the service: its binary, its --services entry, its
	// durable consumers' owner in logs and its poison reports.
	Name string
	// NeedMasterKey: the service is given the operator's master key.
	NeedMasterKey bool
	// Vault says whether the service uses the vault, and whether it may
	// create a new one.
	Vault VaultUse
	// Register registers the service's settings on f and returns them,
	// filled once f's flag set has been parsed.
	Register func(f *Flags) Settings
}

// VaultUse is how a service uses the vault.
type VaultUse int

const (
	// NoVault: the service never opens the vault.
	NoVault VaultUse = iota
	// OpensVault: the service opens the vault, waiting for it to be
	// created.
	OpensVault
	// CreatesVault: the service creates the vault when the store holds
	// none (the committer; run one replica first).
	CreatesVault
)

// Settings are one service's parsed settings.
type Settings interface {
	// Validate reports every problem with the settings at once.
	Validate() error
	// Build constructs the service from the settings and d.
	Build(ctx context.Context, d Deps) (Runner, error)
}

// Runner is a built service.
type Runner interface {
	// Run runs the service until ctx is done, then drains.
	Run(ctx context.Context) error
}

// Deps are what a service is built from, besides its settings.
type Deps struct {
	Bus            *bus.Bus
	Catalog        *catalog.Catalog
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	// Metrics is the process's metrics (one registry for every service
	// it runs); nil records nothing.
	Metrics *metrics.Metrics
	// MasterKey is the operator's master key when the service needs one
	// (NeedMasterKey); nil otherwise.
	MasterKey []byte
	// Vault is the opened vault when the service uses one; nil otherwise.
	Vault *vault.Vault
	// DataDir is the process's data directory (`coffer up --data`), where
	// services keep local state they are given no other place for; ""
	// for a standalone binary.
	DataDir string
	// Alone: the service is the only one in its process, and may set what
	// is the whole process's (the Go runtime's memory limit).
	Alone bool
}

// Config is the usual Settings: a value of the service's configuration
// type that the flags fill, validated by Check and built by New.
type Config[C any] struct {
	// Value holds the settings; Register points the flags into it.
	Value C
	// Check validates Value; nil accepts anything.
	Check func(C) error
	// New builds the service from Value.
	New func(ctx context.Context, d Deps, c C) (Runner, error)
}

// Validate runs Check.
func (c *Config[C]) Validate() error {
	if c.Check == nil {
		return nil
	}
	return c.Check(c.Value)
}

// Build runs New.
func (c *Config[C]) Build(ctx context.Context, d Deps) (Runner, error) {
	return c.New(ctx, d, c.Value)
}
