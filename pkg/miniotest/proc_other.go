//go:build !linux

package miniotest

import "syscall"

// sysProcAttr returns nil: only Linux can tie minio's life to the test
// binary's, elsewhere a crashed test may leave a server running.
func sysProcAttr() *syscall.SysProcAttr { return nil }
