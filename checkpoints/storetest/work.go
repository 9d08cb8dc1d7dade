package storetest

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/checkpoints/clock"
)

// The shared-work part of the suite (checkpoints.WorkStore).

func workTests() []suiteTest {
	return []suiteTest{
		{name: "RecordsThrough", fn: testRecordsThrough},
		{name: "WorkersExcludeLock", fn: testWorkersExcludeLock},
		{name: "WorkPartitionRounds", fn: testWorkPartitionRounds},
		{name: "WorkFencing", timed: testWorkFencing},
		{name: "WorkHeartbeatAndLeave", timed: testWorkHeartbeatAndLeave},
		{name: "WorkClaimRace", fn: testWorkClaimRace},
		{name: "WorkSharedListing", timed: testWorkSharedListing},
	}
}

func worker(t *testing.T, id, phase string) checkpoints.Worker {
	return checkpoints.Worker{ID: id, Host: hostname(t), PID: os.Getpid(), Start: checkpoints.ProcessStart(os.Getpid()), Phase: phase}
}

func testRecordsThrough(t *testing.T, s checkpoints.Store) {
	var recs []checkpoints.Record
	for i := range 10 {
		recs = append(recs, fullRecord(fmt.Sprintf("k%02d", i), i))
	}
	save(t, s, recs...)
	got := keysOf(records(t, s, checkpoints.Query{After: "k02", Through: "k05"}))
	if fmt.Sprint(got) != "[k03 k04 k05]" {
		t.Errorf("Records(After k02, Through k05) = %v; want [k03 k04 k05]", got)
	}
	got = keysOf(records(t, s, checkpoints.Query{Through: "k01"}))
	if fmt.Sprint(got) != "[k00 k01]" {
		t.Errorf("Records(Through k01) = %v; want [k00 k01]", got)
	}
	for _, r := range []checkpoints.Range{{Lo: "k02", Hi: "k05"}, {Lo: "", Hi: "k01"}, {Lo: "k08", Hi: ""}} {
		want := 0
		for _, rec := range recs {
			if r.Contains(rec.Key) {
				want++
			}
		}
		if got := records(t, s, checkpoints.Query{After: r.Lo, Through: r.Hi}); len(got) != want {
			t.Errorf("range %s: %d records, want %d", r, len(got), want)
		}
	}
}

