package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/services/autoprotect"
)

// TestSettings: the binary's settings come from the environment and its
// flags, and malformed ones are named.
func TestSettings(t *testing.T) {
	env := map[string]string{"COFFER_AUTOPROTECT_INITIAL_INTERVAL": "2s", "COFFER_AUTOPROTECT_ATTEMPTS": "6"}
	s, err := daemon.ParseStandalone(autoprotect.Declaration, nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if cfg := s.Service.Settings.(*daemon.Config[autoprotect.Config]).Value; cfg.InitialInterval != 2*time.Second || cfg.Attempts != 6 {
		t.Errorf("got config %+v, want initial interval 2s and 6 attempts", cfg)
	}
	env = map[string]string{"COFFER_AUTOPROTECT_INITIAL_INTERVAL": "later"}
	_, err = daemon.ParseStandalone(autoprotect.Declaration, []string{"--autoprotect-attempts", "0"}, func(k string) string { return env[k] }, io.Discard)
	for _, want := range []string{"COFFER_AUTOPROTECT_INITIAL_INTERVAL", "--autoprotect-attempts 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("malformed settings: got error %v, want one naming %s", err, want)
		}
	}
}
