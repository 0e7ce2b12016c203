package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/secret"
	"github.com/cofferhq/coffer/pkg/telemetry"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Durable is the name of the service's durable consumer.
const Durable = "discovery"

// credentialsPurpose is the purpose the gateway seals connection strings
// for; both sides must derive the same key.
const credentialsPurpose = "instance-credentials"

// Service is the discovery service. Build it with New and run it with Run.
type Service struct {
	bus       *bus.Bus
	instances *catalog.Bucket
	inventory *catalog.Bucket
	sealer    *secret.Sealer
	cfg       Config
	log       *slog.Logger
	tracer    trace.Tracer
	locks     keyedMutex

	// What discovery keeps between polls of an instance, under the
	// instance's lock (and mu for the maps): an open client, and the
	// fingerprint of the last full listing. Both are discovery's own,
	// rebuilt from the catalog after a restart.
	mu      sync.Mutex
	clients map[string]*instanceClient
	marks   map[string]mark
}

// instanceClient is an open client and the connection string it was
// opened with.
type instanceClient struct {
	dsn    string
	client *mssql.Client
}

// mark is what the last full listing of an instance saw: the summary of
// sys.databases before it, and when.
type mark struct {
	fp mssql.Fingerprint
	at time.Time
}

// New returns a discovery service publishing on b and keeping its state in
// cat, which must hold the `instances` and `inventory` buckets (as
// topology.Setup opens them).
func New(b *bus.Bus, cat *catalog.Catalog, cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("discovery config: %w", err)
	}
	if b == nil || cat == nil {
		return nil, errors.New("discovery: a bus and a catalog are required")
	}
	sealer, err := secret.New(cfg.MasterKey, credentialsPurpose)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	return &Service{
		bus:       b,
		instances: cat.Bucket(cofferv1.BucketInstances),
		inventory: cat.Bucket(cofferv1.BucketInventory),
		sealer:    sealer,
		cfg:       cfg,
		log:       cfg.Logger,
		tracer:    cfg.TracerProvider.Tracer("github.com/cofferhq/coffer/services/discovery"),
		clients:   map[string]*instanceClient{},
		marks:     map[string]mark{},
	}, nil
}

// Run consumes registration and discovery requests, discovers every
// registered instance at start and on every tick of the interval, and
// blocks until ctx is done. It then stops taking requests and waits (up to
// Config.DrainTimeout) for the running ones before it returns.
func (s *Service) Run(ctx context.Context) error {
	sub, err := s.bus.Consume(ctx, bus.ConsumerSpec{
		Stream:         cofferv1.StreamEvents,
		Durable:        Durable,
		FilterSubjects: []string{cofferv1.SubjectInstanceAddRequested, cofferv1.SubjectDiscoverRequested},
		Backoff:        []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second},
		Concurrency:    s.cfg.Concurrency,
	}, s.handle)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	ticks, stop := s.ticker()
	defer stop()
	defer s.closeClients()
	s.rediscover(ctx)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case _, ok := <-ticks:
			if !ok {
				ticks = nil // no more ticks: requests only
				continue
			}
			s.rediscover(ctx)
		}
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
	defer cancel()
	if err := sub.Drain(dctx); err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	return nil
}

func (s *Service) ticker() (<-chan time.Time, func()) {
	if s.cfg.Ticks != nil {
		return s.cfg.Ticks, func() {}
	}
	t := time.NewTicker(s.cfg.Interval)
	return t.C, t.Stop
}

// rediscover is one tick of the timer: a failure is logged, and the next
// tick tries again.
func (s *Service) rediscover(ctx context.Context) {
	if err := s.PollAll(ctx); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "periodic discovery incomplete", slog.Any("error", err))
	}
}

// DiscoverAll discovers every registered instance now, Config.Concurrency
// at a time, with a full listing each. An unhealthy instance is recorded
// as such and is not an error; the error joins the failures to read or
// write the catalog or to publish, instance by instance.
func (s *Service) DiscoverAll(ctx context.Context) error {
	return s.forAll(ctx, s.discoverRegistered)
}

