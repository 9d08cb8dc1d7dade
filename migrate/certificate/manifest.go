package certificate

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ManifestName is the file name of the manifest and the name of the Statement's subject.
const ManifestName = "manifest.jsonl"

// TimeLayout is the one timestamp format of the manifest and the predicate: RFC 3339 in
// UTC with whole seconds ("2024-06-01T12:30:00Z"). Sub-second digits are dropped, not
// rounded (FormatTime truncates), so every timestamp has one spelling and a fixed width.
const TimeLayout = "2006-01-02T15:04:05Z"

// maxLineBytes bounds one manifest line when reading (a key is at most a few KiB).
const maxLineBytes = 16 << 20

// Record and replica states (DESIGN.md "Phases and per-record states"). A manifest line's
// status and a replica's state are one of these.
const (
	StatusPlanned      = "planned"
	StatusCopied       = "copied"
	StatusVerified     = "verified"
	StatusDeleteIntent = "delete-intent"
	StatusDeleted      = "deleted"
	StatusPurged       = "purged"
	StatusConflict     = "conflict"
	StatusFailed       = "failed"
	StatusExcluded     = "excluded"
	StatusRestored     = "restored"
)

// Deletion modes of a replica.
const (
	ModeSoft = "soft"
	ModeHard = "hard"
)

// Replica states that only a replica has (DESIGN.md "Phases and per-record states"):
// at its site and not yet proven, proven identical, differing from the record, or
// gone from its site without ferry deleting it.
const (
	ReplicaPresent   = "present"
	ReplicaIdentical = "identical"
	ReplicaDivergent = "divergent"
	ReplicaMissing   = "missing"
	// ReplicaRetained: on a versioned site ferry deleted the verified version, but
	// other versions of the key remain there: the replica is not deleted.
	ReplicaRetained = "retained"
	// ReplicaUndeletable: the site refused the delete (a retention policy, an object
	// hold, a legal hold or an immutability policy): the replica is still there, not
	// deleted; its Reason says which.
	ReplicaUndeletable = "undeletable"
)

var replicaStates = map[string]bool{
	ReplicaPresent: true, ReplicaIdentical: true, ReplicaDivergent: true, ReplicaMissing: true, ReplicaRetained: true, ReplicaUndeletable: true,
	StatusDeleteIntent: true, StatusDeleted: true, StatusPurged: true, StatusRestored: true,
}

var knownStates = map[string]bool{
	StatusPlanned: true, StatusCopied: true, StatusVerified: true, StatusDeleteIntent: true,
	StatusDeleted: true, StatusPurged: true, StatusConflict: true, StatusFailed: true,
	StatusExcluded: true, StatusRestored: true,
}

// ManifestLine is one record of manifest.jsonl. Every field is always present in the
// encoded line (empty strings and false included), so all lines share one shape, with
// one exception: a key that is not valid UTF-8 (file names are bytes) is written as
// "key": EscapeKey(key) plus "key_hex": the exact bytes in lowercase hex. JSON cannot
// carry such bytes, and refusing them only at report time, after their replicas were
// deleted, would leave a migration that can never be certified.
type ManifestLine struct {
	Key      string       `json:"key"`      // relative key, exact bytes (see EscapeKey for keys that are not UTF-8)
	User     string       `json:"user"`     // owner, from the spec's records.user regex
	Size     int64        `json:"size"`     // bytes
	SHA256   string       `json:"sha256"`   // lowercase hex of the content; "" only while unknown (planned, conflict, failed, excluded)
	Target   TargetRef    `json:"target"`   // the copy at the target
	Replicas []ReplicaRef `json:"replicas"` // one per site holding the record, sorted by site
	Status   string       `json:"status"`   // one of the Status constants
}

// TargetRef is the record's copy at the target.
type TargetRef struct {
	URI        string `json:"uri"`         // full object URI at the target
	Version    string `json:"version"`     // object version id, "" if the store has none
	ETag       string `json:"etag"`        // the store's ETag of the verified version
	VerifiedAt string `json:"verified_at"` // TimeLayout, "" if not verified
}

