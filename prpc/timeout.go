package prpc

import (
	"errors"
	"math"
	"strconv"
	"time"
)

// maxTimeoutDigits is gRPC's limit on the digits of a timeout value.
const maxTimeoutDigits = 8

var timeoutUnits = []struct {
	unit   byte
	factor time.Duration
}{
	{'n', time.Nanosecond},
	{'u', time.Microsecond},
	{'m', time.Millisecond},
	{'S', time.Second},
	{'M', time.Minute},
	{'H', time.Hour},
}

// ParseTimeout parses an X-Prpc-Grpc-Timeout value: 1 to 8 digits followed
// by a unit H, M, S, m, u or n. Values beyond the range of time.Duration are
// clamped to its maximum.
func ParseTimeout(s string) (time.Duration, error) {
	if len(s) < 2 {
		return 0, errors.New("timeout must be digits followed by a unit H, M, S, m, u or n")
	}
	digits, unit := s[:len(s)-1], s[len(s)-1]
	if len(digits) > maxTimeoutDigits {
		return 0, errors.New("timeout has more than 8 digits")
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, errors.New("timeout must be digits followed by a unit H, M, S, m, u or n")
		}
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, errors.New("timeout must be digits followed by a unit H, M, S, m, u or n")
	}
	for _, u := range timeoutUnits {
		if u.unit == unit {
			if v > math.MaxInt64/int64(u.factor) {
				return time.Duration(math.MaxInt64), nil
			}
			return time.Duration(v) * u.factor, nil
		}
	}
	return 0, errors.New("timeout unit must be one of H, M, S, m, u, n")
}

// FormatTimeout encodes d for X-Prpc-Grpc-Timeout in the finest unit whose
// value fits in 8 digits, rounding up; a duration that is a whole number of a
// coarser unit uses that unit (20s is "20S", as Swarming sends; 500ms is
// "500m"). d <= 0 is "0n".
func FormatTimeout(d time.Duration) string {
	if d <= 0 {
		return "0n"
	}
	// Exact coarser units first, for readable values such as "20S" or "500m".
	for i := len(timeoutUnits) - 1; i >= 1; i-- {
		u := timeoutUnits[i]
		if d%u.factor == 0 && int64(d/u.factor) < 1e8 {
			return strconv.FormatInt(int64(d/u.factor), 10) + string(u.unit)
		}
	}
	for _, u := range timeoutUnits {
		v := int64(d / u.factor)
		if d%u.factor != 0 {
			v++
		}
		if v < 1e8 {
			return strconv.FormatInt(v, 10) + string(u.unit)
		}
	}
	// Unreachable: MaxInt64 nanoseconds is about 2.6 million hours.
	return "99999999H"
}
