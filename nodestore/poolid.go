package nodestore

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxPoolIDLen is the longest pool id, in bytes: room for any id Swarming
// can send (its pool names and external scheduler ids are short UTF-8
// strings) with a wide margin, and short enough for every store's keys.
const MaxPoolIDLen = 1024

// ErrInvalidPoolID: a pool id is empty, longer than MaxPoolIDLen bytes or
// not valid UTF-8.
var ErrInvalidPoolID = errors.New("invalid pool id")

// CheckPoolID is the rule for pool ids, the one place it is stated: a
// non-empty string of valid UTF-8 of at most MaxPoolIDLen bytes. Stores
// check it on CreatePool; the service checks it on every request naming a
// pool. Stores must not give the characters of an id a meaning.
func CheckPoolID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidPoolID)
	case len(id) > MaxPoolIDLen:
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrInvalidPoolID, len(id), MaxPoolIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidPoolID)
	}
	return nil
}
