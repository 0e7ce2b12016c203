package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/services/discovery"
)

// TestSettings: the binary's settings come from the environment, a flag
// wins over its variable, and malformed or invalid ones are all named.
func TestSettings(t *testing.T) {
	env := map[string]string{
		"COFFER_DISCOVERY_INTERVAL":    "45s",
		"COFFER_DISCOVERY_TIMEOUT":     "10s",
		"COFFER_DISCOVERY_CONCURRENCY": "8",
		"COFFER_NATS_URL":              "nats://nats:4222",
	}
	s, err := daemon.ParseStandalone(discovery.Declaration, []string{"--discovery-concurrency", "6"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	cfg := s.Service.Settings.(*daemon.Config[discovery.Config]).Value
	if cfg.Interval != 45*time.Second || cfg.Timeout != 10*time.Second || cfg.Concurrency != 6 || cfg.FullInterval != 5*time.Minute {
		t.Errorf("got config %+v, want interval 45s, timeout 10s, concurrency 6 (the flag's), full interval 5m", cfg)
	}
	if s.Common.NATSURL != "nats://nats:4222" {
		t.Errorf("got NATS URL %q, want COFFER_NATS_URL's", s.Common.NATSURL)
	}

	env = map[string]string{"COFFER_DISCOVERY_INTERVAL": "soon", "COFFER_DISCOVERY_CONCURRENCY": "many"}
	_, err = daemon.ParseStandalone(discovery.Declaration, []string{"--discovery-timeout", "-1s"}, func(k string) string { return env[k] }, io.Discard)
	for _, want := range []string{"COFFER_DISCOVERY_INTERVAL", "COFFER_DISCOVERY_CONCURRENCY", "--discovery-timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("malformed settings: got error %v, want one naming %s", err, want)
		}
	}
}
