package checkpoints

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// JournalEntry is one entry of ferry's journal of its own access to user data, as the
// state keeps it: the line exactly as hashed (migrate/certificate.JournalEntry,
// canonical JSON, no newline) under its stream (one per process or worker) and
// sequence number. The state stores lines; it neither builds nor checks the chain.
type JournalEntry struct {
	Stream string
	Seq    int64
	Line   string
}

// JournalStore keeps the journal.
type JournalStore interface {
	// AppendJournal stores entries in one transaction, durable when it returns nil.
	// Lines hold no newline. Storing an entry again with the same line is harmless (a
	// retried batch); a different line under a stored (stream, seq) is an error
	// wrapping ErrJournalFork (two writers share a stream), and nothing of the batch
	// is stored.
	AppendJournal(ctx context.Context, entries []JournalEntry) error
	// Journal calls fn for every entry in (stream, seq) order, streams in byte order.
	Journal(ctx context.Context, fn func(JournalEntry) error) error
}

// ErrJournalFork: a stream already holds a different entry under the same number.
var ErrJournalFork = errors.New("two writers share a journal stream")

// The journal is stored as runs: one row per run of consecutive entries of one stream
// (first_seq..last_seq), its lines joined by newlines. A batch of a thousand requests
// is one row, not a thousand: the journal costs the state one insert per batch.

// journalRun is one row.
type journalRun struct {
	stream      string
	first, last int64
	lines       []string
}

func (r journalRun) joined() string { return strings.Join(r.lines, "\n") }

// journalRuns cuts entries into runs of consecutive seqs of one stream.
func journalRuns(entries []JournalEntry) ([]journalRun, error) {
	var runs []journalRun
	for _, e := range entries {
		if strings.IndexByte(e.Line, '\n') >= 0 {
			return nil, fmt.Errorf("journal: stream %q entry %d: a line holds a newline", e.Stream, e.Seq)
		}
		if n := len(runs); n > 0 && runs[n-1].stream == e.Stream && runs[n-1].last+1 == e.Seq {
			runs[n-1].last = e.Seq
			runs[n-1].lines = append(runs[n-1].lines, e.Line)
			continue
		}
		runs = append(runs, journalRun{stream: e.Stream, first: e.Seq, last: e.Seq, lines: []string{e.Line}})
	}
	return runs, nil
}

// journalOverlap is how a store finds the stored rows of stream that overlap first..last.
type journalOverlap func(stream string, first, last int64) ([]journalRun, error)

// newEntries returns the entries of entries that are not stored yet, as runs to
// insert; an entry stored with another line is ErrJournalFork.
func newEntries(entries []JournalEntry, overlap journalOverlap) ([]journalRun, error) {
	runs, err := journalRuns(entries)
	if err != nil {
		return nil, err
	}
	var fresh []JournalEntry
	for _, r := range runs {
		stored, err := overlap(r.stream, r.first, r.last)
		if err != nil {
			return nil, err
		}
		have := map[int64]string{}
		for _, s := range stored {
			for i, l := range s.lines {
				have[s.first+int64(i)] = l
			}
		}
		for i, l := range r.lines {
			seq := r.first + int64(i)
			if old, ok := have[seq]; ok {
				if old != l {
					return nil, fmt.Errorf("%w: stream %q already has a different entry %d", ErrJournalFork, r.stream, seq)
				}
				continue
			}
			fresh = append(fresh, JournalEntry{Stream: r.stream, Seq: seq, Line: l})
		}
	}
	return journalRuns(fresh)
}

// splitRun calls fn for each entry of a stored row.
func splitRun(stream string, first, last int64, lines string, fn func(JournalEntry) error) error {
	seq := first
	for line := range strings.SplitSeq(lines, "\n") {
		if err := fn(JournalEntry{Stream: stream, Seq: seq, Line: line}); err != nil {
			return err
		}
		seq++
	}
	if seq != last+1 {
		return fmt.Errorf("journal: stream %q row %d..%d holds %d lines", stream, first, last, seq-first)
	}
	return nil
}

// journalPage is how many rows (runs) one query of Journal reads.
const journalPage = 64

// ---- SQLite ----

