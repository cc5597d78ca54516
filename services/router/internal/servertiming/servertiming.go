// Package servertiming owns the per-request overhead report: the W3C Server-Timing value
// that tells a caller how much of a conversation's time the gateway itself spent, apart
// from the provider's time. HTTP answers carry it as a response header, gRPC and Connect
// answers as a response trailer (docs/observability.md, "Overhead per request").
package servertiming

import (
	"strconv"
	"time"
)

// Header is the HTTP response header, and (lower-cased by gRPC) the gRPC trailer, that
// carries the value.
const Header = "Server-Timing"

// Timer measures one request from its arrival.
type Timer struct {
	start time.Time
}

// Start begins measuring a request.
func Start() Timer { return Timer{start: time.Now()} }

// Value is the Server-Timing value of a request that arrived when t started and whose
// answer took provider of the provider's time (0 for a cache hit): the gateway's own time
// (the total less the provider's), the provider's, and the total, each in milliseconds:
//
//	gateway;dur=1.234, provider;dur=850.000, total;dur=851.234
func (t Timer) Value(provider time.Duration) string {
	return Format(time.Since(t.start), provider)
}

// Format is Value for a measured total.
func Format(total, provider time.Duration) string {
	// A provider time longer than the total (clocks of two hosts) leaves the gateway none.
	provider = max(0, provider)
	b := make([]byte, 0, 64)
	b = appendMetric(b, "gateway", max(0, total-provider))
	b = append(b, ", "...)
	b = appendMetric(b, "provider", provider)
	b = append(b, ", "...)
	b = appendMetric(b, "total", total)
	return string(b)
}

func appendMetric(b []byte, name string, d time.Duration) []byte {
	b = append(b, name...)
	b = append(b, ";dur="...)
	return strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', 3, 64)
}
