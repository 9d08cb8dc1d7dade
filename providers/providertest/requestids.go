package providertest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/ferrymigrate/ferry/providers"
)

// RequestIDs checks that s notes the id its service gave every request
// (providers.NoteRequestID) — a write, a read of metadata and a failed read — for
// ferry's journal, and that each request has its own. s must be empty.
func RequestIDs(t *testing.T, s providers.Store) {
	t.Helper()
	data := []byte("hello")
	sum := sha256.Sum256(data)

	ctx, put := providers.WithRequestIDs(t.Context())
	if _, err := s.Put(ctx, "a.json", bytes.NewReader(data), int64(len(data)), providers.PutOptions{SHA256: hex.EncodeToString(sum[:])}); err != nil {
		t.Fatal(err)
	}
	ctx, stat := providers.WithRequestIDs(t.Context())
	if _, err := s.Stat(ctx, "a.json"); err != nil {
		t.Fatal(err)
	}
	ctx, missing := providers.WithRequestIDs(t.Context())
	if _, err := s.Stat(ctx, "nothing.json"); err == nil {
		t.Fatal("stat of a missing key succeeded")
	}
	seen := map[string]bool{}
	for _, c := range []struct {
		name string
		ids  *providers.RequestIDs
	}{{"put", put}, {"stat", stat}, {"failed stat", missing}} {
		got := c.ids.IDs()
		if len(got) == 0 {
			t.Fatalf("the %s noted no request id", c.name)
		}
		for _, id := range got {
			if id == "" || seen[id] {
				t.Fatalf("the %s noted an empty or repeated request id %q (%v)", c.name, id, got)
			}
			seen[id] = true
		}
	}
}
