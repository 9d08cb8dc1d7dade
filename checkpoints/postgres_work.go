package checkpoints

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// Shared work on PostgreSQL: claims are taken with SELECT ... FOR UPDATE SKIP LOCKED,
// fenced writes re-read their claim row FOR UPDATE in the same transaction as the
// records they save, and leases are set and judged by the database's clock (pgNow),
// or by Options.Clock when one is set (tests: see nowAt).

// lockKey is the advisory lock that serialises the migration lock and Join.
func (s *Postgres) lockKey() int64 { return pgLockKey(s.schema) ^ 0x6c6f636b }

// activeWorkers reads the workers that have not left.
func (s *Postgres) activeWorkers(ctx context.Context, tx pgx.Tx) ([]Worker, error) {
	rows, err := tx.Query(ctx, s.sql("SELECT "+workerCols+" FROM @.workers WHERE left_at = 0"))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanWorkers(rows, false)
}

func (s *Postgres) Join(ctx context.Context, w Worker, lease time.Duration) error {
	if err := checkText("worker", "id", w.ID, "host", w.Host, "phase", w.Phase); err != nil {
		return s.wrap("join", err)
	}
	err := s.writeTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.lockKey()); err != nil {
			return err
		}
		var now int64
		cur, ok, err := scanPGLock(tx.QueryRow(ctx, s.sql("SELECT host, pid, start, phase, acquired, lease_until, token, "+nowAt(1)+" FROM @.lock WHERE id = 1"), s.clockArg()), &now)
		if err != nil {
			return err
		}
		ws, err := s.activeWorkers(ctx, tx)
		if err != nil {
			return err
		}
		if err := excluded(cur, ok, ws, fromNanos(now), w.Phase); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, s.sql(`INSERT INTO @.workers(`+workerCols+`)
			SELECT $1, $2, $3, $4, $5, n.now, n.now, n.now + $6, 0, 0, 0, 0 FROM (SELECT `+nowAt(7)+` AS now) n
			ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, start = excluded.start, phase = excluded.phase,
				joined = excluded.joined, heartbeat = excluded.heartbeat, lease_until = excluded.lease_until, left_at = 0`),
			w.ID, w.Host, w.PID, w.Start, w.Phase, int64(lease), s.clockArg())
		return err
	})
	var le *LockedError
	if errors.As(err, &le) {
		return le
	}
	return s.wrap("join", err)
}

func (s *Postgres) Heartbeat(ctx context.Context, id string, lease time.Duration, records, bytes int64) ([]Claim, error) {
	var held []Claim
	err := s.writeTx(ctx, func(tx pgx.Tx) error {
		held = nil
		now := s.clockArg() // one time for the worker and its claims
		if _, err := tx.Exec(ctx, s.sql(`UPDATE @.workers SET heartbeat = n.now, lease_until = n.now + $1, records = $2, bytes = $3
			FROM (SELECT `+nowAt(5)+` AS now) n WHERE id = $4`), int64(lease), records, bytes, id, now); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, s.sql(`UPDATE @.claims SET lease_until = n.now + $1 FROM (SELECT `+nowAt(3)+` AS now) n
			WHERE worker = $2 AND state = 'held' RETURNING `+claimCols), int64(lease), id, now)
		if err != nil {
			return err
		}
		defer rows.Close()
		held, err = scanClaims(rows)
		return err
	})
	return held, s.wrap("heartbeat", err)
}

func (s *Postgres) Leave(ctx context.Context, id string) error {
	err := s.writeTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, s.sql(`UPDATE @.workers SET left_at = n.now, heartbeat = n.now FROM (SELECT `+nowAt(2)+` AS now) n WHERE id = $1`), id, s.clockArg()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.sql(`UPDATE @.claims SET state = 'open', lease_until = 0 WHERE worker = $1 AND state = 'held'`), id)
		return err
	})
	return s.wrap("leave", err)
}

