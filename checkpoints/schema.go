package checkpoints

import (
	"fmt"
)

// SchemaVersion is the layout of the state this ferry writes and reads. A state
// records its version: SQLite in PRAGMA user_version, PostgreSQL in the one row of
// the schema_version table of its schema.
//
// Versions:
//
//   - 0: unversioned. Either nothing yet (a new file, a missing or empty schema) or
//     a state written by a ferry from before states carried a version. Those ferries
//     created their tables with CREATE ... IF NOT EXISTS on every open, so any of
//     their states is a subset of version 1's tables (with, in old SQLite files, two
//     replica indexes version 1 drops).
//   - 1: the tables records, replicas (one row per record and site), listing, meta,
//     stages, lock, workers, claims and journal, as sqliteV1 and pgV1 create them.
//   - 2: SQLite adds the tallies and events tables and the triggers that keep them
//     (sqliteV2): Stats reads counts kept as the rows change instead of scanning
//     every row. PostgreSQL's layout is unchanged (its step is empty).
//   - 3: SQLite keeps one row per record: key, user, state, the stages its replicas
//     are assigned to, updated_at, and a data BLOB with the rest of the record and
//     its replicas (record_codec.go); the replicas table and the triggers are gone,
//     and Save keeps the tallies (sqlite_upgrade.go converts the rows). A read-only
//     open of an older SQLite state reads an upgraded private copy. PostgreSQL's
//     layout is unchanged (its step is empty).
//   - 4: PostgreSQL keeps one row per record too: the replicas table's rows move
//     into a jsonb column of their record's row (postgres_replicas.go), and Save
//     rewrites only the records that changed. A read-only open of an older
//     PostgreSQL state reads it through a view that builds that column in the
//     query (it may not upgrade, nor make a copy). SQLite's layout is unchanged
//     (its step is empty, and a read-only open reads a version 3 file as it is).
//
// On open (read-write) a state older than SchemaVersion is upgraded in place by the
// steps from its version on (sqliteSteps, pgSteps: step i takes version i to i+1),
// all in ONE transaction with the new version: a crash during an upgrade leaves the
// state as it was, and the next open upgrades it again. A state newer than this
// ferry is refused with a *NewerStateError and never modified.
//
// A future layout change is one more step on each list and SchemaVersion+1.
const SchemaVersion = 4

// NewerStateError is returned by Open for a state written by a newer ferry: this
// ferry cannot know its layout, so it neither reads nor changes it.
type NewerStateError struct {
	State     string // the state file, or the PostgreSQL schema
	Version   int    // the state's version
	Supported int    // the newest version this ferry knows (SchemaVersion)
}

func (e *NewerStateError) Error() string {
	return fmt.Sprintf("state %s has layout version %d, written by a newer ferry; this ferry knows versions up to %d: "+
		"use that newer ferry (the state was not modified)", e.State, e.Version, e.Supported)
}

// OlderStateError is returned by a read-only open of a state whose layout this
// ferry reads only after upgrading it, which a read-only open does not do.
type OlderStateError struct {
	State     string
	Version   int
	Supported int
}

func (e *OlderStateError) Error() string {
	return fmt.Sprintf("state %s has layout version %d and this ferry reads version %d: "+
		"a command that writes the state (ferry plan, ferry run) upgrades it in place first", e.State, e.Version, e.Supported)
}
