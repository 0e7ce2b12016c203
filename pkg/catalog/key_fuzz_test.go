package catalog_test

import (
	"errors"
	"testing"

	"github.com/cofferhq/coffer/pkg/catalog"
)

// FuzzSplitKey splits arbitrary strings as keys read from a bucket: a key
// splits only if Key gives it back from its parts (one spelling per key),
// and anything else fails with ErrBadKey. FuzzKeyRoundTrip is the other
// direction.
func FuzzSplitKey(f *testing.F) {
	for _, h := range hostile {
		f.Add(catalog.Key("SQL01", h))
		f.Add(h)
	}
	f.Add("=")
	f.Add("a..b")
	f.Add("=2e")
	f.Add("=41")
	f.Add("=E")
	f.Add("a=")
	f.Fuzz(func(t *testing.T, key string) {
		parts, err := catalog.SplitKey(key)
		if err != nil {
			if !errors.Is(err, catalog.ErrBadKey) {
				t.Fatalf("SplitKey(%q): %v; want an error matching ErrBadKey", key, err)
			}
			return
		}
		if got := catalog.Key(parts...); got != key {
			t.Fatalf("SplitKey(%q) = %q, which Key joins to %q", key, parts, got)
		}
		if !validKey.MatchString(key) {
			t.Fatalf("SplitKey accepted %q, which JetStream does not allow", key)
		}
	})
}
