package checkpoints

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Shared work: many ferry processes, on one machine or many, working one phase of one
// migration through one state (PostgreSQL across machines; SQLite on one machine),
// with no coordinator of their own.
//
//   - A process joins a phase as a Worker (Join). Workers exclude the migration lock
//     and the lock excludes workers: a phase runs either in one process holding the
//     lock, or in any number of workers of that same phase, never both.
//   - The first worker of a round cuts the phase's records into key ranges
//     (Partition); every worker then claims ranges one at a time (Claim) with SELECT
//     ... FOR UPDATE SKIP LOCKED on PostgreSQL, or in one write transaction on SQLite.
//   - Each claim carries a lease (extended by Heartbeat) and a fencing epoch that goes
//     up every time the range changes hands. A range whose lease ran out is claimed
//     again by whoever asks next.
//   - Records a worker writes for a claimed range go through Checkpoint and Finish,
//     which save them only if the claim is still the caller's: same epoch, lease not
//     expired. Otherwise they fail with ErrFenced and nothing is written, so a worker
//     that was paused past its lease cannot overwrite what its successor did.
//   - Leases are judged by the database's clock on PostgreSQL (machines' clocks may
//     disagree) and by the local clock on SQLite (one machine); a clock set in
//     Options.Clock (tests: a fake one) stands in for either.

