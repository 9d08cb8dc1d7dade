package checkpoints

import (
	"math"
	"reflect"
	"testing"
	"time"
)

// TestPGReplicasRoundTrip: the replicas column decodes to the replicas encoded, at
// the edges of every field (the server's own spelling of the JSON is covered by the
// storetest suite on a real server): one per site, in site order.
func TestPGReplicasRoundTrip(t *testing.T) {
	r := Record{Key: "k", Replicas: []Replica{
		{Site: "z", SiteKey: `a"b\c` + "\t\u2028<&>/😀", Primary: true, Size: math.MaxInt64, ETag: `"etag"`, Version: "null",
			ModTime: time.Date(1969, 12, 31, 23, 59, 59, 1, time.UTC), SHA256: "00", State: Deleted, Stage: "s", Mode: "soft",
			Handle: ".ferry-trash/x", IntentAt: time.Unix(0, math.MaxInt64).UTC(), DeletedAt: time.Unix(0, math.MinInt64+1).UTC(),
			PurgedAt: time.Unix(1, 1).UTC(), ConfirmedAbsent: true, LastError: "x\ny"},
		{Site: "a", State: Present},
		{Site: "m", State: Identical, Size: -1},
		{Site: "a", State: Intent, Stage: "later"}, // replaces the first "a"
	}}
	js, err := pgReplicasJSON(&r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgReplicasFrom("k", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	want := []Replica{r.Replicas[3], r.Replicas[2], r.Replicas[0]}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip of %s:\n got %+v\nwant %+v", js, got, want)
	}
	if none, err := pgReplicasFrom("k", []byte("[]")); none != nil || err != nil {
		t.Errorf("no replicas: %v, %v", none, err)
	}
	if _, err := pgReplicasFrom("k", []byte(`[{"site": 1}]`)); err == nil {
		t.Error("a malformed column decoded")
	}
	bad := Record{Key: "k", Replicas: []Replica{{Site: "a\x00b", State: Present}}}
	if _, err := pgReplicasJSON(&bad); err == nil {
		t.Error("a site with a NUL was encoded")
	}
}
