package daemon_test

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/daemon"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// TestFlags: a setting's default gives way to its variable, the
// variable to its flag; malformed variables are all reported; the usage
// names the variable.
func TestFlags(t *testing.T) {
	env := map[string]string{"COFFER_A": "from-env", "COFFER_N": "7", "COFFER_D": "soon", "COFFER_B": "maybe"}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := daemon.NewFlags(fs, func(k string) string { return env[k] })
	var (
		a, z string
		n, m int
		d    time.Duration
		b    bool
	)
	f.String(&a, "a", "COFFER_A", "default", "a setting")
	f.String(&z, "z", "COFFER_Z", "default", "unset")
	f.Int(&n, "n", "COFFER_N", 1, "a number")
	f.Int(&m, "m", "COFFER_M", 2, "another")
	f.Duration(&d, "d", "COFFER_D", time.Second, "a duration")
	f.Bool(&b, "b", "COFFER_B", false, "a switch")
	if err := fs.Parse([]string{"-n", "9"}); err != nil {
		t.Fatal(err)
	}
	if a != "from-env" || z != "default" || n != 9 || m != 2 || d != time.Second {
		t.Errorf("got a=%q z=%q n=%d m=%d d=%v; want from-env, default, 9 (the flag), 2, 1s", a, z, n, m, d)
	}
	for _, want := range []string{`COFFER_D "soon"`, `COFFER_B "maybe"`} {
		if err := f.Err(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Err() = %v, want it to name %s", err, want)
		}
	}
	if u := fs.Lookup("a").Usage; !strings.HasSuffix(u, "(COFFER_A)") {
		t.Errorf("usage %q does not name its variable", u)
	}
}

// TestParseStandalone: a binary refuses bad process settings with the
// service's, every one at once, and stray arguments.
func TestParseStandalone(t *testing.T) {
	svc := daemon.Service{Name: "x", Register: func(f *daemon.Flags) daemon.Settings {
		s := &daemon.Config[int]{Check: func(n int) error {
			if n < 1 {
				return errors.New("--x-count: want at least 1")
			}
			return nil
		}}
		f.Int(&s.Value, "x-count", "COFFER_X_COUNT", 1, "how many")
		return s
	}}
	getenv := func(k string) string { return map[string]string{"COFFER_NATS_REPLICAS": "0"}[k] }
	_, err := daemon.ParseStandalone(svc, []string{"--x-count", "0", "extra"}, getenv, io.Discard)
	for _, want := range []string{"--replicas 0", "--x-count", `unexpected argument "extra"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error saying %q", err, want)
		}
	}
	s, err := daemon.ParseStandalone(svc, []string{"--x-count", "4", "--replicas", "3"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Service.Settings.(*daemon.Config[int]).Value; got != 4 || s.Common.Replicas != 3 {
		t.Errorf("got count %d, replicas %d; want 4 and 3", got, s.Common.Replicas)
	}
}

type failing struct{ err error }

func (f failing) Run(ctx context.Context) error {
	if f.err != nil {
		return f.err
	}
	<-ctx.Done()
	return nil
}

// TestGroup: a service that fails is reported with its name; Stop ends
// the others.
func TestGroup(t *testing.T) {
	g := daemon.Go([]daemon.Built{{Name: "ok", Runner: failing{}}, {Name: "bad", Runner: failing{errors.New("boom")}}})
	select {
	case err := <-g.Failed():
		if err == nil || err.Error() != "bad: boom" {
			t.Errorf("got %v, want bad: boom", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no failure reported")
	}
	g.Stop()
	g.Stop()
	select {
	case <-g.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after every service returned")
	}
}

// returns returns at once, without an error.
type returns struct{}

func (returns) Run(context.Context) error { return nil }

// TestGroupDone: a group whose services all return nil, without being
// stopped, is done: a process whose service ended on its own exits.
func TestGroupDone(t *testing.T) {
	g := daemon.Go([]daemon.Built{{Name: "a", Runner: returns{}}, {Name: "b", Runner: returns{}}})
	defer g.Stop()
	select {
	case <-g.Done():
	case err := <-g.Failed():
		t.Fatalf("failed: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after every service returned nil")
	}
}

// labelled reports the profiler label daemon.ProfileLabel of the
// goroutines Run starts.
type labelled chan string

func (l labelled) Run(ctx context.Context) error {
	go func() {
		v, _ := pprof.Label(ctx, daemon.ProfileLabel)
		l <- v
	}()
	<-ctx.Done()
	return nil
}

// TestGroupLabels: a service runs with its name as the profiler label
// service, so that a CPU profile of the process tells services apart.
func TestGroupLabels(t *testing.T) {
	l := make(labelled, 1)
	g := daemon.Go([]daemon.Built{{Name: "backup-streamer", Runner: l}})
	defer g.Stop()
	if got := <-l; got != "backup-streamer" {
		t.Errorf("label %s = %q; want backup-streamer", daemon.ProfileLabel, got)
	}
}

type probe struct {
	d   daemon.Deps
	ran chan daemon.Deps
}

func (p probe) Run(ctx context.Context) error {
	p.ran <- p.d
	<-ctx.Done()
	return nil
}

// TestStandaloneRun: a binary connects to the NATS its settings name,
// sets up the streams and the catalog, builds its service with them and
// runs it until its context ends; its /healthz answers 503 while the
// service is being built and 200 once it runs.
func TestStandaloneRun(t *testing.T) {
	srv, err := bus.StartEmbedded(bus.Options{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := ln.Addr().String()
	ln.Close()
	healthz := func() int {
		resp, err := http.Get("http://" + metricsAddr + "/healthz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ran := make(chan daemon.Deps, 1)
	building := make(chan int, 1)
	svc := daemon.Service{Name: "probe", Register: func(f *daemon.Flags) daemon.Settings {
		return &daemon.Config[struct{}]{New: func(_ context.Context, d daemon.Deps, _ struct{}) (daemon.Runner, error) {
			building <- healthz()
			return probe{d, ran}, nil
		}}
	}}
	s, err := daemon.ParseStandalone(svc, nil, func(k string) string {
		return map[string]string{"COFFER_NATS_URL": srv.ClientURL(), "COFFER_METRICS_ADDR": metricsAddr}[k]
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case d := <-ran:
		if d.Bus == nil || d.Catalog == nil || !d.Alone || d.MasterKey != nil || d.Vault != nil {
			t.Errorf("deps %+v: want a bus, a catalog, alone, no key, no vault", d)
		}
		if _, err := d.Bus.JetStream().Stream(t.Context(), cofferv1.StreamWork); err != nil {
			t.Errorf("the work stream after start: %v", err)
		}
	case err := <-done:
		t.Fatalf("Run ended before the service ran: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the service did not run")
	}
	if got := <-building; got != http.StatusServiceUnavailable {
		t.Errorf("/healthz while the service was built: %d; want 503", got)
	}
	// Run marks the process ready just after the service starts running
	poll, deadline := time.NewTicker(10*time.Millisecond), time.After(10*time.Second)
	defer poll.Stop()
	for got := healthz(); got != http.StatusOK; got = healthz() {
		select {
		case <-poll.C:
		case <-deadline:
			t.Fatalf("/healthz while the service runs: %d; want 200", got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
