package miniotest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// tlsFiles is what writeCerts produced: the CA certificate in PEM form and
// where it was written.
type tlsFiles struct {
	caPEM  []byte
	caFile string
}

// writeCerts generates a throwaway ECDSA certificate authority and a server
// certificate for 127.0.0.1, ::1 and localhost signed by it, and writes them
// in the layout minio's --certs-dir expects: public.crt and private.key for
// the server, CAs/ca.crt for the authority minio itself trusts.
func writeCerts(certsDir string) (tlsFiles, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tlsFiles{}, fmt.Errorf("generate CA key: %w", err)
	}
	// Templates leave SerialNumber nil: CreateCertificate then picks a
	// random one, as RFC 5280 wants.
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"coffer miniotest"}, CommonName: "miniotest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tlsFiles{}, fmt.Errorf("create CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tlsFiles{}, fmt.Errorf("parse CA certificate: %w", err)
	}

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tlsFiles{}, fmt.Errorf("generate server key: %w", err)
	}
	srvTmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"coffer miniotest"}, CommonName: "127.0.0.1"},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return tlsFiles{}, fmt.Errorf("create server certificate: %w", err)
	}
	srvKeyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return tlsFiles{}, fmt.Errorf("marshal server key: %w", err)
	}

	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	caFile := filepath.Join(certsDir, "CAs", "ca.crt")
	files := []struct {
		path string
		data []byte
	}{
		{filepath.Join(certsDir, "public.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER})},
		{filepath.Join(certsDir, "private.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: srvKeyDER})},
		{caFile, caPEM},
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
			return tlsFiles{}, fmt.Errorf("create certificate directory: %w", err)
		}
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return tlsFiles{}, fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	return tlsFiles{caPEM: caPEM, caFile: caFile}, nil
}
