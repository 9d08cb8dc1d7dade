// Package clock is the time source of the checkpoint stores' leases (the migration
// lock, workers and their claims) and of the pipeline's liveness checks, so that
// tests can move time instead of sleeping through a lease.
//
// The fake clock is github.com/jonboulle/clockwork's: it stands still until a test
// advances it, and is safe for concurrent use.
package clock

import (
	"time"

	"github.com/jonboulle/clockwork"
)

// Clock tells the time. The stores need nothing else from it.
type Clock interface {
	Now() time.Time
}

// Real is the system clock.
var Real Clock = clockwork.NewRealClock()

// Fake is a clock that moves only when told to (Advance); tests share one between
// the stores and processes they want to agree on the time.
type Fake = clockwork.FakeClock

// NewFake returns a fake clock that reads the present time until it is advanced.
func NewFake() *Fake {
	return clockwork.NewFakeClockAt(time.Now())
}
