//go:build !race

package conversation

// raceEnabled: allocation counts are exact only without the race detector.
const raceEnabled = false