// ReplicaRef is one original of the record at one site. Size and SHA256 are the
// replica's own, which differ from the record's for a divergent replica.
type ReplicaRef struct {
	Site            string `json:"site"`             // site name from the spec
	URI             string `json:"uri"`              // full URI of the original
	Size            int64  `json:"size"`             // the replica's own size in bytes
	SHA256          string `json:"sha256"`           // the replica's own content hash (lowercase hex), "" if never read
	DeletedAt       string `json:"deleted_at"`       // TimeLayout, "" if not deleted
	Mode            string `json:"mode"`             // "soft", "hard", or "" if not deleted
	ConfirmedAbsent bool   `json:"confirmed_absent"` // a read after the delete found it gone
	State           string `json:"state"`            // one of the Status constants
	// Reason: why an undeletable replica was not deleted, as the site said it
	// (retention policy, hold); absent for every other state.
	Reason string `json:"reason,omitempty"`
}

// FormatTime renders t in TimeLayout (UTC, whole seconds); the zero time is "".
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Truncate(time.Second).Format(TimeLayout)
}

// ParseTime parses a TimeLayout timestamp; it rejects every other spelling.
func ParseTime(s string) (time.Time, error) {
	if len(s) != len(TimeLayout) || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z' {
		return time.Time{}, fmt.Errorf("timestamp %q is not RFC 3339 UTC with whole seconds (%s)", truncate(s, 40), TimeLayout)
	}
	t, err := time.Parse(TimeLayout, s)
	if err != nil || t.Format(TimeLayout) != s {
		return time.Time{}, fmt.Errorf("timestamp %q is not RFC 3339 UTC with whole seconds (%s)", truncate(s, 40), TimeLayout)
	}
	return t, nil
}

func checkTime(field, s string) error {
	if s == "" {
		return nil
	}
	if _, err := ParseTime(s); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

func checkString(field, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8 (JSON cannot carry it byte for byte)", field)
	}
	return nil
}

// Validate checks the line against the manifest's rules; MarshalLine and ParseLine call it.
func (l *ManifestLine) Validate() error {
	if l.Key == "" {
		return errors.New("manifest line: empty key")
	}
	if !utf8.ValidString(l.User) || !utf8.ValidString(l.Target.URI) ||
		!utf8.ValidString(l.Target.Version) || !utf8.ValidString(l.Target.ETag) {
		for _, f := range []struct{ name, v string }{
			{"user", l.User}, {"target.uri", l.Target.URI},
			{"target.version", l.Target.Version}, {"target.etag", l.Target.ETag},
		} {
			if err := checkString(f.name, f.v); err != nil {
				return fmt.Errorf("manifest line %q: %w", truncate(EscapeKey(l.Key), 200), err)
			}
		}
	}
	errf := func(format string, args ...any) error {
		return fmt.Errorf("manifest line %q: %s", truncate(l.Key, 200), fmt.Sprintf(format, args...))
	}
	if l.Size < 0 || l.Size >= maxSafeInteger {
		return errf("size %d out of range [0, 2^53)", l.Size)
	}
	if !knownStates[l.Status] {
		return errf("unknown status %q", truncate(l.Status, 40))
	}
	switch l.Status {
	case StatusPlanned, StatusConflict, StatusFailed, StatusExcluded:
		if l.SHA256 != "" && !isLowerHex(l.SHA256, 64) {
			return errf("sha256 is not 64 lowercase hex digits")
		}
	default:
		if !isLowerHex(l.SHA256, 64) {
			return errf("sha256 is not 64 lowercase hex digits (required for status %s)", l.Status)
		}
	}
	if err := checkTime("target.verified_at", l.Target.VerifiedAt); err != nil {
		return errf("%v", err)
	}
	seen := make(map[string]bool, len(l.Replicas))
	for i, r := range l.Replicas {
		if !utf8.ValidString(r.Site) || !utf8.ValidString(r.URI) {
			return errf("replicas[%d]: site or uri is not valid UTF-8 (JSON cannot carry it byte for byte)", i)
		}
		if r.Site == "" {
			return errf("replicas[%d]: empty site", i)
		}
		if seen[r.Site] {
			return errf("two replicas at site %q", truncate(r.Site, 40))
		}
		seen[r.Site] = true
		if !replicaStates[r.State] {
			return errf("replica at site %q: unknown state %q", truncate(r.Site, 40), truncate(r.State, 40))
		}
		if r.Reason != "" && r.State != ReplicaUndeletable {
			return errf("replica at site %q: a reason is only for an undeletable replica (state %q)", truncate(r.Site, 40), truncate(r.State, 40))
		}
		if !utf8.ValidString(r.Reason) {
			return errf("replica at site %q: reason is not valid UTF-8", truncate(r.Site, 40))
		}
		if r.Size < 0 || r.Size >= maxSafeInteger {
			return errf("replica at site %q: size %d out of range [0, 2^53)", truncate(r.Site, 40), r.Size)
		}
		if r.SHA256 != "" && !isLowerHex(r.SHA256, 64) {
			return errf("replica at site %q: sha256 is not 64 lowercase hex digits", truncate(r.Site, 40))
		}
		if r.Mode != "" && r.Mode != ModeSoft && r.Mode != ModeHard {
			return errf("replica at site %q: mode %q is not soft or hard", truncate(r.Site, 40), truncate(r.Mode, 40))
		}
		if r.DeletedAt != "" {
			if _, err := ParseTime(r.DeletedAt); err != nil {
				return errf("replicas[%d].deleted_at: %v", i, err)
			}
		}
		if (r.DeletedAt == "") != (r.Mode == "") {
			return errf("replica at site %q: deleted_at and mode go together (both set or both empty)", truncate(r.Site, 40))
		}
		if r.ConfirmedAbsent && r.DeletedAt == "" {
			return errf("replica at site %q: confirmed_absent without deleted_at", truncate(r.Site, 40))
		}
	}
	return nil
}

