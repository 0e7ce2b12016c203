// Command discovery runs coffer's discovery service on its own: it connects
// to NATS (COFFER_NATS_URL), needs the master key (COFFER_MASTER_KEY or
// COFFER_MASTER_KEY_FILE) to open the instances' connection strings, and
// reads its own settings:
//
//	COFFER_DISCOVERY_INTERVAL     how often every instance is discovered again (default 30s)
//	COFFER_DISCOVERY_TIMEOUT      bound on the conversation with one instance (default 30s)
//	COFFER_DISCOVERY_CONCURRENCY  instances discovered at once (default 4)
package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/services/discovery"
)

func main() {
	daemon.Main(daemon.Spec{Name: "discovery", NeedMasterKey: true, Run: run})
}

func run(ctx context.Context, d daemon.Deps) error {
	cfg, err := config(d)
	if err != nil {
		return err
	}
	svc, err := discovery.New(d.Bus, d.Catalog, cfg)
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}

// config reads the service's settings from the environment, reporting
// every malformed one at once.
func config(d daemon.Deps) (discovery.Config, error) {
	cfg := discovery.Config{
		MasterKey:      d.MasterKey,
		Logger:         d.Logger,
		TracerProvider: d.TracerProvider,
	}
	var errs []error
	duration := func(name string, dst *time.Duration) {
		if v := d.Getenv(name); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
			*dst = x
		}
	}
	duration("COFFER_DISCOVERY_INTERVAL", &cfg.Interval)
	duration("COFFER_DISCOVERY_FULL_INTERVAL", &cfg.FullInterval)
	duration("COFFER_DISCOVERY_TIMEOUT", &cfg.Timeout)
	if v := d.Getenv("COFFER_DISCOVERY_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("COFFER_DISCOVERY_CONCURRENCY: %w", err))
		}
		cfg.Concurrency = n
	}
	return cfg, errors.Join(errs...)
}
