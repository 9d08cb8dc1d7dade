package gs_test

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/fault"
	"github.com/ferrymigrate/ferry/providers/gs"
	"github.com/ferrymigrate/ferry/providers/gs/gstest"
	"github.com/ferrymigrate/ferry/providers/providertest"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// TestFaultStorm runs puts, stats, reads, listings and conditional deletes through
// a storm of 429s, 500s and 503s, dropped connections and bodies cut halfway, and
// checks that every operation ends right: the client's retries (counted) absorb it.
func TestFaultStorm(t *testing.T) {
	srv := gstest.Shared(t)
	bucket := srv.Bucket(t, false)
	s, err := gs.New(t.Context(), srv.Config(bucket, "storm/"),
		gs.Options{MaxAttempts: 14, RetryBaseDelay: time.Millisecond, RetryMaxDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rules := map[string]*s3test.Rule{
		"503":           {Match: gstest.Match(gstest.OpAny, bucket), When: fault.When{Fraction: 0.12}, Fault: s3test.Fault{Status: http.StatusServiceUnavailable}},
		"429":           {Match: gstest.Match(gstest.OpAny, bucket), When: fault.When{Fraction: 0.08}, Fault: s3test.Fault{Status: http.StatusTooManyRequests}},
		"500 on puts":   {Match: gstest.Match(gstest.OpPut, bucket), When: fault.When{Fraction: 0.1}, Fault: s3test.Fault{Status: http.StatusInternalServerError}},
		"dropped":       {Match: gstest.Match(gstest.OpAny, bucket), When: fault.When{Fraction: 0.05}, Fault: s3test.Fault{Drop: true}},
		"cut read body": {Match: gstest.Match(gstest.OpRead, bucket), When: fault.When{Fraction: 0.25}, Fault: s3test.Fault{Truncate: true}},
		"cut list body": {Match: gstest.Match(gstest.OpList, bucket), When: fault.When{Times: 1}, Fault: s3test.Fault{Truncate: true}},
	}
	for _, r := range rules {
		defer srv.Faults.Inject(r)()
	}
	const n, workers = 48, 6
	data := func(i int) []byte { return providertest.Bytes(uint64(100+i), 1024+i*997) }
	key := func(i int) string { return fmt.Sprintf("u%02d/rec-%03d", i%7, i) }
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range work {
				errs <- func() error {
					d := data(i)
					o, err := s.Put(t.Context(), key(i), bytes.NewReader(d), int64(len(d)), providers.PutOptions{SHA256: sha(d), CRC32C: crc(d)})
					if err != nil {
						return fmt.Errorf("put %d: %w", i, err)
					}
					st, err := s.Stat(t.Context(), key(i))
					if err != nil || !st.SameVersion(o) {
						return fmt.Errorf("stat %d: %+v, %v", i, st, err)
					}
					got, err := readAll(t, s, key(i))
					if err != nil || !bytes.Equal(got, d) {
						return fmt.Errorf("read %d: %d bytes, %v", i, len(got), err)
					}
					if i%2 == 0 {
						if err := s.DeleteIf(t.Context(), key(i), st); err != nil {
							return fmt.Errorf("delete %d: %w", i, err)
						}
					}
					return nil
				}()
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	listed := map[string]bool{}
	if err := s.List(t.Context(), func(o providers.Object) error { listed[o.Key] = true; return nil }); err != nil {
		t.Fatalf("List in the storm: %v", err)
	}
	for i := range n {
		if want := i%2 == 1; listed[key(i)] != want {
			t.Errorf("%s listed %v, want %v", key(i), listed[key(i)], want)
		}
	}
	for name, r := range rules {
		if r.Fired() == 0 {
			t.Errorf("rule %q never fired", name)
		}
		t.Logf("rule %q fired %d times", name, r.Fired())
	}
	if s.Retries() == 0 {
		t.Error("no retries counted")
	}
	t.Logf("%d retries", s.Retries())
}
