package checkpoints

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Shared work on SQLite: every write transaction is BEGIN IMMEDIATE, so claims,
// fenced writes and partitions are serialised by the database's write lock. Workers
// share one SQLite file on one machine; leases use the local clock (Options.Clock).

const workerCols = "id, host, pid, start, phase, joined, heartbeat, lease_until, left_at, ranges, records, bytes"

type workerScan struct {
	w                                 Worker
	joined, beat, lease, left, claims int64
}

func (x *workerScan) dest() []any {
	return []any{&x.w.ID, &x.w.Host, &x.w.PID, &x.w.Start, &x.w.Phase, &x.joined, &x.beat, &x.lease, &x.left,
		&x.w.Ranges, &x.w.Records, &x.w.Bytes}
}

func (x *workerScan) worker() Worker {
	w := x.w
	w.Joined, w.Heartbeat, w.LeaseTill, w.Left = fromNanos(x.joined), fromNanos(x.beat), fromNanos(x.lease), x.left != 0
	w.Claims = x.claims
	return w
}

// activeWorkers reads the workers that have not left.
func activeWorkers(ctx context.Context, tx *sqliteTx) ([]Worker, error) {
	rows, err := tx.QueryContext(ctx, "SELECT "+workerCols+" FROM workers WHERE left_at = 0")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanWorkers(rows, false)
}

func (s *SQLite) Join(ctx context.Context, w Worker, lease time.Duration) error {
	tx, err := s.begin(ctx, false)
	if err != nil {
		return wrap(ctx, "join", err)
	}
	defer tx.Rollback()
	now := s.clock.Now()
	cur, ok, err := scanLock(tx.QueryRowContext(ctx, "SELECT host, pid, start, phase, acquired, lease_until, token FROM lock WHERE id = 1"))
	if err != nil {
		return wrap(ctx, "join", err)
	}
	ws, err := activeWorkers(ctx, tx)
	if err != nil {
		return wrap(ctx, "join", err)
	}
	if err := excluded(cur, ok, ws, now, w.Phase); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, "INSERT OR REPLACE INTO workers("+workerCols+") VALUES(?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0)",
		w.ID, w.Host, w.PID, w.Start, w.Phase, now.UnixNano(), now.UnixNano(), now.Add(lease).UnixNano())
	if err != nil {
		return wrap(ctx, "join", err)
	}
	return wrap(ctx, "join", tx.Commit())
}

