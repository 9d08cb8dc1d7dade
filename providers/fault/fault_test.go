package fault

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
	"time"
)

// fires returns the 1-based matches, of n, that w fires on.
func fires(w When, n int, rnd *Rand) []int {
	var c Counter
	var out []int
	for i := 1; i <= n; i++ {
		if c.Fire(w, rnd) {
			out = append(out, i)
		}
	}
	return out
}

func TestWhenSelection(t *testing.T) {
	for _, c := range []struct {
		name string
		w    When
		want []int
	}{
		{"zero fires on every match", When{}, []int{1, 2, 3, 4, 5, 6}},
		{"skip ignores the first matches", When{Skip: 2}, []int{3, 4, 5, 6}},
		{"times bounds the firings", When{Times: 2}, []int{1, 2}},
		{"skip then times", When{Skip: 1, Times: 2}, []int{2, 3}},
		{"nth fires once", When{Nth: 3}, []int{3}},
		{"nth counts skipped matches", When{Nth: 3, Skip: 1}, []int{3}},
		{"nth inside the skip never fires", When{Nth: 2, Skip: 2}, nil},
		{"nth with times", When{Nth: 4, Times: 1}, []int{4}},
		{"fraction 1 fires on all", When{Fraction: 1, Times: 3}, []int{1, 2, 3}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := fires(c.w, 6, NewRand(1))
			if !equal(got, c.want) {
				t.Errorf("%+v fired on %v, want %v", c.w, got, c.want)
			}
		})
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCounterCounts(t *testing.T) {
	var c Counter
	w := When{Skip: 1, Times: 2}
	for range 5 {
		c.Fire(w, nil)
	}
	if c.Matched() != 5 || c.Fired() != 2 {
		t.Errorf("matched %d fired %d, want 5 and 2", c.Matched(), c.Fired())
	}
	c.Reset()
	if c.Matched() != 0 || c.Fired() != 0 || !c.Fire(When{Nth: 1}, nil) {
		t.Errorf("after Reset: matched %d fired %d, or Nth: 1 did not fire", c.Matched(), c.Fired())
	}
}

func TestFractionSeeded(t *testing.T) {
	w := When{Fraction: 0.25}
	a, b := fires(w, 2000, NewRand(42)), fires(w, 2000, NewRand(42))
	if !equal(a, b) {
		t.Fatal("the same seed chose different calls")
	}
	if n := len(a); n < 400 || n > 600 {
		t.Errorf("Fraction 0.25 fired on %d of 2000", n)
	}
	if c := fires(w, 2000, NewRand(43)); equal(a, c) {
		t.Error("another seed chose the same calls")
	}
	// The dice are thrown only for calls the other conditions allow: Skip and
	// Times do not consume draws, so the rule fires on the same draws shifted.
	skipped := fires(When{Fraction: 0.25, Skip: 10}, 2010, NewRand(42))
	if len(skipped) != len(a) || skipped[0] != a[0]+10 {
		t.Errorf("Skip changed the draws: %d firings from %d, want %d from %d", len(skipped), skipped[0], len(a), a[0]+10)
	}
	bounded := fires(When{Fraction: 0.25, Times: 3}, 2000, NewRand(42))
	if !equal(bounded, a[:3]) {
		t.Errorf("Times: 3 fired on %v, want %v", bounded, a[:3])
	}
}

func TestCounterConcurrent(t *testing.T) {
	var c Counter
	w := When{Skip: 100, Times: 500}
	rnd := NewRand(7)
	var wg sync.WaitGroup
	var mu sync.Mutex
	fired := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for range 250 {
				if c.Fire(w, rnd) {
					n++
				}
			}
			mu.Lock()
			fired += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if fired != 500 || c.Fired() != 500 || c.Matched() != 2000 {
		t.Errorf("fired %d (counter %d), matched %d; want 500, 500, 2000", fired, c.Fired(), c.Matched())
	}
	// Fraction under concurrency: every draw is from the shared source.
	var f Counter
	wg = sync.WaitGroup{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				f.Fire(When{Fraction: 0.5}, rnd)
			}
		}()
	}
	wg.Wait()
	if n := f.Fired(); n < 1700 || n > 2300 {
		t.Errorf("Fraction 0.5 fired on %d of 4000", n)
	}
}

func TestMerge(t *testing.T) {
	e1, e2 := errors.New("one"), errors.New("two")
	var e Effect
	e.Merge(Effect{Latency: time.Second, Err: e1, Status: 503, Code: "SlowDown"})
	e.Merge(Effect{Latency: time.Second, Err: e2, Status: 500, Lost: true, Truncate: true, TruncateAt: 7})
	e.Merge(Effect{Truncate: true, TruncateAt: 9, CorruptBody: true})
	if e.Latency != 2*time.Second || e.Err != e1 || e.Status != 503 || e.Code != "SlowDown" ||
		!e.Lost || !e.Truncate || e.TruncateAt != 7 || !e.CorruptBody || e.Drop {
		t.Errorf("merged %+v", e)
	}
	if (&Effect{Err: e1, Lost: true, Drop: true}).HTTPOnly() != "" || (&Effect{ShortBody: true}).HTTPOnly() != "ShortBody" {
		t.Error("HTTPOnly misjudged")
	}
}

func TestReaders(t *testing.T) {
	src := []byte("0123456789")
	got, _ := io.ReadAll(FlipReader(io.NopCloser(bytes.NewReader(src)), 5))
	if want := []byte("01234" + string('5'^0x5a) + "6789"); !bytes.Equal(got, want) {
		t.Errorf("FlipReader: %q, want %q", got, want)
	}
	got, err := io.ReadAll(CutReader(io.NopCloser(bytes.NewReader(src)), 4))
	if string(got) != "0123" || err != io.ErrUnexpectedEOF {
		t.Errorf("CutReader: %q, %v", got, err)
	}
	if Offset(0, 10) != 5 || Offset(3, 10) != 3 || Offset(10, 10) != 5 {
		t.Error("Offset")
	}
}