// MarshalLine encodes l as one canonical JSON line (RFC 8785), without a newline.
// Replicas are written sorted by site; l is not modified. Fields are written in the
// fixed canonical order directly (a test checks this equals Canonicalize of the
// encoding/json form).
func MarshalLine(l ManifestLine) ([]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	reps := slices.Clone(l.Replicas)
	slices.SortFunc(reps, func(a, b ReplicaRef) int { return strings.Compare(a.Site, b.Site) })
	var b bytes.Buffer
	b.Grow(256 + len(l.Key) + 128*len(reps))
	// Member names below are ASCII, so byte order is UTF-16 order.
	b.WriteString(`{"key":`)
	if utf8.ValidString(l.Key) {
		writeJCSString(&b, l.Key)
	} else {
		writeJCSString(&b, EscapeKey(l.Key))
		b.WriteString(`,"key_hex":"`)
		b.WriteString(hex.EncodeToString([]byte(l.Key)))
		b.WriteByte('"')
	}
	b.WriteString(`,"replicas":[`)
	for i, r := range reps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"confirmed_absent":`)
		b.WriteString(strconv.FormatBool(r.ConfirmedAbsent))
		b.WriteString(`,"deleted_at":`)
		writeJCSString(&b, r.DeletedAt)
		b.WriteString(`,"mode":`)
		writeJCSString(&b, r.Mode)
		if r.Reason != "" { // only an undeletable replica has one (omitempty)
			b.WriteString(`,"reason":`)
			writeJCSString(&b, r.Reason)
		}
		b.WriteString(`,"sha256":`)
		writeJCSString(&b, r.SHA256)
		b.WriteString(`,"site":`)
		writeJCSString(&b, r.Site)
		b.WriteString(`,"size":`)
		b.WriteString(strconv.FormatInt(r.Size, 10))
		b.WriteString(`,"state":`)
		writeJCSString(&b, r.State)
		b.WriteString(`,"uri":`)
		writeJCSString(&b, r.URI)
		b.WriteByte('}')
	}
	b.WriteString(`],"sha256":`)
	writeJCSString(&b, l.SHA256)
	b.WriteString(`,"size":`)
	b.WriteString(strconv.FormatInt(l.Size, 10))
	b.WriteString(`,"status":`)
	writeJCSString(&b, l.Status)
	b.WriteString(`,"target":{"etag":`)
	writeJCSString(&b, l.Target.ETag)
	b.WriteString(`,"uri":`)
	writeJCSString(&b, l.Target.URI)
	b.WriteString(`,"verified_at":`)
	writeJCSString(&b, l.Target.VerifiedAt)
	b.WriteString(`,"version":`)
	writeJCSString(&b, l.Target.Version)
	b.WriteString(`},"user":`)
	writeJCSString(&b, l.User)
	b.WriteByte('}')
	return b.Bytes(), nil
}

// ParseLine decodes one manifest line (without its newline) strictly: unknown or missing
// fields, wrong types, invalid values, and any spelling other than the canonical one
// (re-encoding must give the same bytes) are errors.
func ParseLine(b []byte) (ManifestLine, error) {
	var w struct {
		ManifestLine
		KeyHex *string `json:"key_hex"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return ManifestLine{}, fmt.Errorf("manifest line: %w", err)
	}
	if dec.More() || dec.InputOffset() != int64(len(b)) {
		return ManifestLine{}, errors.New("manifest line: data after the JSON object")
	}
	l := w.ManifestLine
	if w.KeyHex != nil {
		raw, err := hex.DecodeString(*w.KeyHex)
		switch {
		case err != nil || !isLowerHex(*w.KeyHex, len(*w.KeyHex)):
			return ManifestLine{}, fmt.Errorf("manifest line %q: key_hex is not lowercase hex", truncate(l.Key, 200))
		case utf8.Valid(raw):
			return ManifestLine{}, fmt.Errorf("manifest line %q: key_hex is only for keys that are not valid UTF-8", truncate(l.Key, 200))
		case EscapeKey(string(raw)) != l.Key:
			return ManifestLine{}, fmt.Errorf("manifest line %q: key does not match key_hex (want %q)", truncate(l.Key, 200), truncate(EscapeKey(string(raw)), 200))
		}
		l.Key = string(raw)
	}
	if l.Replicas == nil {
		return ManifestLine{}, errors.New(`manifest line: "replicas" must be an array`)
	}
	out, err := MarshalLine(l)
	if err != nil {
		return ManifestLine{}, err
	}
	if !bytes.Equal(out, b) {
		return ManifestLine{}, fmt.Errorf("manifest line %q: %w: expected %s", truncate(EscapeKey(l.Key), 200), ErrNotCanonical, truncate(string(out), 300))
	}
	return l, nil
}

