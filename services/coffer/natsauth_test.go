package main

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cofferhq/coffer/pkg/alert"
	"github.com/cofferhq/coffer/pkg/blob/dirstore"
	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/natsauth/natsauthtest"
	"github.com/cofferhq/coffer/pkg/topology"
	"github.com/cofferhq/coffer/pkg/vault"
	"github.com/cofferhq/coffer/services/alerter"
	"github.com/cofferhq/coffer/services/autoprotect"
	streamer "github.com/cofferhq/coffer/services/backup-streamer"
	"github.com/cofferhq/coffer/services/committer"
	"github.com/cofferhq/coffer/services/discovery"
	"github.com/cofferhq/coffer/services/gateway"
	"github.com/cofferhq/coffer/services/scheduler"
)

// TestServicesAsTheirOwnNATSUsers runs every real service, each over its
// own TLS connection as its own NATS user with only the permissions `coffer
// nats config` gives it, and takes a database through registration,
// auto-protection's first full, an on-demand backup and a restore: the
// least-privilege permissions are enough for what the services do. Any
// permission the server refuses a service fails the test.
func TestServicesAsTheirOwnNATSUsers(t *testing.T) {
	s := natsauthtest.Start(t)
	ctx, cancel := context.WithCancel(t.Context())
	key := vault.GenerateMasterKey()
	store, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, err := daemon.OpenVault(ctx, store, key, true)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))

	var mu sync.Mutex
	var violations []string
	connect := func(service string) (*bus.Bus, *catalog.Catalog) {
		t.Helper()
		opts, err := daemon.NATSOptions(service, s.Env(service), logger)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			violations = append(violations, service+": "+err.Error())
			mu.Unlock()
		}))
		nc, err := nats.Connect(s.ClientURL(), opts...)
		if err != nil {
			t.Fatalf("%s: connect: %v", service, err)
		}
		t.Cleanup(nc.Close)
		b, err := daemon.NewBus(nc, service, logger, nil)
		if err != nil {
			t.Fatal(err)
		}
		cat, err := topology.Setup(ctx, b, topology.Config{})
		if err != nil {
			t.Fatalf("%s: topology.Setup: %v", service, err)
		}
		return b, cat
	}

	var runs []func(context.Context) error
	b, cat := connect("committer")
	com, err := committer.New(b, cat, v, committer.Config{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	runs = append(runs, com.Run)
	b, cat = connect("backup-streamer")
	str, err := streamer.New(b, cat, v, streamer.Config{MasterKey: key, StagingDir: t.TempDir(), Workers: 2, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	runs = append(runs, str.Run)
	b, cat = connect("scheduler")
	sch, err := scheduler.New(b, cat, scheduler.Config{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	runs = append(runs, sch.Run)
	b, cat = connect("autoprotect")
	ap, err := autoprotect.New(b, cat, autoprotect.Config{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	runs = append(runs, ap.Run)
	b, cat = connect("alerter")
	al, err := alerter.New(b, cat, alerter.Config{Config: alert.Config{Logger: logger}, Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runs = append(runs, al.Run)
	b, cat = connect("discovery")
	disc, err := discovery.New(b, cat, discovery.Config{MasterKey: key, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	runs = append(runs, disc.Run)
	b, cat = connect("gateway")
	gw, err := gateway.New(b, cat, gateway.Config{Addr: "127.0.0.1:0", MasterKey: key, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Listen(); err != nil {
		t.Fatal(err)
	}
	runs = append(runs, gw.Run)

	var wg sync.WaitGroup
	errc := make(chan error, len(runs))
	for _, run := range runs {
		wg.Go(func() {
			if err := run(ctx); err != nil {
				errc <- err
			}
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })

	sim := mssqlsim.New(mssqlsim.Config{SAPassword: "Sim-Pa55!", DefaultPages: 64, BackupDir: t.TempDir()})
	addr, err := sim.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	if err := sim.CreateDatabase("Sales", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	sim.Commit("Sales", 20)
	dsn := (&url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", "Sim-Pa55!"), Host: addr, RawQuery: "encrypt=disable"}).String()

	h := &harness{t: t, api: "http://" + gw.Addr(), key: hex.EncodeToString(key), dsn: dsn}
	h.mustCoffer("instance", "add", "sql1", "--dsn", dsn)
	h.mustCoffer("instance", "autoprotect", "sql1", "--on")
	h.eventually("auto-protection's first full", func() bool {
		for _, j := range h.jobs() {
			if j.Kind == "backup" && j.State == "succeeded" {
				return true
			}
		}
		return false
	})
	job := cofferJSON[gateway.Job](h, "backup", "sql1/Sales", "--type", "full", "--wait")
	if job.State != "succeeded" {
		t.Fatalf("backup: %+v", job)
	}
	restored := cofferJSON[gateway.Job](h, "restore", "sql1/Sales", "--latest", "--as", "Sales_copy", "--wait")
	if restored.State != "succeeded" {
		t.Fatalf("restore: %+v", restored)
	}
	h.mustCoffer("instance", "check", "sql1") // the gateway asks a streamer (core request)
	// a soft delete of the chain's end (the committer tells the scheduler:
	// ChainBroken), and its undelete
	rps := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/Sales")
	h.mustCoffer("rp", "delete", rps[len(rps)-1].ID)
	h.mustCoffer("rp", "undelete", rps[len(rps)-1].ID)
	select {
	case err := <-errc:
		t.Fatalf("a service stopped: %v", err)
	default:
	}
	mu.Lock()
	defer mu.Unlock()
	for _, v := range violations {
		t.Errorf("NATS refused a service: %s", v)
	}
}
