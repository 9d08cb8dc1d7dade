// Package checkpoints is ferry's resumable state: the inventory a plan produced, the
// state of every record and replica, the deletion stages and the migration lock.
//
// One interface, Store, with an embedded SQLite implementation (the default) and room
// for a shared PostgreSQL one. The pipeline (package migrate) is the only writer; it
// groups progress writes into batches (Batcher) and asks for durability explicitly
// before any delete (DESIGN.md I4). Every write is a full-row upsert of a record and its
// replicas, so replaying a write after a crash is harmless.
package checkpoints

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints/clock"
)

// RecordState is where one record stands.
type RecordState string

// Record states (DESIGN.md "Phases and per-record states").
const (
	Planned  RecordState = "planned"
	Copied   RecordState = "copied"
	Verified RecordState = "verified"
	Conflict RecordState = "conflict" // replicas differ; never copied over one another, never deleted
	Failed   RecordState = "failed"   // attempts exhausted; LastError says why
	Excluded RecordState = "excluded" // outside records.include/exclude
	// Rejected: the plan refused the record (its key does not match records.user, no
	// replica is left to read); LastError says why. Never copied, never deleted.
	Rejected RecordState = "rejected"
)

// RecordStates lists every record state in pipeline order.
var RecordStates = []RecordState{Planned, Copied, Verified, Conflict, Failed, Excluded, Rejected}

// ReplicaState is where one replica (a record's copy at one site) stands.
type ReplicaState string

// Replica states.
const (
	Present   ReplicaState = "present"       // listed at its site, not yet proven identical
	Identical ReplicaState = "identical"     // proven byte-identical to the record
	Divergent ReplicaState = "divergent"     // differs from the record: never deleted
	Intent    ReplicaState = "delete-intent" // durable intent; the delete call may or may not have happened
	Deleted   ReplicaState = "deleted"       // gone from its site (soft: recoverable until purge)
	Purged    ReplicaState = "purged"        // soft-deleted bytes removed for good
	Restored  ReplicaState = "restored"      // a soft delete undone; must be proven again before deletion
	Missing   ReplicaState = "missing"       // vanished from its site without ferry deleting it (anomaly)
	// Retained: on a versioned site, the verified version was deleted but other
	// versions of the key remain there (user data): not deleted (DESIGN.md I10).
	Retained ReplicaState = "retained"
	// Undeletable: the site refused the delete because the object is under a
	// retention policy, an object hold, a legal hold or an immutability policy
	// (LastError holds the store's reason). Nothing was deleted: the replica is still
	// there and proven identical; the next run of its stage tries it once more.
	Undeletable ReplicaState = "undeletable"
)

// ReplicaStates lists every replica state.
var ReplicaStates = []ReplicaState{Present, Identical, Divergent, Intent, Deleted, Purged, Restored, Missing, Retained, Undeletable}

// Replica is one record's copy at one site.
type Replica struct {
	Site    string
	SiteKey string // the key at the site, relative to the site's root (usually the record key)
	Primary bool   // the site's role is primary
	Size    int64
	ETag    string
	Version string
	ModTime time.Time
	SHA256  string // proven content hash (set when proven), or the site's trusted checksum
	State   ReplicaState
	Stage   string // the deletion stage this replica is assigned to ("" = retained)
	Mode    string // soft | hard, once deleted
	Handle  string // soft delete: where the bytes are kept
	// Times are zero when unset.
	IntentAt        time.Time
	DeletedAt       time.Time
	PurgedAt        time.Time
	ConfirmedAbsent bool
	LastError       string
}

// Record is one relative key and its replicas.
type Record struct {
	Key    string
	User   string
	Size   int64
	State  RecordState
	SHA256 string // of the bytes read from the source at copy
	CRC32C string
	Source string // site the copy was read from
	// TargetKey is the key at the target (the record key, or a conflict variant's key).
	TargetKey     string
	TargetETag    string
	TargetVersion string
	CopiedAt      time.Time
	VerifiedAt    time.Time
	Attempts      int
	LastError     string
	Conflict      string // why the record is in conflict
	UpdatedAt     time.Time
	Replicas      []Replica
}

