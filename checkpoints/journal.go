package checkpoints

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// JournalEntry is one entry of ferry's journal of its own access to user data, as the
// state keeps it: the line exactly as hashed (migrate/certificate.JournalEntry, canonical
// JSON) and its SHA-256, under its stream (one per process or worker) and sequence
// number. The state stores lines; it neither builds nor checks the chain.
type JournalEntry struct {
	Stream string
	Seq    int64
	Line   string
	Hash   string // lowercase hex SHA-256 of Line
}

// JournalStore keeps the journal.
type JournalStore interface {
	// AppendJournal stores entries in one transaction, durable when it returns nil.
	// Storing an entry again with the same line is harmless (a retried batch); a
	// different line under a stored (stream, seq) is an error: two writers share a
	// stream, and nothing of the batch is stored.
	AppendJournal(ctx context.Context, entries []JournalEntry) error
	// Journal calls fn for every entry in (stream, seq) order, streams in byte order.
	Journal(ctx context.Context, fn func(JournalEntry) error) error
}

// journalPage is how many entries one query of Journal reads.
const journalPage = 5000

// ErrJournalFork: a stream already holds a different entry under the same number.
var ErrJournalFork = errors.New("two writers share a journal stream")

func errJournalFork(e JournalEntry) error {
	return fmt.Errorf("%w: stream %q already has a different entry %d", ErrJournalFork, e.Stream, e.Seq)
}

// ---- SQLite ----

func (s *SQLite) AppendJournal(ctx context.Context, entries []JournalEntry) error {
	if len(entries) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return wrap("journal", err)
	}
	defer tx.Rollback()
	ins, err := tx.PrepareContext(ctx, "INSERT INTO journal(stream, seq, line, hash) VALUES(?, ?, ?, ?) ON CONFLICT(stream, seq) DO NOTHING")
	if err != nil {
		return wrap("journal", err)
	}
	defer ins.Close()
	for _, e := range entries {
		res, err := ins.ExecContext(ctx, e.Stream, e.Seq, e.Line, e.Hash)
		if err != nil {
			return wrap("journal", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return wrap("journal", err)
		} else if n == 0 {
			var line string
			if err := tx.QueryRowContext(ctx, "SELECT line FROM journal WHERE stream = ? AND seq = ?", e.Stream, e.Seq).Scan(&line); err != nil {
				return wrap("journal", err)
			}
			if line != e.Line {
				return errJournalFork(e)
			}
		}
	}
	return wrap("journal", tx.Commit())
}

func (s *SQLite) Journal(ctx context.Context, fn func(JournalEntry) error) error {
	stream, seq := "", int64(0)
	for {
		// Each page is read whole before fn runs, so fn may write to the store.
		rows, err := s.db.QueryContext(ctx, "SELECT stream, seq, line, hash FROM journal WHERE (stream, seq) > (?, ?) ORDER BY stream, seq LIMIT ?", stream, seq, journalPage)
		if err != nil {
			return wrap("journal", err)
		}
		var page []JournalEntry
		for rows.Next() {
			var e JournalEntry
			if err := rows.Scan(&e.Stream, &e.Seq, &e.Line, &e.Hash); err != nil {
				rows.Close()
				return wrap("journal", err)
			}
			page = append(page, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return wrap("journal", err)
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < journalPage {
			return nil
		}
		stream, seq = page[len(page)-1].Stream, page[len(page)-1].Seq
	}
}

// ---- PostgreSQL ----

func (s *Postgres) AppendJournal(ctx context.Context, entries []JournalEntry) error {
	if len(entries) == 0 {
		return nil
	}
	streams := make([]string, len(entries))
	seqs := make([]int64, len(entries))
	lines := make([]string, len(entries))
	hashes := make([]string, len(entries))
	for i, e := range entries {
		if err := checkText("journal", "stream", e.Stream, "line", e.Line); err != nil {
			return s.wrap("journal", err)
		}
		streams[i], seqs[i], lines[i], hashes[i] = e.Stream, e.Seq, e.Line, e.Hash
	}
	err := s.writeTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, s.sql(`INSERT INTO @.journal(stream, seq, line, hash)
			SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) ON CONFLICT (stream, seq) DO NOTHING`),
			streams, seqs, lines, hashes)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == int64(len(entries)) {
			return nil
		}
		// Some were stored before: they must be the same lines.
		rows, err := tx.Query(ctx, s.sql(`SELECT j.stream, j.seq FROM @.journal j
			JOIN unnest($1::text[], $2::bigint[], $3::text[]) AS n(stream, seq, line) ON j.stream = n.stream AND j.seq = n.seq
			WHERE j.line <> n.line LIMIT 1`), streams, seqs, lines)
		if err != nil {
			return err
		}
		defer rows.Close()
		if rows.Next() {
			var e JournalEntry
			if err := rows.Scan(&e.Stream, &e.Seq); err != nil {
				return err
			}
			return errJournalFork(e)
		}
		return rows.Err()
	})
	return s.wrap("journal", err)
}

func (s *Postgres) Journal(ctx context.Context, fn func(JournalEntry) error) error {
	stream, seq := "", int64(0)
	for {
		rows, err := s.pool.Query(ctx, s.sql("SELECT stream, seq, line, hash FROM @.journal WHERE (stream, seq) > ($1, $2) ORDER BY stream, seq LIMIT $3"), stream, seq, journalPage)
		if err != nil {
			return s.wrap("journal", err)
		}
		page, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (JournalEntry, error) {
			var e JournalEntry
			err := r.Scan(&e.Stream, &e.Seq, &e.Line, &e.Hash)
			return e, err
		})
		if err != nil {
			return s.wrap("journal", err)
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < journalPage {
			return nil
		}
		stream, seq = page[len(page)-1].Stream, page[len(page)-1].Seq
	}
}
