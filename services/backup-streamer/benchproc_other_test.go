//go:build !linux

package streamer_test

import "syscall"

func streamerProcAttr() *syscall.SysProcAttr { return nil }
