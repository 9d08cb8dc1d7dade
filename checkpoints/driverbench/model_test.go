package driverbench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Record and Replica mirror checkpoints.Record and checkpoints.Replica field for
// field (this module does not import ferry, so that ferry never depends on it).
type Replica struct {
	Site            string
	SiteKey         string
	Primary         bool
	Size            int64
	ETag            string
	Version         string
	ModTime         time.Time
	SHA256          string
	State           string
	Stage           string
	Mode            string
	Handle          string
	IntentAt        time.Time
	DeletedAt       time.Time
	PurgedAt        time.Time
	ConfirmedAbsent bool
	LastError       string
}

type Record struct {
	Key           string
	User          string
	Size          int64
	State         string
	SHA256        string
	CRC32C        string
	Source        string
	TargetKey     string
	TargetETag    string
	TargetVersion string
	CopiedAt      time.Time
	VerifiedAt    time.Time
	Attempts      int
	LastError     string
	Conflict      string
	UpdatedAt     time.Time
	Replicas      []Replica
}

const (
	roundN = 1024 // records per round (one op of the benchmark)
	batchN = 256  // records per Save transaction: the Batcher's unit
	pageN  = 1024 // keyset page, checkpoints.recPage
)

func keyOf(round, i int) string {
	return fmt.Sprintf("user%04d/photos/2024/IMG_%07d.jpg", round, i)
}

func at(round, i, step int) time.Time {
	return time.Unix(0, 1_780_000_000_000_000_000+int64(round)*1e10+int64(i)*1e4+int64(step)).UTC()
}

// phases returns the records of one round as the pipeline saves them, one slice per
// state change: planned (listed at two sites, the second assigned to deletion stage
// s1), copied (the record's copy fields), verified (the record and both replicas
// proven identical) and deleted (the staged replica deleted, hard). Each slice is a
// deep copy, so a store may keep nothing of what it was given.
func phases(round int) [4][]Record {
	var out [4][]Record
	recs := make([]Record, roundN)
	for i := range recs {
		k := keyOf(round, i)
		size := int64(1000 + 37*i)
		etag := fmt.Sprintf("%032x", uint64(round)<<32|uint64(i))
		recs[i] = Record{Key: k, User: fmt.Sprintf("user%04d", round), Size: size, State: "planned",
			Replicas: []Replica{
				{Site: "dc1", SiteKey: k, Primary: true, Size: size, ETag: `"` + etag + `"`, ModTime: at(round, i, 0), State: "present"},
				{Site: "dc2", SiteKey: k, Size: size, ETag: `"` + etag + `"`, Version: "v1", ModTime: at(round, i, 1), State: "present", Stage: "s1"},
			}}
	}
	out[0] = clone(recs)
	for i := range recs {
		r := &recs[i]
		r.State = "copied"
		r.SHA256 = fmt.Sprintf("%064x", uint64(round)<<32|uint64(i)|1<<63)
		r.CRC32C = fmt.Sprintf("%08x", uint32(i*2654435761))
		r.Source = "dc1"
		r.TargetKey = r.Key
		r.TargetETag = fmt.Sprintf(`"%032x"`, uint64(i)<<8|7)
		r.CopiedAt = at(round, i, 2)
		r.Attempts = 1
	}
	out[1] = clone(recs)
	for i := range recs {
		r := &recs[i]
		r.State = "verified"
		r.VerifiedAt = at(round, i, 3)
		for j := range r.Replicas {
			r.Replicas[j].State = "identical"
			r.Replicas[j].SHA256 = r.SHA256
		}
	}
	out[2] = clone(recs)
	for i := range recs {
		p := &recs[i].Replicas[1]
		p.State = "deleted"
		p.Mode = "hard"
		p.IntentAt = at(round, i, 4)
		p.DeletedAt = at(round, i, 5)
	}
	out[3] = clone(recs)
	return out
}

