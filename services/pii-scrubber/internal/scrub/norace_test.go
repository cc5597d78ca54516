//go:build !race

package scrub

// raceEnabled trims the volume tests under the race detector.
const raceEnabled = false
