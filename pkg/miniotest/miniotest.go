package miniotest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cofferhq/coffer/pkg/testproc"
)

const (
	// startTimeout bounds one attempt to bring minio up, from exec to a
	// healthy liveness probe. MinIO normally needs well under a second; the
	// margin is for a loaded two-core CI machine running many packages.
	startTimeout = 30 * time.Second
	// stopTimeout is how long minio gets to exit after SIGTERM before it is
	// killed.
	stopTimeout = 10 * time.Second
	// maxAttempts bounds retries when the ports picked turn out to be taken:
	// another process may grab a port between our probe closing it and
	// minio binding it.
	maxAttempts = 5
	// pollInterval is the pause between liveness probes.
	pollInterval = 20 * time.Millisecond
)

// errPortInUse reports that minio could not bind one of the ports it was
// given; Start then retries on fresh ports.
var errPortInUse = errors.New("port already in use")

// Server is a running MinIO server started by [Start]. Its fields are set
// once by Start and must not be changed.
type Server struct {
	// Endpoint is the S3 API address, "127.0.0.1:PORT", without a scheme.
	// The server only speaks HTTPS.
	Endpoint string
	// AccessKey and SecretKey are the server's root credentials, random for
	// each server.
	AccessKey, SecretKey string
	// CAPEM is the PEM-encoded certificate of the authority that signed the
	// server's certificate. Trust it, and only it, to reach the server.
	CAPEM []byte
	// CAFile is the path of a file holding CAPEM, for code and tools that
	// take a CA bundle by path. It is removed when the test ends.
	CAFile string

	pool *x509.CertPool

	// bin, dir, data and console are what the running process was
	// started with, for Restart; mu guards proc.
	bin, dir, data, console string
	mu                      sync.Mutex
	proc                    *process
}

// URL returns the base URL of the S3 API, "https://" + Endpoint.
func (s *Server) URL() string { return "https://" + s.Endpoint }

// CertPool returns a new certificate pool holding only the server's CA.
func (s *Server) CertPool() *x509.CertPool { return s.pool.Clone() }

// TLSConfig returns a new TLS client configuration that trusts only the
// server's CA.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.CertPool(), MinVersion: tls.VersionTLS12}
}

// Transport returns a new HTTP transport that trusts the server's CA and
// never goes through a proxy.
func (s *Server) Transport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.TLSClientConfig = s.TLSConfig()
	tr.DisableCompression = true // as minio-go does: objects must not be decoded
	return tr
}

// Client returns a new minio-go client for the server, authenticated with
// the root credentials, over TLS trusting the server's CA. It fails the
// test if the client cannot be built.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Endpoint, s.clientOptions())
	if err != nil {
		t.Fatalf("miniotest: new client for %s: %v", s.Endpoint, err)
	}
	return c
}

// Core returns a new low-level minio-go client for the server, for tests
// that drive multipart uploads part by part. It fails the test if the
// client cannot be built.
func (s *Server) Core(t testing.TB) *minio.Core {
	t.Helper()
	c, err := minio.NewCore(s.Endpoint, s.clientOptions())
	if err != nil {
		t.Fatalf("miniotest: new core client for %s: %v", s.Endpoint, err)
	}
	return c
}

func (s *Server) clientOptions() *minio.Options {
	return &minio.Options{
		Creds:     credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:    true,
		Transport: s.Transport(),
		// Setting the region spares a GetBucketLocation round trip per bucket.
		Region: "us-east-1",
	}
}

// MakeBucket creates the bucket name on the server, failing the test if it
// cannot.
func (s *Server) MakeBucket(t testing.TB, name string) {
	t.Helper()
	if err := s.Client(t).MakeBucket(t.Context(), name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("miniotest: make bucket %q: %v", name, err)
	}
}

// Start runs a new MinIO server for the test and returns once it answers
// its liveness probe. The server has its own data directory, certificates,
// credentials and ports, and is stopped when the test and its subtests end.
//
// When no minio binary is found, Start skips the test, or fails it when the
// CI environment variable is set. See the package documentation for where
// the binary is looked up.
func Start(t testing.TB) *Server {
	t.Helper()

	bin, err := findBinary()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("miniotest: %v (CI must install it: scripts/install-tools.sh)", err)
		}
		t.Skipf("miniotest: %v; run `make tools` to install it", err)
	}

	dir := t.TempDir()
	files, err := writeCerts(filepath.Join(dir, "certs"))
	if err != nil {
		t.Fatalf("miniotest: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(files.caPEM) {
		t.Fatal("miniotest: CA certificate not usable")
	}
	s := &Server{
		AccessKey: rand.Text()[:20], // minio allows at most 20
		SecretKey: rand.Text(),
		CAPEM:     files.caPEM,
		CAFile:    files.caFile,
		pool:      pool,
	}

	s.bin, s.dir = bin, dir
	began := time.Now()
	for attempt := 1; ; attempt++ {
		ports, err := testproc.FreePorts(2)
		if err != nil {
			t.Fatalf("miniotest: %v", err)
		}
		// A fresh data directory per attempt, so a half-initialised one
		// from a failed attempt cannot interfere.
		data := filepath.Join(dir, "data"+strconv.Itoa(attempt))
		endpoint := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		console := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
		p, err := s.launch(t.Context(), endpoint, console, data)
		if err == nil {
			s.proc, s.data, s.console = p, data, console
			t.Cleanup(func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				if s.proc != nil {
					s.proc.stop(t)
				}
			})
			t.Logf("miniotest: minio ready at https://%s in %v", s.Endpoint, time.Since(began).Round(time.Millisecond))
			return s
		}
		if errors.Is(err, errPortInUse) && attempt < maxAttempts {
			t.Logf("miniotest: attempt %d failed, retrying on other ports: %v", attempt, err)
			continue
		}
		t.Fatalf("miniotest: start minio (attempt %d): %v", attempt, err)
	}
}

