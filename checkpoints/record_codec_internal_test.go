package checkpoints

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// codecRecord builds a record with every field set from the arguments. Times are
// stored as Unix nanoseconds with 0 for unset (as in every layout), so the instant
// 1970-01-01T00:00:00Z reads back as unset, and times outside 1678 to 2262 do not fit:
// neither is a time ferry records, and the fuzzer is kept off them.
func codecRecord(key, s1, s2 string, n int64, t1 int64) Record {
	at := func(d int64) time.Time {
		if t1+d == 0 {
			return time.Time{}
		}
		return time.Unix(0, t1+d).UTC()
	}
	return Record{Key: key, User: s1, Size: n, State: Verified, SHA256: s2, CRC32C: s1, Source: s2, TargetKey: key + s1,
		TargetETag: s2, TargetVersion: s1, CopiedAt: at(1), VerifiedAt: at(2), Attempts: int(n % 1000), LastError: s2, Conflict: s1,
		Replicas: []Replica{
			{Site: "a" + s1, SiteKey: key, Primary: true, Size: n, ETag: s2, Version: s1, ModTime: at(3), SHA256: s2, State: Identical,
				Stage: s1, Mode: s2, Handle: s1, IntentAt: at(4), DeletedAt: at(5), PurgedAt: at(6), ConfirmedAbsent: n%2 == 0, LastError: s1},
			{Site: "b" + s2, SiteKey: s2 + key, Size: -n, State: Deleted, Stage: s2, ModTime: at(-7)},
		}}
}

// roundTrip encodes r and decodes it back.
func roundTrip(t *testing.T, r Record) Record {
	t.Helper()
	reps := canonicalReplicas(r.Replicas)
	data := encodeRecord(nil, &r, reps)
	got := Record{Key: r.Key, User: r.User, State: r.State}
	if err := decodeRecord(&got, data); err != nil {
		t.Fatalf("decode of an encoded record: %v", err)
	}
	return got
}

// TestRecordCodec: a record round-trips field for field; its replicas come back
// sorted by site, one per site (the last given); truncated or extended data, or
// another format, is an error, never a record.
func TestRecordCodec(t *testing.T) {
	r := codecRecord("user1/a b\x00c", "ü", strings.Repeat("x", 300), 1<<40, 1_700_000_000_000_000_000)
	if got := roundTrip(t, r); !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
	}
	// SHA-256s: lowercase hex is stored raw, a replica's equal to its record's as a
	// tag; anything else as it is.
	hexA, hexB := strings.Repeat("0123456789abcdef", 4), strings.Repeat("fedcba9876543210", 4)
	for _, c := range []struct{ rec, rep string }{{hexA, hexA}, {hexA, hexB}, {hexA, ""}, {"", hexB},
		{strings.ToUpper(hexA), strings.ToUpper(hexA)}, {hexA[:63], hexA[:63] + "g"}, {hexA + "0", hexA}} {
		h := codecRecord("k", "u", "s", 1, 1)
		h.SHA256, h.Replicas[0].SHA256, h.Replicas[1].SHA256 = c.rec, c.rep, c.rec
		if got := roundTrip(t, h); !reflect.DeepEqual(got, h) {
			t.Fatalf("round trip of hashes %q, %q:\n got %+v\nwant %+v", c.rec, c.rep, got, h)
		}
	}
	plain := codecRecord("k", "u", "", 1, 1)
	plain.Replicas = plain.Replicas[:1]
	size := len(encodeRecord(nil, &plain, plain.Replicas))
	plain.SHA256, plain.Replicas[0].SHA256 = hexA, hexA
	if n := len(encodeRecord(nil, &plain, plain.Replicas)); n != size+32 {
		t.Errorf("a record and its replica with one lowercase hex SHA-256 take %d bytes more than without, want 32", n-size)
	}

	empty := Record{Key: "k"}
	if got := roundTrip(t, empty); !reflect.DeepEqual(got, empty) {
		t.Fatalf("round trip of an empty record: %+v", got)
	}

	r.Replicas = []Replica{{Site: "z", Size: 1}, {Site: "m", Size: 2}, {Site: "z", Size: 3}, {Site: "a", Size: 4}}
	got := roundTrip(t, r)
	var sites []string
	var sizes []int64
	for _, p := range got.Replicas {
		sites, sizes = append(sites, p.Site), append(sizes, p.Size)
	}
	if !reflect.DeepEqual(sites, []string{"a", "m", "z"}) || !reflect.DeepEqual(sizes, []int64{4, 2, 3}) {
		t.Errorf("replicas stored as %v %v, want [a m z] [4 2 3]", sites, sizes)
	}
	if r.Replicas[0].Site != "z" {
		t.Error("canonicalReplicas changed the caller's slice")
	}

	data := encodeRecord(nil, &r, canonicalReplicas(r.Replicas))
	for _, bad := range [][]byte{nil, data[:len(data)-1], append(data[:len(data):len(data)], 0), append([]byte{recordFormat + 1}, data[1:]...)} {
		var x Record
		if err := decodeRecord(&x, bad); err == nil {
			t.Errorf("decode of %d bytes of bad data: no error", len(bad))
		}
	}
}

