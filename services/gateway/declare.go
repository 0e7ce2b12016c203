package gateway

import (
	"context"
	"errors"

	"github.com/cofferhq/coffer/pkg/daemon"
)

// Name is the service's name: the service its poison reports name.
const Name = "gateway"

// Declaration declares the gateway once, for cmd/gateway and `coffer up`:
// it seals the connection strings of new instances with the master key.
var Declaration = daemon.Service{Name: Name, NeedMasterKey: true, Register: register}

func register(f *daemon.Flags) daemon.Settings {
	s := &daemon.Config[Config]{Check: check, New: build}
	f.String(&s.Value.Addr, "http", "COFFER_HTTP_ADDR", "127.0.0.1:8080",
		"address of the API and dashboard (0.0.0.0:8080 to be reached from other machines)")
	f.Secret(&s.Value.Token, "token", "COFFER_API_TOKEN",
		"require this API token as Authorization: Bearer TOKEN")
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
	if d.Metrics != nil && c.Metrics == nil {
		// the process's metrics, on the API's address too
		c.Metrics = d.Metrics.Handler()
	}
	return New(d.Bus, d.Catalog, c)
}
