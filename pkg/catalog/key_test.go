package catalog_test

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/catalog"
)

// hostile holds names SQL Server accepts (as quoted identifiers or instance
// names) that break naive key building.
var hostile = []string{
	"master",
	"Sales DB",
	"we]ird",
	"[bracketed]",
	"O'Brien's",
	`quote"d`,
	"a/b",
	"a.b",
	"..",
	".",
	"=",
	"=2E",
	"a=b",
	"*",
	">",
	"a.*.>",
	"$SYS",
	"_INBOX",
	"tab\there",
	"new\nline",
	"日本語のデータベース",
	"Ελληνικά",
	"база данных",
	"emoji 🐘",
	`SERVER\INSTANCE`,
	"host,1433",
	"-leading-dash",
	"",
	" ",
	strings.Repeat("ü", 128),
	strings.Repeat("x", 128),
}

var validKey = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

func TestKeyRoundTrip(t *testing.T) {
	for _, name := range hostile {
		for _, parts := range [][]string{{name}, {"SQL01", name}, {name, name, "full"}} {
			key := catalog.Key(parts...)
			if !validKey.MatchString(key) || strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") || strings.Contains(key, "..") {
				t.Errorf("Key(%q) = %q; not a valid JetStream key", parts, key)
			}
			if got, want := strings.Count(key, ".")+1, len(parts); got != want {
				t.Errorf("Key(%q) = %q has %d tokens; want %d", parts, key, got, want)
			}
			got, err := catalog.SplitKey(key)
			if err != nil {
				t.Errorf("SplitKey(Key(%q) = %q): %v", parts, key, err)
				continue
			}
			if !slices.Equal(got, parts) {
				t.Errorf("SplitKey(Key(%q)) = %q; want %q", parts, got, parts)
			}
		}
	}
}

func TestKeyReadable(t *testing.T) {
	tests := []struct {
		parts []string
		want  string
	}{
		{[]string{"SQL01", "master"}, "SQL01.master"},
		{[]string{"SQL01", "Sales DB"}, "SQL01.Sales=20DB"},
		{[]string{"a.b"}, "a=2Eb"},
		{[]string{"x", ""}, "x.="},
		{[]string{"we]ird"}, "we=5Dird"},
		{[]string{"日"}, "=E6=97=A5"},
	}
	for _, tt := range tests {
		if got := catalog.Key(tt.parts...); got != tt.want {
			t.Errorf("Key(%q) = %q; want %q", tt.parts, got, tt.want)
		}
	}
}

func TestSplitKeyRejectsForeignKeys(t *testing.T) {
	for _, key := range []string{"", "a..b", ".a", "a.", "a=", "a=4", "a=zz", "a=2e", "a=41", "sp ace", "a*"} {
		if parts, err := catalog.SplitKey(key); !errors.Is(err, catalog.ErrBadKey) {
			t.Errorf("SplitKey(%q) = %q, %v; want ErrBadKey", key, parts, err)
		}
	}
}

func FuzzKeyRoundTrip(f *testing.F) {
	for _, h := range hostile {
		f.Add(h, "db")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		key := catalog.Key(a, b)
		if !validKey.MatchString(key) {
			t.Fatalf("Key(%q, %q) = %q; not a valid key", a, b, key)
		}
		got, err := catalog.SplitKey(key)
		if err != nil || !slices.Equal(got, []string{a, b}) {
			t.Fatalf("SplitKey(%q) = %q, %v; want [%q %q]", key, got, err, a, b)
		}
	})
}
