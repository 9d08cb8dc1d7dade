// Package storetest is the conformance suite for checkpoints.Store: every
// implementation (the embedded SQLite store, a shared PostgreSQL store) runs the same
// tests from its own _test.go file:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) checkpoints.Store { ... a new, empty store ... })
//	}
//
// The suite checks the contract written on the interface, not an implementation: keys
// are exact byte strings ordered by bytes, every field round-trips, Save replaces a
// record's replica set, pagination is invisible to callers, callbacks may write to the
// store, and the lock follows restic's stale-lock rule (DESIGN.md "Checkpoints").
package storetest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/checkpoints/clock"
)

// Run runs the conformance suite. open returns a new, empty store for one subtest,
// opened with opts; the suite closes it when the subtest ends. Subtests run one at a
// time. The lock tests start the test binary (os.Args[0] -test.run=^$) once to get
// the pid of a process that has exited. Tests that wait for a lease to run out open
// their store with a fake clock (opts.Clock) and advance it instead of sleeping; the
// others leave opts.Clock nil, so the store's own clock (the database's, on
// PostgreSQL) is the one they exercise.
func Run(t *testing.T, open func(t *testing.T, opts checkpoints.Options) checkpoints.Store) {
	fresh := func(t *testing.T, opts checkpoints.Options) checkpoints.Store {
		t.Helper()
		s := open(t, opts)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	tests := []suiteTest{
		{name: "Meta", fn: testMeta},
		{name: "RoundTrip", fn: testRoundTrip},
		{name: "ExactKeys", fn: testExactKeys},
		{name: "SaveReplacesReplicas", fn: testSaveReplacesReplicas},
		{name: "SaveLastWriteWins", fn: testSaveLastWriteWins},
		{name: "SaveUnchanged", fn: testSaveUnchanged},
		{name: "Records", fn: testRecords},
		{name: "RecordsStageMatchesOneReplica", fn: testRecordsStageMatchesOneReplica},
		{name: "RecordsCallbackWrites", fn: testRecordsCallbackWrites},
		{name: "Listed", fn: testListed},
		{name: "Unlisted", fn: testUnlisted},
		{name: "Stages", fn: testStages},
		{name: "Stats", fn: testStats},
		{name: "LockLiveHolder", timed: testLockLiveHolder},
		{name: "LockDeadHolder", fn: testLockDeadHolder},
		{name: "LockOtherHost", timed: testLockOtherHost},
		{name: "LockRace", fn: testLockRace},
		{name: "Journal", fn: testJournal},
	}
	tests = append(tests, workTests()...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.timed == nil {
				tc.fn(t, fresh(t, checkpoints.Options{}))
				return
			}
			clk := clock.NewFake()
			tc.timed(t, fresh(t, checkpoints.Options{Clock: clk}), clk)
		})
	}
}

// suiteTest is one test of the suite: fn runs on a store with its own clock; timed,
// on a store whose clock is clk, which it advances to let leases run out.
type suiteTest struct {
	name  string
	fn    func(t *testing.T, s checkpoints.Store)
	timed func(t *testing.T, s checkpoints.Store, clk *clock.Fake)
}

// ---- fixtures and helpers ----

// Sites used by the fixtures: one primary, two backups.
const (
	siteVA = "virginia"
	siteSG = "singapore"
	siteAR = "archive"
)

// Keys that stores get wrong: prefixes of one another, separators that sort between
// '/' and letters, unicode, and NFC/NFD twins (two different keys that look the same).
var trickyKeys = []string{
	"a", "a/", "a-", "a b", "a/b", "a.b", "a0", "A", "Z", "_",
	"caf\u00e9",  // NFC
	"cafe\u0301", // NFD: the same word, other bytes
	"\u00c5ngstr\u00f6m/r\u00e9sum\u00e9.pdf",
	"A\u030angstro\u0308m/re\u0301sume\u0301.pdf",
	"日本語/ファイル.txt", "emoji/😀.png", "x/%2F/y", "tab\tkey", "quote'\"key", "trailing space ",
	"~conflict", "\u00ff", "\U0010ffff",
}

// tm returns a time with nanoseconds in a non-UTC zone, so that a store that drops
// sub-second precision or the instant's zone offset is caught.
func tm(sec int, nsec int) time.Time {
	return time.Date(2024, 3, 5, 10, 11, 12+sec, nsec, time.FixedZone("UTC+05:30", 5*3600+1800))
}

func fullRecord(key string, i int) checkpoints.Record {
	return checkpoints.Record{
		Key: key, User: "user-" + key, Size: 1<<40 + int64(i), State: checkpoints.Verified,
		SHA256:    strings.Repeat("ab", 32),
		CRC32C:    "1a2b3c4d",
		Source:    siteVA,
		TargetKey: key + "~target", TargetETag: `"etag-` + key + `"`, TargetVersion: "v" + fmt.Sprint(i),
		CopiedAt: tm(i, 123456789), VerifiedAt: tm(i+1, 1), Attempts: 3 + i, LastError: "timeout: é", Conflict: "size differs",
		Replicas: []checkpoints.Replica{
			{
				Site: siteVA, SiteKey: key, Primary: true, Size: 1<<40 + int64(i), ETag: `"e1"`, Version: "ver-1",
				ModTime: tm(-100, 999999999), SHA256: strings.Repeat("cd", 32), State: checkpoints.Identical,
				Stage: "primary", Mode: "", Handle: "", LastError: "",
			},
			{
				Site: siteSG, SiteKey: "backup/" + key, Size: 7, ETag: "e2", ModTime: tm(-50, 1),
				State: checkpoints.Deleted, Stage: "canary", Mode: "soft", Handle: ".ferry-trash/" + key + "#3",
				IntentAt: tm(10, 500), DeletedAt: tm(11, 600), PurgedAt: tm(12, 700), ConfirmedAbsent: true,
				LastError: "retried 2x",
			},
			{
				// Every optional field empty and every time zero.
				Site: siteAR, SiteKey: key, State: checkpoints.Present,
			},
		},
	}
}

// norm makes a record comparable with reflect.DeepEqual: times in UTC without a
// monotonic reading, replicas ordered by site, UpdatedAt (the store's own) cleared.
func norm(r checkpoints.Record) checkpoints.Record {
	u := func(t time.Time) time.Time {
		if t.IsZero() {
			return time.Time{}
		}
		return t.UTC()
	}
	r.CopiedAt, r.VerifiedAt, r.UpdatedAt = u(r.CopiedAt), u(r.VerifiedAt), time.Time{}
	reps := make([]checkpoints.Replica, len(r.Replicas))
	copy(reps, r.Replicas)
	for i := range reps {
		p := &reps[i]
		p.ModTime, p.IntentAt, p.DeletedAt, p.PurgedAt = u(p.ModTime), u(p.IntentAt), u(p.DeletedAt), u(p.PurgedAt)
	}
	sort.Slice(reps, func(i, j int) bool { return reps[i].Site < reps[j].Site })
	if len(reps) == 0 {
		reps = nil
	}
	r.Replicas = reps
	return r
}

func sameRecord(t *testing.T, what string, got, want checkpoints.Record) {
	t.Helper()
	g, w := norm(got), norm(want)
	if reflect.DeepEqual(g, w) {
		return
	}
	t.Errorf("%s: record %q differs:\n got %+v\nwant %+v", what, want.Key, g, w)
}

func save(t *testing.T, s checkpoints.Store, recs ...checkpoints.Record) {
	t.Helper()
	if err := s.Save(t.Context(), recs); err != nil {
		t.Fatalf("Save(%d records): %v", len(recs), err)
	}
}

