package app

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Period is a length of time written as whole days ("30d") or as a Go duration ("720h").
type Period time.Duration

// maxPeriodDays bounds a period in days to what a time.Duration holds.
const maxPeriodDays = math.MaxInt64 / int64(24*time.Hour)

var errPeriod = errors.New(`want whole days such as "30d" or a duration such as "720h"`)

// ParsePeriod parses "<n>d" (n whole days, at least 0) or a Go duration.
func ParsePeriod(s string) (Period, error) {
	if digits, ok := strings.CutSuffix(s, "d"); ok && digits != "" && strings.Trim(digits, "0123456789") == "" {
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || n > maxPeriodDays {
			return 0, fmt.Errorf("period %q out of range", s)
		}
		return Period(time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("period %q: %w", s, errPeriod)
	}
	if d < 0 {
		return 0, fmt.Errorf("period %q must not be negative", s)
	}
	return Period(d), nil
}

// UnmarshalText implements encoding.TextUnmarshaler for the configuration loader.
func (p *Period) UnmarshalText(b []byte) error {
	v, err := ParsePeriod(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Duration returns p as a time.Duration.
func (p Period) Duration() time.Duration { return time.Duration(p) }

// String renders whole days as "<n>d" and anything else as a Go duration, so that
// ParsePeriod(p.String()) == p.
func (p Period) String() string {
	d := time.Duration(p)
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}
