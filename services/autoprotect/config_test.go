package autoprotect

import (
	"testing"
	"time"
)

func TestDefaultBackoff(t *testing.T) {
	cfg := Config{}
	cfg.setDefaults()
	s := &Service{cfg: cfg}
	for n, want := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second} {
		if got := s.interval(n + 1); got != want {
			t.Errorf("interval after attempt %d: %v; want %v", n+1, got, want)
		}
	}
}

func TestJitteredBackoffGrows(t *testing.T) {
	cfg := Config{RandomizationFactor: 0.3}
	cfg.setDefaults()
	s := &Service{cfg: cfg}
	for range 100 {
		a, b, c := s.interval(1), s.interval(2), s.interval(3)
		if !(a < b && b < c) {
			t.Fatalf("jittered intervals %v, %v, %v; want each longer than the one before", a, b, c)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"milliseconds", Config{InitialInterval: time.Millisecond, Attempts: 2}, true},
		{"shrinking", Config{Multiplier: 0.5}, false},
		{"jitter too wide", Config{RandomizationFactor: 1}, false},
		{"negative", Config{InitialInterval: -1, Attempts: -1, RetryConcurrency: -1}, false},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v; want ok %v", tt.name, err, tt.ok)
		}
	}
}
