package migrate

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/migrate/certificate"
)

// TestNonUTF8KeyCertified (issue 13 class 9): a key that is not valid UTF-8 (byte 0xff)
// is copied, verified and deleted like any other, and the report can still be written:
// the manifest carries the exact key bytes (key_hex) beside an escaped rendering, the
// certificate verifies against the manifest, the user's records can be proven, and the
// live check finds the target copy. S3 and OCI keys are UTF-8 by definition, so only
// the stores that can hold such a name (file, mem) are run.
func TestNonUTF8KeyCertified(t *testing.T) {
	for _, k := range storeKinds {
		if k.name != "file" && k.name != "mem" {
			continue
		}
		t.Run(k.name, func(t *testing.T) {
			h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
			odd := "alice/caf\xff\xfe-%41.txt"
			data := []byte("bytes of a file whose name is not UTF-8")
			for _, site := range []string{"virginia", "singapore", "archive"} {
				h.put(site, odd, data)
				h.put(site, "alice/plain.txt", []byte("plain"))
			}
			// A user id that is not UTF-8 either: written escaped, still provable.
			h.put("virginia", "bo\xffb/doc", []byte("bob's"))
			ctx := context.Background()
			m := h.open()
			runThroughVerify(t, m)
			for _, st := range m.Spec.Delete.Stages {
				if _, err := deleteStage(t, m, st.Name); err != nil {
					t.Fatalf("delete %s: %v", st.Name, err)
				}
			}
			h.advance(25 * time.Hour)
			for _, st := range []string{"canary", "backups"} {
				if _, err := m.Purge(ctx, st); err != nil {
					t.Fatalf("purge %s: %v", st, err)
				}
			}
			dir := t.TempDir()
			rep, err := m.Report(ctx, dir)
			if err != nil {
				t.Fatalf("report: %v", err)
			}
			if !rep.Complete {
				t.Fatalf("report incomplete: %v", rep.IncompleteReasons)
			}
			// The manifest line round-trips to the exact key bytes.
			mf, err := os.ReadFile(filepath.Join(dir, certificate.ManifestName))
			if err != nil {
				t.Fatal(err)
			}
			found := false
			sc := bufio.NewScanner(bytes.NewReader(mf))
			for sc.Scan() {
				l, err := certificate.ParseLine(sc.Bytes())
				if err != nil {
					t.Fatalf("manifest line %s: %v", sc.Text(), err)
				}
				if l.Key == odd {
					found = true
					if !bytes.Contains(sc.Bytes(), []byte(`"key_hex":"`)) {
						t.Fatalf("line for the non-UTF-8 key has no key_hex: %s", sc.Text())
					}
				}
			}
			if !found {
				t.Fatalf("no manifest line carries the exact key %q:\n%s", odd, mf)
			}
			env, err := certificate.ReadEnvelope(filepath.Join(dir, certificate.CertificateFile))
			if err != nil {
				t.Fatal(err)
			}
			pub, err := certificate.LoadPublicKey(filepath.Join(h.dir, "keys", certificate.PublicKeyFile))
			if err != nil {
				t.Fatal(err)
			}
			vr, err := certificate.VerifyCertificate(env, bytes.NewReader(mf), []ed25519.PublicKey{pub})
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if !vr.OK() {
				t.Fatalf("verify: %+v", vr.Checks)
			}
			proofs, err := certificate.ProveUser(bytes.NewReader(mf), "alice", env)
			if err != nil || len(proofs) != 2 {
				t.Fatalf("prove alice: %d proofs, err %v; want 2", len(proofs), err)
			}
			for _, p := range proofs {
				pr, err := certificate.VerifyProof(p, env, []ed25519.PublicKey{pub})
				if err != nil {
					t.Fatalf("verify proof %d: %v", p.LeafIndex, err)
				}
				if pr.Record == nil || (pr.Record.Key != odd && pr.Record.Key != "alice/plain.txt") {
					t.Fatalf("proof %d proves %+v", p.LeafIndex, pr.Record)
				}
			}
			for _, u := range []string{"bo\xffb", "bo%FFb"} {
				ps, err := certificate.ProveUser(bytes.NewReader(mf), u, env)
				if err != nil || len(ps) != 1 {
					t.Fatalf("prove user %q: %d proofs, err %v; want 1", u, len(ps), err)
				}
			}
			// The live check reads the target copy by its exact key.
			lr, err := m.LiveCheck(ctx, bytes.NewReader(mf), 1)
			if err != nil || len(lr.Problems) != 0 {
				t.Fatalf("live check: %+v, err %v", lr, err)
			}
		})
	}
}

