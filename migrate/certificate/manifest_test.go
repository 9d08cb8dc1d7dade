package certificate

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// goldenLine has every field set, replicas out of order, and a key that needs escaping.
func goldenLine() ManifestLine {
	return ManifestLine{
		Key:    "u42/photos/ça \"va\"\\été\t😀.jpg",
		User:   "u42",
		Size:   1234567,
		SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		Target: TargetRef{URI: "oci://ns/us-users/users/u42/photos/ça \"va\"\\été\t😀.jpg", Version: "9f1c-01", ETag: "\"abc123\"", VerifiedAt: "2024-06-03T14:05:09Z"},
		Replicas: []ReplicaRef{
			{Site: "virginia", URI: "s3://legacy-users/users/u42/photos/x.jpg", Size: 1234567, SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", DeletedAt: "2024-06-05T16:05:09Z", Mode: ModeHard, ConfirmedAbsent: true, State: StatusDeleted},
			{Site: "archive", URI: "file:///mnt/archive/users/u42/photos/x.jpg", Size: 1234567, SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", State: ReplicaIdentical},
			{Site: "singapore", URI: "s3://backup-users/2022-06/users/u42/photos/x.jpg", DeletedAt: "2024-06-04T16:05:09Z", Mode: ModeSoft, ConfirmedAbsent: true, State: StatusPurged},
		},
		Status: StatusDeleteIntent,
	}
}

func TestManifestLineGolden(t *testing.T) {
	b, err := MarshalLine(goldenLine())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "manifest_line.golden", append(b, '\n'))
	l, err := ParseLine(b)
	if err != nil {
		t.Fatal(err)
	}
	want := goldenLine()
	slices.SortFunc(want.Replicas, func(a, b ReplicaRef) int { return strings.Compare(a.Site, b.Site) })
	if fmt.Sprint(l) != fmt.Sprint(want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", l, want)
	}

	// A small manifest: the file format as a whole.
	var buf bytes.Buffer
	mw := NewManifestWriter(&buf)
	for _, l := range exampleLines(4) {
		if err := mw.Add(l); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := mw.Close()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "manifest.golden.jsonl", buf.Bytes())
	sb, _ := json.MarshalIndent(sum, "", "  ")
	golden(t, "manifest_summary.golden.json", append(sb, '\n'))
}

// The hand-written encoder must equal the generic path: encoding/json, then RFC 8785.
func TestMarshalLineEqualsCanonicalize(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "/", " ", "\"", "\\", "\t", "\n", "\x01", "\x7f", "é", "€", "😀", "\u2028", "<", "&", "ｱ", "e\u0301"}
	randStr := func() string {
		var b strings.Builder
		for i := r.IntN(12); i > 0; i-- {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	lines := append(exampleLines(20), goldenLine())
	for i := 0; i < 500; i++ {
		l := ManifestLine{Key: "k" + randStr(), User: randStr(), Size: r.Int64N(maxSafeInteger), SHA256: hexSum(randStr()), Status: StatusVerified,
			Target: TargetRef{URI: randStr(), Version: randStr(), ETag: randStr(), VerifiedAt: FormatTime(time.Unix(r.Int64N(4e9), 0))}}
		for j := r.IntN(4); j > 0; j-- {
			l.Replicas = append(l.Replicas, ReplicaRef{Site: fmt.Sprintf("s%d%s", j, randStr()), URI: randStr(), State: ReplicaPresent})
		}
		lines = append(lines, l)
	}
	for _, l := range lines {
		got, err := MarshalLine(l)
		if err != nil {
			t.Fatal(err)
		}
		sorted := l
		sorted.Replicas = slices.Clone(l.Replicas)
		if sorted.Replicas == nil {
			sorted.Replicas = []ReplicaRef{}
		}
		slices.SortFunc(sorted.Replicas, func(a, b ReplicaRef) int { return strings.Compare(a.Site, b.Site) })
		want, err := Canonicalize(sorted)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("MarshalLine differs from Canonicalize:\n got %s\nwant %s", got, want)
		}
		if _, err := ParseLine(got); err != nil {
			t.Fatalf("ParseLine(MarshalLine(l)): %v", err)
		}
	}
}

func TestParseLineStrict(t *testing.T) {
	good, _ := MarshalLine(goldenLine())
	s := string(good)
	for name, in := range map[string]string{
		"trailing newline":    s + "\n",
		"leading space":       " " + s,
		"space after colon":   strings.Replace(s, `"key":`, `"key": `, 1),
		"unknown field":       strings.Replace(s, `{"key":`, `{"extra":1,"key":`, 1),
		"missing field":       strings.Replace(s, `,"status":"delete-intent"`, ``, 1),
		"duplicate field":     strings.Replace(s, `{"key":`, `{"user":"u42","key":`, 1),
		"upper-case name":     strings.Replace(s, `"user":`, `"USER":`, 1),
		"escaped slash":       strings.Replace(s, `oci://`, `oci:\/\/`, 1),
		"uppercase unicode":   strings.Replace(s, `ça`, `\u00e7a`, 1),
		"null replicas":       strings.Replace(s, `"replicas":[`, `"replicas":null,"x":[`, 1),
		"float size":          strings.Replace(s, `"size":1234567`, `"size":1234567.0`, 1),
		"exponent size":       strings.Replace(s, `"size":1234567`, `"size":1.234567e6`, 1),
		"unsorted replicas":   strings.Replace(strings.Replace(s, `"site":"archive"`, `"site":"zzz"`, 1), `"site":"virginia"`, `"site":"aaa"`, 1),
		"bad status":          strings.Replace(s, `"status":"delete-intent"`, `"status":"done"`, 1),
		"bad replica state":   strings.Replace(s, `"state":"identical"`, `"state":"verified"`, 1),
		"bad time":            strings.Replace(s, `2024-06-03T14:05:09Z`, `2024-06-03T14:05:09.5Z`, 1),
		"offset time":         strings.Replace(s, `2024-06-03T14:05:09Z`, `2024-06-03T14:05:09+00:00`, 1),
		"uppercase sha":       strings.Replace(s, `e3b0c442`, `E3B0C442`, 1),
		"invalid utf-8":       strings.Replace(s, `ça`, "\xff", 1),
		"null user":           strings.Replace(s, `"user":"u42"`, `"user":null`, 1),
		"negative size":       strings.Replace(s, `"size":1234567`, `"size":-1`, 1),
		"crlf":                s + "\r",
		"two objects":         s + s,
		"not an object":       `[]`,
		"empty":               ``,
		"mode without delete": strings.Replace(s, `"mode":"","sha256"`, `"mode":"soft","sha256"`, 1),
		"replica size < 0":    strings.Replace(s, `"size":1234567,"state":"identical"`, `"size":-1,"state":"identical"`, 1),
		"replica sha short":   strings.Replace(s, `"sha256":"","site":"singapore"`, `"sha256":"abc","site":"singapore"`, 1),
	} {
		if _, err := ParseLine([]byte(in)); err == nil {
			t.Errorf("%s: ParseLine accepted %s", name, in)
		}
	}
	if _, err := ParseLine(good); err != nil {
		t.Fatal(err)
	}
	_, err := ParseLine([]byte(strings.Replace(s, `"key":`, `"key" :`, 1)))
	if err == nil || !errors.Is(err, ErrNotCanonical) {
		t.Errorf("non-canonical spelling: %v, want ErrNotCanonical", err)
	}
}

func TestValidateLine(t *testing.T) {
	for name, mut := range map[string]func(*ManifestLine){
		"empty key":         func(l *ManifestLine) { l.Key = "" },
		"invalid utf-8 uri": func(l *ManifestLine) { l.Replicas[0].URI = "\xc3" },
		"size too big":      func(l *ManifestLine) { l.Size = maxSafeInteger },
		"short sha":         func(l *ManifestLine) { l.SHA256 = "abc" },
		"no sha verified":   func(l *ManifestLine) { l.SHA256 = ""; l.Status = StatusVerified },
		"duplicate site":    func(l *ManifestLine) { l.Replicas[1].Site = l.Replicas[0].Site },
		"empty site":        func(l *ManifestLine) { l.Replicas[1].Site = "" },
		"bad mode":          func(l *ManifestLine) { l.Replicas[0].Mode = "shred" },
		"absent undeleted":  func(l *ManifestLine) { l.Replicas[1].ConfirmedAbsent = true },
		"deleted no mode":   func(l *ManifestLine) { l.Replicas[0].Mode = "" },
	} {
		l := goldenLine()
		mut(&l)
		if _, err := MarshalLine(l); err == nil {
			t.Errorf("%s: MarshalLine accepted it", name)
		}
	}
	// Records whose content is unknown may have no sha256.
	for _, st := range []string{StatusPlanned, StatusConflict, StatusFailed, StatusExcluded} {
		l := goldenLine()
		l.SHA256, l.Status = "", st
		if _, err := MarshalLine(l); err != nil {
			t.Errorf("%s without sha256: %v", st, err)
		}
	}
}

func TestManifestWriterOrder(t *testing.T) {
	lines := exampleLines(3)
	for name, seq := range map[string][]ManifestLine{
		"duplicate":    {lines[0], lines[1], lines[1]},
		"out of order": {lines[1], lines[0]},
	} {
		mw := NewManifestWriter(&bytes.Buffer{})
		var err error
		for _, l := range seq {
			if err = mw.Add(l); err != nil {
				break
			}
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := mw.Close(); err == nil {
			t.Errorf("%s: Close succeeded after an error", name)
		}
	}
	// Byte order, not Unicode or case order: "B" < "a" < "é".
	mw := NewManifestWriter(&bytes.Buffer{})
	for _, k := range []string{"B", "a", "a/", "a0", "é"} {
		l := lines[0]
		l.Key = k
		if err := mw.Add(l); err != nil {
			t.Fatalf("%q: %v", k, err)
		}
	}
}

func TestReadManifest(t *testing.T) {
	env, m := buildCert(t, exampleLines(5), examplePredicate(nil), testKey(1))
	_, st, _ := env.Statement()
	var idx []uint64
	sum, problems, n, err := ReadManifest(bytes.NewReader(m), 10, func(i uint64, raw []byte, l *ManifestLine) error {
		idx = append(idx, i)
		if l == nil {
			t.Errorf("line %d did not parse", i)
		}
		return nil
	})
	if err != nil || n != 0 || len(problems) != 0 {
		t.Fatal(err, n, problems)
	}
	if sum.Root != st.Predicate.Merkle.Root || sum.SHA256 != st.ManifestDigest() || !slices.Equal(idx, []uint64{0, 1, 2, 3, 4}) {
		t.Errorf("summary %+v", sum)
	}
	for name, in := range map[string][]byte{
		"no final newline": bytes.TrimSuffix(m, []byte("\n")),
		"blank line":       append(append([]byte{}, m...), '\n'),
		"crlf":             bytes.ReplaceAll(m, []byte("\n"), []byte("\r\n")),
	} {
		_, problems, n, err := ReadManifest(bytes.NewReader(in), 10, nil)
		if err != nil || n == 0 || len(problems) == 0 {
			t.Errorf("%s: n=%d err=%v", name, n, err)
		}
	}
	// An empty manifest is a valid, empty tree.
	sum, _, n, err = ReadManifest(bytes.NewReader(nil), 10, nil)
	if err != nil || n != 0 || sum.TreeSize != 0 || sum.Root != fmt.Sprintf("%x", EmptyRoot) {
		t.Errorf("empty: %+v %d %v", sum, n, err)
	}
	// A reading error is ErrIO, not a content problem.
	_, _, _, err = ReadManifest(&failingReader{data: m[:100]}, 10, nil)
	if !errors.Is(err, ErrIO) {
		t.Errorf("read error: %v", err)
	}
	// Long lines beyond the reader's buffer are handled.
	long := exampleLines(1)[0]
	long.Key = strings.Repeat("k", 200000)
	var buf bytes.Buffer
	mw := NewManifestWriter(&buf)
	if err := mw.Add(long); err != nil {
		t.Fatal(err)
	}
	want, _ := mw.Close()
	got, problems, _, err := ReadManifest(&buf, 10, nil)
	if err != nil || len(problems) != 0 || got.Root != want.Root || got.SHA256 != want.SHA256 {
		t.Errorf("long line: %v %v", err, problems)
	}
}

type failingReader struct{ data []byte }

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errors.New("disk on fire")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestTimes(t *testing.T) {
	tm := time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.FixedZone("X", 3600))
	if got := FormatTime(tm); got != "2024-02-29T22:59:59Z" {
		t.Errorf("FormatTime = %s", got)
	}
	if FormatTime(time.Time{}) != "" {
		t.Error("zero time not empty")
	}
	for _, bad := range []string{"2024-02-29T22:59:59.1Z", "2024-02-29 22:59:59Z", "2024-02-30T00:00:00Z", "2024-02-29T22:59:59+00:00", "2024-2-29T22:59:59Z", ""} {
		if _, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	g, _ := MarshalLine(goldenLine())
	f.Add(g)
	for _, l := range exampleLines(3) {
		b, _ := MarshalLine(l)
		f.Add(b)
	}
	f.Add([]byte(`{"key":"a","replicas":[],"sha256":"","size":0,"status":"planned","target":{"etag":"","uri":"","verified_at":"","version":""},"user":""}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"key":"a","key":"b"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLine(b)
		if err != nil {
			return
		}
		out, err := MarshalLine(l)
		if err != nil {
			t.Fatalf("parsed but does not marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("parsed line is not its own canonical form:\n in %q\nout %q", b, out)
		}
	})
}

// TestNonUTF8KeyRoundTrip: a key that is not valid UTF-8 is written as an escaped
// rendering plus key_hex, and parses back to the exact bytes; any disagreement between
// the two fields, or key_hex on a UTF-8 key, is refused.
func TestNonUTF8KeyRoundTrip(t *testing.T) {
	for _, key := range []string{"a\xffb", "u42/caf\xe9 100%.txt", "\xc3", "u42/%FF\xff", "\xed\xa0\x80surrogate"} {
		l := goldenLine()
		l.Key = key
		b, err := MarshalLine(l)
		if err != nil {
			t.Fatalf("%q: %v", key, err)
		}
		if !utf8.Valid(b) || !bytes.Contains(b, []byte(`"key_hex":"`+hex.EncodeToString([]byte(key))+`"`)) {
			t.Fatalf("%q: line %s", key, b)
		}
		got, err := ParseLine(b)
		if err != nil {
			t.Fatalf("%q: %v", key, err)
		}
		if got.Key != key {
			t.Fatalf("round trip: %q, want %q", got.Key, key)
		}
		if un, err := UnescapeKey(EscapeKey(key)); err != nil || un != key {
			t.Fatalf("UnescapeKey(EscapeKey(%q)) = %q, %v", key, un, err)
		}
	}
	l := goldenLine()
	l.Key = "u42/\xff"
	b, err := MarshalLine(l)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.HasPrefix(s, `{"key":"u42/%FF","key_hex":"7534322fff","replicas":`) {
		t.Fatalf("line %s", s)
	}
	for name, in := range map[string]string{
		"key mismatch":       strings.Replace(s, `"key":"u42/%FF"`, `"key":"u42/%FE"`, 1),
		"uppercase hex":      strings.Replace(s, `7534322fff`, `7534322FFF`, 1),
		"hex of utf-8 key":   strings.Replace(strings.Replace(s, `7534322fff`, `7534322f41`, 1), `u42/%FF`, `u42/A`, 1),
		"empty hex":          strings.Replace(s, `"key_hex":"7534322fff"`, `"key_hex":""`, 1),
		"null hex":           strings.Replace(s, `"key_hex":"7534322fff"`, `"key_hex":null`, 1),
		"odd hex":            strings.Replace(s, `7534322fff`, `7534322ff`, 1),
		"unescaped percent":  strings.Replace(strings.Replace(s, `u42/%FF`, `%u42/%FF`, 1), `7534322fff`, `257534322fff`, 1),
		"key_hex after repl": strings.Replace(strings.Replace(s, `,"key_hex":"7534322fff"`, ``, 1), `,"sha256"`, `,"key_hex":"7534322fff","sha256"`, 1),
	} {
		if _, err := ParseLine([]byte(in)); err == nil {
			t.Errorf("%s: ParseLine accepted %s", name, in)
		}
	}
	// A UTF-8 key that looks escaped keeps its meaning: no key_hex, no unescaping.
	l.Key = "u42/%FF"
	b, err = MarshalLine(l)
	if err != nil || bytes.Contains(b, []byte("key_hex")) {
		t.Fatalf("UTF-8 key %q: %s, %v", l.Key, b, err)
	}
	if got, err := ParseLine(b); err != nil || got.Key != "u42/%FF" {
		t.Fatalf("UTF-8 key %q parsed as %q, %v", l.Key, got.Key, err)
	}
}