// TestStagesOf: the stages column names each stage once, between '|'s.
func TestStagesOf(t *testing.T) {
	for _, c := range []struct {
		stages []string
		want   string
	}{{nil, ""}, {[]string{"", ""}, ""}, {[]string{"b", "a", "b", ""}, "|b|a|"}, {[]string{"a|b", "a"}, "|a|b|"}} {
		var reps []Replica
		for _, s := range c.stages {
			reps = append(reps, Replica{Stage: s})
		}
		if got := stagesOf(reps); got != c.want {
			t.Errorf("stagesOf(%q) = %q, want %q", c.stages, got, c.want)
		}
		for _, s := range c.stages {
			if s != "" && !strings.Contains(stagesOf(reps), stageNeedle(s)) {
				t.Errorf("stagesOf(%q) does not hold %q", c.stages, stageNeedle(s))
			}
		}
	}
}

// FuzzRecordCodec: any record round-trips, and any bytes decode without a panic,
// either to an error or to a record that encodes to data decoding to it again.
func FuzzRecordCodec(f *testing.F) {
	f.Add("k", "u", "s", int64(5), int64(1), []byte{recordFormat})
	f.Add("", "", "", int64(0), int64(0), encodeRecord(nil, &Record{Key: "k"}, nil))
	r := codecRecord("k", "u", "s", 9, 99)
	f.Add("a/b", "|", "\xff", int64(-1), int64(-99), encodeRecord(nil, &r, r.Replicas))
	h := strings.Repeat("0123456789abcdef", 4)
	r = codecRecord("k", "u", h, 9, 99)
	r.Replicas[1].SHA256 = h[1:] + "0"
	f.Add("k", "u", h, int64(9), int64(99), encodeRecord(nil, &r, canonicalReplicas(r.Replicas)))
	f.Fuzz(func(t *testing.T, key, s1, s2 string, n, t1 int64, data []byte) {
		r := codecRecord(key, s1, s2, n, t1)
		got := roundTrip(t, r)
		want := r
		want.Replicas = canonicalReplicas(r.Replicas)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}

		x := Record{Key: key}
		if err := decodeRecord(&x, data); err != nil {
			return
		}
		again := Record{Key: key}
		if err := decodeRecord(&again, encodeRecord(nil, &x, x.Replicas)); err != nil || !reflect.DeepEqual(again, x) {
			t.Fatalf("decoded %+v, re-encoded and decoded %+v (%v)", x, again, err)
		}
	})
}

// TestReplicaArena: records decoded from one arena do not share replicas: changing or
// appending to one record's leaves the next record's as they were.
func TestReplicaArena(t *testing.T) {
	var arena replicaArena
	recs := make([]Record, 3)
	for i := range recs {
		r := codecRecord(fmt.Sprint("k", i), "u", "s", int64(i), 1)
		recs[i].Key = r.Key
		if err := decodeRecordIn(&recs[i], encodeRecord(nil, &r, canonicalReplicas(r.Replicas)), &arena); err != nil {
			t.Fatal(err)
		}
	}
	want := recs[1].Replicas[0]
	recs[0].Replicas = append(recs[0].Replicas, Replica{Site: "zz"})
	recs[0].Replicas[1].Site = "changed"
	if recs[1].Replicas[0] != want || len(recs[1].Replicas) != 2 {
		t.Fatalf("the next record's replicas changed: %+v", recs[1].Replicas)
	}
	for _, n := range []int{1, arenaChunk, arenaChunk + 1} {
		if got := arena.take(n); len(got) != n || cap(got) != n {
			t.Fatalf("take(%d): len %d cap %d", n, len(got), cap(got))
		}
	}
	// Reading one record takes a small array, not a page's.
	var one replicaArena
	if one.take(2); cap(one) > 8 {
		t.Errorf("one record's replicas took an array of %d", cap(one))
	}
}
