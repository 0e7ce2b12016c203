package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/pkg/natsauth"
	"github.com/cofferhq/coffer/pkg/tlsca"
	"github.com/cofferhq/coffer/pkg/topology"
)

// Files `coffer nats config --tls-hosts` writes next to the seeds.
const (
	natsServerCert = "nats-server.pem"
	natsServerKey  = "nats-server.key"
)

// natsCmd is `coffer nats config`: it makes sure every service has its
// credentials (an nkey seed, DIR/<service>.nk, mode 0600; kept when it
// exists) and prints the nats-server configuration that declares their
// users, each allowed only what its service does (pkg/natsauth, from
// topology.Services). With --tls-hosts it also issues nats-server's
// certificate from coffer's CA and adds the tls block; the services then
// trust that CA (COFFER_NATS_CA_FILE=DIR/ca.pem).
func (a *app) natsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config --dir DIR",
		Short: "One NATS user per service: credentials into DIR, nats-server config on stdout",
		Long: `Make sure every service has its NATS credentials (an nkey seed,
DIR/<service>.nk, mode 0600; kept when it exists) and print the
nats-server configuration that declares their users, each allowed only
what its service does. With --tls-hosts it also issues nats-server's
certificate from coffer's CA and adds the tls block; the services then
trust that CA (COFFER_NATS_CA_FILE=DIR/ca.pem).`,
		Example: "  coffer nats config --dir ./nats-creds --tls-hosts nats,localhost --server-dir /etc/nats/coffer > nats-creds/coffer-nats.conf",
		Args:    nargs(0, 0),
	}
	dir := cmd.Flags().String("dir", "", "directory of the services' credentials: <service>.nk, created when absent, kept otherwise")
	hosts := cmd.Flags().String("tls-hosts", "", "names and addresses clients reach nats-server at: issue its certificate from coffer's CA into DIR and turn TLS on")
	caDir := cmd.Flags().String("ca-dir", defaultCADir(a.getenv), "coffer's CA (created if absent), with --tls-hosts")
	serverDir := cmd.Flags().String("server-dir", "", "DIR as nats-server sees it (e.g. /etc/nats/coffer in its container), for the tls block's paths (default DIR)")
	cmd.MarkFlagRequired("dir")
	cmd.RunE = func(*cobra.Command, []string) error {
		if *dir == "" {
			return usagef("--dir is required")
		}
		return natsConfig(*dir, *hosts, *caDir, *serverDir, a.stdout, a.stderr)
	}
	return group("nats", "Make coffer's NATS users and nats-server's configuration", "", cmd)
}

// natsConfig runs coffer nats config.
func natsConfig(dir, hosts, caDir, serverDir string, stdout, stderr io.Writer) error {
	users, err := natsauth.EnsureUsers(dir, topology.Services)
	if err != nil {
		return err
	}
	var tls natsauth.TLS
	if hosts != "" {
		if err := ensureNATSCert(dir, caDir, strings.Split(hosts, ",")); err != nil {
			return err
		}
		sd := serverDir
		if sd == "" {
			if sd, err = filepath.Abs(dir); err != nil {
				return err
			}
		}
		tls = natsauth.TLS{CertFile: filepath.Join(sd, natsServerCert), KeyFile: filepath.Join(sd, natsServerKey)}
	}
	if err := natsauth.WriteConfig(stdout, users, tls); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "credentials in %s: one nkey seed per service (COFFER_NATS_NKEY_FILE=%s/<service>.nk)\n", dir, dir)
	if hosts != "" {
		fmt.Fprintf(stderr, "nats-server certificate in %s; services trust COFFER_NATS_CA_FILE=%s\n",
			filepath.Join(dir, natsServerCert), filepath.Join(dir, tlsca.CertFile))
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
