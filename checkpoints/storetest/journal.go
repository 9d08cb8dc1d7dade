package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ferrymigrate/ferry/checkpoints"
)

func journalEntry(stream string, seq int64) checkpoints.JournalEntry {
	line := fmt.Sprintf(`{"stream":%q,"seq":%d,"key":"caf\u00e9 %d"}`, stream, seq, seq)
	return checkpoints.JournalEntry{Stream: stream, Seq: seq, Line: line}
}

func readJournal(t *testing.T, s checkpoints.Store) []checkpoints.JournalEntry {
	t.Helper()
	var out []checkpoints.JournalEntry
	if err := s.Journal(context.Background(), func(e checkpoints.JournalEntry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatalf("Journal: %v", err)
	}
	return out
}

// The journal comes back whole, byte for byte, in (stream, seq) order whatever order
// the batches were appended in, across more than one page; a replayed batch is
// harmless, and a different line under a stored (stream, seq) is refused with nothing
// of its batch stored.
func testJournal(t *testing.T, s checkpoints.Store) {
	ctx := context.Background()
	if got := readJournal(t, s); len(got) != 0 {
		t.Fatalf("a new state has %d journal entries", len(got))
	}
	// Stream names that sort differently by bytes than by locale or length.
	streams := []string{"b-host-2", "B-host-1", "a-host-10", "a-host-9"}
	const perStream = 1600 // 6400 entries: more than one page
	var first, second []checkpoints.JournalEntry
	for seq := int64(1); seq <= perStream; seq++ {
		for _, st := range streams {
			if seq <= perStream/2 {
				first = append(first, journalEntry(st, seq))
			} else {
				second = append(second, journalEntry(st, seq))
			}
		}
	}
	if err := s.AppendJournal(ctx, second); err != nil {
		t.Fatalf("AppendJournal: %v", err)
	}
	if err := s.AppendJournal(ctx, first); err != nil {
		t.Fatalf("AppendJournal: %v", err)
	}
	if err := s.AppendJournal(ctx, first[:10]); err != nil {
		t.Fatalf("AppendJournal of entries stored before, unchanged: %v", err)
	}
	want := []string{"B-host-1", "a-host-10", "a-host-9", "b-host-2"} // byte order
	got := readJournal(t, s)
	if len(got) != len(streams)*perStream {
		t.Fatalf("%d entries, want %d", len(got), len(streams)*perStream)
	}
	for i, e := range got {
		w := journalEntry(want[i/perStream], int64(i%perStream)+1)
		if e != w {
			t.Fatalf("entry %d: %+v, want %+v", i, e, w)
		}
	}

	fork := journalEntry("a-host-9", 7)
	fork.Line += " "
	batch := []checkpoints.JournalEntry{journalEntry("c-new", 1), fork}
	if err := s.AppendJournal(ctx, batch); !errors.Is(err, checkpoints.ErrJournalFork) {
		t.Fatalf("AppendJournal of another line under a stored (stream, seq): %v, want ErrJournalFork", err)
	}
	if got := readJournal(t, s); len(got) != len(streams)*perStream {
		t.Fatalf("after a refused batch: %d entries, want %d (nothing of it stored)", len(got), len(streams)*perStream)
	}

	// A batch that repeats stored entries and adds new ones stores the new ones.
	more := []checkpoints.JournalEntry{journalEntry("a-host-9", perStream-1), journalEntry("a-host-9", perStream), journalEntry("a-host-9", perStream+1), journalEntry("a-host-9", perStream+2)}
	if err := s.AppendJournal(ctx, more); err != nil {
		t.Fatalf("AppendJournal overlapping stored entries: %v", err)
	}
	got = readJournal(t, s)
	if len(got) != len(streams)*perStream+2 {
		t.Fatalf("%d entries, want %d", len(got), len(streams)*perStream+2)
	}
	if e := got[3*perStream+1]; e != journalEntry("a-host-9", perStream+2) {
		t.Fatalf("last entry of a-host-9: %+v", e)
	}
	if e := got[3*perStream+2]; e != journalEntry("b-host-2", 1) {
		t.Fatalf("the entry after a-host-9's: %+v", e)
	}
}
