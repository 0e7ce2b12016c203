package secret

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpen(t *testing.T) {
	k1 := bytes.Repeat([]byte{1}, 32)
	k2 := bytes.Repeat([]byte{2}, 32)
	s1, err := New(k1, "instance-credentials")
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := New(k2, "instance-credentials")
	other, _ := New(k1, "something-else")
	sealed := s1.Seal([]byte("sqlserver://sa:pw@h"), "sql1")
	if bytes.Contains(sealed, []byte("pw@h")) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := s1.Open(sealed, "sql1")
	if err != nil || string(got) != "sqlserver://sa:pw@h" {
		t.Fatalf("open: %q %v", got, err)
	}
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	for name, open := range map[string]func() ([]byte, error){
		"wrong key":     func() ([]byte, error) { return s2.Open(sealed, "sql1") },
		"wrong purpose": func() ([]byte, error) { return other.Open(sealed, "sql1") },
		"wrong context": func() ([]byte, error) { return s1.Open(sealed, "sql2") },
		"tampered":      func() ([]byte, error) { return s1.Open(tampered, "sql1") },
		"short":         func() ([]byte, error) { return s1.Open(sealed[:5], "sql1") },
	} {
		if _, err := open(); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: got %v, want ErrOpen", name, err)
		}
	}
	if _, err := New(k1[:16], "x"); err == nil {
		t.Error("a 16-byte master key was accepted")
	}
}
