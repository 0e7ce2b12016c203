package daemon

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/dirstore"
	"github.com/cofferhq/coffer/pkg/blob/retry"
	"github.com/cofferhq/coffer/pkg/blob/s3store"
	"github.com/cofferhq/coffer/pkg/vault"
)

// VaultStore is where the vault lives: a directory, or a bucket of an
// S3-compatible store.
type VaultStore struct {
	Dir string

	S3Endpoint  string // host:port
	S3Bucket    string
	S3Prefix    string
	S3AccessKey string
	S3SecretKey string
	S3CAFile    string // PEM of the CAs to trust; empty means the system roots
	// S3CAPEM is the PEM of the CAs to trust itself, instead of S3CAFile
	// (a named vault's record carries it).
	S3CAPEM     []byte
	S3PlainHTTP bool
	// S3Proxy is the URL of an HTTP proxy to reach the store through,
	// without credentials; S3ProxyUser and S3ProxyPassword are the
	// proxy's, when it asks for them.
	S3Proxy         string
	S3ProxyUser     string
	S3ProxyPassword string

	// RetryFor is how long a call to the store is tried again before it
	// fails (pkg/blob/retry); 0 means retry's default.
	RetryFor time.Duration
	// Logger is told of each call tried again; nil logs nothing.
	Logger *slog.Logger
}

// Register registers the vault's location on f. The S3 secret key is
// read from COFFER_S3_SECRET_KEY only, never from a flag, which every
// process listing shows.
func (v *VaultStore) Register(f *Flags) {
	f.String(&v.Dir, "vault-dir", "COFFER_VAULT_DIR", "", "directory of a local vault (coffer up: default DATA/vault)")
	f.String(&v.S3Endpoint, "s3-endpoint", "COFFER_S3_ENDPOINT", "", "host:port of the S3-compatible store holding the vault, instead of a directory")
	f.String(&v.S3Bucket, "s3-bucket", "COFFER_S3_BUCKET", "", "the vault's bucket")
	f.String(&v.S3Prefix, "s3-prefix", "COFFER_S3_PREFIX", "", "the vault's prefix in the bucket")
	f.String(&v.S3AccessKey, "s3-access-key", "COFFER_S3_ACCESS_KEY", "", "access key of the store; its secret is COFFER_S3_SECRET_KEY")
	f.String(&v.S3CAFile, "s3-ca-file", "COFFER_S3_CA_FILE", "", "PEM file of the CAs the store's certificate is checked against (default the system's)")
	f.Bool(&v.S3PlainHTTP, "s3-insecure-http", "COFFER_S3_INSECURE_HTTP", false, "talk to the store over plain HTTP")
	f.String(&v.S3Proxy, "s3-proxy", "COFFER_S3_PROXY", "", "URL of the HTTP proxy to reach the store through, http://host:port or https://host:port (default: the environment's HTTPS_PROXY, if any)")
	f.String(&v.S3ProxyUser, "s3-proxy-user", "COFFER_S3_PROXY_USER", "", "user the proxy authenticates; its password is COFFER_S3_PROXY_PASSWORD")
	f.Duration(&v.RetryFor, "store-retry-for", "COFFER_STORE_RETRY_FOR", 3*time.Minute,
		"how long a call to the vault's store is tried again, with backoff, before the backup or restore that made it fails: a store down for less costs a wait")
	v.S3SecretKey = f.Getenv("COFFER_S3_SECRET_KEY")
	v.S3ProxyPassword = f.Getenv("COFFER_S3_PROXY_PASSWORD")
}

// proxyURL returns the proxy the store is reached through, with its
// credentials, or nil for none.
func (v VaultStore) proxyURL() (*url.URL, error) {
	if v.S3Proxy == "" {
		if v.S3ProxyUser != "" || v.S3ProxyPassword != "" {
			return nil, errors.New("vault: a proxy user or password is set, but no proxy (COFFER_S3_PROXY)")
		}
		return nil, nil
	}
	u, err := url.Parse(v.S3Proxy)
	if err != nil {
		// url's errors quote the input, which may hold a password
		return nil, errors.New("vault: the proxy is not a URL: want http://host:port or https://host:port")
	}
	if u.User != nil {
		return nil, fmt.Errorf("vault: proxy %s: give its user as --s3-proxy-user and its password in COFFER_S3_PROXY_PASSWORD, not in the URL, which process listings and logs show", u.Redacted())
	}
	switch {
	case v.S3ProxyUser != "":
		u.User = url.UserPassword(v.S3ProxyUser, v.S3ProxyPassword)
	case v.S3ProxyPassword != "":
		return nil, errors.New("vault: COFFER_S3_PROXY_PASSWORD is set without a proxy user (--s3-proxy-user)")
	}
	return u, nil
}

