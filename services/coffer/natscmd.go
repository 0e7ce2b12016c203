package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cofferhq/coffer/pkg/natsauth"
	"github.com/cofferhq/coffer/pkg/tlsca"
	"github.com/cofferhq/coffer/pkg/topology"
)

// Files `coffer nats config --tls-hosts` writes next to the seeds.
const (
	natsServerCert = "nats-server.pem"
	natsServerKey  = "nats-server.key"
)

// runNATS runs `coffer nats config`: it makes sure every service has its
// credentials (an nkey seed, DIR/<service>.nk, mode 0600; kept when it
// exists) and prints the nats-server configuration that declares their
// users, each allowed only what its service does (pkg/natsauth, from
// topology.Services). With --tls-hosts it also issues nats-server's
// certificate from coffer's CA and adds the tls block; the services then
// trust that CA (COFFER_NATS_CA_FILE=DIR/ca.pem).
func runNATS(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	const synopsis = "usage: coffer nats config --dir DIR [--tls-hosts HOST,...] [--ca-dir DIR] [--server-dir PATH]"
	if len(args) == 0 || args[0] != "config" {
		return errors.New(synopsis)
	}
	flags := flag.NewFlagSet("coffer nats config", flag.ContinueOnError)
	flags.SetOutput(stderr)
	dir := flags.String("dir", "", "directory of the services' credentials: <service>.nk, created when absent, kept otherwise (required)")
	hosts := flags.String("tls-hosts", "", "names and addresses clients reach nats-server at: issue its certificate from coffer's CA into DIR and turn TLS on")
	caDir := flags.String("ca-dir", defaultCADir(getenv), "coffer's CA (created if absent), with --tls-hosts")
	serverDir := flags.String("server-dir", "", "DIR as nats-server sees it (e.g. /etc/nats/coffer in its container), for the tls block's paths (default DIR)")
	if err := flags.Parse(args[1:]); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q\n%s", flags.Arg(0), synopsis)
	}
	if *dir == "" {
		return fmt.Errorf("--dir is required\n%s", synopsis)
	}
	users, err := natsauth.EnsureUsers(*dir, topology.Services)
	if err != nil {
		return err
	}
	var tls natsauth.TLS
	if *hosts != "" {
		if err := ensureNATSCert(*dir, *caDir, strings.Split(*hosts, ",")); err != nil {
			return err
		}
		sd := *serverDir
		if sd == "" {
			if sd, err = filepath.Abs(*dir); err != nil {
				return err
			}
		}
		tls = natsauth.TLS{CertFile: filepath.Join(sd, natsServerCert), KeyFile: filepath.Join(sd, natsServerKey)}
	}
	if err := natsauth.WriteConfig(stdout, users, tls); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "credentials in %s: one nkey seed per service (COFFER_NATS_NKEY_FILE=%s/<service>.nk)\n", *dir, *dir)
	if *hosts != "" {
		fmt.Fprintf(stderr, "nats-server certificate in %s; services trust COFFER_NATS_CA_FILE=%s\n",
			filepath.Join(*dir, natsServerCert), filepath.Join(*dir, tlsca.CertFile))
	}
	return nil
}

// ensureNATSCert issues nats-server's certificate for hosts from the CA in
// caDir into dir, unless one is there, and copies the CA certificate
// there for the services.
func ensureNATSCert(dir, caDir string, hosts []string) error {
	ca, err := tlsca.Ensure(caDir)
	if err != nil {
		return fmt.Errorf("coffer's CA in %s: %w", caDir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, tlsca.CertFile), ca.PEM(), 0o644); err != nil {
		return fmt.Errorf("copy the CA certificate: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, natsServerCert), filepath.Join(dir, natsServerKey)
	if _, err := os.Stat(certPath); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	cert, err := ca.Issue(hosts, 2*365*24*time.Hour)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return fmt.Errorf("encode nats-server's key: %w", err)
	}
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("write nats-server's key: %w", err)
	}
	if err := os.WriteFile(certPath, chain, 0o644); err != nil {
		return fmt.Errorf("write nats-server's certificate: %w", err)
	}
	return nil
}