// PollAll polls every registered instance, as each tick of the timer
// does: the light query, and the full listing only for an instance where
// it saw a change, that is unhealthy, or whose last full listing is
// older than Config.FullInterval.
func (s *Service) PollAll(ctx context.Context) error {
	return s.forAll(ctx, s.poll)
}

// forAll runs fn for every registered instance, Config.Concurrency at a
// time.
func (s *Service) forAll(ctx context.Context, fn func(context.Context, string) error) error {
	var names []string
	err := s.instances.List(ctx, "", func() proto.Message { return &cofferv1.Instance{} },
		func(_ string, m proto.Message) error {
			names = append(names, m.(*cofferv1.Instance).GetName())
			return nil
		})
	if err != nil {
		return fmt.Errorf("list instances: %w", err)
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	work := make(chan string)
	for range min(s.cfg.Concurrency, len(names)) {
		wg.Go(func() {
			for name := range work {
				if err := fn(ctx, name); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, n := range names {
		select {
		case work <- n:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}

// handle settles one request from the bus.
func (s *Service) handle(ctx context.Context, m *bus.Message) error {
	switch m.Subject {
	case cofferv1.SubjectInstanceAddRequested:
		var req cofferv1.InstanceAddRequested
		if err := m.Decode(&req); err != nil {
			return err
		}
		if req.GetName() == "" || len(req.GetSealedDsn()) == 0 {
			return bus.Permanent(errors.New("instance registration without a name or a connection string"))
		}
		return s.register(ctx, &req, m.ID())
	case cofferv1.SubjectDiscoverRequested:
		var req cofferv1.DiscoverRequested
		if err := m.Decode(&req); err != nil {
			return err
		}
		if req.GetInstance() == "" {
			return bus.Permanent(errors.New("discovery request without an instance name"))
		}
		// An unknown instance is an error the bus retries: its
		// registration may be handled concurrently. If it never comes,
		// the message ends as poison and a person sees it.
		return s.discoverRegistered(ctx, req.GetInstance())
	default:
		return bus.Permanent(fmt.Errorf("unexpected subject %s", m.Subject))
	}
}

// register records (or replaces) an instance's connection string and
// discovers it. The health event is always published: the person who
// registered it wants to know whether it works.
func (s *Service) register(ctx context.Context, req *cofferv1.InstanceAddRequested, msgID string) error {
	name := req.GetName()
	defer s.locks.lock(name)()
	var prev cofferv1.Instance
	rev, err := s.instances.Get(ctx, catalog.Key(name), &prev)
	existed := err == nil
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return fmt.Errorf("read instance %s: %w", name, err)
	}
	rec := &cofferv1.Instance{Name: name, RegisteredAt: timestamppb.New(s.cfg.Now())}
	if existed {
		rec = proto.CloneOf(&prev)
	}
	rec.SealedDsn, rec.BackupMode, rec.RegistrationId = req.GetSealedDsn(), req.GetBackupMode(), req.GetMeta().GetEventId()
	// The registration is kept before the first look, which may take up
	// to Config.Timeout: the instance is listed (not yet discovered) at
	// once, and a look cut short does not lose it.
	if existed {
		rev, err = s.instances.Update(ctx, catalog.Key(name), rec, rev)
	} else {
		rev, err = s.instances.Create(ctx, catalog.Key(name), rec)
	}
	if err != nil {
		return fmt.Errorf("write instance %s: %w", name, err)
	}
	s.log.InfoContext(ctx, "instance registered", slog.String(telemetry.InstanceKey, name), slog.Bool("again", existed))
	return s.refresh(ctx, rec, rev, event.ID("instance.health", name, "registered", msgID))
}

// discoverRegistered discovers an instance already in the catalog.
func (s *Service) discoverRegistered(ctx context.Context, name string) error {
	defer s.locks.lock(name)()
	var rec cofferv1.Instance
	rev, err := s.instances.Get(ctx, catalog.Key(name), &rec)
	if errors.Is(err, catalog.ErrNotFound) {
		return fmt.Errorf("instance %q is not registered", name)
	}
	if err != nil {
		return fmt.Errorf("read instance %s: %w", name, err)
	}
	return s.refresh(ctx, &rec, rev, "")
}

// poll asks an instance whether anything changed since its last full
// listing, and lists it again when so. The question is one statement
// whose cost does not grow with the number of databases and which starts
// no database AUTO_CLOSE shut down.
func (s *Service) poll(ctx context.Context, name string) error {
	defer s.locks.lock(name)()
	var rec cofferv1.Instance
	rev, err := s.instances.Get(ctx, catalog.Key(name), &rec)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil // deregistered since the list was read
	}
	if err != nil {
		return fmt.Errorf("read instance %s: %w", name, err)
	}
	s.mu.Lock()
	m, ok := s.marks[name]
	s.mu.Unlock()
	if !ok || !rec.GetHealthy() || s.cfg.Now().Sub(m.at) >= s.cfg.FullInterval {
		return s.refresh(ctx, &rec, rev, "")
	}
	c, err := s.client(&rec)
	if err != nil {
		return s.refresh(ctx, &rec, rev, "") // the full look says what is wrong
	}
	qctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	fp, err := c.Fingerprint(qctx)
	cancel()
	if err == nil && fp == m.fp {
		return nil
	}
	return s.refresh(ctx, &rec, rev, "")
}

// client returns the open client of an instance, opening it (or opening
// it again, when the connection string changed) as needed. The caller
// holds the instance's lock.
func (s *Service) client(rec *cofferv1.Instance) (*mssql.Client, error) {
	name := rec.GetName()
	dsn, err := s.sealer.Open(rec.GetSealedDsn(), name)
	if err != nil {
		return nil, fmt.Errorf("open the connection string of %s: %w", name, err)
	}
	s.mu.Lock()
	ic := s.clients[name]
	s.mu.Unlock()
	if ic != nil && ic.dsn == string(dsn) {
		return ic.client, nil
	}
	c, err := mssql.Open(string(dsn))
	if err != nil {
		return nil, fmt.Errorf("open a client of %s: %w", name, err)
	}
	s.mu.Lock()
	s.clients[name] = &instanceClient{dsn: string(dsn), client: c}
	s.mu.Unlock()
	if ic != nil {
		ic.client.Close()
	}
	return c, nil
}

func (s *Service) closeClients() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, ic := range s.clients {
		ic.client.Close()
		delete(s.clients, name)
	}
}

// refresh looks at the instance, brings its inventory up to date when it
// could look, publishes the health when it changed (or always, with the
// id healthID, when that is set), and writes the instance record over
// revision rev. The caller holds the instance's lock.
func (s *Service) refresh(ctx context.Context, rec *cofferv1.Instance, rev uint64, healthID string) (err error) {
	name := rec.GetName()
	ctx, span := s.tracer.Start(ctx, "discover instance", trace.WithAttributes(attribute.String(telemetry.InstanceKey, name)))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	log := s.log.With(slog.String(telemetry.InstanceKey, name))

	before := health{healthy: rec.GetHealthy(), reason: rec.GetReason(), fix: rec.GetFix()}
	look, err := s.look(ctx, rec)
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	if look.server != nil {
		rec.ServerName, rec.Version, rec.Edition = look.server.Name, look.server.Version, look.server.Edition
		rec.Sysadmin = look.server.Sysadmin
	}
	if look.listed {
		n, err := s.reconcile(ctx, name, look.databases)
		if err != nil {
			return err
		}
		rec.DatabaseCount = int32(n)
		rec.DiscoveredAt = timestamppb.New(now)
		s.mu.Lock()
		s.marks[name] = mark{fp: look.fp, at: now}
		s.mu.Unlock()
	} else {
		s.mu.Lock()
		delete(s.marks, name)
		s.mu.Unlock()
	}
	rec.Healthy, rec.Reason, rec.Fix = look.health.healthy, look.health.reason, look.health.fix
	span.SetAttributes(attribute.Bool("coffer.instance.healthy", rec.Healthy))

	if look.health != before || healthID != "" {
		if healthID == "" {
			healthID = event.ID("instance.health", name, strconv.FormatUint(rev, 10),
				strconv.FormatBool(rec.Healthy), rec.Reason, rec.Fix)
		}
		pub := proto.CloneOf(rec)
		pub.SealedDsn = nil // the event goes to readers that never connect
		ev := &cofferv1.InstanceHealthChanged{Meta: event.Meta(healthID, "", now), Instance: pub}
		if err := s.bus.Publish(ctx, cofferv1.SubjectInstanceHealthChanged, ev, healthID); err != nil {
			return fmt.Errorf("publish health of %s: %w", name, err)
		}
		if rec.Healthy {
			log.InfoContext(ctx, "instance healthy", slog.String("server_name", rec.ServerName), slog.String("version", rec.Version))
		} else {
			log.WarnContext(ctx, "instance unhealthy", slog.String("reason", rec.Reason), slog.String("fix", rec.Fix))
		}
	}

	if _, err := s.instances.Update(ctx, catalog.Key(name), rec, rev); err != nil {
		return fmt.Errorf("write instance %s: %w", name, err)
	}
	return nil
}

// look is what one conversation with an instance told.
type look struct {
	health    health
	server    *mssql.Server    // nil when coffer could not read it
	listed    bool             // the databases were listed
	databases []mssql.Database // set only when listed
	fp        mssql.Fingerprint
}

// look opens the instance's connection string and reads the server and its
// databases. The only error it returns is ctx ending: everything the
// instance does wrong is a verdict.
func (s *Service) look(ctx context.Context, rec *cofferv1.Instance) (look, error) {
	dsn, err := s.sealer.Open(rec.GetSealedDsn(), rec.GetName())
	if err != nil {
		return look{health: health{
			reason: "the stored connection string does not open: it was sealed with another master key, or for another instance name",
			fix:    "register the instance again, and give every coffer service the same master key",
		}}, nil
	}
	t, err := parseTarget(string(dsn))
	if err != nil {
		return look{health: health{
			reason: "the connection string does not parse",
			fix:    "register the instance again with a connection string such as sqlserver://user:password@host:1433?encrypt=true",
		}}, nil
	}
	c, err := s.client(rec)
	if err != nil {
		return look{health: health{
			reason: "the connection string is not accepted by the SQL Server driver",
			fix:    "register the instance again with a connection string such as sqlserver://user:password@host:1433?encrypt=true",
		}}, nil
	}

	qctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	// failed turns a failed step into a verdict: a failure to reach or
	// log in to the server is told apart from a query that failed on a
	// connection that works.
	failed := func(what string, err error) (health, error) {
		if mssql.Number(err) == 0 && ctx.Err() == nil && qctx.Err() == nil {
			perr := c.Ping(qctx)
			if perr == nil {
				return t.queryFailed(what, err), nil
			}
			err = perr
		}
		return t.unhealthyFor(ctx, err, s.cfg.Timeout)
	}
	srv, err := c.ServerInfo(qctx)
	if err != nil {
		h, err := failed("reading the server's properties", err)
		s.dropClientAfter(rec.GetName(), h)
		return look{health: h}, err
	}
	if !srv.Sysadmin {
		// A login without sysadmin may see only part of the catalog
		// (sys.master_files is empty without VIEW ANY DEFINITION), so its
		// view would report changes and drops that did not happen: keep
		// the inventory as it was.
		return look{health: t.notSysadmin(), server: &srv}, nil
	}
	// The summary is read before the listing, so a change made while the
	// listing runs moves the next poll's summary away from this one.
	fp, err := c.Fingerprint(qctx)
	if err != nil {
		h, err := failed("reading the summary of sys.databases", err)
		return look{health: h, server: &srv}, err
	}
	dbs, err := c.Databases(qctx)
	if err != nil {
		h, err := failed("listing the databases", err)
		return look{health: h, server: &srv}, err
	}
	return look{health: problems(dbs), server: &srv, listed: true, databases: dbs, fp: fp}, nil
}

// dropClientAfter closes the cached client of an instance that could not
// be reached, so the next look dials afresh.
func (s *Service) dropClientAfter(name string, h health) {
	if !h.healthy {
		s.mu.Lock()
		ic := s.clients[name]
		delete(s.clients, name)
		s.mu.Unlock()
		if ic != nil {
			ic.client.Close()
		}
	}
}

// keyedMutex serialises work per key.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu sync.Mutex
	n  int
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.n++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.n--; e.n == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
