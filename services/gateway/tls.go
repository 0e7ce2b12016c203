package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/cofferhq/coffer/pkg/tlsca"
)

// CertValidity is how long a certificate the gateway issues itself from
// coffer's CA is valid; it issues a new one at each start.
const CertValidity = 397 * 24 * time.Hour

// errPlainOffLoopback refuses plain HTTP beyond loopback.
var errPlainOffLoopback = errors.New("plain HTTP is served on loopback only: give a certificate (--http-cert and --http-key) or coffer's CA (--http-ca-dir) to serve HTTPS, listen on 127.0.0.1, or, behind a proxy that ends TLS, --http-plain")

// serverTLS is the TLS configuration of the API: the operator's
// certificate and key, or one issued from coffer's CA for the hosts
// named; nil for plain HTTP.
func (c Config) serverTLS() (*tls.Config, error) {
	var cert tls.Certificate
	switch {
	case c.TLSCertFile != "" || c.TLSKeyFile != "":
		if c.TLSCertFile == "" || c.TLSKeyFile == "" {
			return nil, errors.New("give both a certificate and its key (--http-cert and --http-key)")
		}
		var err error
		if cert, err = tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			return nil, fmt.Errorf("load the API's certificate: %w", err)
		}
	case c.TLSCADir != "":
		ca, err := tlsca.Ensure(c.TLSCADir)
		if err != nil {
			return nil, fmt.Errorf("coffer's CA for the API: %w", err)
		}
		if cert, err = ca.Issue(c.certHosts(), CertValidity); err != nil {
			return nil, fmt.Errorf("issue the API's certificate: %w", err)
		}
	default:
		return nil, nil
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// certHosts are the names a certificate from coffer's CA is issued for:
// those configured, the listen address's host unless it is every
// address, and loopback.
func (c Config) certHosts() []string {
	hosts := append([]string(nil), c.TLSHosts...)
	if h, _, err := net.SplitHostPort(c.Addr); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	return append(hosts, "localhost", "127.0.0.1", "::1")
}
