// Package daemon runs coffer's services. Each service declares itself
// once (Service: name, settings with their flags and COFFER_* variables,
// construction); the standalone binaries (Main) and `coffer up` are both
// made from those declarations: they register the settings, parse them
// once, connect to NATS (ConnectNATS), set up the streams and the catalog,
// build each service over its own bus (Build), run them until SIGINT or
// SIGTERM (Go), and shut down in stages. Nothing below main reads the
// environment. An external NATS is reached with [NATSOptions]: the
// service's own user (COFFER_NATS_NKEY_FILE and the rest) over TLS
// (COFFER_NATS_CA_FILE), as docs/security.md deploys them.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/joblog"
	"github.com/cofferhq/coffer/pkg/metrics"
	"github.com/cofferhq/coffer/pkg/telemetry"
	"github.com/cofferhq/coffer/pkg/topology"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Main runs svc as a standalone binary (flags from os.Args, settings
// from the environment, an external NATS) and exits the process with
// its status.
func Main(svc Service) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	s, err := ParseStandalone(svc, os.Args[1:], os.Getenv, os.Stderr)
	if err == nil {
		err = s.Run(ctx)
	}
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintf(os.Stderr, "%s: %v\n", svc.Name, err)
		os.Exit(1)
	}
}

// Configured is a declared service with its settings registered.
type Configured struct {
	Service
	Settings Settings
}

// Register registers the settings of each service on f. Two services
// registering one flag name is a programming error, and panics (the
// flag package's).
func Register(f *Flags, svcs ...Service) []Configured {
	out := make([]Configured, len(svcs))
	for i, s := range svcs {
		out[i] = Configured{Service: s, Settings: s.Register(f)}
	}
	return out
}

// Standalone is a standalone binary's parsed configuration.
type Standalone struct {
	Common  Common
	Service Configured
	getenv  func(string) string
}

// ParseStandalone registers the process's and svc's settings, parses
// args, and validates them, reporting every problem at once.
func ParseStandalone(svc Service, args []string, getenv func(string) string, stderr io.Writer) (*Standalone, error) {
	fs := flag.NewFlagSet(svc.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := NewFlags(fs, getenv)
	s := &Standalone{getenv: getenv}
	s.Common.Register(f, svc.Vault != NoVault)
	s.Service = Register(f, svc)[0]
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	errs = append(errs, f.Err(), s.Common.Validate(), s.Service.Settings.Validate())
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	return s, nil
}

// Run runs the service until ctx is done. Its metrics server (unless
// --metrics-addr is off) answers /healthz with 200 from the moment the
// service runs until it starts to stop, 503 before and after.
func (s *Standalone) Run(ctx context.Context) error {
	name := s.Service.Name
	// Build tags each service's records with its name
	logger := telemetry.NewLogger(os.Stderr, slog.LevelInfo)
	tcfg := telemetry.FromEnv(s.getenv)
	if tcfg.ServiceName == "" {
		tcfg.ServiceName = "coffer-" + name
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
	p := Process{Logger: logger, TracerProvider: otel.GetTracerProvider(), Metrics: metrics.New(), Topology: s.Common.Topology()}
	if addr := s.Common.MetricsAddr; addr != "off" {
		if addr == "" {
			addr = metrics.DefaultAddr
		}
		if _, err := p.Metrics.Serve(ctx, addr, logger.With("service", name)); err != nil {
			return err
		}
	}
	if s.Service.NeedMasterKey || s.Service.Vault != NoVault {
		if p.MasterKey, err = s.Common.MasterKey(); err != nil {
			return err
		}
	}
	url := s.Common.NATSURL
	if url == "" {
		url = nats.DefaultURL
	}
	nopts, err := NATSOptions(name, s.getenv, logger)
	if err != nil {
		return err
	}
	nc, err := ConnectNATS(url, "coffer-"+name, nopts...)
	if err != nil {
		return err
	}
	defer nc.Drain()
	svcs := []Configured{s.Service}
	if use := VaultUseOf(svcs); use != NoVault {
		vs := s.Common.Store
		vs.Logger = logger.With("service", name)
		store, err := vs.Open()
		if err != nil {
			return err
		}
		if use == CreatesVault {
			p.Vault, err = OpenVault(ctx, store, p.MasterKey, true)
		} else {
			p.Vault, err = WaitVault(ctx, store, p.MasterKey, logger.With("service", name))
		}
		if err != nil {
			return err
		}
	}
	built, _, err := Build(ctx, nc, svcs, p)
	if err != nil {
		return err
	}
	g := Go(built)
	// /healthz: ready from here until the service stops
	p.Metrics.SetReady(true)
	logger = logger.With("service", name)
	logger.Info("service started", "nats", url)
	select {
	case <-ctx.Done():
	case err = <-g.Failed():
	case <-g.Done(): // every service returned without an error
	}
	p.Metrics.SetReady(false)
	g.Stop()
	logger.Info("service stopped", "err", err)
	return err
}

// VaultUseOf is the strongest use of the vault among svcs: a process
// creates the vault when one of its services may.
func VaultUseOf(svcs []Configured) VaultUse {
	use := NoVault
	for _, s := range svcs {
		use = max(use, s.Vault)
	}
	return use
}

// Process is what a process gives each service it runs.
type Process struct {
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	// Metrics is given to every service; the buses Build makes report
	// their consumers' backlog to it.
	Metrics *metrics.Metrics
	// MasterKey is given to the services that need it.
	MasterKey []byte
	// Vault is given to the services that use it.
	Vault *vault.Vault
	// DataDir is Deps.DataDir.
	DataDir string
	// Topology sets up the streams and buckets.
	Topology topology.Config
}

// Built is a service built and ready to run.
type Built struct {
	Name   string
	Runner Runner
	// logs forwards the service's log lines about jobs; Go runs it
	// beside the service
	logs *joblog.Forwarder
}

// run runs the service and, beside it, the forwarder of its log lines
// about jobs, which publishes what is left once the service stopped.
func (b Built) run(ctx context.Context) error {
	if b.logs == nil {
		return b.Runner.Run(ctx)
	}
	fctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); b.logs.Run(fctx) }()
	defer func() { stop(); <-done }()
	return b.Runner.Run(ctx)
}

