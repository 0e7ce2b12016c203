package discovery

import (
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	key := make([]byte, 32)
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"key only", Config{MasterKey: key}, true},
		{"no key", Config{}, false},
		{"short key", Config{MasterKey: key[:16]}, false},
		{"negative", Config{MasterKey: key, Interval: -time.Second, Timeout: -1, Concurrency: -1}, false},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v; want ok %v", tt.name, err, tt.ok)
		}
	}
}
