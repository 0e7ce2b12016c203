// Package natstest runs a real NATS JetStream cluster for tests: several
// nats-server processes on loopback, each with its own ports and store
// directory, routed to one another. A node can be killed with SIGKILL and
// restarted with its data, as a crash and a reboot would.
//
// The nats-server binary is $COFFER_NATS_SERVER_BIN, else nats-server on
// PATH, else $GOPATH/bin/nats-server (~/go/bin without GOPATH);
// scripts/install-tools.sh installs it. Without one, StartCluster skips the
// test, or fails it when the CI environment variable is set.
package natstest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/testproc"
)

const (
	// readyTimeout bounds how long a node may take to answer its health
	// check with JetStream current, from exec (on a loaded two-core CI
	// machine, a cluster elects its meta leader in a few seconds).
	readyTimeout = 60 * time.Second
	pollInterval = 50 * time.Millisecond
)

// Cluster is a running cluster started by [StartCluster].
type Cluster struct {
	bin   string
	nodes []*node
}

// node is one server of the cluster.
type node struct {
	name       string
	config     string // path of its configuration file
	client     int    // client port
	monitoring int    // HTTP monitoring port

	mu   sync.Mutex
	proc *process
}

// process is a running nats-server.
type process struct {
	cmd  *exec.Cmd
	out  *testproc.Buffer
	done chan struct{}
	err  error
}

// Options shape a cluster.
type Options struct {
	// Config is added to every node's configuration file: accounts and
	// users, a tls block for client connections (as `coffer nats config`
	// prints them).
	Config string
}

// StartCluster starts n nats-server processes with JetStream, clustered
// as "coffer" (n = 1 is a single server), and returns once every one of
// them is healthy. They are stopped when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartClusterWith(t, n, Options{})
}

// StartClusterWith is StartCluster with options.
func StartClusterWith(t testing.TB, n int, o Options) *Cluster {
	t.Helper()
	bin, err := testproc.FindBinary("nats-server", "COFFER_NATS_SERVER_BIN")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("natstest: %v (CI must install it: scripts/install-tools.sh)", err)
		}
		t.Skipf("natstest: %v; run `make tools` to install it", err)
	}
	dir := t.TempDir()
	ports, err := testproc.FreePorts(3 * n)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	c := &Cluster{bin: bin}
	var routes []string
	for k := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3*k+2]))
	}
	for k := range n {
		nd := &node{name: fmt.Sprintf("n%d", k+1), client: ports[3*k], monitoring: ports[3*k+1]}
		nd.config = filepath.Join(dir, nd.name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 4GB
}
`, nd.name, nd.client, nd.monitoring, filepath.Join(dir, nd.name))
		if n > 1 {
			// one node alone is a plain server: a cluster needs peers
			conf += fmt.Sprintf("cluster {\n  name: coffer\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n", ports[3*k+2], strings.Join(routes, ", "))
		}
		conf += o.Config
		if err := os.WriteFile(nd.config, []byte(conf), 0o600); err != nil {
			t.Fatalf("natstest: %v", err)
		}
		c.nodes = append(c.nodes, nd)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.stop(t)
		}
	})
	for _, nd := range c.nodes {
		if err := nd.start(bin); err != nil {
			t.Fatalf("natstest: %v", err)
		}
	}
	began := time.Now()
	for _, nd := range c.nodes {
		if err := nd.waitReady(t.Context()); err != nil {
			t.Fatalf("natstest: %v", err)
		}
	}
	t.Logf("natstest: %d-node JetStream cluster ready at %s in %v", n, c.URL(), time.Since(began).Round(time.Millisecond))
	return c
}

// URL returns the client URLs of every node, comma-separated, as
// nats.Connect and COFFER_NATS_URL take them.
func (c *Cluster) URL() string {
	var urls []string
	for _, nd := range c.nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", nd.client))
	}
	return strings.Join(urls, ",")
}

// Size is the number of nodes.
func (c *Cluster) Size() int { return len(c.nodes) }

// Kill kills node i (from 0) with SIGKILL and waits until it has exited.
func (c *Cluster) Kill(i int) {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc != nil {
		nd.proc.kill()
		nd.proc = nil
	}
}

// Restart starts node i again after Kill, with the same ports and data,
// and returns once it is healthy again.
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	nd := c.nodes[i]
	if err := nd.start(c.bin); err != nil {
		t.Fatalf("natstest: %v", err)
	}
	if err := nd.waitReady(t.Context()); err != nil {
		t.Fatalf("natstest: %v", err)
	}
}

func (nd *node) start(bin string) error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc != nil {
		return fmt.Errorf("node %s already runs", nd.name)
	}
	cmd := exec.Command(bin, "-c", nd.config)
	p := &process{cmd: cmd, out: new(testproc.Buffer), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = testproc.SysProcAttr()
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", bin, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	nd.proc = p
	return nil
}

// waitReady polls the node's health endpoint until it says JetStream is
// ready, the node exits, or readyTimeout passes.
func (nd *node) waitReady(ctx context.Context) error {
	nd.mu.Lock()
	p := nd.proc
	nd.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", nd.monitoring)
	var last error
	for {
		last = probe(ctx, client, url)
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("node %s exited before it was ready: %v\n%s", nd.name, p.err, p.out.String())
		case <-ctx.Done():
			return fmt.Errorf("node %s not ready after %v (last probe: %v)\n%s", nd.name, readyTimeout, last, p.out.String())
		case <-time.After(pollInterval):
		}
	}
}

func probe(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s", resp.Status)
	}
	return nil
}

// stop ends the node gracefully, or kills it, and shows its output if the
// test failed.
func (nd *node) stop(t testing.TB) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	p := nd.proc
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.kill()
	}
	if t.Failed() {
		t.Logf("natstest: node %s output:\n%s", nd.name, p.out.String())
	}
	nd.proc = nil
}

func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}
