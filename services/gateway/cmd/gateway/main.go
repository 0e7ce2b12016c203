// Command gateway runs coffer's REST API and dashboard.
package main

import (
	"context"

	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/services/gateway"
)

func main() {
	daemon.Main(daemon.Spec{Name: "gateway", NeedMasterKey: true, Run: func(ctx context.Context, d daemon.Deps) error {
		addr := d.Getenv("COFFER_HTTP_ADDR")
		if addr == "" {
			addr = "0.0.0.0:8080"
		}
		s, err := gateway.New(d.Bus, d.Catalog, gateway.Config{Addr: addr, MasterKey: d.MasterKey,
			Token: d.Getenv("COFFER_API_TOKEN"), Logger: d.Logger, TracerProvider: d.TracerProvider})
		if err != nil {
			return err
		}
		return s.Run(ctx)
	}})
}
