// Command autoprotect runs coffer's auto-protection service on its own: it
// connects to NATS (COFFER_NATS_URL) and reads its own settings:
//
//	COFFER_AUTOPROTECT_INITIAL_INTERVAL  wait before the first retry of a failed protection (default 5s, doubling)
//	COFFER_AUTOPROTECT_ATTEMPTS          tries before a failed protection is reported (default 4)
package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/services/autoprotect"
)

func main() {
	daemon.Main(daemon.Spec{Name: "autoprotect", Run: run})
}

func run(ctx context.Context, d daemon.Deps) error {
	cfg, err := config(d)
	if err != nil {
		return err
	}
	svc, err := autoprotect.New(d.Bus, d.Catalog, cfg)
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}

// config reads the service's settings from the environment, reporting
// every malformed one at once.
func config(d daemon.Deps) (autoprotect.Config, error) {
	cfg := autoprotect.Config{Logger: d.Logger, TracerProvider: d.TracerProvider}
	var errs []error
	if v := d.Getenv("COFFER_AUTOPROTECT_INITIAL_INTERVAL"); v != "" {
		x, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("COFFER_AUTOPROTECT_INITIAL_INTERVAL: %w", err))
		}
		cfg.InitialInterval = x
	}
	if v := d.Getenv("COFFER_AUTOPROTECT_ATTEMPTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("COFFER_AUTOPROTECT_ATTEMPTS: %w", err))
		}
		cfg.Attempts = n
	}
	return cfg, errors.Join(errs...)
}
