// Package daemon is the start-up every standalone coffer service binary
// shares: it reads the environment once, connects to NATS, sets up
// telemetry, the streams and the catalog, runs the service until SIGINT or
// SIGTERM, and shuts down in stages. Nothing below main reads the
// environment.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/metrics"
	"github.com/cofferhq/coffer/pkg/telemetry"
	"github.com/cofferhq/coffer/pkg/topology"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Deps are what a service is built from.
type Deps struct {
	Bus            *bus.Bus
	Catalog        *catalog.Catalog
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	// Metrics is the process's metrics, served on COFFER_METRICS_ADDR.
	Metrics *metrics.Metrics
	// MasterKey is the operator's master key, when the service needs one
	// (NeedMasterKey); nil otherwise.
	MasterKey []byte
	// Getenv reads the service's own settings; only the service's New
	// function should call it.
	Getenv func(string) string
}

// Spec describes a service binary.
type Spec struct {
	Name          string
	NeedMasterKey bool
	// Run runs the service until ctx is cancelled, then drains.
	Run func(ctx context.Context, d Deps) error
}

// Main runs a service binary and exits the process with its status.
func Main(spec Spec) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, spec, os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", spec.Name, err)
		os.Exit(1)
	}
}

// MasterKey reads the master key from COFFER_MASTER_KEY (hex or base64) or
// the file named by COFFER_MASTER_KEY_FILE.
func MasterKey(getenv func(string) string) ([]byte, error) {
	if v := getenv("COFFER_MASTER_KEY"); v != "" {
		k, err := vault.ParseMasterKey(v)
		if err != nil {
			return nil, fmt.Errorf("COFFER_MASTER_KEY: %w", err)
		}
		return k, nil
	}
	if f := getenv("COFFER_MASTER_KEY_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read COFFER_MASTER_KEY_FILE: %w", err)
		}
		k, err := vault.ParseMasterKey(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("COFFER_MASTER_KEY_FILE %s: %w", f, err)
		}
		return k, nil
	}
	return nil, errors.New("no master key: set COFFER_MASTER_KEY (64 hex characters) or COFFER_MASTER_KEY_FILE")
}

func run(ctx context.Context, spec Spec, getenv func(string) string) error {
	logger := telemetry.NewLogger(os.Stderr, slog.LevelInfo).With("service", spec.Name)
	tcfg := telemetry.FromEnv(getenv)
	if tcfg.ServiceName == "" {
		tcfg.ServiceName = "coffer-" + spec.Name
	}
	shutdownTracing, err := telemetry.Setup(ctx, tcfg)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shutdownTracing(sctx)
	}()
	var key []byte
	if spec.NeedMasterKey {
		if key, err = MasterKey(getenv); err != nil {
			return err
		}
	}
	url := getenv("COFFER_NATS_URL")
	if url == "" {
		url = nats.DefaultURL
	}
	nc, err := nats.Connect(url, nats.Name("coffer-"+spec.Name), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	defer nc.Drain()
	b, err := NewBus(nc, spec.Name, logger, otel.GetTracerProvider())
	if err != nil {
		return err
	}
	cat, err := topology.Setup(ctx, b)
	if err != nil {
		return err
	}
	m, err := metrics.Start(ctx, getenv("COFFER_METRICS_ADDR"), b, logger)
	if err != nil {
		return err
	}
	logger.Info("service started", "nats", url)
	err = spec.Run(ctx, Deps{Bus: b, Catalog: cat, Logger: logger, TracerProvider: otel.GetTracerProvider(), Metrics: m, MasterKey: key, Getenv: getenv})
	logger.Info("service stopped", "err", err)
	return err
}

// NewBus returns a bus whose poison messages are reported as JobFailed
// events from service, so that a person sees them.
func NewBus(nc *nats.Conn, service string, logger *slog.Logger, tp trace.TracerProvider) (*bus.Bus, error) {
	var b *bus.Bus
	cfg := bus.Config{Logger: logger, TracerProvider: tp, Propagator: telemetry.Propagator(),
		OnPoison: func(ctx context.Context, m *bus.Message, err error) {
			f := event.Poisoned(service, m.Subject, m.Data, m.ID(), err, time.Now())
			if perr := b.Publish(ctx, cofferv1.SubjectJobFailed, f, f.Meta.EventId); perr != nil {
				logger.Error("report poison message", "subject", m.Subject, "err", perr)
			}
		}}
	b, err := bus.New(nc, cfg)
	return b, err
}
