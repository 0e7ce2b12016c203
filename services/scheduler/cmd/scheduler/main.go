// Command scheduler runs coffer's scheduler service.
package main

import (
	"context"

	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/services/scheduler"
)

func main() {
	daemon.Main(daemon.Spec{Name: "scheduler", Run: func(ctx context.Context, d daemon.Deps) error {
		s, err := scheduler.New(d.Bus, d.Catalog, scheduler.Config{Logger: d.Logger, TracerProvider: d.TracerProvider, Metrics: d.Metrics})
		if err != nil {
			return err
		}
		return s.Run(ctx)
	}})
}