func (s *SQLite) Heartbeat(ctx context.Context, id string, lease time.Duration, records, bytes int64) ([]Claim, error) {
	tx, err := s.begin(ctx, false)
	if err != nil {
		return nil, wrap(ctx, "heartbeat", err)
	}
	defer tx.Rollback()
	now := s.clock.Now()
	till := now.Add(lease).UnixNano()
	if _, err := tx.ExecContext(ctx, "UPDATE workers SET heartbeat = ?, lease_until = ?, records = ?, bytes = ? WHERE id = ?",
		now.UnixNano(), till, records, bytes, id); err != nil {
		return nil, wrap(ctx, "heartbeat", err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE claims SET lease_until = ? WHERE worker = ? AND state = 'held'", till, id); err != nil {
		return nil, wrap(ctx, "heartbeat", err)
	}
	held, err := sqliteClaims(ctx, tx, "WHERE worker = ? AND state = 'held'", id)
	if err != nil {
		return nil, wrap(ctx, "heartbeat", err)
	}
	return held, wrap(ctx, "heartbeat", tx.Commit())
}

func (s *SQLite) Leave(ctx context.Context, id string) error {
	tx, err := s.begin(ctx, false)
	if err != nil {
		return wrap(ctx, "leave", err)
	}
	defer tx.Rollback()
	now := s.clock.Now().UnixNano()
	if _, err := tx.ExecContext(ctx, "UPDATE workers SET left_at = ?, heartbeat = ? WHERE id = ?", now, now, id); err != nil {
		return wrap(ctx, "leave", err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE claims SET state = 'open', lease_until = 0 WHERE worker = ? AND state = 'held'", id); err != nil {
		return wrap(ctx, "leave", err)
	}
	return wrap(ctx, "leave", tx.Commit())
}

func (s *SQLite) Workers(ctx context.Context) ([]Worker, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+prefixed("w.", workerCols)+
		", (SELECT count(*) FROM claims c WHERE c.worker = w.id AND c.state = 'held') FROM workers w ORDER BY w.joined DESC, w.id")
	if err != nil {
		return nil, wrap(ctx, "workers", err)
	}
	defer rows.Close()
	ws, err := scanWorkers(rows, true)
	return ws, wrap(ctx, "workers", err)
}

func sqliteRound(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, scope string, round int64) (RoundStatus, error) {
	rows, err := q.QueryContext(ctx, "SELECT state, count(*) FROM claims WHERE scope = ? AND round = ? GROUP BY state", scope, round)
	if err != nil {
		return RoundStatus{Round: round}, err
	}
	defer rows.Close()
	return scanRound(rows, round)
}

func (r *RoundStatus) add(state string, n int64) {
	switch state {
	case ClaimOpen:
		r.Open += n
	case ClaimHeld:
		r.Held += n
	case ClaimDone:
		r.Done += n
	}
}

func (s *SQLite) Round(ctx context.Context, scope string, round int64) (RoundStatus, error) {
	st, err := sqliteRound(ctx, s.db, scope, round)
	return st, wrap(ctx, "round", err)
}

func (s *SQLite) Partition(ctx context.Context, scope string, resetListing bool, ranges func() ([]Range, error)) (RoundStatus, error) {
	tx, err := s.begin(ctx, false)
	if err != nil {
		return RoundStatus{}, wrap(ctx, "partition", err)
	}
	defer tx.Rollback()
	var last int64
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(max(round), 0) FROM claims WHERE scope = ?", scope).Scan(&last); err != nil {
		return RoundStatus{}, wrap(ctx, "partition", err)
	}
	if last > 0 {
		st, err := sqliteRound(ctx, tx, scope, last)
		if err != nil || !st.Finished() {
			return st, wrap(ctx, "partition", err)
		}
	}
	rs, err := ranges()
	if err != nil || len(rs) == 0 {
		return RoundStatus{}, err
	}
	round := last + 1
	if resetListing {
		if _, err := tx.ExecContext(ctx, "DELETE FROM listing"); err != nil {
			return RoundStatus{}, wrap(ctx, "partition", err)
		}
	}
	ins, err := tx.PrepareContext(ctx, "INSERT INTO claims(scope, round, seq, site, lo, hi) VALUES(?, ?, ?, ?, ?, ?)")
	if err != nil {
		return RoundStatus{}, wrap(ctx, "partition", err)
	}
	defer ins.Close()
	for i, r := range rs {
		if _, err := ins.ExecContext(ctx, scope, round, i+1, r.Site, r.Lo, r.Hi); err != nil {
			return RoundStatus{}, wrap(ctx, "partition", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return RoundStatus{}, wrap(ctx, "partition", err)
	}
	return RoundStatus{Round: round, Open: int64(len(rs))}, nil
}

const claimCols = "scope, round, seq, site, lo, hi, worker, epoch, lease_until, resume_after"

func scanClaim(row interface{ Scan(...any) error }, extra ...any) (Claim, error) {
	var c Claim
	var till int64
	err := row.Scan(append([]any{&c.Scope, &c.Round, &c.Seq, &c.Site, &c.Lo, &c.Hi, &c.Worker, &c.Epoch, &till, &c.Cursor}, extra...)...)
	c.LeaseTill = fromNanos(till)
	return c, err
}

func sqliteClaims(ctx context.Context, tx *sqliteTx, where string, args ...any) ([]Claim, error) {
	rows, err := tx.QueryContext(ctx, "SELECT "+claimCols+" FROM claims "+where+" ORDER BY scope, round, seq", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanClaims(rows)
}

func (s *SQLite) Claim(ctx context.Context, scope string, round int64, worker string, lease time.Duration) (Claim, bool, error) {
	tx, err := s.begin(ctx, false)
	if err != nil {
		return Claim{}, false, wrap(ctx, "claim", err)
	}
	defer tx.Rollback()
	now := s.clock.Now()
	var state string
	c, err := scanClaim(tx.QueryRowContext(ctx, "SELECT "+claimCols+", state FROM claims WHERE scope = ? AND round = ? AND (state = 'open' OR (state = 'held' AND lease_until < ?)) ORDER BY seq LIMIT 1",
		scope, round, now.UnixNano()), &state)
	if errors.Is(err, sql.ErrNoRows) {
		return Claim{}, false, nil
	}
	if err != nil {
		return Claim{}, false, wrap(ctx, "claim", err)
	}
	c.Takeover = state == ClaimHeld && c.Worker != worker
	c.Worker, c.Epoch, c.LeaseTill = worker, c.Epoch+1, now.Add(lease)
	if _, err := tx.ExecContext(ctx, "UPDATE claims SET state = 'held', worker = ?, epoch = ?, lease_until = ? WHERE scope = ? AND round = ? AND seq = ?",
		c.Worker, c.Epoch, c.LeaseTill.UnixNano(), scope, round, c.Seq); err != nil {
		return Claim{}, false, wrap(ctx, "claim", err)
	}
	return c, true, wrap(ctx, "claim", tx.Commit())
}

// fenced runs write inside a transaction that first checks the caller still holds c.
func (s *SQLite) fenced(ctx context.Context, op string, c Claim, write func(tx *sqliteTx, now time.Time) error) error {
	tx, err := s.begin(ctx, false)
	if err != nil {
		return wrap(ctx, op, err)
	}
	defer tx.Rollback()
	now := s.clock.Now()
	var worker, state string
	var epoch, till int64
	err = tx.QueryRowContext(ctx, "SELECT worker, epoch, state, lease_until FROM claims WHERE scope = ? AND round = ? AND seq = ?",
		c.Scope, c.Round, c.Seq).Scan(&worker, &epoch, &state, &till)
	if err != nil {
		return wrap(ctx, op, err)
	}
	if worker != c.Worker || epoch != c.Epoch || state != ClaimHeld || till < now.UnixNano() {
		return &FencedError{Claim: c, Holder: worker, Epoch: epoch}
	}
	if err := write(tx, now); err != nil {
		return err
	}
	return wrap(ctx, op, tx.Commit())
}

func (s *SQLite) Checkpoint(ctx context.Context, c Claim, cursor string, recs []Record, listed []Listed) error {
	return s.fenced(ctx, "checkpoint", c, func(tx *sqliteTx, _ time.Time) error {
		if err := saveTx(tx, recs); err != nil {
			return err
		}
		if err := addListedTx(tx, listed); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "UPDATE claims SET resume_after = ? WHERE scope = ? AND round = ? AND seq = ?", cursor, c.Scope, c.Round, c.Seq)
		return wrap(ctx, "checkpoint", err)
	})
}

func (s *SQLite) Finish(ctx context.Context, c Claim, recs []Record) error {
	return s.fenced(ctx, "finish", c, func(tx *sqliteTx, now time.Time) error {
		if err := saveTx(tx, recs); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE claims SET state = 'done', done_at = ? WHERE scope = ? AND round = ? AND seq = ?",
			now.UnixNano(), c.Scope, c.Round, c.Seq); err != nil {
			return wrap(ctx, "finish", err)
		}
		_, err := tx.ExecContext(ctx, "UPDATE workers SET ranges = ranges + 1 WHERE id = ?", c.Worker)
		return wrap(ctx, "finish", err)
	})
}

func (s *SQLite) Release(ctx context.Context, c Claim) error {
	_, err := s.db.ExecContext(ctx, "UPDATE claims SET state = 'open', lease_until = 0 WHERE scope = ? AND round = ? AND seq = ? AND worker = ? AND epoch = ? AND state = 'held'",
		c.Scope, c.Round, c.Seq, c.Worker, c.Epoch)
	return wrap(ctx, "release", err)
}