// Tally is a number of records (or replicas) and their bytes.
type Tally struct {
	Records int64 `json:"records"`
	Bytes   int64 `json:"bytes"`
}

// SiteTally summarises the replicas at one site. Bytes are the replicas' own sizes.
type SiteTally struct {
	Replicas        int64            `json:"replicas"`         // replicas of manifest records at this site
	Bytes           int64            `json:"bytes"`            // their bytes
	Erased          int64            `json:"erased"`           // deleted for good: hard-deleted, or soft-deleted and purged
	ErasedBytes     int64            `json:"erased_bytes"`     // bytes of those
	SoftDeleted     int64            `json:"soft_deleted"`     // soft-deleted, still recoverable until purged
	Remaining       int64            `json:"remaining"`        // still at the site: never deleted, or restored
	RemainingBytes  int64            `json:"remaining_bytes"`  // bytes of those
	Missing         int64            `json:"missing"`          // vanished from the site without ferry deleting them (anomaly)
	ConfirmedAbsent int64            `json:"confirmed_absent"` // replicas a read after the delete found gone
	Unconfirmed     int64            `json:"unconfirmed"`      // deleted (soft or hard) but not confirmed absent
	ByState         map[string]Tally `json:"by_state"`         // replicas by state
}

// Counts are computed from the manifest itself (never supplied by the caller), so a
// verifier with the manifest recomputes and compares them.
type Counts struct {
	Records  int64                `json:"records"`
	Bytes    int64                `json:"bytes"`
	ByStatus map[string]Tally     `json:"by_status"`
	BySite   map[string]SiteTally `json:"by_site"`
}

func newCounts() Counts {
	return Counts{ByStatus: map[string]Tally{}, BySite: map[string]SiteTally{}}
}

