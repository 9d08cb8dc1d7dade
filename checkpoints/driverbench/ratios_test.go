package driverbench

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestRatios prints the markdown table of docs/benchmarks.md from the output of
// repeated benchmark runs (DRIVERBENCH_RESULTS=file): per variant, the median of
// the metrics over the repetitions and the median of its ratio to variant 1 in the
// same repetition (a repetition starts at each v1 line). Skipped without the file.
func TestRatios(t *testing.T) {
	path := os.Getenv("DRIVERBENCH_RESULTS")
	if path == "" {
		t.Skip("DRIVERBENCH_RESULTS not set")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type run map[string]map[string]float64 // variant -> unit -> value
	var reps []run
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || !strings.HasPrefix(fs[0], "BenchmarkHotPath/") {
			continue
		}
		name := strings.TrimPrefix(fs[0], "BenchmarkHotPath/")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
		if name == names[0] || len(reps) == 0 {
			reps = append(reps, run{})
		}
		m := map[string]float64{}
		for i := 2; i+1 < len(fs); i += 2 {
			if v, err := strconv.ParseFloat(fs[i], 64); err == nil {
				m[fs[i+1]] = v
			}
		}
		reps[len(reps)-1][name] = m
	}
	median := func(xs []float64) float64 {
		slices.Sort(xs)
		if len(xs) == 0 {
			return 0
		}
		if len(xs)%2 == 1 {
			return xs[len(xs)/2]
		}
		return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	col := func(name, unit string) []float64 {
		var xs []float64
		for _, r := range reps {
			if m, ok := r[name]; ok {
				xs = append(xs, m[unit])
			}
		}
		return xs
	}
	ratio := func(name, unit string, inverse bool) float64 {
		var xs []float64
		for _, r := range reps {
			m, ok1 := r[name]
			b, ok2 := r[names[0]]
			if ok1 && ok2 && m[unit] > 0 && b[unit] > 0 {
				if inverse {
					xs = append(xs, b[unit]/m[unit])
				} else {
					xs = append(xs, m[unit]/b[unit])
				}
			}
		}
		return median(xs)
	}
	var out strings.Builder
	fmt.Fprintf(&out, "%d repetitions\n\n", len(reps))
	out.WriteString("| variant | records/s | × v1 (wall) | CPU µs/record | × v1 (CPU) | Save µs/record/change | scan µs/record | allocs/record | × v1 allocs |\n")
	out.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, n := range names {
		fmt.Fprintf(&out, "| %s | %.0f | %.2f | %.1f | %.2f | %.1f | %.1f | %.0f | %.2f |\n", n,
			median(col(n, "records/s")), ratio(n, "records/s", false),
			median(col(n, "cpu-µs/rec")), ratio(n, "cpu-µs/rec", true),
			median(col(n, "save-µs/write")), median(col(n, "scan-µs/rec")),
			median(col(n, "allocs/op"))/roundN, ratio(n, "allocs/op", false))
	}
	t.Log("\n" + out.String())
}
