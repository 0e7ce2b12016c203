package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DefaultAddr is where a standalone service serves /metrics when
// COFFER_METRICS_ADDR is not set.
const DefaultAddr = ":9090"

// Start makes a process's Metrics, reports the backlog of b's consumers,
// and serves them on addr's /metrics until ctx is done: addr "" means
// DefaultAddr, "off" serves nothing (the Metrics are still made, for the
// services to record into). It returns once addr listens.
func Start(ctx context.Context, addr string, b BacklogSource, log *slog.Logger) (*Metrics, error) {
	m := New()
	m.WatchConsumers(b)
	if addr == "off" {
		return m, nil
	}
	if addr == "" {
		addr = DefaultAddr
	}
	if _, err := m.Serve(ctx, addr, log); err != nil {
		return nil, err
	}
	return m, nil
}

// Serve listens on addr and serves the metrics on /metrics until ctx is
// done. It returns the address it listens on.
func (m *Metrics) Serve(ctx context.Context, addr string, log *slog.Logger) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", slog.Any("error", err))
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("serving metrics", slog.String("addr", ln.Addr().String()))
	return ln.Addr(), nil
}
