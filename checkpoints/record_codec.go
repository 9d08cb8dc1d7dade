package checkpoints

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
)

// The record codec: how layout version 3 of the SQLite state stores a record's
// fields that are not columns of its row, and its replicas, in the row's data BLOB.
//
// A format byte (recordFormat), then the record's fields and each replica's in a
// fixed order: strings as a uvarint length and the bytes, integers and times
// (nanoseconds, 0 for unset) as zig-zag varints, a replica's two booleans as one
// flag byte. A replica's site key is written only when it differs from the record
// key (the usual case costs one byte). SHA-256s (appendHash) are 32 raw bytes when
// they are lowercase hex, and a replica's that equals its record's (a replica
// proven identical) is one byte. Replicas are stored sorted by site, one per
// site (the last given wins), as the two-table layout's primary key (key, site)
// kept them.
//
// Written by hand, not with encoding/json, gob or a protobuf/CBOR library: it is the
// hot path's one encoding (every Save writes it, every read decodes it), 25 lines
// each way, allocation-free on encode, and checkpoints/driverbench measured it
// (its first form, with hashes as text: 157 bytes as planned, 468 verified and
// deleted; JSON of the same is about three times that). FuzzRecordCodec checks that any input decodes or fails cleanly and that
// every record round-trips.
const recordFormat = 1

var errCorruptRecord = errors.New("corrupt record data")

// canonicalReplicas returns r's replicas sorted by site, one per site (the last
// given wins): what a Save stores and a read returns. It returns r.Replicas itself
// when it is already so.
func canonicalReplicas(ps []Replica) []Replica {
	if slices.IsSortedFunc(ps, func(a, b Replica) int {
		if a.Site == b.Site {
			return -1 // a repeated site is not canonical
		}
		return strings.Compare(a.Site, b.Site)
	}) {
		return ps
	}
	out := slices.Clone(ps)
	slices.SortStableFunc(out, func(a, b Replica) int { return cmp.Compare(a.Site, b.Site) })
	// Keep the last of each site (a stable sort kept the given order within one).
	w := 0
	for i := range out {
		if i+1 < len(out) && out[i+1].Site == out[i].Site {
			continue
		}
		out[w] = out[i]
		w++
	}
	return out[:w]
}

