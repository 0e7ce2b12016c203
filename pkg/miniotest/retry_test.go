package miniotest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartRetriesWhenPortTaken runs Start against a wrapper that fails the
// way minio does when another process took its port, once, then runs the
// real minio. Start must retry on fresh ports and succeed.
func TestStartRetriesWhenPortTaken(t *testing.T) {
	minioBin, err := findBinary()
	if err != nil {
		t.Skipf("needs a real minio: %v", err)
	}
	dir := t.TempDir()
	if strings.ContainsRune(dir+minioBin, '\'') {
		t.Skip("paths contain a quote, which the wrapper script cannot hold")
	}
	marker := filepath.Join(dir, "failed-once")
	wrapper := filepath.Join(dir, "minio")
	script := fmt.Sprintf(`#!/bin/sh
if [ ! -e '%s' ]; then
	: > '%s'
	echo 'FATAL Unable to start the server: Specified port is already in use' >&2
	exit 1
fi
exec '%s' "$@"
`, marker, marker, minioBin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("COFFER_MINIO_BIN", wrapper)

	srv := Start(t)
	srv.MakeBucket(t, "after-retry")
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("wrapper never failed, so no retry was tested: %v", err)
	}
}
