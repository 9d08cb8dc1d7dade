package certificate

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// MarshalJournalEntry writes exactly what Canonicalize makes of the entry, for
// ordinary and awkward strings (quotes, control characters, unicode, U+2028, invalid
// UTF-8) and empty optional fields.
func TestMarshalJournalEntryIsCanonical(t *testing.T) {
	strs := []string{"", "a", `q"uo\\te`, "tab\tnl\ncr\r\b\f\x01\x1f", "caf\u00e9", "cafe\u0301", "\u2028\u2029", "日本語/😀", "<&>", "bad\xffutf8", "\x00"}
	r := rand.New(rand.NewPCG(1, 2))
	pick := func() string { return strs[r.IntN(len(strs))] }
	for i := 0; i < 2000; i++ {
		e := JournalEntry{
			Stream: pick(), Seq: r.Int64N(1 << 40), Prev: pick(), Time: pick(), Site: pick(), Op: pick(), Call: pick(),
			Key: pick(), URI: pick(), Version: pick(), ETag: pick(), Handle: pick(), Count: r.Int64N(3),
			RequestID: pick(), Identity: pick(), Host: pick(), Worker: pick(), Outcome: pick(), Error: pick(),
		}
		got, hash, err := MarshalJournalEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		want, err := Canonicalize(e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("entry %+v:\n got %s\nwant %s", e, got, want)
		}
		if hash != JournalHash(want) {
			t.Fatal("hash is not the SHA-256 of the line")
		}
	}
}

// The chain check accepts a well-formed journal and names the first broken line.
func TestJournalChain(t *testing.T) {
	var lines [][]byte
	prev := map[string]string{}
	for i, s := range []string{"a", "a", "a", "b", "b"} {
		p, ok := prev[s]
		if !ok {
			p = JournalGenesis
		}
		seq := int64(i + 1) // a: 1, 2, 3
		if s == "b" {
			seq = int64(i - 2) // b: 1, 2
		}
		line, h, err := MarshalJournalEntry(JournalEntry{Stream: s, Seq: seq, Prev: p, Op: "read"})
		if err != nil {
			t.Fatal(err)
		}
		prev[s] = h
		lines = append(lines, line)
	}
	var c JournalChain
	for i, l := range lines {
		if _, err := c.Add(l); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
	}
	sum := c.Summary()
	if sum.Entries != 5 || len(sum.Streams) != 2 || sum.Streams[0].Count != 3 || sum.Streams[1].Head != prev["b"] {
		t.Fatalf("summary %+v", sum)
	}
	var d JournalChain
	for i, l := range [][]byte{lines[0], lines[2]} {
		if _, err := d.Add(l); err != nil {
			if i != 1 {
				t.Fatalf("line %d: %v", i+1, err)
			}
			return
		}
	}
	t.Fatal("a dropped entry went unnoticed")
}
