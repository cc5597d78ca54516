package bus

import "github.com/nats-io/nats.go"

// HeaderCarrier adapts a NATS header to OpenTelemetry's TextMapCarrier, so trace context
// crosses the bus.
type HeaderCarrier nats.Header

// Get returns the first value of key.
func (h HeaderCarrier) Get(key string) string { return nats.Header(h).Get(key) }

// Set sets key to value.
func (h HeaderCarrier) Set(key, value string) { nats.Header(h).Set(key, value) }

// Keys lists the keys present.
func (h HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// HeartbeatIntervalHeader is the header of a worker's heartbeat reply that announces the
// worker's heartbeat interval (a Go duration, "250ms"), so that the router can presume
// the worker dead after a few missed heartbeats instead of a fixed idle timeout.
const HeartbeatIntervalHeader = "Parley-Heartbeat-Interval"
