//go:build race

package gate

// raceEnabled: the race detector is on, and slows every goroutine several
// times over: durations mean nothing then.
const raceEnabled = true