// Worker is one process taking part in a shared phase.
type Worker struct {
	ID        string    `json:"id"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Start     int64     `json:"-"` // process start (see ProcessStart), for the stale rule
	Phase     string    `json:"phase"`
	Joined    time.Time `json:"joined"`
	Heartbeat time.Time `json:"last_heartbeat"`
	LeaseTill time.Time `json:"lease_until"`
	Left      bool      `json:"left"`    // the worker said goodbye
	Claims    int64     `json:"claims"`  // ranges it holds now
	Ranges    int64     `json:"ranges"`  // ranges it finished
	Records   int64     `json:"records"` // records it finished
	Bytes     int64     `json:"bytes"`
}

// Alive reports whether the worker still counts: it has not left, and (restic's rule,
// as for the lock) its process exists on this host or its lease runs on another.
func (w Worker) Alive(now time.Time) bool {
	if w.Left {
		return false
	}
	return HolderAlive(w.lockInfo(), now)
}

func (w Worker) lockInfo() LockInfo {
	return LockInfo{Host: w.Host, PID: w.PID, Start: w.Start, Phase: w.Phase + " (worker " + w.ID + ")",
		Acquired: w.Joined, LeaseTill: w.LeaseTill}
}

// Rate is the worker's records per second since it joined.
func (w Worker) Rate() float64 {
	d := w.Heartbeat.Sub(w.Joined).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(w.Records) / d
}

// Range is the keys k with Lo < k <= Hi (an empty Hi has no upper bound), of one
// site when Site is set (a plan's listing).
type Range struct {
	Site string `json:"site,omitempty"`
	Lo   string `json:"lo"`
	Hi   string `json:"hi"`
}

// Contains reports whether key is in the range.
func (r Range) Contains(key string) bool {
	return key > r.Lo && (r.Hi == "" || key <= r.Hi)
}

func (r Range) String() string {
	hi := r.Hi
	if hi == "" {
		hi = "∞"
	}
	if r.Site != "" {
		return fmt.Sprintf("%s (%q, %q]", r.Site, r.Lo, hi)
	}
	return fmt.Sprintf("(%q, %q]", r.Lo, hi)
}

// Claim states.
const (
	ClaimOpen = "open"
	ClaimHeld = "held"
	ClaimDone = "done"
)

// Claim is one range of one round of a scope, held by one worker.
type Claim struct {
	Scope string
	Round int64
	Seq   int64
	Range
	Worker    string
	Epoch     int64 // goes up each time the range is claimed: the fencing token
	LeaseTill time.Time
	Cursor    string // where the holder got to (Checkpoint), for the next holder
	Takeover  bool   // the range was held by another worker whose lease ran out
}

func (c Claim) String() string {
	return fmt.Sprintf("%s round %d range %d %s epoch %d", c.Scope, c.Round, c.Seq, c.Range, c.Epoch)
}

// RoundStatus counts a round's ranges by state.
type RoundStatus struct {
	Round int64 `json:"round"`
	Open  int64 `json:"open"`
	Held  int64 `json:"held"`
	Done  int64 `json:"done"`
}

// Finished reports whether every range of the round is done.
func (r RoundStatus) Finished() bool { return r.Open == 0 && r.Held == 0 }

// ErrFenced is returned for a write under a claim the caller no longer holds.
var ErrFenced = errors.New("claim lost: its lease expired or another worker took the range over; nothing was written")

// FencedError names the claim.
type FencedError struct {
	Claim  Claim
	Holder string // the range's holder now
	Epoch  int64  // its epoch now
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("%s (%s; now held by %q at epoch %d)", ErrFenced, e.Claim, e.Holder, e.Epoch)
}
func (e *FencedError) Unwrap() error { return ErrFenced }

// WorkStore is the part of Store that shares a phase between workers.
type WorkStore interface {
	// Join registers w (ID, Host, PID, Start, Phase) with a lease. It fails with a
	// *LockedError while a live process holds the migration lock, or while live
	// workers run another phase.
	Join(ctx context.Context, w Worker, lease time.Duration) error
	// Heartbeat extends the worker's lease and the leases of the ranges it holds, and
	// records its progress counters. It returns the claims it still holds; one that
	// is missing was taken over.
	Heartbeat(ctx context.Context, id string, lease time.Duration, records, bytes int64) ([]Claim, error)
	// Leave marks the worker gone and opens the ranges it still holds.
	Leave(ctx context.Context, id string) error
	// Workers lists every worker that joined, newest first.
	Workers(ctx context.Context) ([]Worker, error)

	// Partition returns the scope's current round: the latest round while any of its
	// ranges is not done; otherwise it calls ranges and stores them as a new round
	// (round 0 and no error when ranges returns none). Concurrent callers are
	// serialised: one of them creates the round, the others join it. With
	// resetListing, a new round starts from an empty staged listing (a shared plan),
	// in the same transaction.
	Partition(ctx context.Context, scope string, resetListing bool, ranges func() ([]Range, error)) (RoundStatus, error)
	// Claim takes the round's first range that is open or whose lease expired,
	// skipping ranges other transactions are claiming; false when there is none.
	Claim(ctx context.Context, scope string, round int64, worker string, lease time.Duration) (Claim, bool, error)
	// Checkpoint saves recs, stages listed and records the claim's cursor, if the
	// caller still holds c (else *FencedError, nothing written). Durable when it
	// returns nil.
	Checkpoint(ctx context.Context, c Claim, cursor string, recs []Record, listed []Listed) error
	// Finish saves recs and marks c's range done, if the caller still holds c
	// (else *FencedError, nothing written). Durable when it returns nil.
	Finish(ctx context.Context, c Claim, recs []Record) error
	// Release opens c's range again if the caller still holds it (a worker giving up
	// a range it will not finish); otherwise it does nothing.
	Release(ctx context.Context, c Claim) error
	// Round counts the ranges of a round by state.
	Round(ctx context.Context, scope string, round int64) (RoundStatus, error)
}

// resultRows is what database/sql's and pgx's result sets have in common, so both
// stores read workers, claims and round counts with the same code.
type resultRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// scanWorkers reads rows of workerCols (and a held-claims count, with claims).
func scanWorkers(rows resultRows, claims bool) ([]Worker, error) {
	var out []Worker
	for rows.Next() {
		var x workerScan
		dest := x.dest()
		if claims {
			dest = append(dest, &x.claims)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		out = append(out, x.worker())
	}
	return out, rows.Err()
}

// excluded is the one rule between the migration lock and workers: a live lock
// holder excludes everyone; a live worker excludes the lock (phase "") and workers of
// any other phase than its own.
func excluded(cur LockInfo, locked bool, ws []Worker, now time.Time, phase string) error {
	if locked && HolderAlive(cur, now) {
		return &LockedError{Holder: cur}
	}
	if w, ok := liveOf(ws, now, phase); ok {
		return &LockedError{Holder: w.lockInfo()}
	}
	return nil
}

// liveOf finds a live worker among ws (of a phase other than except, if set).
func liveOf(ws []Worker, now time.Time, except string) (Worker, bool) {
	for _, w := range ws {
		if w.Alive(now) && (except == "" || w.Phase != except) {
			return w, true
		}
	}
	return Worker{}, false
}

// scanRound reads (state, count) rows into a round's counts.
func scanRound(rows resultRows, round int64) (RoundStatus, error) {
	st := RoundStatus{Round: round}
	for rows.Next() {
		var state string
		var n int64
		if err := rows.Scan(&state, &n); err != nil {
			return st, err
		}
		st.add(state, n)
	}
	return st, rows.Err()
}

// scanClaims reads rows of claimCols.
func scanClaims(rows resultRows) ([]Claim, error) {
	var out []Claim
	for rows.Next() {
		c, err := scanClaim(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
