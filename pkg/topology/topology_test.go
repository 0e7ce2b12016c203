package topology_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/topology"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func newBus(t *testing.T, url string, opts ...nats.Option) *bus.Bus {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.New(nc, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSetupUpdates: Setup on streams another process (another version, or
// another setting) left differently puts them back as the declaration
// says; on a single server it refuses more than one replica, naming the
// stream, and leaves it as it was.
func TestSetupUpdates(t *testing.T) {
	srv, err := bus.StartEmbedded(bus.Options{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	b := newBus(t, srv.ClientURL())
	ctx := t.Context()
	if _, err := topology.Setup(ctx, b, topology.Config{}); err != nil {
		t.Fatal(err)
	}
	js := b.JetStream()
	s, err := js.Stream(ctx, cofferv1.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxAge, cfg.Description = time.Hour, "as an older coffer left it"
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	if _, err := topology.Setup(ctx, b, topology.Config{Replicas: 1}); err != nil {
		t.Fatalf("second Setup: %v", err)
	}
	info, err := js.Stream(ctx, cofferv1.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config; got.MaxAge != 7*24*time.Hour || got.Description != topology.Streams[0].Description || got.Replicas != 1 {
		t.Errorf("after a second Setup: max age %v, description %q, %d replicas; want the declaration's", got.MaxAge, got.Description, got.Replicas)
	}

	_, err = topology.Setup(ctx, b, topology.Config{Replicas: 3})
	if err == nil || !strings.Contains(err.Error(), cofferv1.StreamEvents) {
		t.Errorf("Setup with 3 replicas on one server: got %v, want the server's refusal naming the stream", err)
	}
	if info, err = js.Stream(ctx, cofferv1.StreamEvents); err != nil || info.CachedInfo().Config.Replicas != 1 {
		t.Errorf("after the refused update: %v, replicas %d; want the stream as it was", err, info.CachedInfo().Config.Replicas)
	}
}

// TestConfig: the replicas setting reaches every stream and bucket, and
// is validated.
func TestConfig(t *testing.T) {
	c := topology.Config{Replicas: 3}
	for _, s := range c.Streams() {
		if s.Replicas != 3 {
			t.Errorf("stream %s: %d replicas, want 3", s.Name, s.Replicas)
		}
	}
	for _, b := range c.Buckets() {
		if b.Replicas != 3 {
			t.Errorf("bucket %s: %d replicas, want 3", b.Name, b.Replicas)
		}
	}
	if topology.Streams[0].Replicas != 0 {
		t.Error("Config.Streams changed the declared streams")
	}
	for _, n := range []int{-1, 6} {
		if err := (topology.Config{Replicas: n}).Validate(); err == nil {
			t.Errorf("replicas %d: got nil error", n)
		}
	}
}

// TestSetupReplicasOnCluster: on a three-server cluster, a process that
// starts with three replicas moves the streams and buckets one started
// with a single one to three.
func TestSetupReplicasOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server NATS cluster")
	}
	urls := startCluster(t, 3)
	b := newBus(t, urls[0], nats.MaxReconnects(-1))
	ctx := t.Context()
	setup := func(replicas int) {
		t.Helper()
		var err error
		// the cluster elects its JetStream leader shortly after it forms
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			if _, err = topology.Setup(ctx, b, topology.Config{Replicas: replicas}); err == nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("Setup with %d replicas: %v", replicas, err)
	}
	setup(1)
	setup(3)
	js := b.JetStream()
	for _, name := range []string{cofferv1.StreamEvents, cofferv1.StreamJobs, cofferv1.StreamWork, "KV_" + cofferv1.BucketJobs} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.Replicas; got != 3 {
			t.Errorf("stream %s: %d replicas after Setup with 3, want 3", name, got)
		}
	}
}

// startCluster starts n JetStream servers routed to each other in this
// process, and returns their client URLs.
func startCluster(t *testing.T, n int) []string {
	t.Helper()
	ports := make([]int, n)
	routes := make([]string, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[i])
	}
	servers := make([]*server.Server, n)
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("s%d", i), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "coffer-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		servers[i] = s
	}
	urls := make([]string, n)
	for i, s := range servers {
		if !s.ReadyForConnections(20 * time.Second) {
			t.Fatalf("server %d not ready", i)
		}
		urls[i] = s.ClientURL()
	}
	return urls
}