func testWorkersExcludeLock(t *testing.T, s checkpoints.Store) {
	ctx := t.Context()
	a, b := worker(t, "w-a", "copy"), worker(t, "w-b", "copy")
	if err := s.Join(ctx, a, time.Minute); err != nil {
		t.Fatalf("Join: %v", err)
	}
	if err := s.Join(ctx, b, time.Minute); err != nil {
		t.Fatalf("a second worker of the same phase: %v", err)
	}
	// A live worker excludes the lock, and a worker of another phase.
	if _, err := s.Lock(ctx, checkpoints.Self("copy"), time.Minute); !errors.Is(err, checkpoints.ErrLocked) {
		t.Fatalf("Lock while workers run = %v; want ErrLocked", err)
	}
	if err := s.Join(ctx, worker(t, "w-c", "verify"), time.Minute); !errors.Is(err, checkpoints.ErrLocked) {
		t.Fatalf("Join of another phase while copy workers run = %v; want ErrLocked", err)
	}
	ws, err := s.Workers(ctx)
	if err != nil || len(ws) != 2 {
		t.Fatalf("Workers = %+v, %v; want 2", ws, err)
	}
	for _, w := range ws {
		if !w.Alive(time.Now()) || w.Phase != "copy" || w.Host != a.Host || w.PID != a.PID || w.Joined.IsZero() {
			t.Errorf("worker %+v: want alive, phase copy, this host and pid", w)
		}
	}
	for _, id := range []string{"w-a", "w-b"} {
		if err := s.Leave(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// Gone workers exclude nothing; a held lock excludes workers.
	l, err := s.Lock(ctx, checkpoints.Self("verify"), time.Minute)
	if err != nil {
		t.Fatalf("Lock after the workers left: %v", err)
	}
	if err := s.Join(ctx, worker(t, "w-d", "verify"), time.Minute); !errors.Is(err, checkpoints.ErrLocked) {
		t.Fatalf("Join while the lock is held = %v; want ErrLocked", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// A worker whose process is gone counts for nothing, whatever its lease says.
	dead := worker(t, "w-dead", "copy")
	dead.PID = deadPID(t)
	if err := s.Join(ctx, dead, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Join(ctx, worker(t, "w-e", "delete/canary"), time.Minute); err != nil {
		t.Fatalf("Join beside a dead worker of another phase: %v", err)
	}
}

func threeRanges() ([]checkpoints.Range, error) {
	return []checkpoints.Range{{Lo: "", Hi: "k03"}, {Lo: "k03", Hi: "k06"}, {Lo: "k06", Hi: ""}}, nil
}

func testWorkPartitionRounds(t *testing.T, s checkpoints.Store) {
	ctx := t.Context()
	for _, w := range []string{"w1", "w2"} {
		if err := s.Join(ctx, worker(t, w, "copy"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := s.Partition(ctx, "copy", false, threeRanges)
	if err != nil || rs.Round != 1 || rs.Open != 3 {
		t.Fatalf("Partition = %+v, %v; want round 1 with 3 open ranges", rs, err)
	}
	// While the round is unfinished, Partition joins it and does not cut again.
	rs2, err := s.Partition(ctx, "copy", false, func() ([]checkpoints.Range, error) {
		t.Error("Partition cut a new round while round 1 is unfinished")
		return nil, nil
	})
	if err != nil || rs2.Round != 1 {
		t.Fatalf("second Partition = %+v, %v; want round 1", rs2, err)
	}
	// Another scope has rounds of its own.
	if other, err := s.Partition(ctx, "verify", false, threeRanges); err != nil || other.Round != 1 {
		t.Fatalf("Partition(verify) = %+v, %v", other, err)
	}
	seen := map[int64]checkpoints.Claim{}
	for i := range 3 {
		c, ok, err := s.Claim(ctx, "copy", 1, []string{"w1", "w2"}[i%2], time.Minute)
		if err != nil || !ok {
			t.Fatalf("Claim %d = %v, %v", i, ok, err)
		}
		if _, dup := seen[c.Seq]; dup {
			t.Fatalf("range %d claimed twice", c.Seq)
		}
		if c.Epoch != 1 || c.Takeover || c.LeaseTill.Before(time.Now()) {
			t.Errorf("fresh claim %+v: want epoch 1, no takeover, a running lease", c)
		}
		seen[c.Seq] = c
	}
	if c, ok, err := s.Claim(ctx, "copy", 1, "w1", time.Minute); ok || err != nil {
		t.Fatalf("Claim with every range held = %+v, %v, %v; want none", c, ok, err)
	}
	if st, err := s.Round(ctx, "copy", 1); err != nil || st.Held != 3 || st.Finished() {
		t.Fatalf("Round = %+v, %v; want 3 held", st, err)
	}
	// Finish saves the records and closes the range.
	for seq, c := range seen {
		rec := fullRecord(fmt.Sprintf("k%02d", seq*3-1), int(seq))
		if err := s.Finish(ctx, c, []checkpoints.Record{rec}); err != nil {
			t.Fatalf("Finish %s: %v", c, err)
		}
		sameRecord(t, "after Finish", get(t, s, rec.Key), rec)
	}
	if st, err := s.Round(ctx, "copy", 1); err != nil || st.Done != 3 || !st.Finished() {
		t.Fatalf("Round = %+v, %v; want 3 done", st, err)
	}
	ws, _ := s.Workers(ctx)
	var ranges int64
	for _, w := range ws {
		ranges += w.Ranges
	}
	if ranges != 3 {
		t.Errorf("workers finished %d ranges in all, want 3: %+v", ranges, ws)
	}
	// A finished round: the next Partition cuts round 2; none when there is no work.
	if rs, err := s.Partition(ctx, "copy", false, func() ([]checkpoints.Range, error) { return nil, nil }); err != nil || rs.Round != 0 {
		t.Fatalf("Partition with no work = %+v, %v; want round 0", rs, err)
	}
	if rs, err := s.Partition(ctx, "copy", false, threeRanges); err != nil || rs.Round != 2 || rs.Open != 3 {
		t.Fatalf("Partition after a finished round = %+v, %v; want round 2", rs, err)
	}
	// An error from the cutter is returned and leaves no round.
	boom := errors.New("boom")
	if _, err := s.Partition(ctx, "plan", false, func() ([]checkpoints.Range, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("Partition whose cutter fails = %v; want boom", err)
	}
	if st, err := s.Round(ctx, "plan", 1); err != nil || st.Open+st.Held+st.Done != 0 {
		t.Fatalf("a failed Partition left %+v, %v", st, err)
	}
}

func testWorkFencing(t *testing.T, s checkpoints.Store, clk *clock.Fake) {
	ctx := t.Context()
	if _, err := s.Partition(ctx, "copy", false, func() ([]checkpoints.Range, error) {
		return []checkpoints.Range{{Lo: "", Hi: ""}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	lease := 400 * time.Millisecond
	old, ok, err := s.Claim(ctx, "copy", 1, "slow", lease)
	if err != nil || !ok {
		t.Fatalf("Claim: %v, %v", ok, err)
	}
	// Within its lease, the holder's checkpoint is written.
	first := fullRecord("k1", 1)
	if err := s.Checkpoint(ctx, old, "k1", []checkpoints.Record{first}, nil); err != nil {
		t.Fatalf("Checkpoint within the lease: %v", err)
	}
	// Up to the end of the lease, it still holds the range.
	clk.Advance(lease - time.Millisecond)
	if _, ok, err := s.Claim(ctx, "copy", 1, "fast", time.Minute); ok || err != nil {
		t.Fatalf("Claim of a range whose lease still runs = %v, %v; want none", ok, err)
	}
	if err := s.Checkpoint(ctx, old, "k1", []checkpoints.Record{first}, nil); err != nil {
		t.Fatalf("Checkpoint at the end of the lease: %v", err)
	}
	clk.Advance(200 * time.Millisecond)
	// Expired and not yet taken over: still rejected, since the lease was lost.
	late := fullRecord("k2", 2)
	if err := s.Checkpoint(ctx, old, "k2", []checkpoints.Record{late}, nil); !errors.Is(err, checkpoints.ErrFenced) {
		t.Fatalf("Checkpoint after the lease ran out = %v; want ErrFenced", err)
	}
	// Taken over: a new epoch, the cursor of the last checkpoint.
	cur, ok, err := s.Claim(ctx, "copy", 1, "fast", time.Minute)
	if err != nil || !ok {
		t.Fatalf("Claim of an expired range: %v, %v", ok, err)
	}
	if !cur.Takeover || cur.Epoch != old.Epoch+1 || cur.Cursor != "k1" || cur.Seq != old.Seq {
		t.Fatalf("takeover claim %+v; want Takeover, epoch %d, cursor k1", cur, old.Epoch+1)
	}
	if err := s.Finish(ctx, old, []checkpoints.Record{late}); !errors.Is(err, checkpoints.ErrFenced) {
		t.Fatalf("Finish by the worker that lost the range = %v; want ErrFenced", err)
	}
	var fe *checkpoints.FencedError
	if err := s.Finish(ctx, old, nil); !errors.As(err, &fe) || fe.Holder != "fast" || fe.Epoch != cur.Epoch {
		t.Fatalf("FencedError = %v; want it to name holder fast at epoch %d", err, cur.Epoch)
	}
	if _, ok, _ := s.Get(ctx, "k2"); ok {
		t.Fatal("a fenced write saved its record")
	}
	if st, _ := s.Round(ctx, "copy", 1); st.Held != 1 {
		t.Fatalf("a fenced Finish changed the range: %+v", st)
	}
	if err := s.Finish(ctx, cur, []checkpoints.Record{late}); err != nil {
		t.Fatalf("Finish by the holder: %v", err)
	}
	sameRecord(t, "after Finish", get(t, s, "k2"), late)
	// Done is done: no one claims it again, and a second Finish is fenced.
	if _, ok, _ := s.Claim(ctx, "copy", 1, "slow", lease); ok {
		t.Fatal("a done range was claimed again")
	}
	if err := s.Finish(ctx, cur, nil); !errors.Is(err, checkpoints.ErrFenced) {
		t.Fatalf("second Finish = %v; want ErrFenced", err)
	}
}

func testWorkHeartbeatAndLeave(t *testing.T, s checkpoints.Store, clk *clock.Fake) {
	ctx := t.Context()
	if err := s.Join(ctx, worker(t, "w1", "verify"), time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Partition(ctx, "verify", false, threeRanges); err != nil {
		t.Fatal(err)
	}
	c, _, err := s.Claim(ctx, "verify", 1, "w1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	held, err := s.Heartbeat(ctx, "w1", time.Minute, 42, 4200)
	if err != nil || len(held) != 1 || held[0].Seq != c.Seq || held[0].Epoch != c.Epoch {
		t.Fatalf("Heartbeat = %+v, %v; want the one held claim", held, err)
	}
	if !held[0].LeaseTill.After(c.LeaseTill.Add(30 * time.Second)) {
		t.Errorf("Heartbeat did not extend the claim's lease: %v then %v", c.LeaseTill, held[0].LeaseTill)
	}
	clk.Advance(1200 * time.Millisecond) // past the claim's first lease: the heartbeat kept it
	if _, ok, _ := s.Claim(ctx, "verify", 1, "w2", time.Minute); !ok {
		t.Fatal("no open range left for a second worker")
	}
	if err := s.Finish(ctx, c, nil); err != nil {
		t.Fatalf("Finish under a heartbeat-extended lease: %v", err)
	}
	ws, err := s.Workers(ctx)
	if err != nil || len(ws) != 1 || ws[0].Records != 42 || ws[0].Bytes != 4200 || ws[0].Ranges != 1 {
		t.Fatalf("Workers = %+v, %v; want w1 with 42 records, 4200 bytes, 1 range", ws, err)
	}
	// Leave opens what the worker holds at once.
	c2, ok, err := s.Claim(ctx, "verify", 1, "w1", time.Hour)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := s.Leave(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	c3, ok, err := s.Claim(ctx, "verify", 1, "w3", time.Minute)
	if err != nil || !ok || c3.Seq != c2.Seq || c3.Epoch != c2.Epoch+1 {
		t.Fatalf("Claim after Leave = %+v, %v, %v; want range %d at epoch %d", c3, ok, err, c2.Seq, c2.Epoch+1)
	}
	// Release hands a range back only from its holder at its epoch.
	stale := c3
	stale.Epoch--
	if err := s.Release(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Round(ctx, "verify", 1); st.Open != 0 {
		t.Fatalf("Release by a stale epoch opened a range: %+v", st)
	}
	if err := s.Release(ctx, c3); err != nil {
		t.Fatal(err)
	}
	if c4, ok, _ := s.Claim(ctx, "verify", 1, "w4", time.Minute); !ok || c4.Seq != c3.Seq || c4.Takeover {
		t.Fatalf("after Release: %+v, %v; want range %d open again", c4, ok, c3.Seq)
	}
	if ws, _ := s.Workers(ctx); len(ws) != 1 || !ws[0].Left || ws[0].Alive(clk.Now()) {
		t.Fatalf("after Leave: %+v; want w1 left", ws)
	}
}

func testWorkClaimRace(t *testing.T, s checkpoints.Store) {
	ctx := t.Context()
	const n = 40
	if _, err := s.Partition(ctx, "copy", false, func() ([]checkpoints.Range, error) {
		rs := make([]checkpoints.Range, n)
		for i := range rs {
			rs[i] = checkpoints.Range{Lo: fmt.Sprintf("k%03d", i), Hi: fmt.Sprintf("k%03d", i+1)}
		}
		return rs, nil
	}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[int64]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			id := fmt.Sprintf("w%d", w)
			for {
				c, ok, err := s.Claim(ctx, "copy", 1, id, time.Minute)
				if err != nil {
					errs <- err
					return
				}
				if !ok {
					return
				}
				mu.Lock()
				if prev, dup := got[c.Seq]; dup {
					errs <- fmt.Errorf("range %d claimed by %s and %s", c.Seq, prev, id)
				}
				got[c.Seq] = id
				mu.Unlock()
				if err := s.Finish(ctx, c, nil); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(got) != n {
		t.Fatalf("%d of %d ranges claimed", len(got), n)
	}
	if st, err := s.Round(ctx, "copy", 1); err != nil || st.Done != n {
		t.Fatalf("Round = %+v, %v; want %d done", st, err, n)
	}
}

func testWorkSharedListing(t *testing.T, s checkpoints.Store, clk *clock.Fake) {
	ctx := t.Context()
	listed := func(site string, keys ...string) []checkpoints.Listed {
		var out []checkpoints.Listed
		for _, k := range keys {
			out = append(out, checkpoints.Listed{Site: site, Key: k, SiteKey: k, Size: 1, ETag: "e-" + k})
		}
		return out
	}
	count := func(site string) int64 {
		t.Helper()
		n, err := s.ListedCount(ctx, site)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := s.AddListed(ctx, listed(siteVA, "stale1", "stale2")); err != nil {
		t.Fatal(err)
	}
	cut := func() ([]checkpoints.Range, error) {
		return []checkpoints.Range{{Site: siteVA, Hi: "m"}, {Site: siteVA, Lo: "m"}, {Site: siteSG}}, nil
	}
	if _, err := s.Partition(ctx, "plan", true, cut); err != nil {
		t.Fatal(err)
	}
	if n := count(siteVA); n != 0 {
		t.Fatalf("a new plan round kept %d staged objects of an earlier listing", n)
	}
	c, ok, err := s.Claim(ctx, "plan", 1, "w1", 300*time.Millisecond)
	if err != nil || !ok || c.Site != siteVA || c.Hi != "m" {
		t.Fatalf("Claim = %+v, %v, %v; want the first range of %s", c, ok, err, siteVA)
	}
	if err := s.Checkpoint(ctx, c, "c", nil, listed(siteVA, "a", "b", "c")); err != nil {
		t.Fatalf("Checkpoint with a listing page: %v", err)
	}
	if n := count(siteVA); n != 3 {
		t.Fatalf("%d objects staged, want 3", n)
	}
	// Rejoining the unfinished round does not reset what it staged.
	if _, err := s.Partition(ctx, "plan", true, cut); err != nil {
		t.Fatal(err)
	}
	if n := count(siteVA); n != 3 {
		t.Fatalf("rejoining the round reset the listing: %d staged", n)
	}
	clk.Advance(400 * time.Millisecond) // past the claim's lease
	if err := s.Checkpoint(ctx, c, "e", nil, listed(siteVA, "d", "e")); !errors.Is(err, checkpoints.ErrFenced) {
		t.Fatalf("Checkpoint after the lease = %v; want ErrFenced", err)
	}
	if n := count(siteVA); n != 3 {
		t.Fatalf("a fenced Checkpoint staged objects: %d", n)
	}
	next, ok, err := s.Claim(ctx, "plan", 1, "w2", time.Minute)
	if err != nil || !ok || next.Seq != c.Seq || next.Cursor != "c" || next.Site != siteVA {
		t.Fatalf("takeover = %+v, %v, %v; want range %d resuming after %q", next, ok, err, c.Seq, "c")
	}
}
