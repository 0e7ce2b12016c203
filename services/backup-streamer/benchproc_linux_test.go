package streamer_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
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