// Build sets up the streams and the catalog (topology.Setup), then builds
// each service over a bus of its own on nc, so that a poison message is
// reported as its service's.
func Build(ctx context.Context, nc *nats.Conn, svcs []Configured, p Process) ([]Built, *catalog.Catalog, error) {
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	var cat *catalog.Catalog
	out := make([]Built, 0, len(svcs))
	for _, s := range svcs {
		base := p.Logger.With("service", s.Name)
		b, err := NewBus(nc, s.Name, base, p.TracerProvider)
		if err != nil {
			return nil, nil, err
		}
		// the service's log lines about a job reach the job's record too;
		// the bus's own do not, so a failing publish of lines logs nothing
		// that would be forwarded again
		fwd := joblog.New(b, s.Name, 0)
		logger := slog.New(fwd.Handler(base.Handler()))
		if cat == nil {
			if cat, err = topology.Setup(ctx, b, p.Topology); err != nil {
				return nil, nil, err
			}
		}
		p.Metrics.WatchConsumers(b)
		d := Deps{Bus: b, Catalog: cat, Logger: logger, TracerProvider: p.TracerProvider, Metrics: p.Metrics, DataDir: p.DataDir, Alone: len(svcs) == 1}
		if s.NeedMasterKey {
			d.MasterKey = p.MasterKey
		}
		if s.Vault != NoVault {
			d.Vault = p.Vault
		}
		r, err := s.Settings.Build(ctx, d)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.Name, err)
		}
		out = append(out, Built{Name: s.Name, Runner: r, logs: fwd})
	}
	return out, cat, nil
}

// Group is services running together.
type Group struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	errc     chan error
	once     sync.Once
	doneOnce sync.Once
	done     chan struct{}
}

// Go runs each built service in a goroutine of its own until Stop.
//
// Each service runs with the profiler label service=NAME
// (runtime/pprof), which the goroutines it starts inherit, so that a CPU
// profile of a process running several services tells their costs apart
// (`go tool pprof -tagfocus service=backup-streamer`, or the fleet RPO
// benchmark). Work done on goroutines started before Run, or by someone
// else on a service's behalf, carries no label: the shared NATS
// connection's read loop (which receives every service's messages), the
// embedded NATS server, and whatever a service's Build started.
func Go(built []Built) *Group {
	ctx, cancel := context.WithCancel(context.Background())
	g := &Group{cancel: cancel, errc: make(chan error, len(built))}
	for _, s := range built {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			pprof.Do(ctx, pprof.Labels(ProfileLabel, s.Name), func(ctx context.Context) {
				if err := s.run(ctx); err != nil {
					g.errc <- fmt.Errorf("%s: %w", s.Name, err)
				}
			})
		}()
	}
	return g
}

// ProfileLabel is the profiler label (runtime/pprof) whose value is the
// name of the service a goroutine works for; see [Go].
const ProfileLabel = "service"

// Failed receives the error of each service that stops with one.
func (g *Group) Failed() <-chan error { return g.errc }

// Done is closed once every service has returned, with an error or not.
func (g *Group) Done() <-chan struct{} {
	g.doneOnce.Do(func() {
		g.done = make(chan struct{})
		go func() { g.wg.Wait(); close(g.done) }()
	})
	return g.done
}

// Stop cancels every service and waits for each to drain. It may be
// called more than once.
func (g *Group) Stop() {
	g.once.Do(func() {
		g.cancel()
		g.wg.Wait()
	})
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