func (s *SQLite) AppendJournal(ctx context.Context, entries []JournalEntry) error {
	if len(entries) == 0 {
		return nil
	}
	tx, err := s.begin(ctx, false)
	if err != nil {
		return wrap(ctx, "journal", err)
	}
	defer tx.Rollback()
	runs, err := newEntries(entries, func(stream string, first, last int64) ([]journalRun, error) {
		rows, err := tx.QueryContext(ctx, "SELECT first_seq, last_seq, lines FROM journal WHERE stream = ? AND first_seq <= ? AND last_seq >= ?", stream, last, first)
		if err != nil {
			return nil, err
		}
		return scanRuns(stream, rows)
	})
	if err != nil {
		return wrap(ctx, "journal", err)
	}
	for _, r := range runs {
		if _, err := tx.ExecContext(ctx, "INSERT INTO journal(stream, first_seq, last_seq, lines) VALUES(?, ?, ?, ?)", r.stream, r.first, r.last, r.joined()); err != nil {
			return wrap(ctx, "journal", err)
		}
	}
	return wrap(ctx, "journal", tx.Commit())
}

func scanRuns(stream string, rows *sql.Rows) ([]journalRun, error) {
	defer rows.Close()
	var out []journalRun
	for rows.Next() {
		r := journalRun{stream: stream}
		var lines string
		if err := rows.Scan(&r.first, &r.last, &lines); err != nil {
			return nil, err
		}
		r.lines = strings.Split(lines, "\n")
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *SQLite) Journal(ctx context.Context, fn func(JournalEntry) error) error {
	stream, seq := "", int64(0)
	for {
		// Each page is read whole before fn runs, so fn may write to the store.
		rows, err := s.db.QueryContext(ctx, "SELECT stream, first_seq, last_seq, lines FROM journal WHERE (stream, first_seq) > (?, ?) ORDER BY stream, first_seq LIMIT ?", stream, seq, journalPage)
		if err != nil {
			return wrap(ctx, "journal", err)
		}
		type row struct {
			stream      string
			first, last int64
			lines       string
		}
		var page []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.stream, &r.first, &r.last, &r.lines); err != nil {
				rows.Close()
				return wrap(ctx, "journal", err)
			}
			page = append(page, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return wrap(ctx, "journal", err)
		}
		for _, r := range page {
			if err := splitRun(r.stream, r.first, r.last, r.lines, fn); err != nil {
				return err
			}
		}
		if len(page) < journalPage {
			return nil
		}
		stream, seq = page[len(page)-1].stream, page[len(page)-1].first
	}
}

// ---- PostgreSQL ----

func (s *Postgres) AppendJournal(ctx context.Context, entries []JournalEntry) error {
	if len(entries) == 0 {
		return nil
	}
	for _, e := range entries {
		if err := checkText("journal", "stream", e.Stream, "line", e.Line); err != nil {
			return s.wrap("journal", err)
		}
	}
	err := s.writeTx(ctx, func(tx pgx.Tx) error {
		runs, err := newEntries(entries, func(stream string, first, last int64) ([]journalRun, error) {
			rows, err := tx.Query(ctx, s.sql("SELECT first_seq, last_seq, lines FROM @.journal WHERE stream = $1 AND first_seq <= $2 AND last_seq >= $3"), stream, last, first)
			if err != nil {
				return nil, err
			}
			return pgx.CollectRows(rows, func(row pgx.CollectableRow) (journalRun, error) {
				r := journalRun{stream: stream}
				var lines string
				err := row.Scan(&r.first, &r.last, &lines)
				r.lines = strings.Split(lines, "\n")
				return r, err
			})
		})
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		for _, r := range runs {
			b.Queue(s.sql("INSERT INTO @.journal(stream, first_seq, last_seq, lines) VALUES($1, $2, $3, $4)"), r.stream, r.first, r.last, r.joined())
		}
		return tx.SendBatch(ctx, b).Close()
	})
	return s.wrap("journal", err)
}

func (s *Postgres) Journal(ctx context.Context, fn func(JournalEntry) error) error {
	stream, seq := "", int64(0)
	type row struct {
		stream      string
		first, last int64
		lines       string
	}
	for {
		rows, err := s.pool.Query(ctx, s.sql("SELECT stream, first_seq, last_seq, lines FROM @.journal WHERE (stream, first_seq) > ($1, $2) ORDER BY stream, first_seq LIMIT $3"), stream, seq, journalPage)
		if err != nil {
			return s.wrap("journal", err)
		}
		page, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.stream, &x.first, &x.last, &x.lines)
			return x, err
		})
		if err != nil {
			return s.wrap("journal", err)
		}
		for _, r := range page {
			if err := splitRun(r.stream, r.first, r.last, r.lines, fn); err != nil {
				return err
			}
		}
		if len(page) < journalPage {
			return nil
		}
		stream, seq = page[len(page)-1].stream, page[len(page)-1].first
	}
}