func saveBatched(t *testing.T, s checkpoints.Store, recs []checkpoints.Record, size int) {
	t.Helper()
	for len(recs) > 0 {
		n := min(size, len(recs))
		save(t, s, recs[:n]...)
		recs = recs[n:]
	}
}

func get(t *testing.T, s checkpoints.Store, key string) checkpoints.Record {
	t.Helper()
	r, ok, err := s.Get(t.Context(), key)
	if err != nil || !ok {
		t.Fatalf("Get(%q) = %v, %v; want the record", key, ok, err)
	}
	if r.Key != key {
		t.Fatalf("Get(%q) returned key %q", key, r.Key)
	}
	return r
}

func records(t *testing.T, s checkpoints.Store, q checkpoints.Query) []checkpoints.Record {
	t.Helper()
	var out []checkpoints.Record
	if err := s.Records(t.Context(), q, func(r checkpoints.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("Records(%+v): %v", q, err)
	}
	return out
}

func keysOf(recs []checkpoints.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Key
	}
	return out
}

// sameKeys compares key sequences and reports the first difference (lists are long).
func sameKeys(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	for i := 0; i < min(len(got), len(want)); i++ {
		if got[i] != want[i] {
			t.Errorf("%s: %d keys, want %d; first difference at %d: got %q, want %q", what, len(got), len(want), i, got[i], want[i])
			return
		}
	}
	t.Errorf("%s: %d keys, want %d (one is a prefix of the other)", what, len(got), len(want))
}

var errStop = errors.New("storetest: stop")

// ---- Meta ----

func testMeta(t *testing.T, s checkpoints.Store) {
	ctx := t.Context()
	if v, ok, err := s.Meta(ctx, "plan_digest"); err != nil || ok || v != "" {
		t.Fatalf("Meta of an unset key = %q, %v, %v; want \"\", false, nil", v, ok, err)
	}
	set := map[string]string{
		"plan_digest": strings.Repeat("0f", 32),
		"planned_at":  "2024-03-05T10:11:12.123456789Z",
		"empty":       "",
		"unicode ✓":   "Größe\nzweite Zeile\ttab",
	}
	for k, v := range set {
		if err := s.SetMeta(ctx, k, v); err != nil {
			t.Fatalf("SetMeta(%q): %v", k, err)
		}
	}
	if err := s.SetMeta(ctx, "plan_digest", "replaced"); err != nil {
		t.Fatal(err)
	}
	set["plan_digest"] = "replaced"
	for k, want := range set {
		v, ok, err := s.Meta(ctx, k)
		if err != nil || !ok || v != want {
			t.Errorf("Meta(%q) = %q, %v, %v; want %q, true", k, v, ok, err, want)
		}
	}
	if _, ok, _ := s.Meta(ctx, "Plan_digest"); ok {
		t.Errorf("Meta keys must be exact: Plan_digest found after setting plan_digest")
	}
}

// ---- records ----

func testRoundTrip(t *testing.T, s checkpoints.Store) {
	ctx := t.Context()
	if _, ok, err := s.Get(ctx, "nobody/nothing"); ok || err != nil {
		t.Fatalf("Get of a missing key = %v, %v; want false, nil", ok, err)
	}
	if err := s.Save(ctx, nil); err != nil {
		t.Fatalf("Save(nil): %v", err)
	}
	var want []checkpoints.Record
	for i, k := range trickyKeys {
		want = append(want, fullRecord(k, i))
	}
	// A record with every field at its zero value except the key and state, and one
	// without replicas.
	want = append(want,
		checkpoints.Record{Key: "zero/values", State: checkpoints.Planned, Replicas: []checkpoints.Replica{{Site: siteVA, SiteKey: "zero/values", State: checkpoints.Present}}},
		checkpoints.Record{Key: "no/replicas", User: "u", State: checkpoints.Excluded},
		checkpoints.Record{Key: "before/1970", State: checkpoints.Copied, CopiedAt: time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC),
			VerifiedAt: time.Date(2200, 1, 1, 0, 0, 0, 1, time.UTC)},
	)
	before := time.Now()
	save(t, s, want...)
	after := time.Now()
	for _, w := range want {
		got := get(t, s, w.Key)
		sameRecord(t, "Get", got, w)
		// UpdatedAt is the store's: when the record was last saved.
		if got.UpdatedAt.IsZero() || got.UpdatedAt.Before(before.Add(-time.Minute)) || got.UpdatedAt.After(after.Add(time.Minute)) {
			t.Errorf("Get(%q).UpdatedAt = %v; want the time of the Save (%v)", w.Key, got.UpdatedAt, before)
		}
	}
	// Records returns the same thing as Get.
	got := records(t, s, checkpoints.Query{})
	if len(got) != len(want) {
		t.Fatalf("Records returned %d records, want %d", len(got), len(want))
	}
	byKey := map[string]checkpoints.Record{}
	for _, w := range want {
		byKey[w.Key] = w
	}
	for _, g := range got {
		sameRecord(t, "Records", g, byKey[g.Key])
	}
	// A near miss is not a hit.
	for _, k := range []string{"a//", "caf", "cafe", "A\u030a", "日本語/ファイル.TXT", "trailing space"} {
		if _, ok, err := s.Get(ctx, k); ok || err != nil {
			t.Errorf("Get(%q) = %v, %v; want not found", k, ok, err)
		}
	}
}

// testExactKeys: keys are byte strings. NFC/NFD twins are two records, and nothing in
// the store folds case, trims spaces or normalises unicode.
func testExactKeys(t *testing.T, s checkpoints.Store) {
	pairs := [][2]string{
		{"caf\u00e9", "cafe\u0301"},
		{"\u00c5ngstr\u00f6m/r\u00e9sum\u00e9.pdf", "A\u030angstro\u0308m/re\u0301sume\u0301.pdf"},
		{"a", "A"},
		{"trailing space ", "trailing space"},
	}
	var recs []checkpoints.Record
	for i, p := range pairs {
		for j, k := range p {
			recs = append(recs, checkpoints.Record{Key: k, Size: int64(10*i + j), State: checkpoints.Planned,
				Replicas: []checkpoints.Replica{{Site: siteVA, SiteKey: k, Size: int64(10*i + j), State: checkpoints.Present}}})
		}
	}
	save(t, s, recs...)
	for _, r := range recs {
		got := get(t, s, r.Key)
		if got.Size != r.Size || len(got.Replicas) != 1 || got.Replicas[0].SiteKey != r.Key {
			t.Errorf("Get(%q) = size %d, replicas %+v; want size %d and its own replica", r.Key, got.Size, got.Replicas, r.Size)
		}
	}
	if n := len(records(t, s, checkpoints.Query{})); n != len(recs) {
		t.Errorf("Records: %d records, want %d distinct keys", n, len(recs))
	}
}