// Kill kills the server with SIGKILL, as a crash or an outage would, and
// waits until it has exited; [Server.Restart] brings it back. Killing a
// server that is not running does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.kill()
		s.proc = nil
	}
}

// Pid is the running server process's id, 0 while it is killed: for
// benchmarks that account for the store's CPU.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Restart starts the server again after [Server.Kill], on the same
// address, with the same data, credentials and certificates, and returns
// once it is ready. It fails the test if it cannot.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		t.Fatal("miniotest: Restart of a server that runs")
	}
	p, err := s.launch(t.Context(), s.Endpoint, s.console, s.data)
	if err != nil {
		t.Fatalf("miniotest: restart minio: %v", err)
	}
	s.proc = p
}

// launch starts one minio process on the given addresses and data
// directory and waits until it is ready. On error the process has exited
// and the error carries its output.
func (s *Server) launch(ctx context.Context, endpoint, console, data string) (*process, error) {
	bin, dir := s.bin, s.dir
	cmd := exec.Command(bin, "server", data,
		"--address", endpoint,
		"--console-address", console,
		"--certs-dir", filepath.Join(dir, "certs"),
	)
	cmd.Env = append(environWithout("MINIO_", "HOME="),
		// MinIO creates ~/.minio even when given --certs-dir; keep it in the
		// test's directory, not the user's home.
		"HOME="+dir,
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		// No update check: it would leave loopback.
		"MINIO_UPDATE=off",
		// CI/CD mode caps minio's buffer pool at 256 MiB instead of half of
		// the machine's memory, so many servers fit side by side. MinIO also
		// turns it on by itself when CI is set; setting it always keeps local
		// runs and CI alike.
		"MINIO_CI_CD=on",
	)
	p := &process{cmd: cmd, out: new(testproc.Buffer), done: make(chan struct{})}
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	cmd.SysProcAttr = testproc.SysProcAttr()
	// Bounds Wait if something minio spawned keeps its output pipe open.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec %s: %w", bin, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	if err := waitReady(ctx, p, "https://"+endpoint+"/minio/health/live", s.TLSConfig()); err != nil {
		p.kill()
		out := p.out.String()
		if strings.Contains(strings.ToLower(out), "already in use") {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		if out == "" {
			out = "(none)"
		}
		return nil, fmt.Errorf("%w\nminio output:\n%s", err, out)
	}
	s.Endpoint = endpoint
	return p, nil
}

// waitReady polls url until minio answers that it is live with its object
// layer initialised, the process exits, or startTimeout passes.
func waitReady(ctx context.Context, p *process, url string, tlsConf *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tr := &http.Transport{TLSClientConfig: tlsConf, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}

	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	var lastErr error
	for {
		lastErr = probe(ctx, client, url)
		if lastErr == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("minio exited before it was ready: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("minio not ready after %v: %w (last probe: %v)", startTimeout, ctx.Err(), lastErr)
		case <-ticker.C:
		}
	}
}

// probe asks minio's liveness endpoint once. MinIO answers 200 as soon as
// its HTTP server is up, and flags with a header that its object layer is
// not yet initialised; only a 200 without that flag means ready. Because the
// client trusts only this server's CA, a probe can never be answered by
// another test's minio that happened to bind the same port.
func probe(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("build probe request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("liveness probe: %s", resp.Status)
	}
	if st := resp.Header.Get("X-Minio-Server-Status"); st != "" {
		return fmt.Errorf("liveness probe: server status %q", st)
	}
	return nil
}

// process is a running minio.
type process struct {
	cmd  *exec.Cmd
	out  *testproc.Buffer
	done chan struct{} // closed once Wait has returned
	err  error         // Wait's result; read only after done is closed
}

// stop ends minio gracefully, or kills it after stopTimeout, and shows its
// output if the test failed.
func (p *process) stop(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Logf("miniotest: signal minio: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		t.Logf("miniotest: minio still running %v after SIGTERM; killing it", stopTimeout)
		p.kill()
	}
	if t.Failed() {
		t.Logf("miniotest: minio output:\n%s", p.out.String())
	}
}

// kill kills minio and waits for it to be reaped.
func (p *process) kill() {
	_ = p.cmd.Process.Kill() // fails only if it already exited
	<-p.done
}

// findBinary returns the path of the minio binary: $COFFER_MINIO_BIN,
// else minio on PATH, else $GOPATH/bin/minio (testproc.FindBinary).
func findBinary() (string, error) { return testproc.FindBinary("minio", "COFFER_MINIO_BIN") }

// environWithout returns the environment less the entries that start with
// any of prefixes, so that settings of the caller's own MinIO cannot leak
// into a test server.
func environWithout(prefixes ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(kv, p) }) {
			env = append(env, kv)
		}
	}
	return env
}
