package migrate

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/fault"
	"github.com/ferrymigrate/ferry/providers/oci/ocitest"
	"github.com/ferrymigrate/ferry/providers/s3"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// The fault suite (issue 6): every store is a MinIO bucket reached through a
// fault-injecting reverse proxy (s3test.Proxy) on 127.0.0.1, or an OCI emulator
// bucket with its own fault hooks. After each scenario an oracle lists and reads the
// buckets directly (not through the proxy, not asking ferry).

// proxied opens every store of a harness as a fresh MinIO bucket behind one proxy,
// and the same bucket without the proxy for the oracle.
type proxied struct {
	srv     *s3test.Server
	proxy   *s3test.Proxy
	buckets map[string]string
	direct  map[string]providers.Store
}

func newProxied(t *testing.T) (*proxied, storeKind) {
	srv := s3test.Shared(t, s3test.MinIO)
	px := &proxied{srv: srv, proxy: srv.Proxy(t), buckets: map[string]string{}, direct: map[string]providers.Store{}}
	open := func(t *testing.T, cfg providers.Config, name string) providers.Store {
		cfg.Name, cfg.Migration = name, "test-migration"
		st, err := s3.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	return px, storeKind{"s3-proxied", func(t *testing.T, h *harness, name string) providers.Store {
		b := srv.Bucket(t, false)
		px.buckets[name] = b
		px.direct[name] = open(t, srv.Config(b, "users/"), name)
		return open(t, px.proxy.Config(srv, b, "users/"), name)
	}}
}

// list is the oracle's listing of a store: directly, around the proxy.
func (px *proxied) list(t *testing.T, name string) map[string]providers.Object {
	t.Helper()
	out := map[string]providers.Object{}
	if err := px.direct[name].List(context.Background(), func(o providers.Object) error { out[o.Key] = o; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// sum reads an object directly and returns its SHA-256.
func sumOf(t *testing.T, st providers.Store, key string) [32]byte {
	t.Helper()
	rc, _, err := st.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("oracle read %q: %v", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// checkTarget: every record is at the target (read directly) with exactly its bytes.
func checkTargetIntact(t *testing.T, target providers.Store, recs []synth.Record) {
	t.Helper()
	for _, r := range recs {
		if sumOf(t, target, r.Key) != sha256.Sum256(r.Bytes()) {
			t.Fatalf("record %q differs at the target", r.Key)
		}
	}
}

// untilDone reruns a phase while it reports a retryable outcome (runtime failure or
// records left failed), as an operator would; it fails the test after tries runs.
func untilDone(t *testing.T, what string, tries int, f func() error) int {
	t.Helper()
	for i := 1; ; i++ {
		err := f()
		if err == nil {
			return i
		}
		if c := ExitCode(err); (c != ExitRuntime && c != ExitIncomplete && c != ExitVerify) || i == tries {
			t.Fatalf("%s (run %d): %v", what, i, err)
		}
		t.Logf("%s run %d: %v", what, i, err)
	}
}

// storm injects 503 SlowDown, 429, 500, latency spikes and connections dropped
// mid-body on about share of all requests; it returns the rules.
func storm(px *s3test.Proxy, share float64) []*s3test.Rule {
	rules := []*s3test.Rule{
		{When: fault.When{Fraction: share * 0.3}, Fault: s3test.Fault{Status: http.StatusServiceUnavailable}},
		{When: fault.When{Fraction: share * 0.2}, Fault: s3test.Fault{Status: http.StatusTooManyRequests}},
		{When: fault.When{Fraction: share * 0.2}, Fault: s3test.Fault{Status: http.StatusInternalServerError}},
		{When: fault.When{Fraction: share * 0.1}, Fault: s3test.Fault{Latency: 250 * time.Millisecond}},
		{Op: s3test.OpGet, When: fault.When{Fraction: share * 0.2}, Fault: s3test.Fault{Truncate: true}},
		{Op: s3test.OpPut, When: fault.When{Fraction: share * 0.2}, Fault: s3test.Fault{TruncateRequest: true}},
		{Op: s3test.OpHead, When: fault.When{Fraction: share * 0.2}, Fault: s3test.Fault{Drop: true}},
	}
	for _, r := range rules {
		px.Inject(r)
	}
	return rules
}

// Scenario 1: storms of 503 SlowDown, 429 and 500 on 5% and 20% of requests, latency
// spikes and connections dropped mid-body, through plan, copy, verify, every delete
// stage and purge. The migration completes; the oracle finds every record at the
// target intact and every site empty; no target copy is written again once verified.
func TestFaultStormS3(t *testing.T) {
	for _, share := range []float64{0.05, 0.20} {
		t.Run(fmt.Sprintf("%d%%", int(share*100)), func(t *testing.T) {
			px, k := newProxied(t)
			h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
			recs := synth.Records(synth.Options{Users: 8, RecordsPerUser: 4, Tricky: true, Seed: 11})
			h.populate("virginia", recs)
			h.populate("singapore", synth.Subset(recs, 0.8, 1))
			h.populate("archive", synth.Subset(recs, 0.3, 2))
			rules := storm(px.proxy, share)
			m := h.open()
			ctx := context.Background()
			untilDone(t, "plan", 4, func() error { _, err := m.Plan(ctx); return err })
			untilDone(t, "copy and verify", 6, func() error {
				if _, err := m.Copy(ctx); err != nil {
					return err
				}
				_, err := m.Verify(ctx, false)
				return err
			})
			checkTargetIntact(t, px.direct["target"], recs)
			verified := px.list(t, "target")
			putsAtVerify := px.proxy.Answered(s3test.OpPut, px.buckets["target"])

			for _, st := range m.Spec.Delete.Stages {
				untilDone(t, "delete "+st.Name, 6, func() error { _, err := deleteStage(t, m, st.Name); return err })
			}
			h.advance(25 * time.Hour)
			for _, st := range []string{"canary", "backups"} {
				untilDone(t, "purge "+st, 6, func() error { _, err := m.Purge(ctx, st); return err })
			}
			// A copy after everything is verified copies nothing.
			untilDone(t, "copy again", 4, func() error {
				c, err := m.Copy(ctx)
				if err == nil && c.Copied != 0 {
					t.Fatalf("%d verified records copied again", c.Copied)
				}
				return err
			})
			px.proxy.Clear()

			fired := 0
			for _, r := range rules {
				fired += r.Fired()
			}
			if fired == 0 {
				t.Fatal("no fault fired: the test proved nothing")
			}
			if n := px.proxy.Answered(s3test.OpPut, px.buckets["target"]); n != putsAtVerify {
				t.Fatalf("%d writes reached the target after every record was verified", n-putsAtVerify)
			}
			now := px.list(t, "target")
			for key, o := range verified {
				if !now[key].SameVersion(o) {
					t.Fatalf("%q was rewritten at the target after it was verified", key)
				}
			}
			checkTargetIntact(t, px.direct["target"], recs)
			for _, site := range []string{"virginia", "singapore", "archive"} {
				if left := px.list(t, site); len(left) != 0 {
					t.Fatalf("%s still holds %d replicas after every stage and purge", site, len(left))
				}
			}
			st, err := m.Status(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if n := st.Records[checkpoints.Verified].N; n != int64(len(recs)) {
				t.Fatalf("%d of %d records verified", n, len(recs))
			}
			t.Logf("%d faults injected over %d requests answered", fired, px.proxy.Answered(s3test.OpAny, ""))
		})
	}
}

// notVerifiedUnlessIntact is the oracle after a phase run under corruption: any
// record ferry holds as verified has exactly the source's bytes at the target.
func notVerifiedUnlessIntact(t *testing.T, m *Migration, target providers.Store, recs []synth.Record) (verified int) {
	t.Helper()
	for _, r := range recs {
		rec, ok, err := m.State.Get(context.Background(), r.Key)
		if err != nil || !ok {
			t.Fatalf("record %q: %v", r.Key, err)
		}
		if rec.State != checkpoints.Verified {
			continue
		}
		verified++
		if sumOf(t, target, r.Key) != sha256.Sum256(r.Bytes()) {
			t.Fatalf("I2 broken: %q is verified but its target copy differs from the source", r.Key)
		}
		if rec.SHA256 != fmt.Sprintf("%x", sha256.Sum256(r.Bytes())) {
			t.Fatalf("I2 broken: %q is verified with a hash that is not the source's", r.Key)
		}
	}
	return verified
}

// Scenario 2: bodies truncated or corrupted in flight, on reads from a site and on
// writes to the target. The checksums catch them, the copy is retried, and no
// record is ever verified with a target copy that differs from its source.
func TestFaultCorruptionS3(t *testing.T) {
	cases := []struct {
		name  string
		store string
		op    s3test.Op
		fault s3test.Fault
	}{
		{"site-read-corrupted", "virginia", s3test.OpGet, s3test.Fault{CorruptBody: true}},
		{"site-read-truncated", "virginia", s3test.OpGet, s3test.Fault{ShortBody: true}},
		{"site-read-cut", "virginia", s3test.OpGet, s3test.Fault{Truncate: true}},
		{"target-write-corrupted", "target", s3test.OpPut, s3test.Fault{CorruptRequest: true}},
		{"target-write-truncated", "target", s3test.OpPut, s3test.Fault{TruncateRequest: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			px, k := newProxied(t)
			h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
			recs := synth.Records(synth.Options{Users: 5, RecordsPerUser: 4, MinSize: 64, Seed: 5})
			h.populate("virginia", recs)
			h.populate("singapore", synth.Subset(recs, 0.5, 1))
			m := h.open()
			ctx := context.Background()
			if _, err := m.Plan(ctx); err != nil {
				t.Fatal(err)
			}
			rule := &s3test.Rule{Op: c.op, Bucket: px.buckets[c.store], When: fault.When{Fraction: 0.3}, Fault: c.fault}
			sure := &s3test.Rule{Op: c.op, Bucket: px.buckets[c.store], When: fault.When{Skip: 1, Times: 1}, Fault: c.fault} // fires whatever the dice say
			px.proxy.Inject(sure)
			px.proxy.Inject(rule)
			// Under the fault: copy and verify, as often as an operator would rerun them.
			for range 3 {
				t0 := time.Now()
				c, err := m.Copy(ctx)
				t.Logf("copy %v in %s: %+v", err, time.Since(t0), c)
				m.Verify(ctx, false)
				notVerifiedUnlessIntact(t, m, px.direct["target"], recs)
			}
			if sure.Fired() != 1 {
				t.Fatalf("the fault fired %d times for certain, want once", sure.Fired())
			}
			// Without the fault the migration completes, every record intact.
			px.proxy.Clear()
			untilDone(t, "copy", 3, func() error { _, err := m.Copy(ctx); return err })
			untilDone(t, "verify", 3, func() error { _, err := m.Verify(ctx, false); return err })
			if n := notVerifiedUnlessIntact(t, m, px.direct["target"], recs); n != len(recs) {
				t.Fatalf("%d of %d records verified after the fault cleared", n, len(recs))
			}
			// And the delete stages remove only proven replicas.
			for _, st := range m.Spec.Delete.Stages {
				if _, err := deleteStage(t, m, st.Name); err != nil {
					t.Fatalf("%s: %v", st.Name, err)
				}
			}
			checkTargetIntact(t, px.direct["target"], recs)
			t.Logf("%d requests faulted", rule.Fired())
		})
	}
}

var (
	isTruncatedRE = regexp.MustCompile(`<IsTruncated>true</IsTruncated>`)
	contentsRE    = regexp.MustCompile(`(?s)<Contents>.*</Contents>`)
)

// Scenarios 3 and 4: a listing that fails from page 2 on, one whose page 2 is cut
// short mid-body, and one that claims to be complete after page 1 (through the proxy,
// over a site of more than one page); and an empty listing of a site the plan knows.
// A failing listing fails the plan without changing it; an empty one is refused;
// a lying one flags the unlisted replicas missing and none of them is deleted.
func TestFaultListingS3(t *testing.T) {
	px, k := newProxied(t)
	h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
	// More than one listing page (S3 pages hold 1,000 keys) at virginia.
	recs := synth.Records(synth.Options{Users: 260, RecordsPerUser: 4, MinSize: 16, MaxSize: 64, Seed: 3})
	if len(recs) <= 1000 {
		t.Fatalf("%d records fit one page", len(recs))
	}
	if err := synth.Populate(context.Background(), px.direct["virginia"], recs, 32); err != nil {
		t.Fatal(err)
	}
	h.populate("singapore", synth.Subset(recs, 0.02, 1))
	h.populate("archive", synth.Subset(recs, 0.01, 2))
	virginia := px.bucket("virginia")
	page2 := func(r *http.Request) bool { return r.URL.Query().Get("continuation-token") != "" }
	// virginia is listed whole, page by page (as a versioned bucket is): the faults
	// below are in its second page.
	h.faults["virginia"].RefuseRanges()
	m := h.open()
	ctx := context.Background()

	// A fresh plan whose listing fails on page 2 stores no plan at all.
	remove := px.proxy.Inject(&s3test.Rule{Op: s3test.OpList, Bucket: virginia, Match: page2, Fault: s3test.Fault{Status: 500}})
	_, err := m.Plan(ctx)
	mustCode(t, err, ExitRuntime)
	remove()
	if _, ok, _ := m.State.Meta(ctx, "plan_digest"); ok {
		t.Fatal("I6 broken: a plan was stored from a listing that failed")
	}
	_, err = m.Copy(ctx)
	mustCode(t, err, ExitUsage)

	t0 := time.Now()
	p1 := runThroughVerify(t, m)
	t.Logf("plan, copy, verify of %d records in %s", len(recs), time.Since(t0))
	before, err := m.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	unchanged := func(what string) {
		t.Helper()
		after, err := m.Status(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if after.PlanDigest != p1.Digest || fmt.Sprint(before.Sites) != fmt.Sprint(after.Sites) || fmt.Sprint(before.Records) != fmt.Sprint(after.Records) {
			t.Fatalf("I6 broken: %s changed the plan", what)
		}
		if n := len(px.list(t, "virginia")); n != len(recs) {
			t.Fatalf("I6 broken: virginia holds %d of %d after %s", n, len(recs), what)
		}
	}
	faults := []struct {
		name string
		rule *s3test.Rule
		code int
	}{
		{"page 2 failing", &s3test.Rule{Op: s3test.OpList, Bucket: virginia, Match: page2, Fault: s3test.Fault{Status: 500}}, ExitRuntime},
		{"page 2 dropped mid-body", &s3test.Rule{Op: s3test.OpList, Bucket: virginia, Match: page2, Fault: s3test.Fault{Truncate: true}}, ExitRuntime},
		{"page 2 cut short", &s3test.Rule{Op: s3test.OpList, Bucket: virginia, Match: page2, Fault: s3test.Fault{ShortBody: true}}, ExitRuntime},
		{"an empty listing", &s3test.Rule{Op: s3test.OpList, Bucket: virginia, Fault: s3test.Fault{Rewrite: func(_ int, _ http.Header, b []byte) []byte {
			b = contentsRE.ReplaceAll(b, nil)
			b = isTruncatedRE.ReplaceAll(b, []byte("<IsTruncated>false</IsTruncated>"))
			return regexp.MustCompile(`<KeyCount>\d+</KeyCount>`).ReplaceAll(b, []byte("<KeyCount>0</KeyCount>"))
		}}}, ExitRefused},
	}
	for _, f := range faults {
		remove := px.proxy.Inject(f.rule)
		_, err := m.Plan(ctx)
		remove()
		if ExitCode(err) != f.code {
			t.Fatalf("plan with %s: exit %d (%v), want %d", f.name, ExitCode(err), err, f.code)
		}
		if f.rule.Fired() == 0 {
			t.Fatalf("%s: the fault never fired", f.name)
		}
		unchanged(f.name)
	}

	// A listing that claims to be complete after page 1: ferry cannot tell, but the
	// replicas it did not see are flagged missing and no stage deletes them.
	lie := &s3test.Rule{Op: s3test.OpList, Bucket: virginia, Fault: s3test.Fault{Rewrite: func(_ int, _ http.Header, b []byte) []byte {
		return isTruncatedRE.ReplaceAll(b, []byte("<IsTruncated>false</IsTruncated>"))
	}}}
	remove = px.proxy.Inject(lie)
	if _, err := m.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	remove()
	for _, st := range m.Spec.Delete.Stages {
		deleteStage(t, m, st.Name)
	}
	st, _ := m.Status(ctx, "")
	missing := st.Sites["virginia"][checkpoints.Missing].N
	left := px.list(t, "virginia")
	if missing == 0 || int64(len(left)) != missing {
		t.Fatalf("I6 broken: %d replicas left at virginia, %d flagged missing (absence in a listing led to deletion)", len(left), missing)
	}
	for key := range left {
		if sumOf(t, px.direct["target"], key) != sumOf(t, px.direct["virginia"], key) {
			t.Fatalf("%q left at virginia differs from its target copy", key)
		}
	}
	checkTargetIntact(t, px.direct["target"], recs)
}

func (px *proxied) bucket(name string) string { return px.buckets[name] }

// Scenarios 1 and 2 on an OCI target: the emulator's own fault hooks throw 503, 429
// and 500 at 15% of all requests, delay some, drop connections before and after the
// request took effect, cut response bodies mid-way and corrupt uploads and
// downloads. Copy and verify (re-reading every target copy) are rerun until they
// pass, as an operator would; then every stage and purge run under the storm. The
// oracle (the emulator's bucket read directly, faults off) finds every record intact,
// no target copy written again once verified, and the sites empty.
func TestFaultStormOCITarget(t *testing.T) {
	h := newHarness(t, storeKinds[0], fmt.Sprintf(sitesYAML, "fail"))
	srv := useOCITarget(t, h, false)
	recs := h.standardData(8)
	const share = 0.15
	storm := []*ocitest.Rule{
		{When: fault.When{Fraction: share * 0.3}, Fault: ocitest.Fault{Status: 503}},
		{When: fault.When{Fraction: share * 0.2}, Fault: ocitest.Fault{Status: 429}},
		{When: fault.When{Fraction: share * 0.2}, Fault: ocitest.Fault{Status: 500}},
		{When: fault.When{Fraction: share * 0.1}, Fault: ocitest.Fault{Latency: 200 * time.Millisecond}},
		{Op: "PutObject", When: fault.When{Fraction: share * 0.2}, Fault: ocitest.Fault{Lost: true}},
		{Op: "HeadObject", When: fault.When{Fraction: share * 0.2}, Fault: ocitest.Fault{Drop: true}},
		{Op: "GetObject", When: fault.When{Fraction: share * 0.3}, Fault: ocitest.Fault{Truncate: true}},
	}
	corrupt := []*ocitest.Rule{
		{Op: "PutObject", When: fault.When{Fraction: share * 0.3}, Fault: ocitest.Fault{CorruptRequest: true}},
		{Op: "GetObject", When: fault.When{Fraction: share * 0.3}, Fault: ocitest.Fault{CorruptBody: true}},
	}
	// Each kind of fault also fires once for certain (the third request it matches),
	// so the test never passes on a run whose dice spared one kind.
	var sure []*ocitest.Rule
	for _, r := range append(append([]*ocitest.Rule(nil), storm...), corrupt...) {
		sure = append(sure, &ocitest.Rule{Op: r.Op, When: fault.When{Skip: 2, Times: 1}, Fault: r.Fault})
	}
	inject := func(rules []*ocitest.Rule) {
		for _, r := range rules {
			srv.Inject(r)
		}
	}
	inject(sure)
	inject(storm)
	inject(corrupt)
	m := h.open()
	ctx := context.Background()
	untilDone(t, "plan", 4, func() error { _, err := m.Plan(ctx); return err })
	copyVerify := func() {
		untilDone(t, "copy and verify", 8, func() error {
			if _, err := m.Copy(ctx); err != nil {
				return err
			}
			_, err := m.Verify(ctx, false)
			return err
		})
	}
	copyVerify()
	// A verify that re-reads every copy while reads are cut or corrupted: whatever it
	// cannot prove is not verified, and nothing wrong ever is.
	_, err := m.Verify(ctx, true)
	t.Logf("re-read verify under faults: %v", err)
	srv.ClearFaults()
	notVerifiedUnlessIntact(t, m, h.raw["target"], recs)
	copyVerify()
	checkTargetIntact(t, h.raw["target"], recs)
	verified := h.listing("target")
	if n := notVerifiedUnlessIntact(t, m, h.raw["target"], recs); n != len(recs) {
		t.Fatalf("%d of %d records verified", n, len(recs))
	}

	inject(storm)
	for _, st := range m.Spec.Delete.Stages {
		untilDone(t, "delete "+st.Name, 8, func() error { _, err := deleteStage(t, m, st.Name); return err })
	}
	h.advance(25 * time.Hour)
	for _, st := range []string{"canary", "backups"} {
		untilDone(t, "purge "+st, 4, func() error { _, err := m.Purge(ctx, st); return err })
	}
	srv.ClearFaults()
	fired := 0
	for _, r := range sure {
		if r.Fired() != 1 {
			t.Errorf("fault %+v fired %d times, want once for certain", r.Fault, r.Fired())
		}
	}
	for _, r := range append(append(storm, corrupt...), sure...) {
		fired += r.Fired()
	}
	checkTargetIntact(t, h.raw["target"], recs)
	now := h.listing("target")
	for key, o := range verified {
		if !now[key].SameVersion(o) {
			t.Fatalf("%q was rewritten at the target after it was verified", key)
		}
	}
	for _, site := range []string{"virginia", "singapore", "archive"} {
		if n := len(h.listing(site)); n != 0 {
			t.Fatalf("%s still holds %d replicas", site, n)
		}
	}
	if _, err := m.Verify(ctx, true); err != nil {
		t.Fatalf("re-read verify with the faults off: %v", err)
	}
	t.Logf("%d faults injected", fired)
}
