//go:build !race

package scrub

// raceEnabled trims the timing and volume tests under the race detector.
const raceEnabled = false
