//go:build race

package telemetry_test

// raceEnabled: allocation counts are exact only without the race detector.
const raceEnabled = true
