// Package rulestest checks deploy/monitoring: it evaluates every alert rule of
// alerts.yaml over synthetic series with Prometheus's own PromQL engine (firing and quiet
// cases, `for` durations included), and checks that every metric and label the rules and
// the Grafana dashboard use is in the metrics contract of docs/observability.md.
//
// It is a module of its own, outside go.work, so that Prometheus's dependencies stay out
// of the services' build: run it with `make test-monitoring` (part of `make test`).
package rulestest
