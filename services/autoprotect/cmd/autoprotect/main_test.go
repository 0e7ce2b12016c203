package main

import (
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/daemon"
)

func TestConfig(t *testing.T) {
	env := map[string]string{"COFFER_AUTOPROTECT_INITIAL_INTERVAL": "2s", "COFFER_AUTOPROTECT_ATTEMPTS": "6"}
	cfg, err := config(daemon.Deps{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.InitialInterval != 2*time.Second || cfg.Attempts != 6 {
		t.Errorf("config %+v", cfg)
	}
	env = map[string]string{"COFFER_AUTOPROTECT_INITIAL_INTERVAL": "later"}
	if _, err := config(daemon.Deps{Getenv: func(k string) string { return env[k] }}); err == nil {
		t.Error("config with a malformed interval: got nil error")
	}
}
