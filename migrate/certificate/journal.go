package certificate

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The journal: one line per request ferry made that touched user data (journal.jsonl,
// written beside the manifest). Its lines are hash-chained per stream (one stream per
// ferry process or worker):
//
//   - every line is one JSON object (RFC 8785 canonical) with at least stream, seq and prev;
//   - seq counts a stream's entries from 1;
//   - prev is the lowercase hex SHA-256 of the previous line of the same stream (its exact
//     bytes, without the newline), or JournalGenesis for a stream's first entry;
//   - the file is sorted by stream (byte order), then seq;
//   - the certificate's predicate.journal names every stream with its count and head (the
//     SHA-256 of its last line).
//
// Changing a line changes its hash, which the next line (or the head) names; dropping or
// reordering one breaks seq, prev or the order. A short script checks all of it (README).

// JournalName is the journal's file name, beside the manifest.
const JournalName = "journal.jsonl"

// JournalAlgorithm names the chain rule above in the predicate.
const JournalAlgorithm = "SHA256-CHAIN-PER-STREAM"

// JournalGenesis is the prev of a stream's first entry.
const JournalGenesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Journal outcomes.
const (
	OutcomeOK           = "ok"
	OutcomeNotFound     = "not_found"
	OutcomePrecondition = "precondition_failed"
	OutcomeDenied       = "denied"
	OutcomeError        = "error"
)

// JournalEntry is one line of the journal.
type JournalEntry struct {
	Stream string `json:"stream"` // the process or worker that made the request
	Seq    int64  `json:"seq"`    // 1, 2, ... within the stream
	Prev   string `json:"prev"`   // SHA-256 of the stream's previous line (JournalGenesis first)
	Time   string `json:"time"`   // when the request started, RFC 3339 UTC with nanoseconds
	Site   string `json:"site"`   // the site's name, or "target"
	Op     string `json:"op"`     // list, head, read, write, delete, soft_delete, restore, purge
	Call   string `json:"call"`   // the store method (Stat, Open, DeleteIf, ...)
	// Key is relative to the site's root (EscapeKey'd when not UTF-8); URI is the full
	// object URI as the manifest spells it (empty for a listing of the whole store).
	Key       string `json:"key"`
	URI       string `json:"uri,omitempty"`
	Version   string `json:"version,omitempty"`
	ETag      string `json:"etag,omitempty"`
	Handle    string `json:"handle,omitempty"`
	Count     int64  `json:"count,omitempty"`      // listings: objects listed
	RequestID string `json:"request_id,omitempty"` // the store's request id(s), space-separated
	Identity  string `json:"identity"`             // who ferry acted as (never a secret)
	Host      string `json:"host"`
	Worker    string `json:"worker,omitempty"` // the shared-phase worker id, if any
	Outcome   string `json:"outcome"`          // one of the Outcome constants
	Error     string `json:"error,omitempty"`
}

// MarshalJournalEntry returns e's line (canonical JSON, no newline) and its hash. It
// writes the canonical form directly (members in JCS order), which is what
// Canonicalize(e) gives, at a fraction of the cost: every request ferry makes passes
// here.
func MarshalJournalEntry(e JournalEntry) (line []byte, hash string, err error) {
	for _, f := range []string{e.Call, e.Error, e.ETag, e.Handle, e.Host, e.Identity, e.Key, e.Op, e.Outcome, e.Prev, e.RequestID, e.Site, e.Stream, e.Time, e.URI, e.Version, e.Worker} {
		if !utf8.ValidString(f) {
			line, err = Canonicalize(e) // invalid UTF-8 becomes U+FFFD, as encoding/json does
			if err != nil {
				return nil, "", err
			}
			return line, JournalHash(line), nil
		}
	}
	var b bytes.Buffer
	b.Grow(512)
	str := func(name, v string, omitEmpty bool) {
		if omitEmpty && v == "" {
			return
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(name)
		b.WriteString(`":`)
		writeJCSString(&b, v)
	}
	num := func(name string, v int64, omitEmpty bool) {
		if omitEmpty && v == 0 {
			return
		}
		if v > maxSafeInteger || v < -maxSafeInteger {
			err = fmt.Errorf("journal: %s %d is too large for canonical JSON", name, v)
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(name)
		b.WriteString(`":`)
		b.WriteString(strconv.FormatInt(v, 10))
	}
	// The members in RFC 8785 order (their names are ASCII: byte order).
	b.WriteByte('{')
	str("call", e.Call, false)
	num("count", e.Count, true)
	str("error", e.Error, true)
	str("etag", e.ETag, true)
	str("handle", e.Handle, true)
	str("host", e.Host, false)
	str("identity", e.Identity, false)
	str("key", e.Key, false)
	str("op", e.Op, false)
	str("outcome", e.Outcome, false)
	str("prev", e.Prev, false)
	str("request_id", e.RequestID, true)
	num("seq", e.Seq, false)
	str("site", e.Site, false)
	str("stream", e.Stream, false)
	str("time", e.Time, false)
	str("uri", e.URI, true)
	str("version", e.Version, true)
	str("worker", e.Worker, true)
	b.WriteByte('}')
	if err != nil {
		return nil, "", err
	}
	line = b.Bytes()
	return line, JournalHash(line), nil
}

// JournalHash is the lowercase hex SHA-256 of a line (without its newline).
func JournalHash(line []byte) string {
	h := sha256.Sum256(line)
	return hex.EncodeToString(h[:])
}

// JournalHead is one stream's end of chain.
type JournalHead struct {
	Stream string `json:"stream"`
	Count  int64  `json:"count"`
	Head   string `json:"head"` // SHA-256 of the stream's last line
}

// JournalSummary is what the certificate states of the journal.
type JournalSummary struct {
	Algorithm string        `json:"algorithm"` // JournalAlgorithm
	Entries   int64         `json:"entries"`
	Streams   []JournalHead `json:"streams"` // sorted by stream
}

// JournalChain checks lines one at a time against the chain rule and computes the heads.
type JournalChain struct {
	streams []JournalHead
	entries int64
}

// Add checks the next line (without its newline) and returns the entry it holds.
func (c *JournalChain) Add(line []byte) (JournalEntry, error) {
	var e JournalEntry
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("line %d: not a journal entry: %v", c.entries+1, err)
	}
	if e.Stream == "" {
		return e, fmt.Errorf("line %d: no stream", c.entries+1)
	}
	var cur *JournalHead
	if n := len(c.streams); n > 0 && c.streams[n-1].Stream == e.Stream {
		cur = &c.streams[n-1]
	} else {
		if n > 0 && e.Stream <= c.streams[n-1].Stream {
			return e, fmt.Errorf("line %d: stream %q after stream %q: the journal is not in (stream, seq) order", c.entries+1, e.Stream, c.streams[n-1].Stream)
		}
		c.streams = append(c.streams, JournalHead{Stream: e.Stream, Head: JournalGenesis})
		cur = &c.streams[len(c.streams)-1]
	}
	if e.Seq != cur.Count+1 {
		return e, fmt.Errorf("line %d: stream %q seq %d follows seq %d: an entry is missing or out of order", c.entries+1, e.Stream, e.Seq, cur.Count)
	}
	if e.Prev != cur.Head {
		return e, fmt.Errorf("line %d: stream %q seq %d names prev %s, but the previous entry hashes to %s: an entry was changed", c.entries+1, e.Stream, e.Seq, short(e.Prev), short(cur.Head))
	}
	cur.Count, cur.Head = e.Seq, JournalHash(line)
	c.entries++
	return e, nil
}

// Summary returns the heads so far.
func (c *JournalChain) Summary() JournalSummary {
	return JournalSummary{Algorithm: JournalAlgorithm, Entries: c.entries, Streams: append([]JournalHead{}, c.streams...)}
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

// Equal reports whether two summaries name the same streams, counts and heads.
func (s JournalSummary) Equal(o JournalSummary) bool {
	if s.Algorithm != o.Algorithm || s.Entries != o.Entries || len(s.Streams) != len(o.Streams) {
		return false
	}
	for i := range s.Streams {
		if s.Streams[i] != o.Streams[i] {
			return false
		}
	}
	return true
}

// Names of the journal checks (VerifyJournal).
const (
	CheckJournalChain    = "journal chain"
	CheckJournalHeads    = "journal heads"
	CheckJournalCoverage = "journal coverage"
)

// journalEvidence is what the journal shows ferry did successfully: (op, uri) pairs.
type journalEvidence map[[16]byte]struct{}

func evidenceKey(op, uri string) [16]byte {
	h := sha256.Sum256([]byte(op + "\x00" + uri))
	var k [16]byte
	copy(k[:], h[:])
	return k
}

func (e journalEvidence) has(op, uri string) bool {
	_, ok := e[evidenceKey(op, uri)]
	return ok
}

// VerifyJournal checks a journal against a verified certificate (r, from
// VerifyCertificate) and its manifest: every line follows the chain rule; the streams,
// counts and heads equal the certificate's predicate.journal; and every copy and every
// deletion the manifest states has its journal entries: an ok write (or, for a copy
// that was already there, an ok head) of the target copy's URI, an ok delete or
// soft_delete of every deleted replica's URI, and an ok purge of every purged one.
// Checks are added to r. err is as for VerifyCertificate.
func VerifyJournal(r *Report, journal, manifest io.Reader) error {
	if r.Statement == nil {
		r.add(CheckJournalChain, Skip, "the statement did not decode, so there is nothing to check the journal against")
		return r.Err()
	}
	chain := &JournalChain{}
	ev := journalEvidence{}
	br := bufio.NewReaderSize(journal, 1<<20)
	var chainErr error
	for chainErr == nil {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				chainErr = fmt.Errorf("line %d: not newline-terminated", chain.entries+1)
				break
			}
			e, err := chain.Add(line[:len(line)-1])
			if err != nil {
				chainErr = err
				break
			}
			if e.Outcome == OutcomeOK && e.URI != "" {
				ev[evidenceKey(e.Op, e.URI)] = struct{}{}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: journal: %v", ErrIO, err)
		}
	}
	if chainErr != nil {
		r.add(CheckJournalChain, Fail, "%v", chainErr)
		r.add(CheckJournalHeads, Skip, "not compared: the chain is broken")
		r.add(CheckJournalCoverage, Skip, "not checked: the chain is broken")
		return r.Err()
	}
	sum := chain.Summary()
	r.add(CheckJournalChain, Pass, "%s in %s, each naming the SHA-256 of its stream's previous entry", plural(sum.Entries, "entry", "entries"), plural(int64(len(sum.Streams)), "stream", "streams"))
	want := r.Statement.Predicate.Journal
	switch {
	case want == nil:
		r.add(CheckJournalHeads, Fail, "the certificate names no journal heads")
	case sum.Equal(*want):
		r.add(CheckJournalHeads, Pass, "every stream's count and head hash match the certificate's")
	default:
		r.add(CheckJournalHeads, Fail, "%s", headsDiff(sum, *want))
	}
	if manifest == nil {
		r.add(CheckJournalCoverage, Skip, "no manifest given: copies and deletions were not matched with journal entries")
		return r.Err()
	}
	var missing []string
	var nMissing, copies, deletions int64
	miss := func(format string, args ...any) {
		nMissing++
		if len(missing) < 5 {
			missing = append(missing, fmt.Sprintf(format, args...))
		}
	}
	_, _, _, err := ReadManifest(manifest, 0, func(_ uint64, _ []byte, l *ManifestLine) error {
		if l == nil {
			return nil
		}
		if l.Target.URI != "" {
			copies++
			if !ev.has("write", l.Target.URI) && !ev.has("head", l.Target.URI) {
				miss("no write of the target copy %s", l.Target.URI)
			}
		}
		for _, p := range l.Replicas {
			if p.DeletedAt != "" {
				deletions++
				if !ev.has("delete", p.URI) && !ev.has("soft_delete", p.URI) {
					miss("no delete of %s at site %s", p.URI, p.Site)
				}
			}
			if p.State == StatusPurged && !ev.has("purge", p.URI) {
				miss("no purge of %s at site %s", p.URI, p.Site)
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrIO) {
			return err
		}
		r.add(CheckJournalCoverage, Fail, "reading the manifest: %v", err)
		return r.Err()
	}
	if nMissing == 0 {
		r.add(CheckJournalCoverage, Pass, "every copy (%d) and every deletion (%d) in the manifest has its journal entries", copies, deletions)
	} else {
		more := ""
		if n := nMissing - int64(len(missing)); n > 0 {
			more = fmt.Sprintf(" (and %d more)", n)
		}
		r.add(CheckJournalCoverage, Fail, "%s%s", strings.Join(missing, "; "), more)
	}
	return r.Err()
}

func headsDiff(got, want JournalSummary) string {
	if got.Algorithm != want.Algorithm {
		return fmt.Sprintf("algorithm %q, the certificate says %q", got.Algorithm, want.Algorithm)
	}
	w := map[string]JournalHead{}
	for _, h := range want.Streams {
		w[h.Stream] = h
	}
	var d []string
	for _, h := range got.Streams {
		c, ok := w[h.Stream]
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("stream %q is not in the certificate", h.Stream))
		case c.Count != h.Count:
			d = append(d, fmt.Sprintf("stream %q has %d entries, the certificate says %d", h.Stream, h.Count, c.Count))
		case c.Head != h.Head:
			d = append(d, fmt.Sprintf("stream %q ends in %s, the certificate says %s", h.Stream, short(h.Head), short(c.Head)))
		}
		delete(w, h.Stream)
	}
	for s := range w {
		d = append(d, fmt.Sprintf("stream %q of the certificate is missing", s))
	}
	if len(d) == 0 {
		d = append(d, fmt.Sprintf("%d entries, the certificate says %d", got.Entries, want.Entries))
	}
	return strings.Join(d, "; ")
}
