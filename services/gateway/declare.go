package gateway

import (
	"context"
	"errors"
	"os"
	"strings"

	"github.com/cofferhq/coffer/pkg/daemon"
)

// Name is the service's name: the service its poison reports name.
const Name = "gateway"

// Declaration declares the gateway once, for cmd/gateway and `coffer up`:
// it seals the connection strings of new instances with the master key.
var Declaration = daemon.Service{Name: Name, NeedMasterKey: true, Register: register}

func register(f *daemon.Flags) daemon.Settings {
	s := &daemon.Config[Config]{Check: check}
	var hosts string
	s.New = func(ctx context.Context, d daemon.Deps, c Config) (daemon.Runner, error) {
		for _, h := range strings.Split(hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				c.TLSHosts = append(c.TLSHosts, h)
			}
		}
		return build(ctx, d, c)
	}
	f.String(&s.Value.Addr, "http", "COFFER_HTTP_ADDR", "127.0.0.1:8080",
		"address of the API and dashboard (0.0.0.0:8080 to be reached from other machines)")
	f.Secret(&s.Value.Token, "token", "COFFER_API_TOKEN",
		"an admin's API token, sent as Authorization: Bearer TOKEN (users' own tokens work beside it)")
	f.String(&s.Value.TLSCertFile, "http-cert", "COFFER_HTTP_CERT", "", "certificate of the API (PEM); with --http-key, the API serves HTTPS")
	f.String(&s.Value.TLSKeyFile, "http-key", "COFFER_HTTP_KEY", "", "key of --http-cert (PEM)")
	f.String(&s.Value.TLSCADir, "http-ca-dir", "COFFER_HTTP_CA_DIR", "",
		"serve HTTPS with a certificate from coffer's CA in this directory (created if absent; coffer up: DATA/ca when --http is beyond loopback)")
	f.String(&hosts, "http-hosts", "COFFER_HTTP_HOSTS", "", "extra names and addresses, comma-separated, of the certificate --http-ca-dir issues")
	f.Bool(&s.Value.PlainHTTP, "http-plain", "COFFER_HTTP_PLAIN", false,
		"serve plain HTTP beyond loopback too: behind a proxy that ends TLS, or on a private network (docs/api.md)")
	f.String(&s.Value.FirstAdmin, "first-admin", "COFFER_FIRST_ADMIN", "",
		"on a start with no user yet, create this admin and print its API token once (coffer up: admin, when --http is beyond loopback and no API token is set)")
	return s
}

// check validates the settings the flags set, naming the flags.
func check(c Config) error {
	if c.Addr == "" {
		return errors.New("--http: an address to listen on is required")
	}
	return nil
}

func build(_ context.Context, d daemon.Deps, c Config) (daemon.Runner, error) {
	c.MasterKey, c.Logger, c.TracerProvider = d.MasterKey, d.Logger, d.TracerProvider
	if c.FirstAdmin != "" && c.FirstAdminOut == nil {
		c.FirstAdminOut = os.Stdout
	}
	if d.Metrics != nil && c.Metrics == nil {
		// the process's metrics, on the API's address too
		c.Metrics = d.Metrics.Handler()
	}
	return New(d.Bus, d.Catalog, c)
}
