package natsauth_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/natsauth"
	"github.com/cofferhq/coffer/pkg/natsauth/natsauthtest"
	"github.com/cofferhq/coffer/pkg/topology"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// denyWait bounds each operation the test expects the server to refuse: a
// refused publish is never acknowledged, so the caller only times out.
const denyWait = 1500 * time.Millisecond

// client is one service's connection, made as the service makes it.
type client struct {
	nc  *nats.Conn
	bus *bus.Bus

	mu     sync.Mutex
	denied []string // subjects of the permission violations the server reported
}

func (c *client) deniedSubject(subject string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.denied, func(e string) bool { return strings.Contains(e, `"`+subject+`"`) })
}

func connect(s *natsauthtest.Server, t *testing.T, service string) *client {
	t.Helper()
	opts, err := daemon.NATSOptions(service, s.Env(service), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c := &client{}
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			c.mu.Lock()
			c.denied = append(c.denied, err.Error())
			c.mu.Unlock()
		}
	}))
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("%s: connect: %v", service, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	c.bus, err = daemon.NewBus(nc, service, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// allPublished is every subject some service publishes.
func allPublished() []string {
	var all []string
	for _, a := range topology.Services {
		for _, s := range a.Publishes {
			if !slices.Contains(all, s) {
				all = append(all, s)
			}
		}
	}
	return all
}

// streamSubject is the subjects of a stream (its one wildcard).
func streamSubject(t *testing.T, stream string) string {
	t.Helper()
	for _, s := range topology.Streams {
		if s.Name == stream {
			return s.Subjects[0]
		}
	}
	t.Fatalf("no stream %s", stream)
	return ""
}

// TestServicePermissions connects as each service over TLS with the
// credentials `coffer nats config` writes and checks that the service can
// do what it does (set up the topology, create and pull its consumers and
// acknowledge their messages, publish its events, write its buckets, read
// the ones it reads) and nothing of another's: publish another's event,
// write a bucket it does not own, take over another's consumer, read
// another's replies.
func TestServicePermissions(t *testing.T) {
	s := natsauthtest.Start(t)
	for _, a := range topology.Services {
		fi, err := os.Stat(filepath.Join(s.CredsDir, natsauth.SeedFile(a.Service)))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s's seed file has mode %v; want 0600", a.Service, fi.Mode().Perm())
		}
	}
	adminBus, err := bus.New(s.Admin, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]*client{}
	for _, a := range topology.Services {
		clients[a.Service] = connect(s, t, a.Service)
	}
	for _, a := range topology.Services {
		t.Run(a.Service, func(t *testing.T) {
			ctx := t.Context()
			c := clients[a.Service]
			// (a) what the service does at start.
			cat, err := topology.Setup(ctx, c.bus, topology.Config{})
			if err != nil {
				t.Fatalf("topology.Setup: %v", err)
			}
			for _, cons := range a.Consumes {
				got := make(chan string, 100)
				sub, err := c.bus.Consume(ctx, bus.ConsumerSpec{Stream: cons.Stream, Durable: cons.Durable,
					FilterSubjects: []string{streamSubject(t, cons.Stream)}},
					func(_ context.Context, m *bus.Message) error {
						select {
						case got <- m.ID():
						default:
						}
						return nil
					})
				if err != nil {
					t.Fatalf("consume %s/%s: %v", cons.Stream, cons.Durable, err)
				}
				// one message through it, acknowledged (a double ack: the
				// server confirms it)
				subject := strings.TrimSuffix(streamSubject(t, cons.Stream), ">") + "permtest"
				id := "permtest-" + cons.Durable
				if err := adminBus.Publish(ctx, subject, &cofferv1.JobFailed{}, id); err != nil {
					t.Fatal(err)
				}
				timeout := time.After(10 * time.Second)
				for gotID := ""; gotID != id; {
					select {
					case gotID = <-got: // earlier services' events come first
					case <-timeout:
						t.Fatalf("consumer %s did not get %s", cons.Durable, id)
					}
				}
				if err := sub.Drain(ctx); err != nil {
					t.Fatalf("drain %s: %v", cons.Durable, err)
				}
				waitAcked(t, s.Admin, cons)
			}
			for _, subject := range a.Publishes {
				if err := c.bus.Publish(ctx, subject, &cofferv1.JobFailed{}, "ok-"+a.Service+subject); err != nil {
					t.Errorf("publish %s: %v", subject, err)
				}
			}
			for _, b := range topology.Buckets {
				bk := cat.Bucket(b.Name)
				switch {
				case slices.Contains(a.Writes, b.Name):
					key := catalog.Key("permtest", a.Service)
					if _, err := bk.Put(ctx, key, &cofferv1.Instance{Name: a.Service}); err != nil {
						t.Errorf("put in own bucket %s: %v", b.Name, err)
					}
					var got cofferv1.Instance
					if _, err := bk.Get(ctx, key, &got); err != nil || got.GetName() != a.Service {
						t.Errorf("get from own bucket %s: %v, %q", b.Name, err, got.GetName())
					}
					if err := bk.Delete(ctx, key); err != nil {
						t.Errorf("delete in own bucket %s: %v", b.Name, err)
					}
					fallthrough
				case slices.Contains(a.Reads, b.Name):
					if _, err := bk.Get(ctx, "absent", &cofferv1.Instance{}); !errors.Is(err, catalog.ErrNotFound) {
						t.Errorf("get from %s: %v; want not found", b.Name, err)
					}
					lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					err := bk.List(lctx, "", func() proto.Message { return &cofferv1.Instance{} }, func(string, proto.Message) error { return nil })
					cancel()
					if err != nil {
						t.Errorf("list %s: %v", b.Name, err)
					}
				}
			}

			// (b), (c) and more: every refusal at once, each bounded by denyWait.
			var wg sync.WaitGroup
			refused := func(what string, op func(ctx context.Context) error) {
				wg.Go(func() {
					dctx, cancel := context.WithTimeout(ctx, denyWait)
					defer cancel()
					if err := op(dctx); err == nil {
						t.Errorf("%s: allowed; want refused", what)
					}
				})
			}
			var foreign []string
			for _, subject := range allPublished() {
				if slices.Contains(a.Publishes, subject) {
					continue
				}
				foreign = append(foreign, subject)
				refused("publish "+subject, func(ctx context.Context) error {
					return c.bus.Publish(ctx, subject, &cofferv1.JobFailed{}, "denied-"+a.Service+subject)
				})
			}
			for _, b := range topology.Buckets {
				if slices.Contains(a.Writes, b.Name) {
					continue
				}
				bk := cat.Bucket(b.Name)
				refused("put in "+b.Name, func(ctx context.Context) error {
					_, err := bk.Put(ctx, catalog.Key("denied", a.Service), &cofferv1.Instance{})
					return err
				})
				refused("delete in "+b.Name, func(ctx context.Context) error {
					return bk.Delete(ctx, catalog.Key("denied", a.Service))
				})
				if !a.ReadsBucket(b.Name) {
					refused("get from "+b.Name, func(ctx context.Context) error {
						_, err := bk.Get(ctx, "any", &cofferv1.Instance{})
						if errors.Is(err, catalog.ErrNotFound) {
							return nil // it could read
						}
						return err
					})
				}
			}
			for _, other := range topology.Services {
				for _, cons := range other.Consumes {
					if other.Service == a.Service {
						continue
					}
					refused("consume "+cons.Durable, func(ctx context.Context) error {
						sub, err := c.bus.Consume(ctx, bus.ConsumerSpec{Stream: cons.Stream, Durable: cons.Durable},
							func(context.Context, *bus.Message) error { return nil })
						if err == nil {
							sub.Stop()
						}
						return err
					})
				}
			}
			wg.Wait()
			// A refused publish is reported by the server asynchronously:
			// the error handler hears of each.
			for _, subject := range foreign {
				waitFor(t, "a permissions violation for "+subject, func() bool { return c.deniedSubject(subject) })
			}
			// Nothing refused was stored.
			for _, subject := range foreign {
				st := cofferv1.StreamFor(subject)
				stream, err := adminJS(t, s.Admin).Stream(ctx, st)
				if err != nil {
					t.Fatal(err)
				}
				raw, err := stream.GetLastMsgForSubject(ctx, subject)
				if err == nil && raw.Header.Get(nats.MsgIdHdr) == "denied-"+a.Service+subject {
					t.Errorf("%s's refused publish on %s was stored", a.Service, subject)
				}
			}
			// Another service's replies are not its to read.
			if _, err := c.nc.SubscribeSync(natsauth.InboxPrefix("other") + ".>"); err == nil {
				c.nc.Flush()
			}
			waitFor(t, "a permissions violation for another inbox", func() bool {
				return c.deniedSubject(natsauth.InboxPrefix("other") + ".>")
			})
		})
	}

	t.Run("url-check", func(t *testing.T) {
		gw, str, disc := clients["gateway"], clients["backup-streamer"], clients["discovery"]
		stop, err := str.bus.Serve(t.Context(), cofferv1.SubjectURLCheck, "backup-streamer",
			func(context.Context, []byte) (proto.Message, error) {
				return &cofferv1.URLCheckResult{Mode: "url"}, nil
			})
		if err != nil {
			t.Fatalf("streamer serves URL checks: %v", err)
		}
		defer stop()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		var res cofferv1.URLCheckResult
		if err := gw.bus.Request(ctx, cofferv1.SubjectURLCheck, &cofferv1.URLCheckRequested{Instance: "x"}, &res); err != nil || res.GetMode() != "url" {
			t.Errorf("gateway's URL check: %v, %q", err, res.GetMode())
		}
		dctx, dcancel := context.WithTimeout(t.Context(), denyWait)
		defer dcancel()
		if err := disc.bus.Request(dctx, cofferv1.SubjectURLCheck, &cofferv1.URLCheckRequested{Instance: "x"}, &res); err == nil {
			t.Error("discovery's URL check: allowed; want refused")
		}
	})

	t.Run("no credentials", func(t *testing.T) {
		opts, err := daemon.NATSOptions("discovery", func(k string) string {
			return map[string]string{"COFFER_NATS_CA_FILE": s.CAFile}[k]
		}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if nc, err := nats.Connect(s.ClientURL(), opts...); err == nil {
			nc.Close()
			t.Error("connected without credentials")
		}
	})
	t.Run("no CA", func(t *testing.T) {
		opts, err := daemon.NATSOptions("discovery", func(k string) string {
			return map[string]string{"COFFER_NATS_NKEY_FILE": filepath.Join(s.CredsDir, natsauth.SeedFile("discovery"))}[k]
		}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if nc, err := nats.Connect(s.ClientURL(), opts...); err == nil {
			nc.Close()
			t.Error("connected to a server whose certificate no trusted CA issued")
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("no %s", what)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitAcked waits until cons has no message pending acknowledgement.
func waitAcked(t *testing.T, admin *nats.Conn, cons topology.Consumer) {
	t.Helper()
	js := adminJS(t, admin)
	waitFor(t, fmt.Sprintf("acknowledgement on %s/%s", cons.Stream, cons.Durable), func() bool {
		c, err := js.Consumer(t.Context(), cons.Stream, cons.Durable)
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumAckPending == 0 && info.AckFloor.Stream > 0
	})
}

func adminJS(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