func (s *Postgres) Workers(ctx context.Context) ([]Worker, error) {
	rows, err := s.pool.Query(ctx, s.sql("SELECT "+prefixed("w.", workerCols)+
		", (SELECT count(*) FROM @.claims c WHERE c.worker = w.id AND c.state = 'held') FROM @.workers w ORDER BY w.joined DESC, w.id"))
	if err != nil {
		return nil, s.wrap("workers", err)
	}
	defer rows.Close()
	ws, err := scanWorkers(rows, true)
	return ws, s.wrap("workers", err)
}

func (s *Postgres) round(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, scope string, round int64) (RoundStatus, error) {
	rows, err := q.Query(ctx, s.sql("SELECT state, count(*) FROM @.claims WHERE scope = $1 AND round = $2 GROUP BY state"), scope, round)
	if err != nil {
		return RoundStatus{Round: round}, err
	}
	defer rows.Close()
	return scanRound(rows, round)
}

func (s *Postgres) Round(ctx context.Context, scope string, round int64) (RoundStatus, error) {
	st, err := s.round(ctx, s.pool, scope, round)
	return st, s.wrap("round", err)
}

func (s *Postgres) Partition(ctx context.Context, scope string, resetListing bool, ranges func() ([]Range, error)) (RoundStatus, error) {
	if err := checkText("partition", "scope", scope); err != nil {
		return RoundStatus{}, s.wrap("partition", err)
	}
	var st RoundStatus
	var userErr error
	err := s.writeTx(ctx, func(tx pgx.Tx) error {
		st, userErr = RoundStatus{}, nil
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", pgLockKey(s.schema+"\x00partition\x00"+scope)); err != nil {
			return err
		}
		var last int64
		if err := tx.QueryRow(ctx, s.sql("SELECT COALESCE(max(round), 0) FROM @.claims WHERE scope = $1"), scope).Scan(&last); err != nil {
			return err
		}
		if last > 0 {
			cur, err := s.round(ctx, tx, scope, last)
			if err != nil || !cur.Finished() {
				st = cur
				return err
			}
		}
		rs, err := ranges()
		if err != nil {
			userErr = err
			return err
		}
		if len(rs) == 0 {
			return nil
		}
		if resetListing {
			if _, err := tx.Exec(ctx, s.sql("DELETE FROM @.listing")); err != nil {
				return err
			}
		}
		sites, los, his, seqs := make([]string, len(rs)), make([]string, len(rs)), make([]string, len(rs)), make([]int64, len(rs))
		for i, r := range rs {
			if err := checkText("partition", "site", r.Site, "lo", r.Lo, "hi", r.Hi); err != nil {
				return err
			}
			sites[i], los[i], his[i], seqs[i] = r.Site, r.Lo, r.Hi, int64(i+1)
		}
		_, err = tx.Exec(ctx, s.sql(`INSERT INTO @.claims(scope, round, seq, site, lo, hi)
			SELECT $1, $2, u.seq, u.site, u.lo, u.hi FROM unnest($3::int8[], $4::text[], $5::text[], $6::text[]) AS u(seq, site, lo, hi)`),
			scope, last+1, seqs, sites, los, his)
		st = RoundStatus{Round: last + 1, Open: int64(len(rs))}
		return err
	})
	if userErr != nil {
		return RoundStatus{}, userErr
	}
	return st, s.wrap("partition", err)
}