func (c *Counts) add(l *ManifestLine) {
	c.Records++
	c.Bytes += l.Size
	t := c.ByStatus[l.Status]
	t.Records++
	t.Bytes += l.Size
	c.ByStatus[l.Status] = t
	for _, r := range l.Replicas {
		s := c.BySite[r.Site]
		if s.ByState == nil {
			s.ByState = map[string]Tally{}
		}
		s.Replicas++
		s.Bytes += r.Size
		st := s.ByState[r.State]
		st.Records++
		st.Bytes += r.Size
		s.ByState[r.State] = st
		switch replicaDisposition(r) {
		case dispErased:
			s.Erased++
			s.ErasedBytes += r.Size
		case dispSoft:
			s.SoftDeleted++
		case dispMissing:
			s.Missing++
		default:
			s.Remaining++
			s.RemainingBytes += r.Size
		}
		if r.ConfirmedAbsent {
			s.ConfirmedAbsent++
		} else if r.DeletedAt != "" && r.State != StatusRestored {
			s.Unconfirmed++
		}
		c.BySite[r.Site] = s
	}
}

type disposition int

const (
	dispRemaining disposition = iota
	dispSoft
	dispErased
	dispMissing
)

// replicaDisposition classifies a replica: erased for good, soft-deleted (recoverable),
// missing (gone, but not by ferry), or remaining at its site.
func replicaDisposition(r ReplicaRef) disposition {
	switch {
	case r.State == ReplicaMissing:
		return dispMissing
	case r.State == StatusRestored || r.DeletedAt == "":
		return dispRemaining
	case r.State == StatusPurged || (r.State == StatusDeleted && r.Mode == ModeHard):
		return dispErased
	case r.State == StatusDeleted && r.Mode == ModeSoft:
		return dispSoft
	default:
		return dispRemaining
	}
}

// ManifestSummary is what a manifest commits to: its digest, its Merkle tree and the
// counts computed from its lines.
type ManifestSummary struct {
	SHA256   string `json:"sha256"`    // hex SHA-256 of the whole file
	TreeSize uint64 `json:"tree_size"` // number of lines
	Root     string `json:"root"`      // hex RFC 6962 root over the lines
	Counts   Counts `json:"counts"`
}

// ManifestWriter writes manifest.jsonl from records given in key order, computing the
// file digest, the Merkle root and the counts as it goes (constant memory).
type ManifestWriter struct {
	w       *bufio.Writer
	digest  hash.Hash
	tree    Builder
	counts  Counts
	lastKey string
	err     error
}

// NewManifestWriter returns a writer that writes lines to w.
func NewManifestWriter(w io.Writer) *ManifestWriter {
	d := sha256.New()
	return &ManifestWriter{w: bufio.NewWriterSize(io.MultiWriter(w, d), 1<<16), digest: d, counts: newCounts()}
}

// Add writes one record. Records must come in strictly increasing key order (byte order);
// a duplicate or out-of-order key is an error, and so is every Add after an error.
func (mw *ManifestWriter) Add(l ManifestLine) error {
	if mw.err != nil {
		return mw.err
	}
	if mw.tree.Size() > 0 && l.Key <= mw.lastKey {
		if l.Key == mw.lastKey {
			mw.err = fmt.Errorf("manifest: duplicate key %q", truncate(l.Key, 200))
		} else {
			mw.err = fmt.Errorf("manifest: key %q comes after %q: records must be sorted by key (byte order)", truncate(l.Key, 200), truncate(mw.lastKey, 200))
		}
		return mw.err
	}
	line, err := MarshalLine(l)
	if err != nil {
		mw.err = err
		return err
	}
	if _, err := mw.w.Write(line); err != nil {
		mw.err = err
		return err
	}
	if err := mw.w.WriteByte('\n'); err != nil {
		mw.err = err
		return err
	}
	mw.tree.Add(line)
	mw.counts.add(&l)
	mw.lastKey = l.Key
	return nil
}

// Close flushes and returns the summary. It does not close the underlying writer.
func (mw *ManifestWriter) Close() (ManifestSummary, error) {
	if mw.err != nil {
		return ManifestSummary{}, mw.err
	}
	if err := mw.w.Flush(); err != nil {
		return ManifestSummary{}, err
	}
	root := mw.tree.Root()
	return ManifestSummary{
		SHA256:   hex.EncodeToString(mw.digest.Sum(nil)),
		TreeSize: mw.tree.Size(),
		Root:     hex.EncodeToString(root[:]),
		Counts:   mw.counts,
	}, nil
}

