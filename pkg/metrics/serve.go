package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DefaultAddr is where a standalone service serves /metrics and /healthz
// when COFFER_METRICS_ADDR is not set.
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

// SetReady sets what /healthz answers: 200 "ok" once the process's
// services are built and running (ready), 503 before that and again once
// they stop. A process starts not ready.
func (m *Metrics) SetReady(ready bool) {
	if m != nil {
		m.ready.Store(ready)
	}
}

// healthz answers 200 "ok" while m is ready, 503 otherwise: the probe
// Kubernetes' liveness and readiness checks call.
func (m *Metrics) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !m.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "not ready\n")
		return
	}
	io.WriteString(w, "ok\n")
}

// Serve listens on addr and serves the metrics on /metrics and the
// process's health on /healthz ([Metrics.SetReady]) until ctx is done.
// It returns the address it listens on.
func (m *Metrics) Serve(ctx context.Context, addr string, log *slog.Logger) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", m.healthz)
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
