package eventlog

import (
	"strings"
	"testing"
)

// TestFlockHolder: the holder of a file's flock is found in /proc/locks
// text by device and inode; waiters and other kinds of locks are skipped.
func TestFlockHolder(t *testing.T) {
	const locks = `1: POSIX  ADVISORY  WRITE 111 fd:01:5678 0 EOF
2: FLOCK  ADVISORY  WRITE 222 fd:01:9999 0 EOF
3: FLOCK  ADVISORY  WRITE 333 fd:01:5678 0 EOF
3: -> FLOCK  ADVISORY  WRITE 444 fd:01:5678 0 EOF
`
	dev := uint64(0xfd<<8 | 0x01)
	if got := flockHolder(strings.NewReader(locks), dev, 5678); got != 333 {
		t.Errorf("holder %d, want 333", got)
	}
	if got := flockHolder(strings.NewReader(locks), dev, 1234); got != 0 {
		t.Errorf("holder of an unlocked file %d, want 0", got)
	}
	// A device number with a major above 255 and a minor above 255.
	big := uint64(0x103<<8 | 0x45 | 0x1<<20)
	if got := flockHolder(strings.NewReader("1: FLOCK  ADVISORY  WRITE 555 103:145:7 0 EOF\n"), big, 7); got != 555 {
		t.Errorf("holder %d on device %x, want 555", got, big)
	}
}