func clone(recs []Record) []Record {
	out := make([]Record, len(recs))
	for i, r := range recs {
		r.Replicas = append([]Replica(nil), r.Replicas...)
		out[i] = r
	}
	return out
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// ---- the two-table layout (layout version 1, checkpoints/sqlite.go) ----

const twoTableSchema = `
CREATE TABLE IF NOT EXISTS records(
	key TEXT PRIMARY KEY,
	user TEXT NOT NULL,
	size INTEGER NOT NULL,
	state TEXT NOT NULL,
	sha256 TEXT NOT NULL DEFAULT '',
	crc32c TEXT NOT NULL DEFAULT '',
	source TEXT NOT NULL DEFAULT '',
	target_key TEXT NOT NULL DEFAULT '',
	target_etag TEXT NOT NULL DEFAULT '',
	target_version TEXT NOT NULL DEFAULT '',
	copied_at INTEGER NOT NULL DEFAULT 0,
	verified_at INTEGER NOT NULL DEFAULT 0,
	attempts INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	conflict TEXT NOT NULL DEFAULT '',
	updated_at INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_state ON records(state, key);
CREATE INDEX IF NOT EXISTS records_user ON records(user, key);
CREATE TABLE IF NOT EXISTS replicas(
	key TEXT NOT NULL,
	site TEXT NOT NULL,
	site_key TEXT NOT NULL,
	primary_site INTEGER NOT NULL DEFAULT 0,
	size INTEGER NOT NULL,
	etag TEXT NOT NULL DEFAULT '',
	version TEXT NOT NULL DEFAULT '',
	mtime INTEGER NOT NULL DEFAULT 0,
	sha256 TEXT NOT NULL DEFAULT '',
	state TEXT NOT NULL,
	stage TEXT NOT NULL DEFAULT '',
	mode TEXT NOT NULL DEFAULT '',
	handle TEXT NOT NULL DEFAULT '',
	intent_at INTEGER NOT NULL DEFAULT 0,
	deleted_at INTEGER NOT NULL DEFAULT 0,
	purged_at INTEGER NOT NULL DEFAULT 0,
	confirmed_absent INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	PRIMARY KEY(key, site)
) WITHOUT ROWID;
`

const recCols = "key, user, size, state, sha256, crc32c, source, target_key, target_etag, target_version, copied_at, verified_at, attempts, last_error, conflict, updated_at"
const repCols = "key, site, site_key, primary_site, size, etag, version, mtime, sha256, state, stage, mode, handle, intent_at, deleted_at, purged_at, confirmed_absent, last_error"

var (
	recUpsert = upsert("records", recCols, "key", "updated_at")
	repUpsert = upsert("replicas", repCols, "key, site", "")
	// recPageQ is recordsQuery's page for a Query with After and Through: the first
	// page is key >= after, the next ones key > after.
	recFirstQ = "SELECT " + prefixed("r.", recCols) + " FROM records r WHERE r.key >= ? AND r.key <= ? ORDER BY r.key LIMIT ?"
	recNextQ  = "SELECT " + prefixed("r.", recCols) + " FROM records r WHERE r.key > ? AND r.key <= ? ORDER BY r.key LIMIT ?"
	repRangeQ = "SELECT " + repCols + " FROM replicas WHERE key >= ? AND key <= ? ORDER BY key, site"
)

// dropQ is saveTx's DELETE of a record's replicas at sites other than its n
// (built once for small n, as saveTx prepares it once per n and transaction).
func dropQ(n int) string {
	if n < len(dropQs) {
		return dropQs[n]
	}
	return buildDropQ(n)
}

var dropQs = func() (qs [8]string) {
	for i := range qs {
		qs[i] = buildDropQ(i)
	}
	return qs
}()

func buildDropQ(n int) string {
	q := "DELETE FROM replicas WHERE key = ?"
	if n > 0 {
		q += " AND site NOT IN (" + placeholders(n) + ")"
	}
	return q
}

// upsert is checkpoints.upsert: an INSERT that, on a conflict on the key columns,
// updates the other columns only where one of them differs (ignoring ignore).
func upsert(table, cols, key, ignore string) string {
	var set, differ []string
	keys := map[string]bool{}
	for _, k := range strings.Split(key, ",") {
		keys[strings.TrimSpace(k)] = true
	}
	list := strings.Split(cols, ",")
	for _, c := range list {
		c = strings.TrimSpace(c)
		if keys[c] {
			continue
		}
		set = append(set, c+" = excluded."+c)
		if c != ignore {
			differ = append(differ, table+"."+c+" IS NOT excluded."+c)
		}
	}
	return "INSERT INTO " + table + "(" + cols + ") VALUES(" + placeholders(len(list)) + ") ON CONFLICT(" + key + ") DO UPDATE SET " +
		strings.Join(set, ", ") + " WHERE " + strings.Join(differ, " OR ")
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

func prefixed(p, cols string) string {
	list := strings.Split(cols, ",")
	for i, c := range list {
		list[i] = p + strings.TrimSpace(c)
	}
	return strings.Join(list, ", ")
}

// ---- the one-row layout: a record and its replicas in one row ----

// The narrow columns are what the pipeline's filters need: state and user (indexed,
// as today), and stages, the distinct deletion stages of the record's replicas
// (comma-separated, usually one or none). Today's stage filter is deliberately not
// index-driven (keyset.go pins p.stage with "+": an index there makes the scan
// quadratic); it scans records in key order and tests each, which a LIKE or instr()
// on stages does here without reading a second table. The rest of the record and its
// replicas are data, a small binary encoding (encodeRecord).
const oneRowSchema = `
CREATE TABLE IF NOT EXISTS recs(
	key TEXT PRIMARY KEY,
	user TEXT NOT NULL,
	state TEXT NOT NULL,
	stages TEXT NOT NULL DEFAULT '',
	data BLOB NOT NULL,
	updated_at INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS recs_state ON recs(state, key);
CREATE INDEX IF NOT EXISTS recs_user ON recs(user, key);
`

const (
	oneUpsert = `INSERT INTO recs(key, user, state, stages, data, updated_at) VALUES(?,?,?,?,?,?)
		ON CONFLICT(key) DO UPDATE SET user = excluded.user, state = excluded.state, stages = excluded.stages,
		data = excluded.data, updated_at = excluded.updated_at
		WHERE recs.user IS NOT excluded.user OR recs.state IS NOT excluded.state OR recs.stages IS NOT excluded.stages
		OR recs.data IS NOT excluded.data`
	oneFirstQ = "SELECT key, user, state, data, updated_at FROM recs WHERE key >= ? AND key <= ? ORDER BY key LIMIT ?"
	oneNextQ  = "SELECT key, user, state, data, updated_at FROM recs WHERE key > ? AND key <= ? ORDER BY key LIMIT ?"
)

func stagesOf(r *Record) string {
	var s string
	for _, p := range r.Replicas {
		if p.Stage != "" && !strings.Contains(","+s+",", ","+p.Stage+",") {
			if s != "" {
				s += ","
			}
			s += p.Stage
		}
	}
	return s
}

// encodeRecord appends the record's fields that are not columns, and its replicas,
// to b: a format byte, then varint-prefixed strings and zig-zag varints.
func encodeRecord(b []byte, r *Record) []byte {
	b = append(b, 1)
	b = binary.AppendVarint(b, r.Size)
	b = appendStr(b, r.SHA256)
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
	b = binary.AppendUvarint(b, uint64(len(r.Replicas)))
	for i := range r.Replicas {
		p := &r.Replicas[i]
		b = appendStr(b, p.Site)
		if p.SiteKey == r.Key { // the usual case: not repeated
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
		b = appendStr(b, p.SHA256)
		b = appendStr(b, p.State)
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

var errCorrupt = errors.New("corrupt record data")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err, d.b = errCorrupt, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err, d.b = errCorrupt, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if uint64(len(d.b)) < n {
		d.err, d.b = errCorrupt, nil
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) str() string { return string(d.bytes(d.uvarint())) }

func (d *decoder) byte1() byte {
	s := d.bytes(1)
	if len(s) == 0 {
		return 0
	}
	return s[0]
}

// decodeRecord fills r (whose Key is set) from data written by encodeRecord. data
// may be the driver's buffer: every string is copied out of it.
func decodeRecord(r *Record, data []byte) error {
	d := decoder{b: data}
	if d.byte1() != 1 {
		return errCorrupt
	}
	r.Size = d.varint()
	r.SHA256 = d.str()
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
	if n > uint64(len(d.b)) {
		return errCorrupt
	}
	r.Replicas = make([]Replica, n)
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
		p.SHA256 = d.str()
		p.State = d.str()
		p.Stage = d.str()
		p.Mode = d.str()
		p.Handle = d.str()
		p.IntentAt = fromNanos(d.varint())
		p.DeletedAt = fromNanos(d.varint())
		p.PurgedAt = fromNanos(d.varint())
		p.LastError = d.str()
	}
	if d.err == nil && len(d.b) != 0 {
		return errCorrupt
	}
	return d.err
}