// Replica returns a pointer to the replica at site, or nil.
func (r *Record) Replica(site string) *Replica {
	for i := range r.Replicas {
		if r.Replicas[i].Site == site {
			return &r.Replicas[i]
		}
	}
	return nil
}

// Listed is one object seen at one site during a plan's listing.
type Listed struct {
	Site    string
	Key     string // relative record key
	SiteKey string
	Size    int64
	ETag    string
	Version string
	ModTime time.Time
	SHA256  string // trusted checksum reported by the store, if any
}

// Query selects records. Zero fields do not filter. Results are ordered by key (bytes).
type Query struct {
	States []RecordState
	User   string
	After  string // keyset pagination: keys strictly greater than After
	// Through bounds the keys from above (keys <= Through) when set: with After, one
	// claimed Range.
	Through string
	// Stage and ReplicaStates select records having a replica assigned to Stage
	// (and, if given, in one of ReplicaStates).
	Stage         string
	ReplicaStates []ReplicaState
	Limit         int // 0: no limit
}

// StageState is the durable record of one deletion stage.
type StageState struct {
	Name       string
	Ord        int
	Mode       string
	Digest     string // scope digest confirmed for the run
	State      string // pending | running | finished | restored | purged
	StartedAt  time.Time
	FinishedAt time.Time
	PurgedAt   time.Time
	RestoredAt time.Time
	Deleted    int64
	Retained   int64
}

// Count is a number of items and their bytes.
type Count struct {
	N     int64 `json:"count"`
	Bytes int64 `json:"bytes"`
}

// Stats are the aggregate counts status and report show.
type Stats struct {
	Records      map[RecordState]Count             `json:"records"`
	ReplicasSite map[string]map[ReplicaState]Count `json:"replicas_by_site"`
	StageCounts  map[string]map[ReplicaState]Count `json:"replicas_by_stage"`
	Recent       map[string]int64                  `json:"recent"` // events in the last RecentWindow: copied, verified, deleted
	RecentWindow time.Duration                     `json:"-"`
}

// newStats is Stats with nothing counted yet (every kind of Recent is reported, zero
// or not).
func newStats() Stats {
	return Stats{
		Records:      map[RecordState]Count{},
		ReplicasSite: map[string]map[ReplicaState]Count{},
		StageCounts:  map[string]map[ReplicaState]Count{},
		Recent:       map[string]int64{"copied": 0, "verified": 0, "deleted": 0},
		RecentWindow: RecentWindow,
	}
}

// addReplicas adds c to the replicas in state at k (a site of ReplicasSite or a
// stage of StageCounts).
func addReplicas(m map[string]map[ReplicaState]Count, k string, state ReplicaState, c Count) {
	if m[k] == nil {
		m[k] = map[ReplicaState]Count{}
	}
	n := m[k][state]
	m[k][state] = Count{N: n.N + c.N, Bytes: n.Bytes + c.Bytes}
}

// LockInfo names a lock holder (restic's stale-lock rule: host, pid, process start).
type LockInfo struct {
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Start     int64     `json:"start"` // process start time in clock ticks since boot (linux), 0 if unknown
	Phase     string    `json:"phase"`
	Acquired  time.Time `json:"acquired"`
	LeaseTill time.Time `json:"lease_until"`
	Token     string    `json:"token"`
}

func (l LockInfo) String() string {
	return fmt.Sprintf("%s pid %d (%s since %s, lease until %s)", l.Host, l.PID, l.Phase,
		l.Acquired.UTC().Format(time.RFC3339), l.LeaseTill.UTC().Format(time.RFC3339))
}

// ErrLocked is returned when another live process holds the migration lock.
var ErrLocked = errors.New("migration is locked by another ferry process")

// LockedError carries the holder.
type LockedError struct{ Holder LockInfo }

func (e *LockedError) Error() string { return ErrLocked.Error() + ": " + e.Holder.String() }
func (e *LockedError) Unwrap() error { return ErrLocked }

// Lock is a held migration lock.
type Lock interface {
	// Refresh extends the lease; it fails if the lock was taken over.
	Refresh(ctx context.Context) error
	Release(ctx context.Context) error
}

