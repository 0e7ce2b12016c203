package streamer_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/miniotest"
	"github.com/cofferhq/coffer/pkg/topology"
	streamer "github.com/cofferhq/coffer/services/backup-streamer"
)

// The benchmarks run the streamer in a process of its own, so that its
// resident memory is the streamer's alone: this test binary, started again
// with streamerProcEnv set, runs the service as cmd/backup-streamer does
// (daemon.Main: NATS over loopback, the vault in MinIO) instead of the
// tests. The simulator, NATS and the committer stay in the benchmark's
// process, as SQL Server and the other services run apart from the
// streamer in a deployment.

// streamerProcEnv, set in a process's environment, makes the test binary
// run the streamer instead of the tests.
const streamerProcEnv = "COFFER_BENCH_STREAMER_PROC"

// stripeBytesEnv is the streamer process's Endpoint.StripeBytes, which
// cmd/backup-streamer has no setting for.
const stripeBytesEnv = "COFFER_BENCH_STRIPE_BYTES"

func TestMain(m *testing.M) {
	if os.Getenv(streamerProcEnv) != "" {
		daemon.Main(daemon.Service{Name: streamer.Name, NeedMasterKey: true, Vault: daemon.OpensVault,
			Register: func(*daemon.Flags) daemon.Settings {
				return &daemon.Config[struct{}]{New: func(_ context.Context, d daemon.Deps, _ struct{}) (daemon.Runner, error) {
					return streamerChild{d}, nil
				}}
			}})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// streamerChild is the streamer process: cmd/backup-streamer's service,
// with the URL endpoint on a free loopback port, and commands from the
// benchmark on stdin (see procControl). It stops when stdin closes.
type streamerChild struct{ d daemon.Deps }

func (p streamerChild) Run(ctx context.Context) error {
	d := p.d
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg := streamer.Config{
		MasterKey:      d.MasterKey,
		StagingDir:     os.Getenv("COFFER_STAGING_DIR"),
		Logger:         d.Logger,
		TracerProvider: d.TracerProvider,
		// as the tests' streamers: a transient failure is retried at once
		Backoff: []time.Duration{100 * time.Millisecond},
	}
	// as cmd/backup-streamer does
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(streamer.MemoryLimit(cfg.Workers))
	}
	if caDir := os.Getenv("COFFER_CA_DIR"); caDir != "" {
		e, _, err := streamer.NewEndpoint("127.0.0.1:0", "", caDir)
		if err != nil {
			return err
		}
		if s := os.Getenv(stripeBytesEnv); s != "" {
			if e.StripeBytes, err = strconv.ParseInt(s, 10, 64); err != nil {
				return fmt.Errorf("%s: %w", stripeBytesEnv, err)
			}
		}
		cfg.Endpoint = e
	}
	svc, err := streamer.New(d.Bus, d.Catalog, d.Vault, cfg)
	if err != nil {
		return err
	}
	ctl := &procControl{replies: json.NewEncoder(os.NewFile(3, "replies"))}
	stopSampling := ctl.sampleHeap(10 * time.Millisecond)
	defer stopSampling()
	if err := ctl.replies.Encode(procReply{}); err != nil { // ready
		return fmt.Errorf("benchmark control: %w", err)
	}
	go func() {
		ctl.serve(os.Stdin)
		cancel()
	}()
	err = svc.Run(ctx)
	// a profile the benchmark did not stop, as when a job failed
	return errors.Join(err, ctl.stopProfile())
}

// procReply is the streamer process's answer to a command, one JSON line.
type procReply struct {
	// PeakRSS is the process's peak resident set (VmHWM) since the last
	// mark, in bytes; PeakHeap its peak HeapInuse, sampled every 10 ms.
	PeakRSS  int64  `json:"peak_rss,omitempty"`
	PeakHeap uint64 `json:"peak_heap,omitempty"`
	Err      string `json:"err,omitempty"`
}

// procControl answers the benchmark's commands, one a line:
//
//	mark          reply the peaks since the last mark (or the start) and
//	              reset them, after returning freed memory to the OS
//	              (debug.FreeOSMemory); stop the CPU profile, if one runs
//	profile PATH  start a CPU profile into PATH, until the next mark, and
//	              write a heap profile into PATH.heap whenever the heap
//	              grows past its peak meanwhile
type procControl struct {
	replies *json.Encoder

	mu       sync.Mutex
	heap     uint64 // peak HeapInuse since the last mark
	profiled uint64 // HeapInuse at the last heap profile since the last mark

	profMu sync.Mutex
	prof   *os.File // the CPU profile running, if any
}

func (c *procControl) serve(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		var rep procReply
		var err error
		switch cmd {
		case "mark":
			rep.PeakRSS, err = takePeakRSS()
			rep.PeakHeap = c.takeHeapPeak()
			err = errors.Join(err, c.stopProfile())
		case "profile":
			err = c.startProfile(arg)
		default:
			err = fmt.Errorf("unknown command %q", cmd)
		}
		if err != nil {
			rep.Err = err.Error()
		}
		if c.replies.Encode(rep) != nil {
			return
		}
	}
}