// WaitVault opens the vault in the store with the master key, waiting
// (with backoff, logged) for the process that creates it, until ctx is
// done.
func WaitVault(ctx context.Context, store blob.Store, master []byte, log *slog.Logger) (*vault.Vault, error) {
	delay := time.Second
	for {
		v, err := OpenVault(ctx, store, master, false)
		if !errors.Is(err, vault.ErrNotInitialized) {
			return v, err
		}
		log.Info("waiting for the committer to initialise the vault", "retry_in", delay)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("open vault: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// Open returns the blob store, wrapped so that its calls are tried again
// for RetryFor.
func (v VaultStore) Open() (blob.Store, error) {
	s, err := v.open()
	if err != nil {
		return nil, err
	}
	r, err := retry.New(s, retry.Config{For: v.RetryFor, Logger: v.Logger})
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	return r, nil
}

// open returns the blob store itself.
func (v VaultStore) open() (blob.Store, error) {
	switch {
	case v.S3Endpoint != "" && v.Dir != "":
		return nil, errors.New("vault: give a directory or an S3 endpoint, not both")
	case v.S3Endpoint != "":
		cfg := s3store.Config{Endpoint: v.S3Endpoint, Bucket: v.S3Bucket, Prefix: v.S3Prefix,
			AccessKey: v.S3AccessKey, SecretKey: v.S3SecretKey, PlainHTTP: v.S3PlainHTTP}
		proxy, err := v.proxyURL()
		if err != nil {
			return nil, err
		}
		cfg.Proxy = proxy
		pem, where := v.S3CAPEM, "the vault's CA"
		if v.S3CAFile != "" {
			var err error
			if pem, err = os.ReadFile(v.S3CAFile); err != nil {
				return nil, fmt.Errorf("vault: read CA file: %w", err)
			}
			where = v.S3CAFile
		}
		if len(pem) > 0 {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("vault: %s holds no PEM certificate", where)
			}
			cfg.RootCAs = pool
		}
		s, err := s3store.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		return s, nil
	case v.Dir != "":
		if err := os.MkdirAll(v.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		s, err := dirstore.New(v.Dir)
		if err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		return s, nil
	}
	return nil, errors.New("vault: no store configured: set COFFER_VAULT_DIR, or COFFER_S3_ENDPOINT and COFFER_S3_BUCKET")
}

// OpenVault opens the vault in the store with the master key. With create,
// a store holding no vault gets a new one. A wrong master key is refused
// with vault.ErrWrongKey.
func OpenVault(ctx context.Context, store blob.Store, master []byte, create bool) (*vault.Vault, error) {
	v, err := vault.Open(ctx, store, master)
	if errors.Is(err, vault.ErrNotInitialized) && create {
		v, err = vault.Init(ctx, store, master)
	}
	if err != nil {
		if errors.Is(err, vault.ErrWrongKey) {
			return nil, fmt.Errorf("the master key does not open this vault: it was created, or rekeyed, with another key (%w)", err)
		}
		return nil, fmt.Errorf("open vault: %w", err)
	}
	return v, nil
}

// MakeBucket prepares the store for a new vault: an S3 bucket is created
// if it does not exist, with Object Lock if objectLock is set (an
// existing bucket must have it then). A directory needs nothing, and
// cannot lock objects.
func (v VaultStore) MakeBucket(ctx context.Context, objectLock bool) error {
	s, err := v.open()
	if err != nil {
		return err
	}
	if s3, ok := s.(*s3store.Store); ok {
		return s3.MakeBucket(ctx, objectLock)
	}
	if objectLock {
		return fmt.Errorf("vault: a directory cannot be immutable; Object Lock needs an S3 store: %w", blob.ErrUnsupported)
	}
	return nil
}