func (s *Postgres) Claim(ctx context.Context, scope string, round int64, worker string, lease time.Duration) (Claim, bool, error) {
	if err := checkText("claim", "scope", scope, "worker", worker); err != nil {
		return Claim{}, false, s.wrap("claim", err)
	}
	var c Claim
	found := false
	err := s.writeTx(ctx, func(tx pgx.Tx) error {
		var prevState, prevWorker string
		var err error
		c, err = scanClaim(tx.QueryRow(ctx, s.sql(`UPDATE @.claims c SET state = 'held', worker = $3, epoch = c.epoch + 1, lease_until = n.now + $4
			FROM (SELECT scope, round, seq, state AS prev_state, worker AS prev_worker FROM @.claims
				WHERE scope = $1 AND round = $2 AND (state = 'open' OR (state = 'held' AND lease_until < `+nowAt(5)+`))
				ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) x,
				(SELECT `+nowAt(5)+` AS now) n
			WHERE c.scope = x.scope AND c.round = x.round AND c.seq = x.seq
			RETURNING c.scope, c.round, c.seq, c.site, c.lo, c.hi, c.worker, c.epoch, c.lease_until, c.resume_after, x.prev_state, x.prev_worker`),
			scope, round, worker, int64(lease), s.clockArg()), &prevState, &prevWorker)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		c.Takeover = prevState == ClaimHeld && prevWorker != worker
		return nil
	})
	if err != nil || !found {
		return Claim{}, false, s.wrap("claim", err)
	}
	return c, true, nil
}

// fenced queues write's statements after a check, in the same transaction, that the
// caller still holds c (same worker and epoch, lease not expired by the database's clock,
// or Options.Clock).
func (s *Postgres) fenced(ctx context.Context, op string, c Claim, recs []Record, listed []Listed, then string, args ...any) error {
	b := &pgx.Batch{}
	if err := s.queueSave(b, recs); err != nil {
		return s.wrap(op, err)
	}
	if len(listed) > 0 {
		q, largs, err := s.listedInsert(listed)
		if err != nil {
			return s.wrap(op, err)
		}
		b.Queue(q, largs...)
	}
	b.Queue(s.sql(then), args...)
	var fence *FencedError
	err := s.writeTx(ctx, func(tx pgx.Tx) error {
		fence = nil
		var worker, state string
		var epoch int64
		var alive bool
		err := tx.QueryRow(ctx, s.sql(`SELECT worker, epoch, state, lease_until >= `+nowAt(4)+` FROM @.claims
			WHERE scope = $1 AND round = $2 AND seq = $3 FOR UPDATE`), c.Scope, c.Round, c.Seq, s.clockArg()).Scan(&worker, &epoch, &state, &alive)
		if err != nil {
			return err
		}
		if worker != c.Worker || epoch != c.Epoch || state != ClaimHeld || !alive {
			fence = &FencedError{Claim: c, Holder: worker, Epoch: epoch}
			return fence
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if fence != nil {
		return fence
	}
	return s.wrap(op, err)
}

func (s *Postgres) Checkpoint(ctx context.Context, c Claim, cursor string, recs []Record, listed []Listed) error {
	if err := checkText("checkpoint", "cursor", cursor); err != nil {
		return s.wrap("checkpoint", err)
	}
	return s.fenced(ctx, "checkpoint", c, recs, listed, `UPDATE @.claims SET resume_after = $4 WHERE scope = $1 AND round = $2 AND seq = $3`,
		c.Scope, c.Round, c.Seq, cursor)
}

func (s *Postgres) Finish(ctx context.Context, c Claim, recs []Record) error {
	return s.fenced(ctx, "finish", c, recs, nil, `WITH d AS (UPDATE @.claims SET state = 'done', done_at = `+nowAt(4)+`
			WHERE scope = $1 AND round = $2 AND seq = $3 RETURNING worker)
		UPDATE @.workers w SET ranges = w.ranges + 1 FROM d WHERE w.id = d.worker`,
		c.Scope, c.Round, c.Seq, s.clockArg())
}

func (s *Postgres) Release(ctx context.Context, c Claim) error {
	_, err := s.pool.Exec(ctx, s.sql(`UPDATE @.claims SET state = 'open', lease_until = 0
		WHERE scope = $1 AND round = $2 AND seq = $3 AND worker = $4 AND epoch = $5 AND state = 'held'`),
		c.Scope, c.Round, c.Seq, c.Worker, c.Epoch)
	return s.wrap("release", err)
}
