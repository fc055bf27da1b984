//go:build unix

package eventlog

import (
	"os"
	"syscall"
)

// errLocked is what lockFile returns when another writer holds the lock.
var errLocked error = syscall.EWOULDBLOCK

// lockFile takes an exclusive flock on f without waiting. flock locks
// belong to the open file, so a second open of the same file in this
// process conflicts too; the kernel releases the lock when the file is
// closed or the process dies.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			return err
		}
	}
}
