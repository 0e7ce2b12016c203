package blob_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/blob"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"a", true},
		{"chunks/ab/abcdef", true},
		{"manifests/2026-01-02T03:04:05Z-full", true},
		{"a.b/c..d/e.", true},
		{"données/日本", true},
		{strings.Repeat("k", blob.MaxKeyLen), true},
		{"", false},
		{"/a", false},
		{"a/", false},
		{"a//b", false},
		{".", false},
		{"..", false},
		{"../a", false},
		{"a/../b", false},
		{"a/./b", false},
		{".hidden", false},
		{"a/.tmp-1", false},
		{"a\\b", false},
		{"a\x00b", false},
		{"a\tb", false},
		{"\xff", false},
		{strings.Repeat("k", blob.MaxKeyLen+1), false},
	}
	for _, tt := range tests {
		err := blob.ValidateKey(tt.key)
		if got := err == nil; got != tt.want {
			t.Errorf("ValidateKey(%q) = %v; want valid %v", tt.key, err, tt.want)
		}
		if err != nil && !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) error %v does not match ErrInvalidKey", tt.key, err)
		}
	}
}

func TestValidatePrefix(t *testing.T) {
	tests := []struct {
		prefix string
		want   bool
	}{
		{"", true},
		{"a", true},
		{"a/", true},
		{"chunks/a", true},
		{"chunks/ab/", true},
		{"/", false},
		{"a//", false},
		{".", false},
		{"..", false},
		{"../", false},
		{"a/.", false},
		{"a/../b", false},
		{"a\\", false},
	}
	for _, tt := range tests {
		err := blob.ValidatePrefix(tt.prefix)
		if got := err == nil; got != tt.want {
			t.Errorf("ValidatePrefix(%q) = %v; want valid %v", tt.prefix, err, tt.want)
		}
		if err != nil && !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("ValidatePrefix(%q) error %v does not match ErrInvalidKey", tt.prefix, err)
		}
	}
}
