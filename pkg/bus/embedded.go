package bus

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options configures [StartEmbedded].
type Options struct {
	// StoreDir is where JetStream keeps its file store. Required; tests pass
	// t.TempDir().
	StoreDir string
	// Port is the client port: -1 picks a free port on 127.0.0.1, 0 opens no
	// socket at all (in-process connections only), anything else listens on
	// that port on 127.0.0.1.
	Port int
	// Host overrides the listen address (default 127.0.0.1) when Port != 0.
	Host string
	// ServerName names the server in logs and advisories (default
	// "coffer-embedded").
	ServerName string
	// ReadyTimeout bounds the wait for the server to accept connections
	// (default 10s).
	ReadyTimeout time.Duration
}

func (o *Options) setDefaults() {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.ServerName == "" {
		o.ServerName = "coffer-embedded"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 10 * time.Second
	}
}

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	if o.StoreDir == "" {
		errs = append(errs, errors.New("store dir is required"))
	}
	if o.Port < -1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range (-1, 0 or 1-65535)", o.Port))
	}
	if o.ReadyTimeout < 0 {
		errs = append(errs, fmt.Errorf("negative ready timeout %v", o.ReadyTimeout))
	}
	return errors.Join(errs...)
}

// Embedded is a nats-server with JetStream running inside this process, for
// `coffer up`, demos and tests.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a JetStream-enabled nats-server in this process and
// returns once it accepts connections. The server installs no signal
// handlers and logs nothing; stop it with [Embedded.Shutdown].
func StartEmbedded(opts Options) (*Embedded, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("embedded nats options: %w", err)
	}
	sopts := &server.Options{
		ServerName: opts.ServerName,
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		Host:       opts.Host,
		Port:       opts.Port,
		// nats-server's default MaxPayload (1 MiB), as an external
		// server has: no event grows with a backup's size (a chunk list
		// travels as a draft in the vault)
	}
	switch opts.Port {
	case 0:
		// nats-server reads port 0 as "the default port, 4222".
		sopts.DontListen = true
	case -1:
		sopts.Port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("create embedded nats server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(opts.ReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats server not ready after %v", opts.ReadyTimeout)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("embedded nats server started without JetStream")
	}
	return &Embedded{srv: srv}, nil
}

// Connect opens an in-process client connection (no socket) named name.
// Extra options are applied after the in-process and name options.
func (e *Embedded) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{nats.InProcessServer(e.srv), nats.Name(name)}, opts...)
	nc, err := nats.Connect("", all...)
	if err != nil {
		return nil, fmt.Errorf("connect %s to embedded nats: %w", name, err)
	}
	return nc, nil
}

// ClientURL is the nats:// URL other processes can connect to, or "" when
// the server was started with Port 0 (in-process only).
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Shutdown stops the server and waits until it has stopped. Client
// connections are closed by the server; close or drain your own first for a
// clean shutdown.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
