package migrate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/faulty"
)

// evidenceYAML: undeletableYAML with a crypto-erase declared at both sites: one key
// destroyed before the report (past), one scheduled after it (the harness clock is
// 2026-06-01).
const evidenceYAML = `migration: test-migration
sources:
  - name: virginia
    role: primary
    url: file://./stores/virginia
    crypto_erase: {key_id: 'arn:aws:kms:us-east-1:111122223333:key/0a1b2c3d-past', deletion_date: 2026-01-15, note: destroyed under CHG-1}
  - name: singapore
    role: backup
    url: file://./stores/singapore
    crypto_erase:
      key_id: ocid1.key.oc1.ap-singapore-1.scheduledkeyaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
      deletion_date: '2026-12-31T18:00:00Z'
      note: KMS key deletion scheduled, CHG-2
target:
  url: file://./stores/target
records:
  user: '^(?P<user>[^/]+)/'
  conflicts: fail
delete:
  mode: hard
  stages:
    - {name: backups, sites: [singapore]}
    - {name: primary, sites: [virginia]}
report:
  signing_key: keys/ferry.key
  signer: Test Data Protection Office
`

// TestReportEvidence: a spec with crypto_erase and a replica the site refuses to delete
// yields a certificate that lists both (predicate.sanitization.crypto_erase with the
// status at report time, predicate.retention with the site's reason), verifies offline,
// shows both in the HTML, and fails verification when the retention list is altered
// and re-signed.
func TestReportEvidence(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		h := newHarness(t, k, evidenceYAML)
		for _, key := range []string{"u1/held", "u2/free"} {
			h.put("virginia", key, []byte("bytes of "+key))
			h.put("singapore", key, []byte("bytes of "+key))
		}
		m := h.open()
		runThroughVerify(t, m)
		held := fmt.Errorf("test: delete u1/held: %s: %w", heldReason, providers.ErrRetained)
		h.faults["singapore"].FailKey(faulty.DeleteIf, "u1/held", held)
		if _, err := deleteStage(t, m, "backups"); ExitCode(err) != ExitIncomplete {
			t.Fatalf("backups: %v, want exit %d", err, ExitIncomplete)
		}
		if _, err := deleteStage(t, m, "primary"); err != nil {
			t.Fatalf("primary: %v", err)
		}

		dir := filepath.Join(h.dir, "report")
		if _, err := m.Report(ctx, dir); ExitCode(err) != ExitIncomplete {
			t.Fatalf("report: %v, want exit %d (a replica is retained)", err, ExitIncomplete)
		}
		env, err := certificate.ReadEnvelope(filepath.Join(dir, certificate.CertificateFile))
		if err != nil {
			t.Fatal(err)
		}
		_, st, err := env.Statement()
		if err != nil {
			t.Fatal(err)
		}
		p := st.Predicate

		ce := p.Sanitization.CryptoErase
		if len(ce) != 2 {
			t.Fatalf("crypto_erase = %+v, want two entries", ce)
		}
		want := []certificate.CryptoErase{
			{Site: "virginia", KeyID: "arn:aws:kms:us-east-1:111122223333:key/0a1b2c3d-past", DeletionDate: "2026-01-15T00:00:00Z", Note: "destroyed under CHG-1", Status: certificate.CryptoErasePast},
			{Site: "singapore", KeyID: "ocid1.key.oc1.ap-singapore-1.scheduledkeyaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", DeletionDate: "2026-12-31T18:00:00Z", Note: "KMS key deletion scheduled, CHG-2", Status: certificate.CryptoEraseScheduled},
		}
		for i := range want {
			if ce[i] != want[i] {
				t.Errorf("crypto_erase[%d] = %+v, want %+v", i, ce[i], want[i])
			}
		}

		r := p.Retention
		if r == nil || r.Total != 1 || len(r.Replicas) != 1 {
			t.Fatalf("retention = %+v, want one replica", r)
		}
		rr := r.Replicas[0]
		if rr.Site != "singapore" || rr.Key != "u1/held" || rr.State != certificate.ReplicaUndeletable || !strings.Contains(rr.Reason, heldReason) || !strings.HasSuffix(rr.URI, "u1/held") {
			t.Fatalf("retained replica %+v: want singapore u1/held, undeletable, with the site's reason", rr)
		}

		// It verifies offline against its manifest, the retained list recomputed.
		mf, err := os.Open(filepath.Join(dir, certificate.ManifestName))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := certificate.VerifyCertificate(env, mf, nil)
		mf.Close()
		if err != nil {
			t.Fatalf("verify: %v\n%+v", err, rep.Checks)
		}
		passed := false
		for _, c := range rep.Checks {
			passed = passed || (c.Name == certificate.CheckRetention && c.Status == certificate.Pass)
		}
		if !passed {
			t.Fatalf("verify did not check the retained replicas: %+v", rep.Checks)
		}

		// The people's rendering shows both.
		html, err := os.ReadFile(filepath.Join(dir, certificate.HTMLFile))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"ocid1.key.oc1.ap-singapore-1.scheduledkey", "scheduled", "arn:aws:kms:us-east-1:111122223333:key/0a1b2c3d-past", "u1/held", heldReason, "Evidence and retention"} {
			if !strings.Contains(string(html), s) {
				t.Errorf("certificate.html lacks %q", s)
			}
		}

		// A retention list altered and re-signed with the operator's own key no longer
		// matches the manifest.
		key, err := certificate.LoadPrivateKey(filepath.Join(h.dir, "keys", "ferry.key"))
		if err != nil {
			t.Fatal(err)
		}
		st.Predicate.Retention = &certificate.Retention{Total: 0, Replicas: []certificate.RetainedReplica{}}
		forged, err := certificate.Sign(st, key)
		if err != nil {
			t.Fatal(err)
		}
		mf, err = os.Open(filepath.Join(dir, certificate.ManifestName))
		if err != nil {
			t.Fatal(err)
		}
		defer mf.Close()
		if _, err := certificate.VerifyCertificate(forged, mf, nil); !errors.Is(err, certificate.ErrVerification) {
			t.Fatalf("a certificate hiding the retained replica verified: %v", err)
		}
	})
}
