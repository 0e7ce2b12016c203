//go:build !linux

package testproc

import "syscall"

// SysProcAttr returns nil: only Linux can tie a child's life to the test
// binary's, elsewhere a crashed test may leave a server running.
func SysProcAttr() *syscall.SysProcAttr { return nil }
