//go:build race

package scrub

// raceEnabled trims the volume tests under the race detector,
// which slows the scanner down some twentyfold without telling anything
// about its complexity.
const raceEnabled = true
