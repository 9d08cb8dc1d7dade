package certificate

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n got: %s\nwant: %s", name, got, want)
	}
}

// RFC 8785 section 3.2.2 (and 3.2.3 for sorting): the published input and output.
func TestCanonicalizeRFC8785Examples(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{
			"3.2.2 serialization",
			`{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`,
			`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
		},
		{
			"3.2.3 sorting",
			`{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`,
			"{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"\u00f6\":\"Latin Small Letter O With Diaeresis\",\"\u20ac\":\"Euro Sign\",\"\U0001F600\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}",
		},
		{"empty containers", ` { "b" : [ ] , "a" : { } } `, `{"a":{},"b":[]}`},
		{"nested sort", `{"b":{"z":1,"y":[{"d":0,"c":-0}]},"a":"<&>\u2028"}`, "{\"a\":\"<&>\u2028\",\"b\":{\"y\":[{\"c\":0,\"d\":0}],\"z\":1}}"},
		{"controls", `"\u0000\u0008\u0009\u000a\u000c\u000d\u001f\u007f"`, `"\u0000\b\t\n\f\r\u001f` + "\x7f" + `"`},
	} {
		got, err := CanonicalizeJSON([]byte(c.in))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

// RFC 8785 Appendix B: IEEE 754 doubles and their ES6 serialization.
func TestFormatES6NumberAppendixB(t *testing.T) {
	for _, c := range []struct {
		bits uint64
		want string
	}{
		{0x0000000000000000, "0"},
		{0x8000000000000000, "0"},
		{0x0000000000000001, "5e-324"},
		{0x8000000000000001, "-5e-324"},
		{0x7fefffffffffffff, "1.7976931348623157e+308"},
		{0xffefffffffffffff, "-1.7976931348623157e+308"},
		{0x4340000000000000, "9007199254740992"},
		{0xc340000000000000, "-9007199254740992"},
		{0x4430000000000000, "295147905179352830000"},
		{0x44b52d02c7e14af5, "9.999999999999997e+22"},
		{0x44b52d02c7e14af6, "1e+23"},
		{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
		{0x444b1ae4d6e2ef4e, "999999999999999700000"},
		{0x444b1ae4d6e2ef4f, "999999999999999900000"},
		{0x444b1ae4d6e2ef50, "1e+21"},
		{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
		{0x3eb0c6f7a0b5ed8d, "0.000001"},
		{0x41b3de4355555553, "333333333.3333332"},
		{0x41b3de4355555554, "333333333.33333325"},
		{0x41b3de4355555555, "333333333.3333333"},
		{0x41b3de4355555556, "333333333.3333334"},
		{0x41b3de4355555557, "333333333.33333343"},
		{0xbecbf647612f3696, "-0.0000033333333333333333"},
		{0x43143ff3c1cb0959, "1424953923781206.2"},
	} {
		got, err := FormatES6Number(math.Float64frombits(c.bits))
		if err != nil || got != c.want {
			t.Errorf("%016x: got %q, %v; want %q", c.bits, got, err, c.want)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := FormatES6Number(f); err == nil {
			t.Errorf("%v: no error", f)
		}
	}
}

func TestCanonicalizeRejects(t *testing.T) {
	for _, in := range []string{
		``, ` `, `{`, `{"a":1,}`, `[1,]`, `{"a" 1}`, `{a:1}`, `'a'`, `01`, `1.`, `.5`, `-`, `1e`, `+1`,
		`{"a":1,"a":2}`,                          // duplicate name
		`{"a":{"b":1,"b":1}}`,                    // nested duplicate
		`"\ud800"`, `"\udc00"`, `"\ud800\u0041"`, // lone surrogates
		"\"\xff\"", "\"a\xc3\"", // invalid UTF-8
		"\"a\tb\"",         // raw control character
		`"\x"`, `"\u12g4"`, // bad escapes
		`9007199254740993`, `-9007199254740993`, `123456789012345678901234567890`, `123456789012345678000`, // inexact integers
		`1e400`, `-1e400`, // overflow
		`{} {}`, `[]x`, `truex`, `nul`,
		strings.Repeat("[", maxJSONDepth+2) + strings.Repeat("]", maxJSONDepth+2),
	} {
		if out, err := CanonicalizeJSON([]byte(in)); err == nil {
			t.Errorf("CanonicalizeJSON(%q) = %q, want an error", in, out)
		}
	}
	// 2^53 itself is exact and allowed, and so are large integers spelled as their double prints.
	if out, err := CanonicalizeJSON([]byte(`[9007199254740992,-9007199254740992,1e2,1E-2,123456789012345680000]`)); err != nil || string(out) != `[9007199254740992,-9007199254740992,100,0.01,123456789012345680000]` {
		t.Errorf("got %s, %v", out, err)
	}
}

func TestCanonicalizeStruct(t *testing.T) {
	type inner struct {
		Z string `json:"z"`
		A int64  `json:"a"`
	}
	v := struct {
		B    []inner           `json:"b"`
		A    map[string]string `json:"a"`
		HTML string            `json:"html"`
	}{B: []inner{{"x", 1}}, A: map[string]string{"é": "1", "e": "2", "E": "3"}, HTML: "<a&b>"}
	got, err := Canonicalize(v)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":{"E":"3","e":"2","é":"1"},"b":[{"a":1,"z":"x"}],"html":"<a&b>"}`
	if string(got) != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	if _, err := Canonicalize(math.NaN()); err == nil {
		t.Error("NaN canonicalized")
	}
}

// Golden files: every testdata/jcs/NAME.json has a canonical testdata/jcs/NAME.canonical.
func TestCanonicalizeGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "jcs", "*.json"))
	if err != nil || len(inputs) < 3 {
		t.Fatalf("golden inputs missing: %v %v", inputs, err)
	}
	for _, in := range inputs {
		b, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := CanonicalizeJSON(b)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		// Canonical output is valid JSON that means the same thing.
		var a, c any
		if json.Unmarshal(b, &a) != nil || json.Unmarshal(got, &c) != nil {
			t.Errorf("%s: not valid JSON", in)
		}
		if again, err := CanonicalizeJSON(got); err != nil || !bytes.Equal(again, got) {
			t.Errorf("%s: canonicalization is not idempotent", in)
		}
		golden(t, filepath.Join("jcs", strings.TrimSuffix(filepath.Base(in), ".json")+".canonical"), got)
	}
}

func FuzzCanonicalizeJSON(f *testing.F) {
	for _, s := range []string{
		`{"b":1,"a":[true,false,null,"x\u00e9\ud83d\ude00"]}`, `1e21`, `-0.0`, `"\u001f"`, `[[[]]]`,
		`{"a":{"b":{"c":0.1}}}`, `333333333.33333329`, `{"\r":1,"1":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := CanonicalizeJSON(b)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON out: %q", out)
		}
		again, err := CanonicalizeJSON(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q (%v)", out, again, err)
		}
	})
}
