package migrate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/mem"
)

// recoverableMem is a mem store whose provider keeps deleted objects for a while of
// its own accord (a bucket soft-delete policy).
type recoverableMem struct {
	*mem.Store
	rv providers.Recoverability
}

func (r recoverableMem) Recoverability(context.Context) (providers.Recoverability, error) {
	return r.rv, nil
}

var _ providers.Recoverer = recoverableMem{}

// TestRecoverabilityInCertificate: a delete stage records, for each of its sites
// that can tell (found through the store decorators), whether deleted objects stay
// recoverable by the provider; the certificate states it per site, with the time
// until which they do (the deletes plus the provider's retention).
func TestRecoverabilityInCertificate(t *testing.T) {
	kind := storeKind{"mem-recoverable", func(t *testing.T, h *harness, name string) providers.Store {
		n := fmt.Sprintf("%s-%s", strings.ReplaceAll(t.Name(), "/", "_"), name)
		mem.Reset(n)
		t.Cleanup(func() { mem.Reset(n) })
		switch name {
		case "singapore":
			return recoverableMem{mem.New(n), providers.Recoverability{Recoverable: true, Mechanism: "soft delete policy", Retention: 7 * 24 * time.Hour}}
		case "virginia":
			return recoverableMem{mem.New(n), providers.Recoverability{}}
		}
		return mem.New(n)
	}}
	ctx := context.Background()
	h := newHarness(t, kind, fmt.Sprintf(undeletableYAML, "hard"))
	for _, key := range []string{"u1/a", "u2/b"} {
		h.put("virginia", key, []byte("bytes of "+key))
		h.put("singapore", key, []byte("bytes of "+key))
	}
	m := h.open()
	runThroughVerify(t, m)
	for _, st := range []string{"backups", "primary"} {
		if _, err := deleteStage(t, m, st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	dir := filepath.Join(h.dir, "report")
	rep, err := m.Report(ctx, dir)
	if err != nil && ExitCode(err) != ExitIncomplete {
		t.Fatal(err)
	}
	until := certificate.FormatTime(h.clock().Add(7 * 24 * time.Hour))
	sites := map[string]certificate.Site{}
	for _, s := range rep.Statement.Predicate.Sites {
		sites[s.Name] = s
	}
	if r := sites["singapore"].ProviderRecoverability; r == nil || !r.Recoverable || r.Mechanism != "soft delete policy" || r.Until != until {
		t.Fatalf("singapore: %+v, want recoverable by soft delete policy until %s", r, until)
	}
	if r := sites["virginia"].ProviderRecoverability; r == nil || r.Recoverable || r.Until != "" {
		t.Fatalf("virginia: %+v, want not recoverable", r)
	}
	html, err := os.ReadFile(filepath.Join(dir, "certificate.html"))
	if err != nil {
		t.Fatal(err)
	}
	want := "deleted objects stay recoverable by the provider (soft delete policy) until " + until
	if !strings.Contains(string(html), want) {
		t.Fatalf("certificate.html does not say %q", want)
	}
	if !strings.Contains(string(html), "deleted objects are not kept by the provider") {
		t.Fatal("certificate.html says nothing of virginia's recoverability")
	}
}