func testSaveReplacesReplicas(t *testing.T, s checkpoints.Store) {
	ctx := t.Context()
	r := fullRecord("alice/photo.jpg", 1)
	other := fullRecord("alice/photo.jpg2", 2) // a neighbour whose replicas must not be touched
	save(t, s, r, other)

	// Drop the singapore replica and change the archive one.
	r2 := r
	r2.State = checkpoints.Copied
	r2.Replicas = []checkpoints.Replica{r.Replicas[0], r.Replicas[2]}
	r2.Replicas[1].State = checkpoints.Identical
	r2.Replicas[1].Stage = "backups"
	save(t, s, r2)
	got := get(t, s, r.Key)
	sameRecord(t, "after dropping a replica", got, r2)
	if got.Replica(siteSG) != nil {
		t.Errorf("the dropped %s replica is still there: %+v", siteSG, got.Replica(siteSG))
	}
	st, err := s.Stats(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c := st.ReplicasSite[siteSG][checkpoints.Deleted]; c.N != 1 {
		t.Errorf("Stats after dropping a replica: %s deleted = %+v, want only the neighbour's", siteSG, c)
	}
	sameRecord(t, "neighbour", get(t, s, other.Key), other)

	// A record saved without replicas has none.
	r3 := r2
	r3.Replicas = nil
	save(t, s, r3)
	if got := get(t, s, r.Key); len(got.Replicas) != 0 {
		t.Errorf("after saving no replicas: %+v", got.Replicas)
	}
	if got := records(t, s, checkpoints.Query{Stage: "primary"}); len(got) != 1 || got[0].Key != other.Key {
		t.Errorf("Records(stage primary) = %v; want only %q (the dropped replicas are gone)", keysOf(got), other.Key)
	}
	sameRecord(t, "neighbour", get(t, s, other.Key), other)
}

// testSaveLastWriteWins: a batch may hold the same record twice (a Batcher queues every
// update); the later one is what the store keeps.
func testSaveLastWriteWins(t *testing.T, s checkpoints.Store) {
	a := fullRecord("k", 1)
	b := a
	b.State, b.Attempts = checkpoints.Failed, 9
	b.Replicas = []checkpoints.Replica{a.Replicas[1]}
	save(t, s, a, b)
	sameRecord(t, "same key twice in one Save", get(t, s, "k"), b)
	save(t, s, b, a)
	sameRecord(t, "same key twice in one Save", get(t, s, "k"), a)
}

// testSaveUnchanged: a record saved again as it is stored (the phases save every
// record they look at) keeps its row: its UpdatedAt is the time of the Save that
// last changed it. A change of any one field, or of a replica's, is a new save.
func testSaveUnchanged(t *testing.T, s checkpoints.Store) {
	a, other := fullRecord("k", 1), fullRecord("n", 2)
	save(t, s, a, other)
	stored := get(t, s, "k")
	time.Sleep(2 * time.Millisecond) // (a store's clock may tick in microseconds)
	again := stored
	again.UpdatedAt = time.Time{} // the store's, not the caller's
	save(t, s, again, other)
	if got := get(t, s, "k"); !got.UpdatedAt.Equal(stored.UpdatedAt) {
		t.Errorf("a Save of the record as stored moved UpdatedAt from %v to %v", stored.UpdatedAt, got.UpdatedAt)
	}
	for _, change := range []func(r *checkpoints.Record){
		func(r *checkpoints.Record) { r.Attempts++ },
		func(r *checkpoints.Record) { r.Replicas[1].PurgedAt = r.Replicas[1].PurgedAt.Add(time.Microsecond) },
		func(r *checkpoints.Record) { r.Replicas = r.Replicas[:2] },
	} {
		before := get(t, s, "k")
		changed := before
		changed.Replicas = slices.Clone(before.Replicas)
		change(&changed)
		time.Sleep(2 * time.Millisecond)
		save(t, s, changed)
		got := get(t, s, "k")
		sameRecord(t, "after a change", got, changed)
		if !got.UpdatedAt.After(before.UpdatedAt) {
			t.Errorf("a Save that changed the record kept UpdatedAt %v (was %v)", got.UpdatedAt, before.UpdatedAt)
		}
	}
}

// recordsFixture is n records spread over users, states, sites and stages so that each
// filter selects more than a page (1024) of them in most cases, with tricky keys mixed in.
func recordsFixture(n int) []checkpoints.Record {
	users := []string{"alice", "alice", "bob", "alice", "carol", "dave"}
	recs := make([]checkpoints.Record, 0, n)
	for i := range n {
		user := users[i%len(users)]
		var key string
		switch i % 10 {
		case 7:
			key = fmt.Sprintf("%s/caf\u00e9/%05d", user, (i*7919)%n)
		case 8:
			key = fmt.Sprintf("%s/cafe\u0301/%05d", user, (i*7919)%n)
		case 9:
			key = fmt.Sprintf("%s/%05d %s", user, (i*7919)%n, trickyKeys[i%len(trickyKeys)])
		default:
			key = fmt.Sprintf("%s/%05d", user, (i*7919)%n)
		}
		var state checkpoints.RecordState
		switch {
		case i%97 == 0:
			state = checkpoints.Conflict
		case i%5 < 3:
			state = checkpoints.Planned
		case i%5 == 3:
			state = checkpoints.Copied
		default:
			state = checkpoints.Verified
		}
		repState := func(j int) checkpoints.ReplicaState {
			switch {
			case j%7 == 0:
				return checkpoints.Present
			case j%11 == 0:
				return checkpoints.Deleted
			default:
				return checkpoints.Identical
			}
		}
		r := checkpoints.Record{Key: key, User: user, Size: int64(i), State: state, Attempts: i}
		r.Replicas = append(r.Replicas, checkpoints.Replica{Site: siteVA, SiteKey: key, Primary: true, Size: int64(i),
			State: repState(i), Stage: map[bool]string{true: "primary", false: ""}[i%2 == 1]})
		if i%2 == 0 {
			r.Replicas = append(r.Replicas, checkpoints.Replica{Site: siteSG, SiteKey: key, Size: int64(i),
				State: repState(i + 1), Stage: map[bool]string{true: "canary", false: "backups"}[i%8 == 0]})
		}
		if i%3 == 0 {
			r.Replicas = append(r.Replicas, checkpoints.Replica{Site: siteAR, SiteKey: key, Size: int64(i),
				State: repState(i + 2), Stage: "backups"})
		}
		recs = append(recs, r)
	}
	return recs
}

// matches is the reference semantics of Query.
func matches(r checkpoints.Record, q checkpoints.Query) bool {
	if len(q.States) > 0 && !slices.Contains(q.States, r.State) {
		return false
	}
	if q.User != "" && r.User != q.User {
		return false
	}
	if q.After != "" && r.Key <= q.After {
		return false
	}
	if q.Stage != "" {
		found := false
		for _, p := range r.Replicas {
			if p.Stage == q.Stage && (len(q.ReplicaStates) == 0 || slices.Contains(q.ReplicaStates, p.State)) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func expect(all []checkpoints.Record, q checkpoints.Query) []string {
	var keys []string
	for _, r := range all {
		if matches(r, q) {
			keys = append(keys, r.Key)
		}
	}
	sort.Strings(keys) // byte order
	if q.Limit > 0 && len(keys) > q.Limit {
		keys = keys[:q.Limit]
	}
	return keys
}

func testRecords(t *testing.T, s checkpoints.Store) {
	ctx := t.Context()
	// Each filter below selects more than one 1024-record page (SQLite's) of these, or
	// none, or a few. Sizes are kept small: under -race every record read is costly.
	const n = 2400
	all := recordsFixture(n)
	// Save in an order other than key order.
	shuffled := slices.Clone(all)
	slices.Reverse(shuffled)
	saveBatched(t, s, shuffled, 500)

	sorted := slices.Sorted(slices.Values(keysOf(all)))
	if len(slices.Compact(slices.Clone(sorted))) != n {
		t.Fatal("fixture: duplicate keys")
	}
	mid := sorted[n/2]
	queries := []struct {
		name    string
		q       checkpoints.Query
		atLeast int // the fixture must select at least this many (paging is exercised)
	}{
		{"all", checkpoints.Query{}, n},
		{"states", checkpoints.Query{States: []checkpoints.RecordState{checkpoints.Planned, checkpoints.Conflict}}, 1025},
		{"states none match", checkpoints.Query{States: []checkpoints.RecordState{checkpoints.Excluded}}, 0},
		{"user", checkpoints.Query{User: "alice"}, 1025},
		{"user small", checkpoints.Query{User: "dave"}, 1},
		{"user unknown", checkpoints.Query{User: "ALICE"}, 0},
		{"after", checkpoints.Query{After: mid}, 1025},
		{"after absent key", checkpoints.Query{After: sorted[n-30] + "\x00"}, 10},
		{"after prefix", checkpoints.Query{After: "dave"}, 100},
		{"after last", checkpoints.Query{After: sorted[n-1]}, 0},
		{"after everything", checkpoints.Query{After: "\U0010ffff\U0010ffff"}, 0},
		{"limit 1", checkpoints.Query{Limit: 1}, 1},
		{"limit 1025", checkpoints.Query{Limit: 1025}, 1025},
		{"limit beyond", checkpoints.Query{User: "carol", Limit: n}, 100},
		{"stage", checkpoints.Query{Stage: "backups"}, 1025},
		{"stage unknown", checkpoints.Query{Stage: "nope"}, 0},
		{"stage replica states", checkpoints.Query{Stage: "backups", ReplicaStates: []checkpoints.ReplicaState{checkpoints.Identical}}, 1025},
		{"stage replica states small", checkpoints.Query{Stage: "primary", ReplicaStates: []checkpoints.ReplicaState{checkpoints.Present, checkpoints.Deleted}}, 100},
		{"combined", checkpoints.Query{States: []checkpoints.RecordState{checkpoints.Planned, checkpoints.Conflict}, User: "alice", After: sorted[100],
			Stage: "backups", ReplicaStates: []checkpoints.ReplicaState{checkpoints.Identical, checkpoints.Present}, Limit: 300}, 300},
	}
	for _, tc := range queries {
		want := expect(all, tc.q)
		if len(want) < tc.atLeast {
			t.Fatalf("%s: fixture selects %d records, want at least %d", tc.name, len(want), tc.atLeast)
		}
		if tc.atLeast == 0 && len(want) != 0 {
			t.Fatalf("%s: fixture selects %d records, want none", tc.name, len(want))
		}
		sameKeys(t, tc.name, keysOf(records(t, s, tc.q)), want)
	}

	// Records carry their full replica sets, whatever the filter.
	byKey := map[string]checkpoints.Record{}
	for _, r := range all {
		byKey[r.Key] = r
	}
	for _, r := range records(t, s, checkpoints.Query{Stage: "canary", ReplicaStates: []checkpoints.ReplicaState{checkpoints.Identical}}) {
		sameRecord(t, "Records(stage)", r, byKey[r.Key])
	}

	// Keyset pagination by the caller: After + Limit pages concatenate to the whole.
	planned := checkpoints.Query{States: []checkpoints.RecordState{checkpoints.Planned}}
	var paged []string
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatal("pagination does not end")
		}
		pq := planned
		if len(paged) > 0 {
			pq.After = paged[len(paged)-1]
		}
		pq.Limit = 700
		page := keysOf(records(t, s, pq))
		paged = append(paged, page...)
		if len(page) < pq.Limit {
			break
		}
	}
	sameKeys(t, "paged by the caller", paged, expect(all, planned))

	// An error from fn stops the scan and is returned.
	calls := 0
	err := s.Records(ctx, checkpoints.Query{}, func(checkpoints.Record) error {
		calls++
		if calls == 3 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || calls != 3 {
		t.Errorf("Records with fn failing at call 3: err %v after %d calls; want errStop after 3", err, calls)
	}
}

// testRecordsStageMatchesOneReplica: Stage and ReplicaStates select one replica that
// has both, not one replica with the stage and another with the state.
func testRecordsStageMatchesOneReplica(t *testing.T, s checkpoints.Store) {
	save(t, s,
		checkpoints.Record{Key: "mixed", State: checkpoints.Verified, Replicas: []checkpoints.Replica{
			{Site: siteVA, SiteKey: "mixed", State: checkpoints.Present, Stage: "primary"},
			{Site: siteSG, SiteKey: "mixed", State: checkpoints.Identical, Stage: "canary"},
		}},
		checkpoints.Record{Key: "match", State: checkpoints.Verified, Replicas: []checkpoints.Replica{
			{Site: siteVA, SiteKey: "match", State: checkpoints.Identical, Stage: "primary"},
		}},
	)
	got := keysOf(records(t, s, checkpoints.Query{Stage: "primary", ReplicaStates: []checkpoints.ReplicaState{checkpoints.Identical}}))
	sameKeys(t, "stage primary, replica identical", got, []string{"match"})
	got = keysOf(records(t, s, checkpoints.Query{Stage: "canary", ReplicaStates: []checkpoints.ReplicaState{checkpoints.Present}}))
	sameKeys(t, "stage canary, replica present", got, nil)

	// A stage is matched by its whole name, also where one name holds another and
	// the separator a store might use to list a record's stages.
	save(t, s, checkpoints.Record{Key: "piped", State: checkpoints.Verified, Replicas: []checkpoints.Replica{
		{Site: siteVA, SiteKey: "piped", State: checkpoints.Identical, Stage: "primary|canary"},
		{Site: siteSG, SiteKey: "piped", State: checkpoints.Identical, Stage: "|"},
	}})
	for stage, want := range map[string][]string{
		"primary|canary": {"piped"}, "|": {"piped"}, "primary": {"match", "mixed"}, "canary": {"mixed"}, "primary|": nil, "||": nil,
	} {
		got := keysOf(records(t, s, checkpoints.Query{Stage: stage}))
		sameKeys(t, "stage "+stage, got, want)
	}
}

// testRecordsCallbackWrites: the pipeline saves from inside Records (verify, delete):
// no deadlock, every matching record is seen exactly once even when fn moves it out of
// the filter, and the writes land.
func testRecordsCallbackWrites(t *testing.T, s checkpoints.Store) {
	const n = 1100 // more than a 1024-record page
	var all []checkpoints.Record
	for i := range n {
		k := fmt.Sprintf("u%d/%05d", i%3, i)
		all = append(all, checkpoints.Record{Key: k, User: fmt.Sprintf("u%d", i%3), State: checkpoints.Planned,
			Replicas: []checkpoints.Replica{{Site: siteVA, SiteKey: k, State: checkpoints.Present}}})
	}
	saveBatched(t, s, all, 1000)

	done := make(chan error, 1)
	seen := map[string]int{}
	go func() {
		ctx := t.Context()
		// Saves in small batches, as a Batcher would, plus one right away.
		var pending []checkpoints.Record
		flush := func() error {
			if err := s.Save(ctx, pending); err != nil {
				return err
			}
			// Reads from inside fn work too.
			last := pending[len(pending)-1].Key
			if got, ok, err := s.Get(ctx, last); err != nil || !ok || got.State != checkpoints.Copied {
				return fmt.Errorf("Get(%q) inside Records after Save: %v %v %v", last, got.State, ok, err)
			}
			pending = pending[:0]
			return nil
		}
		err := s.Records(ctx, checkpoints.Query{States: []checkpoints.RecordState{checkpoints.Planned}}, func(r checkpoints.Record) error {
			seen[r.Key]++
			r.State = checkpoints.Copied
			r.Attempts++
			r.Replicas[0].State = checkpoints.Identical
			pending = append(pending, r)
			if len(pending) == 50 || len(seen) == 1 {
				return flush()
			}
			return nil
		})
		if err == nil && len(pending) > 0 {
			err = flush()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Records with Save in fn: %v", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("Records with Save in fn did not return in 45s: deadlock?")
	}
	if len(seen) != n {
		t.Errorf("fn saw %d distinct records, want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("fn saw %q %d times", k, c)
		}
	}
	if left := records(t, s, checkpoints.Query{States: []checkpoints.RecordState{checkpoints.Planned}}); len(left) != 0 {
		t.Errorf("%d records still planned after fn saved them all copied", len(left))
	}
	for _, r := range records(t, s, checkpoints.Query{}) {
		if r.State != checkpoints.Copied || r.Attempts != 1 || len(r.Replicas) != 1 || r.Replicas[0].State != checkpoints.Identical {
			t.Fatalf("record after the scan: %+v", r)
		}
	}
}

// ---- listing ----

// listedFixture stages keys at 1, 2 or 3 sites. Most groups have three rows, so most
// row-count page boundaries (4096 among them) fall inside a key's group.
func listedFixture(n int) (map[string][]checkpoints.Listed, []string) {
	sites := []string{siteAR, siteSG, siteVA} // in byte order
	bySite := map[string][]checkpoints.Listed{}
	var keys []string
	for i := range n {
		key := fmt.Sprintf("u%02d/%06d", i%17, i)
		if i%50 == 3 {
			key = fmt.Sprintf("u%02d/%06d/%s", i%17, i, trickyKeys[(i/50)%len(trickyKeys)])
		}
		keys = append(keys, key)
		at := sites
		switch i % 9 {
		case 0:
			at = []string{siteVA}
		case 1:
			at = []string{siteAR, siteSG}
		}
		for j, site := range at {
			bySite[site] = append(bySite[site], checkpoints.Listed{
				Site: site, Key: key, SiteKey: key, Size: int64(i*10 + j), ETag: fmt.Sprintf(`"%x"`, i),
				Version: map[bool]string{true: "v" + fmt.Sprint(i), false: ""}[j == 1],
				ModTime: tm(i, i*1000+j), SHA256: map[bool]string{true: fmt.Sprintf("%064x", i), false: ""}[j == 2],
			})
		}
	}
	return bySite, keys
}

func testListed(t *testing.T, s checkpoints.Store) {
	ctx := t.Context()
	if err := s.Listed(ctx, func(string, []checkpoints.Listed) error {
		t.Error("Listed called fn on an empty listing")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddListed(ctx, nil); err != nil {
		t.Fatalf("AddListed(nil): %v", err)
	}
	bySite, keys := listedFixture(2000)
	// Each site is listed concurrently in batches, as plan does.
	var wg sync.WaitGroup
	errs := make(chan error, len(bySite))
	for _, objs := range bySite {
		wg.Go(func() {
			for len(objs) > 0 {
				n := min(1000, len(objs))
				if err := s.AddListed(ctx, objs[:n]); err != nil {
					errs <- err
					return
				}
				objs = objs[n:]
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("AddListed: %v", err)
	}
	// Staging an object again replaces it.
	changed := bySite[siteSG][5]
	changed.Size, changed.ETag = 424242, "changed"
	if err := s.AddListed(ctx, []checkpoints.Listed{changed}); err != nil {
		t.Fatal(err)
	}
	bySite[siteSG][5] = changed

	for site, objs := range bySite {
		if n, err := s.ListedCount(ctx, site); err != nil || n != int64(len(objs)) {
			t.Errorf("ListedCount(%s) = %d, %v; want %d", site, n, err, len(objs))
		}
	}
	if n, err := s.ListedCount(ctx, "elsewhere"); err != nil || n != 0 {
		t.Errorf("ListedCount(unknown site) = %d, %v; want 0", n, err)
	}

	// What Listed must return: every key once, in byte order, with its sites' objects
	// in site order.
	want := map[string][]checkpoints.Listed{}
	rows := 0
	for _, objs := range bySite {
		for _, o := range objs {
			want[o.Key] = append(want[o.Key], o)
			rows++
		}
	}
	for _, objs := range want {
		sort.Slice(objs, func(i, j int) bool { return objs[i].Site < objs[j].Site })
	}
	wantKeys := slices.Sorted(slices.Values(keys))
	if rows <= 4096 {
		t.Fatalf("fixture: %d rows, want more than a 4096-row page", rows)
	}
	// The fixture must put a key's group across row 4096 (SQLite's page).
	for _, boundary := range []int{4096} {
		at, straddles := 0, false
		for _, k := range wantKeys {
			if at < boundary && at+len(want[k]) > boundary {
				straddles = true
			}
			at += len(want[k])
		}
		if !straddles {
			t.Fatalf("fixture: no key group straddles row %d", boundary)
		}
	}

	var gotKeys []string
	err := s.Listed(ctx, func(key string, objs []checkpoints.Listed) error {
		gotKeys = append(gotKeys, key)
		w := want[key]
		if len(objs) != len(w) {
			return fmt.Errorf("key %q: %d objects, want %d (%+v)", key, len(objs), len(w), objs)
		}
		for i := range objs {
			g := objs[i]
			if g.Key != key {
				return fmt.Errorf("key %q: object for key %q in its group", key, g.Key)
			}
			if !g.ModTime.Equal(w[i].ModTime) {
				return fmt.Errorf("key %q site %s: ModTime %v, want %v", key, g.Site, g.ModTime, w[i].ModTime)
			}
			g.ModTime = w[i].ModTime
			if g != w[i] {
				return fmt.Errorf("key %q object %d:\n got %+v\nwant %+v", key, i, g, w[i])
			}
		}
		// The plan reads and writes the state from inside fn.
		if len(gotKeys)%100 == 0 {
			if _, _, err := s.Get(ctx, key); err != nil {
				return err
			}
			if err := s.Save(ctx, []checkpoints.Record{{Key: key, State: checkpoints.Planned}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Listed: %v", err)
	}
	sameKeys(t, "Listed keys", gotKeys, wantKeys)
	if n := len(records(t, s, checkpoints.Query{})); n != len(wantKeys)/100 {
		t.Errorf("records saved from inside Listed: %d, want %d", n, len(wantKeys)/100)
	}

	// An error from fn stops the scan and is returned.
	calls := 0
	err = s.Listed(ctx, func(string, []checkpoints.Listed) error {
		calls++
		if calls == 500 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || calls != 500 {
		t.Errorf("Listed with fn failing at call 500: %v after %d calls", err, calls)
	}

	if err := s.ResetListing(ctx); err != nil {
		t.Fatal(err)
	}
	for site := range bySite {
		if n, err := s.ListedCount(ctx, site); err != nil || n != 0 {
			t.Errorf("ListedCount(%s) after ResetListing = %d, %v", site, n, err)
		}
	}
	if err := s.Listed(ctx, func(key string, _ []checkpoints.Listed) error {
		return fmt.Errorf("key %q listed after ResetListing", key)
	}); err != nil {
		t.Error(err)
	}
	// ResetListing forgets the listing, not the records.
	if n := len(records(t, s, checkpoints.Query{})); n != len(wantKeys)/100 {
		t.Errorf("ResetListing changed the records: %d left", n)
	}
}

func testUnlisted(t *testing.T, s checkpoints.Store) {
	ctx := t.Context()
	rep := func(site, siteKey string, st checkpoints.ReplicaState) checkpoints.Replica {
		return checkpoints.Replica{Site: site, SiteKey: siteKey, State: st, Size: 5}
	}
	rec := func(key string, reps ...checkpoints.Replica) checkpoints.Record {
		return checkpoints.Record{Key: key, User: "u", Size: 5, State: checkpoints.Verified, Replicas: reps}
	}
	recs := []checkpoints.Record{
		rec("all-listed", rep(siteVA, "all-listed", checkpoints.Identical), rep(siteSG, "all-listed", checkpoints.Present)),
		rec("sg-gone", rep(siteVA, "sg-gone", checkpoints.Identical), rep(siteSG, "sg-gone", checkpoints.Identical)),
		rec("both-gone", rep(siteVA, "both-gone", checkpoints.Present), rep(siteSG, "both-gone", checkpoints.Divergent),
			rep(siteAR, "both-gone", checkpoints.Present)),
		rec("restored-gone", rep(siteSG, "restored-gone", checkpoints.Restored)),
		// Not live: ferry deleted them, or they are already known missing, or a delete
		// may be under way. Absence from the listing is expected.
		rec("deleted", rep(siteVA, "deleted", checkpoints.Identical), rep(siteSG, "deleted", checkpoints.Deleted)),
		rec("purged", rep(siteSG, "purged", checkpoints.Purged)),
		rec("intent", rep(siteSG, "intent", checkpoints.Intent)),
		rec("missing", rep(siteSG, "missing", checkpoints.Missing)),
		// Listed at another site only.
		rec("wrong-site", rep(siteSG, "wrong-site", checkpoints.Present)),
		// A keep-both conflict variant: the record key differs from the site key.
		rec("dup~conflict~singapore", rep(siteSG, "dup", checkpoints.Divergent)),
		rec("gone~conflict~singapore", rep(siteSG, "gone", checkpoints.Divergent)),
		// NFC/NFD twins: the listing shows only the NFC one.
		rec("caf\u00e9", rep(siteSG, "caf\u00e9", checkpoints.Present)),
		rec("cafe\u0301", rep(siteSG, "cafe\u0301", checkpoints.Present)),
		// A site the caller does not ask about.
		rec("other-site", rep(siteAR, "other-site", checkpoints.Present)),
	}
	save(t, s, recs...)
	listed := func(site, key string) checkpoints.Listed {
		return checkpoints.Listed{Site: site, Key: key, SiteKey: key, Size: 5}
	}
	if err := s.AddListed(ctx, []checkpoints.Listed{
		listed(siteVA, "all-listed"), listed(siteSG, "all-listed"),
		listed(siteVA, "sg-gone"),
		listed(siteVA, "deleted"),
		listed(siteVA, "wrong-site"),
		listed(siteSG, "dup"),
		listed(siteSG, "caf\u00e9"),
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"sg-gone":                 {siteSG},
		"both-gone":               {siteSG, siteVA},
		"restored-gone":           {siteSG},
		"wrong-site":              {siteSG},
		"gone~conflict~singapore": {siteSG},
		"cafe\u0301":              {siteSG},
	}
	byKey := map[string]checkpoints.Record{}
	for _, r := range recs {
		byKey[r.Key] = r
	}
	got := map[string][]string{}
	err := s.Unlisted(ctx, []string{siteVA, siteSG}, func(r checkpoints.Record, sites []string) error {
		if _, dup := got[r.Key]; dup {
			return fmt.Errorf("record %q reported twice", r.Key)
		}
		sameRecord(t, "Unlisted record", r, byKey[r.Key])
		got[r.Key] = slices.Sorted(slices.Values(sites))
		// plan marks them missing and saves: writing from fn must work.
		return s.SetMeta(ctx, "unlisted:"+r.Key, "seen")
	})
	if err != nil {
		t.Fatalf("Unlisted: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Unlisted(virginia, singapore):\n got %v\nwant %v", got, want)
	}

	// Only the sites asked about.
	got = map[string][]string{}
	if err := s.Unlisted(ctx, []string{siteAR}, func(r checkpoints.Record, sites []string) error {
		got[r.Key] = sites
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := map[string][]string{"both-gone": {siteAR}, "other-site": {siteAR}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Unlisted(archive) = %v, want %v", got, want)
	}
	if err := s.Unlisted(ctx, nil, func(r checkpoints.Record, _ []string) error {
		return fmt.Errorf("Unlisted(no sites) reported %q", r.Key)
	}); err != nil {
		t.Error(err)
	}
	// An error from fn is returned.
	if err := s.Unlisted(ctx, []string{siteSG}, func(checkpoints.Record, []string) error { return errStop }); !errors.Is(err, errStop) {
		t.Errorf("Unlisted with a failing fn = %v, want errStop", err)
	}
	// After a reset nothing is listed: every live replica at the sites is unlisted.
	if err := s.ResetListing(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.Unlisted(ctx, []string{siteVA}, func(checkpoints.Record, []string) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 4 { // all-listed, sg-gone, both-gone, deleted (its virginia replica is live)
		t.Errorf("Unlisted(virginia) after ResetListing: %d records, want 4", n)
	}

	// Many more unlisted replicas than one page (4096) holds, with a record's group
	// across the page boundary (the first bulk record has one replica, so the groups
	// of two after it straddle every even row): each record once, with all its sites.
	const bulk = 2100
	var more []checkpoints.Record
	for i := range bulk {
		k := fmt.Sprintf("bulk-%05d", i)
		r := rec(k, rep(siteVA, k, checkpoints.Present), rep(siteSG, k, checkpoints.Identical))
		if i == 0 {
			r.Replicas = r.Replicas[:1]
		}
		more = append(more, r)
	}
	save(t, s, more...)
	seen := map[string]int{}
	if err := s.Unlisted(ctx, []string{siteVA, siteSG}, func(r checkpoints.Record, sites []string) error {
		if !strings.HasPrefix(r.Key, "bulk-") {
			return nil
		}
		seen[r.Key]++
		if want := len(r.Replicas); len(sites) != want || len(r.Replicas) == 0 {
			return fmt.Errorf("record %q: sites %v, want its %d replicas' sites", r.Key, sites, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != bulk {
		t.Errorf("Unlisted over several pages reported %d bulk records, want %d", len(seen), bulk)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("Unlisted reported %q %d times", k, c)
		}
	}
}

// ---- stages ----

func testStages(t *testing.T, s checkpoints.Store) {
	ctx := t.Context()
	if st, err := s.Stages(ctx); err != nil || len(st) != 0 {
		t.Fatalf("Stages of a new store = %+v, %v; want none", st, err)
	}
	in := []checkpoints.StageState{
		{Name: "primary", Ord: 2, State: "pending"},
		{Name: "canary", Ord: 0, Mode: "soft", Digest: strings.Repeat("9f", 32), State: "purged",
			StartedAt: tm(0, 1), FinishedAt: tm(60, 2), PurgedAt: tm(3600, 3), RestoredAt: tm(120, 999999999), Deleted: 1 << 33, Retained: 12},
		{Name: "backups", Ord: 1, Mode: "hard", State: "running", StartedAt: tm(7, 7)},
	}
	for _, st := range in {
		if err := s.SaveStage(ctx, st); err != nil {
			t.Fatalf("SaveStage(%s): %v", st.Name, err)
		}
	}
	// Saving a stage again replaces it.
	in[2].State, in[2].FinishedAt, in[2].Deleted = "finished", tm(8, 8), 77
	if err := s.SaveStage(ctx, in[2]); err != nil {
		t.Fatal(err)
	}
	got, err := s.Stages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []checkpoints.StageState{in[1], in[2], in[0]} // by Ord
	if len(got) != len(want) {
		t.Fatalf("Stages = %+v; want %d stages", got, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		for _, p := range []struct{ g, w *time.Time }{{&g.StartedAt, &w.StartedAt}, {&g.FinishedAt, &w.FinishedAt},
			{&g.PurgedAt, &w.PurgedAt}, {&g.RestoredAt, &w.RestoredAt}} {
			if !p.g.Equal(*p.w) {
				t.Errorf("stage %s: time %v, want %v", w.Name, *p.g, *p.w)
			}
			*p.g, *p.w = time.Time{}, time.Time{}
		}
		if g != w {
			t.Errorf("Stages[%d] = %+v\nwant %+v", i, g, w)
		}
	}
}

// ---- stats ----

func testStats(t *testing.T, s checkpoints.Store) {
	ctx := t.Context()
	st, err := s.Stats(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(nonZero(st.Records)) != 0 || len(nonZero2(st.ReplicasSite)) != 0 || len(nonZero2(st.StageCounts)) != 0 {
		t.Errorf("Stats of an empty store: %+v", st)
	}
	if st.RecentWindow <= 0 {
		t.Fatalf("Stats.RecentWindow = %v, want the window Recent counts over", st.RecentWindow)
	}
	now := time.Now()
	win := st.RecentWindow
	in, out := now.Add(-win/2), now.Add(-2*win)

	var recs []checkpoints.Record
	wantRec := map[checkpoints.RecordState]checkpoints.Count{}
	wantSite := map[string]map[checkpoints.ReplicaState]checkpoints.Count{}
	wantStage := map[string]map[checkpoints.ReplicaState]checkpoints.Count{}
	wantRecent := map[string]int64{"copied": 0, "verified": 0, "deleted": 0}
	add := func(m map[string]map[checkpoints.ReplicaState]checkpoints.Count, a string, b checkpoints.ReplicaState, size int64) {
		if m[a] == nil {
			m[a] = map[checkpoints.ReplicaState]checkpoints.Count{}
		}
		c := m[a][b]
		c.N++
		c.Bytes += size
		m[a][b] = c
	}
	sites := []string{siteVA, siteSG, siteAR}
	stages := []string{"", "canary", "backups"}
	for i := range 200 {
		size := int64(1000 + i*37)
		r := checkpoints.Record{Key: fmt.Sprintf("k%04d", i), Size: size, State: checkpoints.RecordStates[i%len(checkpoints.RecordStates)]}
		c := wantRec[r.State]
		c.N++
		c.Bytes += size
		wantRec[r.State] = c
		switch i % 4 {
		case 0:
			r.CopiedAt = in
			wantRecent["copied"]++
		case 1:
			r.CopiedAt = out
		}
		switch i % 3 {
		case 0:
			r.VerifiedAt = in
			wantRecent["verified"]++
		case 1:
			r.VerifiedAt = out
		}
		for j := 0; j <= i%3; j++ {
			p := checkpoints.Replica{Site: sites[j], SiteKey: r.Key, Size: size + int64(j),
				State: checkpoints.ReplicaStates[(i+j)%len(checkpoints.ReplicaStates)], Stage: stages[(i+j)%len(stages)]}
			if p.State == checkpoints.Deleted || p.State == checkpoints.Purged {
				if i%2 == 0 {
					p.DeletedAt = in
					wantRecent["deleted"]++
				} else {
					p.DeletedAt = out
				}
			}
			add(wantSite, p.Site, p.State, p.Size)
			if p.Stage != "" {
				add(wantStage, p.Stage, p.State, p.Size)
			}
			r.Replicas = append(r.Replicas, p)
		}
		recs = append(recs, r)
	}
	save(t, s, recs...)
	st, err = s.Stats(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := nonZero(st.Records); !reflect.DeepEqual(got, wantRec) {
		t.Errorf("Stats.Records:\n got %v\nwant %v", got, wantRec)
	}
	if got := nonZero2(st.ReplicasSite); !reflect.DeepEqual(got, wantSite) {
		t.Errorf("Stats.ReplicasSite:\n got %v\nwant %v", got, wantSite)
	}
	if got := nonZero2(st.StageCounts); !reflect.DeepEqual(got, wantStage) {
		t.Errorf("Stats.StageCounts:\n got %v\nwant %v", got, wantStage)
	}
	for k, w := range wantRecent {
		if w == 0 {
			t.Fatalf("fixture: no recent %s events", k)
		}
		if st.Recent[k] != w {
			t.Errorf("Stats.Recent[%s] = %d, want %d (window %v)", k, st.Recent[k], w, win)
		}
	}
	// Recent is relative to now: a window later nothing is recent.
	st, err = s.Stats(ctx, now.Add(2*win))
	if err != nil {
		t.Fatal(err)
	}
	for k := range wantRecent {
		if st.Recent[k] != 0 {
			t.Errorf("Stats(now+2 windows).Recent[%s] = %d, want 0", k, st.Recent[k])
		}
	}
}

func nonZero(m map[checkpoints.RecordState]checkpoints.Count) map[checkpoints.RecordState]checkpoints.Count {
	out := map[checkpoints.RecordState]checkpoints.Count{}
	for k, c := range m {
		if c != (checkpoints.Count{}) {
			out[k] = c
		}
	}
	return out
}

func nonZero2(m map[string]map[checkpoints.ReplicaState]checkpoints.Count) map[string]map[checkpoints.ReplicaState]checkpoints.Count {
	out := map[string]map[checkpoints.ReplicaState]checkpoints.Count{}
	for a, inner := range m {
		for b, c := range inner {
			if c == (checkpoints.Count{}) {
				continue
			}
			if out[a] == nil {
				out[a] = map[checkpoints.ReplicaState]checkpoints.Count{}
			}
			out[a][b] = c
		}
	}
	return out
}

// ---- lock ----

func hostname(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// lockedBy asserts err is a *LockedError naming holder.
func lockedBy(t *testing.T, err error, holder checkpoints.LockInfo) {
	t.Helper()
	var le *checkpoints.LockedError
	if !errors.As(err, &le) || !errors.Is(err, checkpoints.ErrLocked) {
		t.Fatalf("second Lock = %v (%T); want a *LockedError that is ErrLocked", err, err)
	}
	if le.Holder.Host != holder.Host || le.Holder.PID != holder.PID || le.Holder.Phase != holder.Phase {
		t.Errorf("LockedError names %+v; want host %s pid %d phase %s", le.Holder, holder.Host, holder.PID, holder.Phase)
	}
	if msg := err.Error(); !strings.Contains(msg, holder.Host) || !strings.Contains(msg, fmt.Sprint(holder.PID)) || !strings.Contains(msg, holder.Phase) {
		t.Errorf("LockedError message %q does not name host, pid and phase of the holder", msg)
	}
}

func holderIs(t *testing.T, s checkpoints.Store, want checkpoints.LockInfo) checkpoints.LockInfo {
	t.Helper()
	h, ok, err := s.LockHolder(t.Context())
	if err != nil || !ok {
		t.Fatalf("LockHolder = %v, %v; want %s", ok, err, want)
	}
	if h.Host != want.Host || h.PID != want.PID || h.Start != want.Start || h.Phase != want.Phase {
		t.Fatalf("LockHolder = %+v; want %+v", h, want)
	}
	return h
}

func testLockLiveHolder(t *testing.T, s checkpoints.Store, clk *clock.Fake) {
	ctx := t.Context()
	if h, ok, err := s.LockHolder(ctx); ok || err != nil {
		t.Fatalf("LockHolder of a new store = %+v, %v, %v; want none", h, ok, err)
	}
	me := checkpoints.Self("copy")
	if me.Host != hostname(t) || me.PID != os.Getpid() {
		t.Fatalf("Self = %+v", me)
	}
	l, err := s.Lock(ctx, me, time.Minute)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	h := holderIs(t, s, me)
	if h.Token == "" {
		t.Error("LockHolder has no token")
	}
	// The store's clock stands still: the lock was taken at its time, for the lease.
	if now := clk.Now(); !h.Acquired.Equal(now) {
		t.Errorf("LockHolder.Acquired = %v, want the store's clock, %v", h.Acquired, now)
	}
	if d := h.LeaseTill.Sub(h.Acquired); d != time.Minute {
		t.Errorf("lease: LeaseTill - Acquired = %v, want 1m", d)
	}

	// This process is alive: a second Lock (any phase) is refused, naming the holder.
	_, err = s.Lock(ctx, checkpoints.Self("verify"), time.Minute)
	lockedBy(t, err, me)
	holderIs(t, s, me) // the refused Lock changed nothing

	// Refresh extends the lease: a lease from the time of the refresh.
	clk.Advance(20 * time.Millisecond)
	if err := l.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if h2 := holderIs(t, s, me); !h2.LeaseTill.After(h.LeaseTill) || !h2.LeaseTill.Equal(clk.Now().Add(time.Minute)) {
		t.Errorf("Refresh did not extend the lease to a minute from now (%v): %v, then %v", clk.Now(), h.LeaseTill, h2.LeaseTill)
	}

	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if h, ok, err := s.LockHolder(ctx); ok || err != nil {
		t.Fatalf("LockHolder after Release = %+v, %v, %v; want none", h, ok, err)
	}
	// Release then Lock works.
	l2, err := s.Lock(ctx, checkpoints.Self("verify"), time.Minute)
	if err != nil {
		t.Fatalf("Lock after Release: %v", err)
	}
	holderIs(t, s, checkpoints.Self("verify"))
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}

	// On this host a live holder keeps the lock even when its lease has run out: only
	// its death frees it.
	short, err := s.Lock(ctx, me, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(20 * time.Millisecond)
	_, err = s.Lock(ctx, checkpoints.Self("verify"), time.Minute)
	lockedBy(t, err, me)
	if err := short.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// deadPID returns the pid of a process of this host that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	for range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		if err := cmd.Run(); err != nil {
			t.Fatalf("running a short-lived process: %v", err)
		}
		pid := cmd.Process.Pid
		if checkpoints.ProcessStart(pid) == -1 {
			return pid
		}
	}
	t.Fatal("no dead pid found")
	return 0
}

func testLockDeadHolder(t *testing.T, s checkpoints.Store) {
	ctx := t.Context()
	host := hostname(t)
	me := checkpoints.Self("copy")

	// The holder's process is gone: taken over at once, although its lease runs for
	// an hour.
	dead := checkpoints.LockInfo{Host: host, PID: deadPID(t), Start: 12345, Phase: "copy"}
	old, err := s.Lock(ctx, dead, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	holderIs(t, s, dead)
	l, err := s.Lock(ctx, me, time.Minute)
	if err != nil {
		t.Fatalf("Lock over a dead holder on this host: %v", err)
	}
	holderIs(t, s, me)
	// The old holder learns it lost the lock, and cannot release the new one.
	if err := old.Refresh(ctx); err == nil {
		t.Error("Refresh of a lock that was taken over succeeded")
	}
	if err := old.Release(ctx); err != nil {
		t.Errorf("Release of a lock that was taken over: %v", err)
	}
	holderIs(t, s, me)
	if err := l.Refresh(ctx); err != nil {
		t.Errorf("Refresh by the new holder: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}

	// A recycled pid: this process's pid with another start time is another process.
	if start := checkpoints.ProcessStart(os.Getpid()); start > 0 {
		recycled := checkpoints.LockInfo{Host: host, PID: os.Getpid(), Start: start + 1000, Phase: "plan"}
		if _, err := s.Lock(ctx, recycled, time.Hour); err != nil {
			t.Fatal(err)
		}
		l, err := s.Lock(ctx, me, time.Minute)
		if err != nil {
			t.Fatalf("Lock over a holder whose pid was recycled: %v", err)
		}
		holderIs(t, s, me)
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// A holder with no pid cannot be alive.
	if _, err := s.Lock(ctx, checkpoints.LockInfo{Host: host, Phase: "plan"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if l, err := s.Lock(ctx, me, time.Minute); err != nil {
		t.Errorf("Lock over a holder without a pid: %v", err)
	} else if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func testLockOtherHost(t *testing.T, s checkpoints.Store, clk *clock.Fake) {
	ctx := t.Context()
	me := checkpoints.Self("copy")
	// pid 1 exists here, which must not matter for another host's holder.
	other := checkpoints.LockInfo{Host: "worker-7.other-dc.invalid", PID: 1, Start: 1, Phase: "copy"}
	const lease = 2 * time.Second
	theirs, err := s.Lock(ctx, other, lease)
	if err != nil {
		t.Fatal(err)
	}
	h := holderIs(t, s, other)
	_, err = s.Lock(ctx, me, time.Minute)
	lockedBy(t, err, other)

	// A refresh keeps it: after the first lease would have ended, it is still held.
	clk.Advance(lease / 2)
	if err := theirs.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	h2 := holderIs(t, s, other)
	if !h2.LeaseTill.After(h.LeaseTill) {
		t.Fatalf("Refresh did not extend the lease: %v, then %v", h.LeaseTill, h2.LeaseTill)
	}
	clk.Advance(h.LeaseTill.Sub(clk.Now()) + 50*time.Millisecond)
	_, err = s.Lock(ctx, me, time.Minute)
	lockedBy(t, err, other)
	// Up to its last moment the refreshed lease holds.
	clk.Advance(h2.LeaseTill.Sub(clk.Now()) - time.Millisecond)
	_, err = s.Lock(ctx, me, time.Minute)
	lockedBy(t, err, other)

	// Once the lease has run out, the lock is taken over.
	clk.Advance(2 * time.Millisecond)
	mine, err := s.Lock(ctx, me, time.Minute)
	if err != nil {
		t.Fatalf("Lock after the other host's lease expired: %v", err)
	}
	holderIs(t, s, me)
	if err := theirs.Refresh(ctx); err == nil {
		t.Error("Refresh after takeover succeeded")
	}
	if err := theirs.Release(ctx); err != nil {
		t.Errorf("Release after takeover: %v", err)
	}
	holderIs(t, s, me) // the old holder's Release did not free the new holder's lock
	// And the other host is now refused: this process is alive.
	_, err = s.Lock(ctx, other, time.Minute)
	lockedBy(t, err, me)
	if err := mine.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// testLockRace: many contenders at once, exactly one wins.
func testLockRace(t *testing.T, s checkpoints.Store) {
	ctx := t.Context()
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []checkpoints.LockInfo
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			h := checkpoints.LockInfo{Host: fmt.Sprintf("host-%d.invalid", i), PID: 100 + i, Phase: "copy"}
			_, err := s.Lock(ctx, h, time.Hour)
			if err == nil {
				mu.Lock()
				winners = append(winners, h)
				mu.Unlock()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d contenders won the lock: %+v (errors %v)", len(winners), winners, errs)
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, checkpoints.ErrLocked) {
			t.Errorf("losing contender got %v, want ErrLocked", err)
		}
	}
	holderIs(t, s, winners[0])
}
