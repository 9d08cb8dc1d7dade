//go:build goexperiment.jsonv2

package certificate

import (
	"encoding/json/jsontext"
	"os"
	"path/filepath"
	"testing"
)

// Cross-check with the standard library's own RFC 8785 implementation
// (jsontext.Value.Canonicalize), which exists only with GOEXPERIMENT=jsonv2:
//
//	GOEXPERIMENT=jsonv2 go test -run JSONv2 ./migrate/certificate/
func TestCanonicalizeMatchesJSONv2(t *testing.T) {
	inputs, _ := filepath.Glob(filepath.Join("testdata", "jcs", "*.json"))
	var all [][]byte
	for _, in := range inputs {
		b, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b)
	}
	for _, l := range append(exampleLines(20), goldenLine()) {
		b, _ := MarshalLine(l)
		all = append(all, b)
	}
	env, _ := buildCert(t, exampleLines(3), examplePredicate(nil), testKey(1))
	payload, _, _ := env.Statement()
	all = append(all, payload)
	for _, b := range all {
		ours, err := CanonicalizeJSON(b)
		if err != nil {
			t.Fatal(err)
		}
		v := jsontext.Value(append([]byte{}, b...))
		if err := v.Canonicalize(); err != nil {
			t.Fatal(err)
		}
		if string(v) != string(ours) {
			t.Errorf("differs from jsontext:\n ours %s\n std  %s", ours, v)
		}
	}
}
