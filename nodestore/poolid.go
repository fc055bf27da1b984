package nodestore

import (
	"errors"
	"fmt"
)

// MaxPoolIDLen is the longest pool id a store accepts, in bytes.
const MaxPoolIDLen = 256

// ErrInvalidPoolID: a pool id is empty or longer than MaxPoolIDLen bytes.
var ErrInvalidPoolID = errors.New("nodestore: invalid pool id")

// CheckPoolID returns an error wrapping ErrInvalidPoolID unless id is a
// non-empty string of at most MaxPoolIDLen bytes. Any bytes are allowed:
// stores must not give them a meaning.
func CheckPoolID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidPoolID)
	case len(id) > MaxPoolIDLen:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidPoolID, len(id), MaxPoolIDLen)
	}
	return nil
}
