package streamer_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// streamerProcAttr makes the kernel kill the streamer process if the
// benchmark dies without stopping it.
func streamerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// clockTick is the unit of /proc/PID/stat's CPU times: USER_HZ, which
// Linux fixes at 100 for every architecture Go runs on.
const clockTick = 10 * time.Millisecond

// cpuTime is the CPU (user and system) process pid has used since it
// started, read from /proc/PID/stat; 0 for pid 0.
func cpuTime(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// the command name, field 2, is in parentheses and may hold spaces:
	// the fields counted from 3 start after its last ')'
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')' in %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	const utime, stime = 14 - 3, 15 - 3 // fields 14 and 15, from field 3
	if len(f) <= stime {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	var ticks int64
	for _, k := range []int{utime, stime} {
		n, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat field %d: %v", pid, k+3, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// ramStaging returns a new directory in /dev/shm, a filesystem in memory,
// when it has room for need bytes; "" otherwise.
func ramStaging(tb testing.TB, need int64) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err != nil || int64(st.Bavail)*st.Bsize < need {
		return ""
	}
	dir, err := os.MkdirTemp("/dev/shm", "coffer-bench-staging-")
	if err != nil {
		return ""
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
