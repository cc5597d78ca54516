package command

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
)

// maxSinceDays bounds -since in days to what a time.Duration holds.
const maxSinceDays = 100_000

// ParseTime parses an RFC 3339 time or a date YYYY-MM-DD, which means midnight UTC.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		t, err = time.Parse(time.RFC3339Nano, s)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("want an RFC 3339 time or YYYY-MM-DD, got %q", s)
	}
	// A protobuf Timestamp holds years 1 to 9999.
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return time.Time{}, fmt.Errorf("time %q out of range", s)
	}
	return t, nil
}

// ParseSince parses a period back from now: whole days ("7d") or a Go duration ("90m").
func ParseSince(s string) (time.Duration, error) {
	if digits, ok := strings.CutSuffix(s, "d"); ok && digits != "" && strings.Trim(digits, "0123456789") == "" {
		n, err := strconv.Atoi(digits)
		if err != nil || n > maxSinceDays {
			return 0, fmt.Errorf("period %q out of range", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want a period such as 30m, 24h or 7d, got %q", s)
	}
	return d, nil
}

// ParseStatus parses ok or error; empty means any.
func ParseStatus(s string) (auditv1.Status, error) {
	switch strings.ToLower(s) {
	case "":
		return auditv1.Status_STATUS_UNSPECIFIED, nil
	case "ok":
		return auditv1.Status_STATUS_OK, nil
	case "error":
		return auditv1.Status_STATUS_ERROR, nil
	}
	return 0, fmt.Errorf("want ok or error, got %q", s)
}

// ParseBool parses true or false.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "yes":
		return true, nil
	case "false", "no":
		return false, nil
	}
	return false, fmt.Errorf("want true or false, got %q", s)
}

// ParseBucket parses hour or day.
func ParseBucket(s string) (auditv1.UsageBucket, error) {
	switch strings.ToLower(s) {
	case "hour":
		return auditv1.UsageBucket_USAGE_BUCKET_HOUR, nil
	case "day", "":
		return auditv1.UsageBucket_USAGE_BUCKET_DAY, nil
	}
	return 0, fmt.Errorf("want hour or day, got %q", s)
}

var errDimension = errors.New("want component, model, key or several, comma-separated")

// ParseGroupBy parses a comma-separated list of component, model and key.
func ParseGroupBy(s string) ([]auditv1.UsageDimension, error) {
	if s == "" {
		return nil, nil
	}
	var out []auditv1.UsageDimension
	seen := map[auditv1.UsageDimension]bool{}
	for _, part := range strings.Split(s, ",") {
		var d auditv1.UsageDimension
		switch strings.ToLower(strings.TrimSpace(part)) {
		case "component":
			d = auditv1.UsageDimension_USAGE_DIMENSION_COMPONENT
		case "model":
			d = auditv1.UsageDimension_USAGE_DIMENSION_MODEL
		case "key":
			d = auditv1.UsageDimension_USAGE_DIMENSION_KEY
		default:
			return nil, fmt.Errorf("%w, got %q", errDimension, part)
		}
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out, nil
}
