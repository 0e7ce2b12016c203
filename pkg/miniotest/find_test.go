package miniotest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFindBinaryEnv(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "minio")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		env     string
		want    string
		wantErr bool
	}{
		{name: "executable", env: exe, want: exe},
		{name: "missing", env: filepath.Join(dir, "nope"), wantErr: true},
		{name: "not executable", env: plain, wantErr: true},
		{name: "directory", env: dir, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("COFFER_MINIO_BIN", tt.env)
			got, err := findBinary()
			if (err != nil) != tt.wantErr {
				t.Fatalf("findBinary() error = %v; want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("findBinary() = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestFindBinaryGOPATH(t *testing.T) {
	gopath := t.TempDir()
	exe := filepath.Join(gopath, "bin", "minio")
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("COFFER_MINIO_BIN", "")
	t.Setenv("PATH", t.TempDir())
	t.Setenv("GOPATH", gopath)

	got, err := findBinary()
	if err != nil {
		t.Fatalf("findBinary(): %v", err)
	}
	if got != exe {
		t.Errorf("findBinary() = %q; want %q", got, exe)
	}
}
