//go:build !unix

package eventlog

import (
	"errors"
	"os"
)

var errLocked = errors.New("locked")

// lockFile does not lock on this system: one writer per file is up to the
// operator.
func lockFile(*os.File) error { return nil }
