package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/pkg/tlsca"
)

func (a *app) caCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create coffer's CA (URL mode) if absent; print its certificate's path",
		Long: `Make sure coffer's CA, which issues the certificates of the streamers' S3
endpoints (URL mode), exists in a directory: created the first time, kept
otherwise (an operator's own ca.pem and ca.key included). It prints where
its certificate is, for SQL Server's host to trust it. --copy-to also
writes the certificate to a file, as a container deployment does once
before SQL Server starts (docs/url-mode.md).`,
		Example: "  coffer ca init --dir /var/lib/coffer/ca --copy-to /var/opt/mssql/security/ca-certificates/coffer-ca.crt",
		Args:    nargs(0, 0),
	}
	dir := cmd.Flags().String("dir", defaultCADir(a.getenv), "the CA's directory (COFFER_CA_DIR, as the backup-streamer reads it; default DATA/ca, where coffer up keeps it)")
	copyTo := cmd.Flags().String("copy-to", "", "also write the CA certificate to this file, e.g. /var/opt/mssql/security/ca-certificates/coffer-ca.crt (SQL Server on Linux reads only .crt files there)")
	cmd.RunE = func(*cobra.Command, []string) error {
		if *dir == "" {
			return usagef("--dir is required")
		}
		return caInit(*dir, *copyTo, a.stdout)
	}
	return group("ca", "Create coffer's CA, for URL mode", "", cmd)
}

// caInit runs `coffer ca init`: it makes sure coffer's CA, which issues the
// certificates of the streamers' S3 endpoints (URL mode), exists in a
// directory, creating it there the first time and keeping the one it
// finds otherwise (an operator's own ca.pem and ca.key included), and says
// where its certificate is, for the operator to make SQL Server's host
// trust it. --copy-to also writes the certificate to a file: a container
// deployment runs it once before SQL Server starts, so that SQL Server on
// Linux, which reads its trusted CAs only at startup, trusts the CA from
// its first start, and so that streamers started together do not each
// create a CA of their own.
func caInit(dir, copyTo string, stdout io.Writer) error {
	certPath := filepath.Join(dir, tlsca.CertFile)
	_, statErr := os.Stat(certPath)
	ca, err := tlsca.Ensure(dir)
	if err != nil {
		return fmt.Errorf("coffer's CA in %s: %w", dir, err)
	}
	state := "kept"
	if errors.Is(statErr, fs.ErrNotExist) {
		state = "created"
	}
	fmt.Fprintf(stdout, "coffer CA certificate: %s (%s)\n", certPath, state)
	if copyTo != "" {
		if err := os.MkdirAll(filepath.Dir(copyTo), 0o755); err != nil {
			return fmt.Errorf("copy the CA certificate: %w", err)
		}
		if err := os.WriteFile(copyTo, ca.PEM(), 0o644); err != nil {
			return fmt.Errorf("copy the CA certificate: %w", err)
		}
		fmt.Fprintf(stdout, "copied to: %s\n", copyTo)
	}
	fmt.Fprintln(stdout, "SQL Server backs up to coffer's S3 endpoint once its host trusts this certificate (docs/url-mode.md).")
	return nil
}

// defaultCADir is COFFER_CA_DIR, else DATA/ca.
func defaultCADir(getenv func(string) string) string {
	if d := getenv("COFFER_CA_DIR"); d != "" {
		return d
	}
	return filepath.Join(defaultDataDir(getenv), "ca")
}
