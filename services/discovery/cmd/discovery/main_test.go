package main

import (
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/daemon"
)

func TestConfig(t *testing.T) {
	env := map[string]string{
		"COFFER_DISCOVERY_INTERVAL":    "45s",
		"COFFER_DISCOVERY_TIMEOUT":     "10s",
		"COFFER_DISCOVERY_CONCURRENCY": "8",
	}
	key := make([]byte, 32)
	cfg, err := config(daemon.Deps{MasterKey: key, Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.Interval != 45*time.Second || cfg.Timeout != 10*time.Second || cfg.Concurrency != 8 || len(cfg.MasterKey) != 32 {
		t.Errorf("config %+v", cfg)
	}

	env = map[string]string{"COFFER_DISCOVERY_INTERVAL": "soon", "COFFER_DISCOVERY_CONCURRENCY": "many"}
	if _, err := config(daemon.Deps{Getenv: func(k string) string { return env[k] }}); err == nil {
		t.Error("config with malformed settings: got nil error")
	}
}