// LineError is a problem with one manifest line found while reading.
type LineError struct {
	Line int64 // 1-based line number
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("manifest line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// ErrIO marks errors reading the manifest itself (as opposed to bad content).
var ErrIO = errors.New("reading the manifest")

// ReadManifest streams a manifest: it hashes every byte, builds the Merkle tree over the
// lines, checks each line (canonical, valid, strictly increasing keys, newline-terminated)
// and counts the records. fn, if not nil, is called for each line with its 0-based index,
// its raw bytes (valid only during the call) and, if it parsed, the decoded line (nil
// otherwise). Problems with lines are collected and returned (the first maxErrors of
// them, plus a count) without stopping the digest and root computation; an error from
// fn or from reading r stops the read and is returned as err (reading errors wrap ErrIO).
func ReadManifest(r io.Reader, maxErrors int, fn func(index uint64, raw []byte, line *ManifestLine) error) (sum ManifestSummary, problems []*LineError, nProblems int64, err error) {
	d := sha256.New()
	br := bufio.NewReaderSize(io.TeeReader(r, d), 1<<16)
	var tree Builder
	counts := newCounts()
	var lastKey string
	haveLast := false
	var lineNo int64
	var buf []byte
	report := func(e error) {
		nProblems++
		if len(problems) < maxErrors {
			problems = append(problems, &LineError{Line: lineNo, Err: e})
		}
	}
	for {
		buf = buf[:0]
		var rerr error
		for {
			chunk, e := br.ReadSlice('\n')
			buf = append(buf, chunk...)
			if len(buf) > maxLineBytes+1 {
				return ManifestSummary{}, problems, nProblems, fmt.Errorf("manifest line %d is longer than %d bytes", lineNo+1, maxLineBytes)
			}
			if e == bufio.ErrBufferFull {
				continue
			}
			rerr = e
			break
		}
		if rerr != nil && rerr != io.EOF {
			return ManifestSummary{}, problems, nProblems, fmt.Errorf("%w: %v", ErrIO, rerr)
		}
		if len(buf) == 0 {
			break
		}
		lineNo++
		line := buf
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		} else {
			report(errors.New("the last line does not end with a newline"))
		}
		tree.Add(line)
		l, perr := ParseLine(line)
		var lp *ManifestLine
		if perr != nil {
			report(perr)
		} else {
			lp = &l
			if haveLast && l.Key <= lastKey {
				if l.Key == lastKey {
					report(fmt.Errorf("duplicate key %q", truncate(l.Key, 200)))
				} else {
					report(fmt.Errorf("key %q comes after %q: lines are not sorted by key", truncate(l.Key, 200), truncate(lastKey, 200)))
				}
			}
			lastKey, haveLast = l.Key, true
			counts.add(&l)
		}
		if fn != nil {
			if err := fn(tree.Size()-1, line, lp); err != nil {
				return ManifestSummary{}, problems, nProblems, err
			}
		}
		if rerr == io.EOF {
			break
		}
	}
	root := tree.Root()
	return ManifestSummary{
		SHA256:   hex.EncodeToString(d.Sum(nil)),
		TreeSize: tree.Size(),
		Root:     hex.EncodeToString(root[:]),
		Counts:   counts,
	}, problems, nProblems, nil
}

// EscapeKey renders a key that is not valid UTF-8 as valid UTF-8 text: every byte that
// is not part of a valid UTF-8 sequence becomes %HH (uppercase hex) and every '%' becomes
// %25, so UnescapeKey gives back the exact bytes. A valid UTF-8 key is returned as it
// is: the escaping applies only where the manifest says so (key_hex present), so a UTF-8
// key that happens to contain "%FF" keeps its meaning.
func EscapeKey(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return EscapeKeyBytes(s)
}

// EscapeKeyBytes is EscapeKey without the exception for valid UTF-8: '%' and invalid
// bytes are always escaped. The key part of the URIs of a line with key_hex is written
// this way, so UnescapeKey recovers the store's key from any of them.
func EscapeKeyBytes(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, "%%%02X", s[i])
		case r == '%':
			b.WriteString("%25")
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// UnescapeKey reverses EscapeKey for a rendering of a key that was not valid UTF-8.
func UnescapeKey(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("escaped key %q: %% at offset %d is not followed by two hex digits", truncate(s, 200), i)
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("escaped key %q: %% at offset %d is not followed by two hex digits", truncate(s, 200), i)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}
