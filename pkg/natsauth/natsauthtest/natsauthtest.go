// Package natsauthtest starts a nats-server secured as `coffer nats
// config` secures one: TLS with a certificate from a test CA, and the
// configuration pkg/natsauth generates (one nkey user per service), plus
// an unrestricted admin user for the test's own checks.
package natsauthtest

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/cofferhq/coffer/pkg/natsauth"
	"github.com/cofferhq/coffer/pkg/tlsca"
	"github.com/cofferhq/coffer/pkg/topology"
)

// Server is a running secured nats-server.
type Server struct {
	*server.Server
	// CredsDir holds every service's nkey seed, as `coffer nats config
	// --dir` writes them.
	CredsDir string
	// CAFile is the CA that issued the server's certificate.
	CAFile string
	// Admin is a connection allowed everything in coffer's account.
	Admin *nats.Conn
	// Config is the generated configuration the server loaded.
	Config string
}

// Env is the environment a service is given to connect as itself (its
// nkey seed and the CA), for daemon.NATSOptions.
func (s *Server) Env(service string) func(string) string {
	env := map[string]string{
		"COFFER_NATS_NKEY_FILE": filepath.Join(s.CredsDir, natsauth.SeedFile(service)),
		"COFFER_NATS_CA_FILE":   s.CAFile,
	}
	return func(k string) string { return env[k] }
}

// Start starts the server on a free loopback port, with JetStream storing
// in a temporary directory; it is shut down when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	ca, err := tlsca.New("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	writeFile(t, caFile, ca.PEM())
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}))
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))

	credsDir := filepath.Join(dir, "creds")
	users, err := natsauth.EnsureUsers(credsDir, topology.Services)
	if err != nil {
		t.Fatal(err)
	}
	adminKP, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	adminPub, _ := adminKP.PublicKey()
	adminSeed, _ := adminKP.Seed()
	adminFile := filepath.Join(dir, "admin.nk")
	writeFile(t, adminFile, adminSeed)
	users = append(users, natsauth.User{Service: "test-admin", NKey: adminPub,
		Permissions: natsauth.Permissions{Publish: []string{">"}, Subscribe: []string{">"}}})

	var conf strings.Builder
	if err := natsauth.WriteConfig(&conf, users, natsauth.TLS{CertFile: certFile, KeyFile: keyFile}); err != nil {
		t.Fatal(err)
	}
	confFile := filepath.Join(dir, "nats.conf")
	writeFile(t, confFile, []byte(conf.String()))
	opts, err := server.ProcessConfigFile(confFile)
	if err != nil {
		t.Fatalf("the generated configuration does not load: %v\n%s", err, conf.String())
	}
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.JetStream, opts.StoreDir = true, filepath.Join(dir, "js")
	opts.NoSigs, opts.NoLog = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nkey, err := nats.NkeyOptionFromSeed(adminFile)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := nats.Connect(srv.ClientURL(), nats.RootCAs(caFile), nkey)
	if err != nil {
		t.Fatalf("admin connect: %v", err)
	}
	t.Cleanup(admin.Close)
	return &Server{Server: srv, CredsDir: credsDir, CAFile: caFile, Admin: admin, Config: conf.String()}
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