func (c *procControl) sampleHeap(every time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		// runtime/metrics rather than runtime.ReadMemStats, which stops
		// the world: every 10 ms, that preempted every busy goroutine of
		// the streamer, and runtime.asyncPreempt took 17% of its CPU
		// profile. HeapInuse is heap objects plus the unused part of
		// their spans.
		samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
		for {
			metrics.Read(samples)
			inuse := samples[0].Value.Uint64() + samples[1].Value.Uint64()
			c.mu.Lock()
			c.heap = max(c.heap, inuse)
			// a heap profile each time the peak grows by 8 MiB more
			grew := inuse > c.profiled+8<<20
			if grew {
				c.profiled = inuse
			}
			c.mu.Unlock()
			if grew {
				c.writeHeapProfile()
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// takeHeapPeak returns the peak HeapInuse since the last call and starts
// the next period from the current HeapInuse.
func (c *procControl) takeHeapPeak() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	c.mu.Lock()
	defer c.mu.Unlock()
	peak := max(c.heap, ms.HeapInuse)
	c.heap, c.profiled = ms.HeapInuse, 0
	return peak
}

func (c *procControl) startProfile(path string) error {
	if err := c.stopProfile(); err != nil {
		return err
	}
	c.profMu.Lock()
	defer c.profMu.Unlock()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	c.prof = f
	return nil
}

// writeHeapProfile writes, while a CPU profile runs into PATH, a heap
// profile into PATH.heap: at the heap's peak, since it is called when the
// heap grows past its peak.
func (c *procControl) writeHeapProfile() {
	c.profMu.Lock()
	defer c.profMu.Unlock()
	if c.prof == nil {
		return
	}
	f, err := os.Create(c.prof.Name() + ".heap")
	if err != nil {
		return
	}
	defer f.Close()
	pprof.Lookup("heap").WriteTo(f, 0)
}

func (c *procControl) stopProfile() error {
	c.profMu.Lock()
	defer c.profMu.Unlock()
	if c.prof == nil {
		return nil
	}
	pprof.StopCPUProfile()
	err := c.prof.Close()
	c.prof = nil
	return err
}

// takePeakRSS returns the process's peak resident set size (VmHWM) and
// resets it to the current resident set, as Linux allows by writing 5 to
// /proc/self/clear_refs.
func takePeakRSS() (int64, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("peak RSS: %w", err)
	}
	var kib int64 = -1
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("peak RSS: VmHWM %q: %w", rest, err)
			}
		}
	}
	if kib < 0 {
		return 0, errors.New("peak RSS: no VmHWM in /proc/self/status")
	}
	// the next period starts from what is live, as a streamer's next job
	// would once the runtime has given back what the last one freed
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return 0, fmt.Errorf("reset peak RSS: %w", err)
	}
	return kib << 10, nil
}

// streamerProc is the parent's handle on a streamer process.
type streamerProc struct {
	t       testing.TB
	cmd     *exec.Cmd
	ctl     io.WriteCloser // its stdin
	r       *os.File       // its replies: the read end of its fd 3
	replies *json.Decoder  // reading r
	log     string         // the process's stdout and stderr
	waited  chan struct{}
	err     error // Wait's, once waited is closed
	stopped sync.Once
}

// streamerProcConfig is where a streamer process finds its services.
type streamerProcConfig struct {
	natsURL string
	master  []byte
	minio   *miniotest.Server
	bucket  string
	prefix  string
	staging string
	// caDir, when set, turns URL mode on: the endpoint's certificate is
	// issued by the CA kept there, which the simulator must trust.
	caDir       string
	stripeBytes int64
}