// TestDivergentReplicaOwnSize: a replica that differs from the record and stays at its
// site is certified with its own size and hash, not the primary's, and the per-site
// byte counts (shown in the HTML and PDF) add up the replicas' own sizes.
func TestDivergentReplicaOwnSize(t *testing.T) {
	h := newHarness(t, storeKinds[0], fmt.Sprintf(sitesYAML, "prefer-primary"))
	a := []byte("the primary's version")
	b := []byte("the backup's other, longer version")
	h.put("virginia", "u1/doc", a)
	h.put("singapore", "u1/doc", b)
	h.put("virginia", "u2/doc", []byte("AAAA"))
	h.put("singapore", "u2/doc", []byte("BBBB"))
	m := h.open()
	runThroughVerify(t, m)
	dir := t.TempDir()
	rep, err := m.Report(context.Background(), dir)
	if err != nil && ExitCode(err) != ExitIncomplete {
		t.Fatal(err)
	}
	mf, err := os.ReadFile(filepath.Join(dir, certificate.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{"u1/doc": b, "u2/doc": []byte("BBBB")}
	prim := map[string][]byte{"u1/doc": a, "u2/doc": []byte("AAAA")}
	var sgBytes int64
	sc := bufio.NewScanner(bytes.NewReader(mf))
	for sc.Scan() {
		l, err := certificate.ParseLine(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.Replicas {
			switch r.Site {
			case "singapore":
				sgBytes += r.Size
				if r.Size != int64(len(want[l.Key])) {
					t.Errorf("%s at singapore: size %d, want its own %d (record size %d)", l.Key, r.Size, len(want[l.Key]), l.Size)
				}
				if r.SHA256 != "" && r.SHA256 != sha256Hex(want[l.Key]) {
					t.Errorf("%s at singapore: sha256 %s is not the replica's own", l.Key, r.SHA256)
				}
				if r.State != certificate.ReplicaDivergent {
					t.Errorf("%s at singapore: state %s, want divergent", l.Key, r.State)
				}
			case "virginia":
				if r.Size != int64(len(prim[l.Key])) || r.SHA256 != sha256Hex(prim[l.Key]) {
					t.Errorf("%s at virginia: size %d sha %s, want %d %s", l.Key, r.Size, r.SHA256, len(prim[l.Key]), sha256Hex(prim[l.Key]))
				}
			}
		}
	}
	if sgBytes != int64(len(b)+4) {
		t.Fatalf("singapore replica bytes %d, want %d", sgBytes, len(b)+4)
	}
	if got := rep.Summary.Counts.BySite["singapore"]; got.Bytes != sgBytes || got.RemainingBytes != sgBytes {
		t.Fatalf("singapore counts %+v, want bytes and remaining bytes %d", got, sgBytes)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestReportNamesToolAndSigner: the certificate names the stamped version (not "dev"),
// and a spec without report.signer makes report warn.
func TestReportNamesToolAndSigner(t *testing.T) {
	old := Version
	Version = "v1.2.3-test"
	t.Cleanup(func() { Version = old })
	h := newHarness(t, storeKinds[0], strings.Replace(fmt.Sprintf(sitesYAML, "fail"), "  signer: Test Data Protection Office\n", "", 1))
	h.put("virginia", "u1/doc", []byte("x"))
	m := h.open()
	runThroughVerify(t, m)
	rep, err := m.Report(context.Background(), t.TempDir())
	if rep == nil || rep.ReportResult == nil {
		t.Fatalf("report: %v", err)
	}
	if v := rep.Statement.Predicate.Tool.Version; v != "v1.2.3-test" {
		t.Errorf("tool version %q", v)
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "report.signer is not set") {
		t.Errorf("warnings %q", rep.Warnings)
	}
}

// TestReportRefusesOperatorAsApprover: an approver declared with the operator's own key
// would be a countersignature by nobody new; report refuses it with a clear message
// (it failed deep inside signing with "keyid declared twice").
func TestReportRefusesOperatorAsApprover(t *testing.T) {
	h := newHarness(t, storeKinds[0], fmt.Sprintf(sitesYAML, "fail")+"  approvers:\n    - {name: Self, public_key: keys/ferry.pub}\n")
	h.put("virginia", "u1/doc", []byte("x"))
	m := h.open()
	runThroughVerify(t, m)
	_, err := m.Report(context.Background(), t.TempDir())
	mustCode(t, err, ExitUsage)
	if !strings.Contains(err.Error(), "operator's own key") {
		t.Fatalf("err %v", err)
	}
}
