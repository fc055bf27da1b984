package eventlog

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockHolder names the process that holds the flock on path, as
// " (held by pid N: command)", from /proc/locks; "" if it cannot tell (in
// some sandboxes /proc/locks is empty).
func lockHolder(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return ""
	}
	defer f.Close()
	pid := flockHolder(f, uint64(st.Dev), uint64(st.Ino))
	switch {
	case pid <= 0:
		return ""
	case pid == os.Getpid():
		return fmt.Sprintf(" (held by this process, pid %d)", pid)
	}
	if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && len(cmd) > 0 {
		name, _, _ := bytes.Cut(cmd, []byte{0})
		return fmt.Sprintf(" (held by pid %d: %s)", pid, filepath.Base(string(name)))
	}
	return fmt.Sprintf(" (held by pid %d)", pid)
}

// flockHolder returns the pid of the flock on the file dev, ino in locks
// (the text of /proc/locks), or 0.
func flockHolder(locks io.Reader, dev, ino uint64) int {
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	sc := bufio.NewScanner(locks)
	for sc.Scan() {
		// "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; a waiter has
		// "->" before FLOCK.
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" {
			continue
		}
		id := strings.Split(fields[5], ":")
		if len(id) != 3 {
			continue
		}
		ma, err1 := strconv.ParseUint(id[0], 16, 64)
		mi, err2 := strconv.ParseUint(id[1], 16, 64)
		in, err3 := strconv.ParseUint(id[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || ma != major || mi != minor || in != ino {
			continue
		}
		if pid, err := strconv.Atoi(fields[4]); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}