// encodeRecord appends to b the data BLOB of r: every field but Key, User, State
// and UpdatedAt (columns of the row), and r's replicas, which must be canonical
// (canonicalReplicas).
func encodeRecord(b []byte, r *Record, reps []Replica) []byte {
	b = append(b, recordFormat)
	b = binary.AppendVarint(b, r.Size)
	b = appendHash(b, r.SHA256, "")
	b = appendStr(b, r.CRC32C)
	b = appendStr(b, r.Source)
	b = appendStr(b, r.TargetKey)
	b = appendStr(b, r.TargetETag)
	b = appendStr(b, r.TargetVersion)
	b = binary.AppendVarint(b, nanos(r.CopiedAt))
	b = binary.AppendVarint(b, nanos(r.VerifiedAt))
	b = binary.AppendVarint(b, int64(r.Attempts))
	b = appendStr(b, r.LastError)
	b = appendStr(b, r.Conflict)
	b = binary.AppendUvarint(b, uint64(len(reps)))
	for i := range reps {
		p := &reps[i]
		b = appendStr(b, p.Site)
		if p.SiteKey == r.Key {
			b = binary.AppendUvarint(b, 0)
		} else {
			b = binary.AppendUvarint(b, uint64(len(p.SiteKey))+1)
			b = append(b, p.SiteKey...)
		}
		b = append(b, byte(b2i(p.Primary)|b2i(p.ConfirmedAbsent)<<1))
		b = binary.AppendVarint(b, p.Size)
		b = appendStr(b, p.ETag)
		b = appendStr(b, p.Version)
		b = binary.AppendVarint(b, nanos(p.ModTime))
		b = appendHash(b, p.SHA256, r.SHA256)
		b = appendStr(b, string(p.State))
		b = appendStr(b, p.Stage)
		b = appendStr(b, p.Mode)
		b = appendStr(b, p.Handle)
		b = binary.AppendVarint(b, nanos(p.IntentAt))
		b = binary.AppendVarint(b, nanos(p.DeletedAt))
		b = binary.AppendVarint(b, nanos(p.PurgedAt))
		b = appendStr(b, p.LastError)
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// The tags of a hash: hashEmpty, hashSame (as the record's), hashRaw (32 bytes,
// lowercase hex), or hashText plus the length, then the text as it is.
const (
	hashEmpty = iota
	hashSame
	hashRaw
	hashText
)

// appendHash appends a SHA-256 given as text (s), or its tag alone when it is empty
// or equals same.
func appendHash(b []byte, s, same string) []byte {
	switch {
	case s == "":
		return binary.AppendUvarint(b, hashEmpty)
	case s == same:
		return binary.AppendUvarint(b, hashSame)
	case isLowerHex(s) && len(s) == 64:
		b = binary.AppendUvarint(b, hashRaw)
		b, _ = hex.AppendDecode(b, []byte(s)) // lowercase hex: no error
		return b
	}
	b = binary.AppendUvarint(b, hashText+uint64(len(s)))
	return append(b, s...)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// decoder reads what encodeRecord wrote; its first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() { d.err, d.b = errCorruptRecord, nil }

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if uint64(len(d.b)) < n {
		d.fail()
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) str() string { return string(d.bytes(d.uvarint())) }

// hash reads what appendHash wrote with same.
func (d *decoder) hash(same string) string {
	switch t := d.uvarint(); t {
	case hashEmpty:
		return ""
	case hashSame:
		return same
	case hashRaw:
		return hex.EncodeToString(d.bytes(32))
	default:
		return string(d.bytes(t - hashText))
	}
}

func (d *decoder) byte1() byte {
	if s := d.bytes(1); len(s) == 1 {
		return s[0]
	}
	return 0
}

// replicaArena hands out replica slices cut from shared backing arrays: one
// allocation for the replicas of many records instead of one per record. Each slice's
// capacity ends where it does, so an append to one record's replicas copies them out
// rather than overwrite the next record's.
type replicaArena []Replica

// arenaChunk is how many replicas one backing array holds at most; they start
// small and double, so that reading one record does not allocate a page's worth.
const arenaChunk = 512

func (a *replicaArena) take(n int) []Replica {
	if n > cap(*a)-len(*a) {
		*a = make([]Replica, 0, max(n, min(arenaChunk, 2*cap(*a)+4)))
	}
	i := len(*a)
	*a = (*a)[:i+n]
	return (*a)[i : i+n : i+n]
}

// decodeRecord fills r (its Key already set) from data written by encodeRecord.
// data may be the driver's buffer: every string is copied out of it.
func decodeRecord(r *Record, data []byte) error { return decodeRecordIn(r, data, nil) }

// decodeRecordIn is decodeRecord with r's replicas taken from arena (nil: their own
// array).
func decodeRecordIn(r *Record, data []byte, arena *replicaArena) error {
	d := decoder{b: data}
	if f := d.byte1(); f != recordFormat {
		if d.err == nil {
			d.err = errCorruptRecord
		}
		return d.err
	}
	r.Size = d.varint()
	r.SHA256 = d.hash("")
	r.CRC32C = d.str()
	r.Source = d.str()
	r.TargetKey = d.str()
	r.TargetETag = d.str()
	r.TargetVersion = d.str()
	r.CopiedAt = fromNanos(d.varint())
	r.VerifiedAt = fromNanos(d.varint())
	r.Attempts = int(d.varint())
	r.LastError = d.str()
	r.Conflict = d.str()
	n := d.uvarint()
	if n > uint64(len(d.b)) { // each replica takes more than a byte
		return errCorruptRecord
	}
	r.Replicas = nil
	switch {
	case n > 0 && arena != nil:
		r.Replicas = arena.take(int(n))
	case n > 0:
		r.Replicas = make([]Replica, n)
	}
	for i := range r.Replicas {
		p := &r.Replicas[i]
		p.Site = d.str()
		if l := d.uvarint(); l == 0 {
			p.SiteKey = r.Key
		} else {
			p.SiteKey = string(d.bytes(l - 1))
		}
		f := d.byte1()
		p.Primary, p.ConfirmedAbsent = f&1 != 0, f&2 != 0
		p.Size = d.varint()
		p.ETag = d.str()
		p.Version = d.str()
		p.ModTime = fromNanos(d.varint())
		p.SHA256 = d.hash(r.SHA256)
		p.State = ReplicaState(d.str())
		p.Stage = d.str()
		p.Mode = d.str()
		p.Handle = d.str()
		p.IntentAt = fromNanos(d.varint())
		p.DeletedAt = fromNanos(d.varint())
		p.PurgedAt = fromNanos(d.varint())
		p.LastError = d.str()
	}
	if d.err == nil && len(d.b) != 0 {
		return errCorruptRecord
	}
	return d.err
}

// stagesOf is the stages column of a record with replicas reps: each deletion stage
// its replicas are assigned to, between '|'s ("|s1|s2|"; "" for none). A query
// for stage s keeps the rows whose column holds "|s|" (stageNeedle) and then checks
// the decoded replicas exactly, so a stage name holding '|' costs a decode, never a
// missed record.
func stagesOf(reps []Replica) string {
	var b strings.Builder
	for _, p := range reps {
		if p.Stage == "" || strings.Contains(b.String(), stageNeedle(p.Stage)) {
			continue
		}
		if b.Len() == 0 {
			b.WriteByte('|')
		}
		b.WriteString(p.Stage)
		b.WriteByte('|')
	}
	return b.String()
}

func stageNeedle(stage string) string { return "|" + stage + "|" }
