package spec

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Share is a proportion, in parts per million: 10000 is 1%, 1000000 is 100%.
type Share int64

// FullShare is 100%.
const FullShare Share = 1_000_000

// Fraction is the share as a number in [0, 1].
func (s Share) Fraction() float64 { return float64(s) / float64(FullShare) }

// String formats the share as a percentage: "1%", "12.5%", "100%".
func (s Share) String() string {
	whole, frac := int64(s)/10000, int64(s)%10000
	if frac == 0 {
		return strconv.FormatInt(whole, 10) + "%"
	}
	f := strings.TrimRight(fmt.Sprintf("%04d", frac), "0")
	return fmt.Sprintf("%d.%s%%", whole, f)
}

// MarshalJSON writes the share as its percentage string.
func (s Share) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

var shareRE = regexp.MustCompile(`^([0-9]{1,3})(?:\.([0-9]{1,4}))?\s*%$`)

// parseShare parses "1%", "12.5%", "100%" into a share in (0, 100%].
func parseShare(v string) (Share, error) {
	m := shareRE.FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return 0, errors.New("must be a percentage like 1% or 12.5% (at most four decimals)")
	}
	whole, _ := strconv.ParseInt(m[1], 10, 64)
	frac := int64(0)
	if m[2] != "" {
		f := m[2] + strings.Repeat("0", 4-len(m[2]))
		frac, _ = strconv.ParseInt(f, 10, 64)
	}
	s := Share(whole*10000 + frac)
	if s <= 0 || s > FullShare {
		return 0, errors.New("must be more than 0% and at most 100%")
	}
	return s, nil
}

// MaxDelete is a stage's deletion guard: at most Count replicas, or at most Share of
// the stage's scope. Exactly one of them is set.
type MaxDelete struct {
	Count int64 `json:"count,omitempty"`
	Share Share `json:"share,omitempty"`
}

// AllMaxDelete is max_delete: 100%, the default.
var AllMaxDelete = MaxDelete{Share: FullShare}

// IsShare reports whether the guard is a share of the scope rather than a count.
func (m MaxDelete) IsShare() bool { return m.Count == 0 }

// Limit is the largest number of deletions the guard allows in a scope of n
// replicas: min(Count, n) for a count, floor(n × Share) for a share (rounded down,
// so "10%" of 15 allows 1). A stage whose scope exceeds Limit(scope) is refused
// (exit 5).
func (m MaxDelete) Limit(n int64) int64 {
	if n <= 0 {
		return 0
	}
	if m.Count > 0 {
		return min(m.Count, n)
	}
	if m.Share <= 0 {
		return 0
	}
	if m.Share >= FullShare {
		return n
	}
	hi, lo := bits.Mul64(uint64(n), uint64(m.Share))
	q, _ := bits.Div64(hi, lo, uint64(FullShare)) // hi < FullShare since Share < FullShare
	return int64(q)
}

// String formats the guard as written in a spec: "5000" or "10%".
func (m MaxDelete) String() string {
	if m.Count > 0 {
		return strconv.FormatInt(m.Count, 10)
	}
	return m.Share.String()
}

// MarshalJSON writes the guard as its spec string.
func (m MaxDelete) MarshalJSON() ([]byte, error) { return json.Marshal(m.String()) }

var countRE = regexp.MustCompile(`^[0-9]+$`)

// parseMaxDelete parses a count ("5000") or a share ("10%").
func parseMaxDelete(v string) (MaxDelete, error) {
	v = strings.TrimSpace(v)
	if strings.HasSuffix(v, "%") {
		s, err := parseShare(v)
		if err != nil {
			return MaxDelete{}, err
		}
		return MaxDelete{Share: s}, nil
	}
	if !countRE.MatchString(v) {
		return MaxDelete{}, errors.New("must be a count like 5000 or a share like 10%")
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return MaxDelete{}, errors.New("count is too large")
	}
	if n < 1 {
		return MaxDelete{}, errors.New("must be at least 1 (for no deletion at all, list no stages)")
	}
	return MaxDelete{Count: n}, nil
}

var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$`)

var sizeUnits = map[string]int64{
	"":    1,
	"b":   1,
	"k":   1 << 10,
	"kib": 1 << 10,
	"kb":  1000,
	"m":   1 << 20,
	"mib": 1 << 20,
	"mb":  1000 * 1000,
	"g":   1 << 30,
	"gib": 1 << 30,
	"gb":  1000 * 1000 * 1000,
	"t":   1 << 40,
	"tib": 1 << 40,
	"tb":  1000 * 1000 * 1000 * 1000,
}

// parseSize parses a byte size: "67108864", "64MiB", "1.5GiB", "100MB", "64M".
// Fractional results are rounded down to whole bytes.
func parseSize(v string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return 0, errors.New("must be a size like 64MiB, 100MB or a byte count")
	}
	unit, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, errors.New("unknown size unit (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)")
	}
	if len(m[1]) > 30 {
		return 0, errors.New("size is too large")
	}
	r, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, errors.New("must be a size like 64MiB")
	}
	r.Mul(r, new(big.Rat).SetInt64(unit))
	q := new(big.Int).Quo(r.Num(), r.Denom())
	if !q.IsInt64() {
		return 0, errors.New("size is too large")
	}
	return q.Int64(), nil
}

// formatSize writes a byte count the short way: "64MiB" when exact, else bytes.
func formatSize(n int64) string {
	for _, u := range []struct {
		s string
		v int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.v && n%u.v == 0 {
			return strconv.FormatInt(n/u.v, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

var daysRE = regexp.MustCompile(`^([0-9]+)d(.*)$`)

// parseDuration parses a Go duration with an optional leading day count: "72h",
// "3d", "1d12h", "0". Negative durations are refused.
func parseDuration(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	const bad = "must be a duration like 72h, 90m or 3d"
	if v == "" {
		return 0, errors.New(bad)
	}
	var total time.Duration
	if m := daysRE.FindStringSubmatch(v); m != nil {
		days, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || days > 100*366 {
			return 0, errors.New("too many days (at most 100 years)")
		}
		total = time.Duration(days) * 24 * time.Hour
		v = m[2]
		if v == "" {
			return total, nil
		}
	}
	if strings.HasPrefix(v, "-") {
		return 0, errors.New("must not be negative")
	}
	if strings.HasPrefix(v, "+") {
		return 0, errors.New(bad)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, errors.New(bad)
	}
	if d > math.MaxInt64-total {
		return 0, errors.New("too long")
	}
	return total + d, nil
}

// InSample reports whether the record with this relative key is in a sample of the
// given fraction. It is deterministic: the same key and fraction give the same
// answer on every machine, every run and every version of ferry.
//
// The rule: take SHA-256 of the key's bytes, read the first 8 bytes as a big-endian
// unsigned integer x, and the key is in the sample when x < floor(fraction × 2^64).
// fraction ≤ 0 (or NaN) selects nothing; fraction ≥ 1 selects every key. Because the
// rule does not depend on the stage or the run, samples nest: every key in a 1%
// sample is also in any 10% sample, so a canary stage's records are a subset of a
// larger sample's. About fraction × N of N keys are selected.
func InSample(key string, fraction float64) bool {
	if !(fraction > 0) {
		return false
	}
	if fraction >= 1 {
		return true
	}
	sum := sha256.Sum256([]byte(key))
	x := binary.BigEndian.Uint64(sum[:8])
	threshold := uint64(fraction * (1 << 64)) // fraction < 1: the product is < 2^64
	return x < threshold
}