// Store is the checkpoint store.
type Store interface {
	// Meta reads a metadata value ("" and false when unset).
	Meta(ctx context.Context, key string) (string, bool, error)
	SetMeta(ctx context.Context, key, value string) error

	// Lock takes the migration lock for phase, or returns a *LockedError.
	Lock(ctx context.Context, holder LockInfo, lease time.Duration) (Lock, error)
	// LockHolder reports the current holder, if any.
	LockHolder(ctx context.Context) (LockInfo, bool, error)

	// ResetListing forgets the staged listing of every site before a new plan.
	ResetListing(ctx context.Context) error
	// AddListed stages objects seen by a listing.
	AddListed(ctx context.Context, objs []Listed) error
	// ListedCount reports how many objects are staged for site.
	ListedCount(ctx context.Context, site string) (int64, error)
	// Listed calls fn for each staged relative key, in key byte order, with every
	// site's object for it (ordered by site).
	Listed(ctx context.Context, fn func(key string, objs []Listed) error) error
	// Unlisted calls fn for each record that has a live replica (present, identical,
	// divergent, restored) at one of sites whose site key the staged listing of that
	// site no longer shows. Staged listings are keyed by site key.
	Unlisted(ctx context.Context, sites []string, fn func(rec Record, unlistedSites []string) error) error

	// Get returns one record with its replicas.
	Get(ctx context.Context, key string) (Record, bool, error)
	// Records calls fn for each record matching q, in key order, with its replicas.
	// fn may write to the store.
	Records(ctx context.Context, q Query, fn func(Record) error) error
	// Save upserts records with their full replica sets in one transaction. When it
	// returns nil the write is durable (synchronous commit).
	Save(ctx context.Context, recs []Record) error

	Stages(ctx context.Context) ([]StageState, error)
	SaveStage(ctx context.Context, s StageState) error

	Stats(ctx context.Context, now time.Time) (Stats, error)

	WorkStore
	JournalStore

	Close() error
}

// IsPostgres reports whether dsn names a PostgreSQL store.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Options for Open.
type Options struct {
	// ReadOnly opens for status and reports; writes fail.
	ReadOnly bool
	// Scratch opens a throwaway copy of the state (dry run): the real state is only
	// read, never written, and the copy is removed by Close.
	Scratch bool
	// Clock sets and judges leases: the migration lock's, workers' and their
	// claims'. Nil: the local clock on SQLite (one machine), and the database's clock
	// on PostgreSQL, so that machines whose clocks disagree still agree on when a
	// lease ends. Tests set a fake clock (clock.NewFake) to move time instead of
	// sleeping; on PostgreSQL it then stands in for the database's clock.
	Clock clock.Clock
}

// Open opens the store named by dsn: a SQLite file path, or postgres://.
func Open(ctx context.Context, dsn string, opts Options) (Store, error) {
	if IsPostgres(dsn) {
		s, err := OpenPostgres(ctx, dsn, opts)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return OpenSQLite(ctx, dsn, opts)
}

// redactDSN removes a password from a DSN for messages (I8).
func redactDSN(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	userinfo := dsn[scheme+3 : at]
	if i := strings.Index(userinfo, ":"); i >= 0 {
		return dsn[:scheme+3] + userinfo[:i] + ":xxxxx" + dsn[at:]
	}
	return dsn
}

// groupListed calls fn for each key's group of one page of a listing ordered by key
// (and site). A full page's last group may continue on the next page, so it is held
// back: more reports whether to read on, after the returned key.
func groupListed(page []Listed, limit int, fn func(key string, objs []Listed) error) (after string, more bool, err error) {
	full := len(page) == limit
	if full {
		last := page[len(page)-1].Key
		cut := len(page)
		for cut > 0 && page[cut-1].Key == last {
			cut--
		}
		if cut == 0 {
			return "", false, fmt.Errorf("listing: key %q has more than %d replicas", last, limit)
		}
		page = page[:cut]
	}
	for i := 0; i < len(page); {
		j := i + 1
		for j < len(page) && page[j].Key == page[i].Key {
			j++
		}
		if err := fn(page[i].Key, page[i:j:j]); err != nil {
			return "", false, err
		}
		i = j
	}
	if !full {
		return "", false, nil
	}
	return page[len(page)-1].Key, true, nil
}