// startStreamerProc starts a streamer process and waits until its
// service is built; it is stopped when the test ends, if not before.
func startStreamerProc(t testing.TB, c streamerProcConfig) *streamerProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		streamerProcEnv + "=1",
		"COFFER_NATS_URL=" + c.natsURL,
		"COFFER_MASTER_KEY=" + hex.EncodeToString(c.master),
		"COFFER_STAGING_DIR=" + c.staging,
		"COFFER_S3_ENDPOINT=" + c.minio.Endpoint,
		"COFFER_S3_BUCKET=" + c.bucket,
		"COFFER_S3_PREFIX=" + c.prefix,
		"COFFER_S3_ACCESS_KEY=" + c.minio.AccessKey,
		"COFFER_S3_SECRET_KEY=" + c.minio.SecretKey,
		"COFFER_S3_CA_FILE=" + c.minio.CAFile,
	}
	if c.caDir != "" {
		env = append(env, "COFFER_CA_DIR="+c.caDir)
		if c.stripeBytes > 0 {
			env = append(env, stripeBytesEnv+"="+strconv.FormatInt(c.stripeBytes, 10))
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &streamerProc{t: t, r: r, log: filepath.Join(t.TempDir(), "streamer.log"), waited: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p.cmd = exec.Command(exe)
	// Nothing of this process's own COFFER_ settings (a vault directory
	// beside the S3 endpoint would be refused).
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COFFER_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.ExtraFiles = []*os.File{w}
	p.cmd.SysProcAttr = streamerProcAttr()
	p.cmd.WaitDelay = time.Second
	if p.ctl, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		r.Close()
		w.Close()
		t.Fatalf("start streamer process: %v", err)
	}
	w.Close() // the process holds the only write end: EOF when it exits
	go func() {
		p.err = p.cmd.Wait()
		close(p.waited)
	}()
	t.Cleanup(p.stop)
	p.replies = json.NewDecoder(r)
	p.reply("start")
	return p
}

// reply reads the process's answer to cmd, failing the test if the
// process reports an error or died.
func (p *streamerProc) reply(cmd string) procReply {
	p.t.Helper()
	var rep procReply
	if err := p.replies.Decode(&rep); err != nil {
		p.stop()
		p.t.Fatalf("streamer process, %s: %v; its output:\n%s", cmd, err, p.output())
	}
	if rep.Err != "" {
		p.t.Fatalf("streamer process, %s: %s", cmd, rep.Err)
	}
	return rep
}

func (p *streamerProc) send(cmd string) procReply {
	p.t.Helper()
	if _, err := io.WriteString(p.ctl, cmd+"\n"); err != nil {
		p.t.Fatalf("streamer process, %s: %v; its output:\n%s", cmd, err, p.output())
	}
	return p.reply(cmd)
}

// mark returns the process's peaks since the last mark (or its start),
// and starts the next period.
func (p *streamerProc) mark() procReply { return p.send("mark") }

// profile profiles the process's CPU into path until the next mark.
func (p *streamerProc) profile(path string) { p.send("profile " + path) }

// stop closes the process's commands, which stops the streamer, and waits
// for it to exit; it kills it after a minute.
func (p *streamerProc) stop() { p.stopped.Do(p.stopOnce) }

func (p *streamerProc) stopOnce() {
	p.ctl.Close()
	defer p.r.Close()
	select {
	case <-p.waited:
	case <-time.After(time.Minute):
		p.cmd.Process.Kill()
		<-p.waited
		p.t.Errorf("streamer process did not stop; its output:\n%s", p.output())
		return
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		p.t.Errorf("streamer process: %v; its output:\n%s", p.err, p.output())
	}
}

func (p *streamerProc) output() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// listenNATS moves e onto an embedded NATS that listens on loopback, so
// that a streamer process can take its jobs, and returns its URL: newEnv's
// own takes in-process connections only. The simulator is registered
// again in the new catalog.
func (e *env) listenNATS() string {
	e.t.Helper()
	srv, err := bus.StartEmbedded(bus.Options{StoreDir: e.t.TempDir(), Port: -1})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect(e.t.Name())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	b, err := bus.New(nc, bus.Config{Logger: testLogger(e.t), NakDelay: 100 * time.Millisecond, FetchWait: 200 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	cat, err := topology.Setup(context.Background(), b, topology.Config{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.bus, e.cat = b, cat
	e.register(instName)
	return srv.ClientURL()
}
