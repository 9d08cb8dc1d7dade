package certificate

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// WriteReport end to end: the four files, and the certificate verifies from the files.
func TestWriteReport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "report")
	key := testKey(1)
	res, err := WriteReport(seqOf(exampleLines(50)), ReportOptions{Dir: dir, Predicate: examplePredicate(pubOf(testKey(2))), Key: key, Now: fixtureTime})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{res.ManifestPath, res.CertificatePath, res.HTMLPath, res.PDFPath} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", p, err)
		}
	}
	if !res.Complete || res.KeyID != KeyID(pubOf(key)) || res.Summary.TreeSize != 50 {
		t.Errorf("%+v", res)
	}
	env, err := ReadEnvelope(res.CertificatePath)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(res.ManifestPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := VerifyCertificate(env, f, []ed25519.PublicKey{pubOf(key)})
	if err != nil {
		t.Fatalf("%v %+v", err, rep.Checks)
	}
	// Leftover temporary files: none.
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	want := []string{CertificateFile, HTMLFile, PDFFile, ManifestName}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("files: %v", names)
	}

	// Approve from files, as `ferry report sign` does.
	kp := filepath.Join(t.TempDir(), "approver.key")
	b, _ := MarshalPrivateKeyPEM(testKey(2))
	os.WriteFile(kp, b, 0o600)
	env2, keyID, err := ApproveFile(res.CertificatePath, kp)
	if err != nil || keyID != KeyID(pubOf(testKey(2))) || len(env2.Signatures) != 2 {
		t.Fatalf("approve: %v", err)
	}
	if _, _, err := ApproveFile(res.CertificatePath, kp); !errors.Is(err, ErrDuplicateSigner) {
		t.Errorf("second approval: %v", err)
	}
}

func TestWriteReportFailures(t *testing.T) {
	dir := t.TempDir()
	lines := exampleLines(5)
	// Records out of order: no manifest is left behind.
	unsorted := []ManifestLine{lines[1], lines[0]}
	if _, err := WriteReport(seqOf(unsorted), ReportOptions{Dir: dir, Predicate: examplePredicate(nil), Key: testKey(1)}); err == nil {
		t.Error("unsorted records accepted")
	}
	// An error from the record source aborts the report.
	failing := iter.Seq2[ManifestLine, error](func(yield func(ManifestLine, error) bool) {
		if !yield(lines[0], nil) {
			return
		}
		yield(ManifestLine{}, errors.New("state store went away"))
	})
	if _, err := WriteReport(failing, ReportOptions{Dir: dir, Predicate: examplePredicate(nil), Key: testKey(1)}); err == nil {
		t.Error("record source error ignored")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left behind: %v", entries)
	}
	if _, err := WriteReport(seqOf(lines), ReportOptions{Dir: dir, Predicate: examplePredicate(nil)}); err == nil {
		t.Error("no key accepted")
	}
	p := examplePredicate(nil)
	p.Migration = ""
	if _, err := WriteReport(seqOf(lines), ReportOptions{Dir: dir, Predicate: p, Key: testKey(1)}); err == nil {
		t.Error("no migration id accepted")
	}
}

// TestApproveFileOnlyDeclaredApprovers (issue 13 class 11): `report sign` with a key the
// certificate does not declare as an approver is refused and the file keeps its bytes;
// with no approvers declared nobody may countersign; the declared approver's signature
// leaves a certificate that verifies with nothing pending.
func TestApproveFileOnlyDeclaredApprovers(t *testing.T) {
	dir := t.TempDir()
	approver, stranger := testKey(2), testKey(3)
	res, err := WriteReport(seqOf(exampleLines(20)), ReportOptions{Dir: dir, Predicate: examplePredicate(pubOf(approver)), Key: testKey(1), Now: fixtureTime})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(res.CertificatePath)
	for name, k := range map[string]ed25519.PrivateKey{"stranger": stranger, "operator": testKey(1)} {
		if _, _, err := ApproveFile(res.CertificatePath, writeKey(t, t.TempDir(), k)); err == nil {
			t.Fatalf("%s: signed", name)
		}
		if after, _ := os.ReadFile(res.CertificatePath); !bytes.Equal(after, before) {
			t.Fatalf("%s: the certificate changed although signing was refused", name)
		}
	}
	if _, _, err := ApproveFile(res.CertificatePath, writeKey(t, t.TempDir(), stranger)); !errors.Is(err, ErrNotApprover) {
		t.Fatalf("stranger: %v, want ErrNotApprover", err)
	}
	env, _, err := ApproveFile(res.CertificatePath, writeKey(t, t.TempDir(), approver))
	if err != nil || len(env.Signatures) != 2 {
		t.Fatalf("approver: %v", err)
	}
	onDisk, err := ReadEnvelope(res.CertificatePath)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyCertificate(onDisk, nil, []ed25519.PublicKey{pubOf(testKey(1))})
	if err != nil || len(rep.ApprovalsPending) != 0 {
		t.Fatalf("after approval: %v, pending %v", err, rep.ApprovalsPending)
	}

	// No approvers declared: no key may countersign.
	dir2 := t.TempDir()
	res2, err := WriteReport(seqOf(exampleLines(5)), ReportOptions{Dir: dir2, Predicate: examplePredicate(nil), Key: testKey(1), Now: fixtureTime})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ApproveFile(res2.CertificatePath, writeKey(t, t.TempDir(), approver)); !errors.Is(err, ErrNotApprover) || !strings.Contains(err.Error(), "report.approvers") {
		t.Fatalf("no approvers declared: %v", err)
	}
}

// TestVerdict: the verdict is a plain VERIFIED only when every check passed; an unpinned
// key, a missing manifest, pending approvals and an INCOMPLETE statement are named; a
// failed check (or an approval required with Require) is NOT VERIFIED.
func TestVerdict(t *testing.T) {
	approver := testKey(2)
	env, m := buildCert(t, exampleLines(10), examplePredicate(pubOf(approver)), testKey(1))
	op := []ed25519.PublicKey{pubOf(testKey(1))}
	verdict := func(trusted []ed25519.PublicKey, manifest []byte, require bool) (string, bool) {
		var r io.Reader
		if manifest != nil {
			r = bytes.NewReader(manifest)
		}
		rep, _ := VerifyCertificate(env, r, trusted)
		if require {
			rep.Require(CheckApprovals)
		}
		return rep.Verdict(), rep.OK()
	}
	for _, c := range []struct {
		trusted  []ed25519.PublicKey
		manifest []byte
		require  bool
		want     string
		ok       bool
	}{
		{op, m, false, "VERIFIED (1 of 1 approvals pending)", true},
		{nil, m, false, "VERIFIED (signature not pinned: pass --pubkey; 1 of 1 approvals pending)", true},
		{op, nil, false, "VERIFIED (1 of 1 approvals pending; manifest not checked: pass --manifest)", true},
		{op, m, true, "NOT VERIFIED: approvals failed", false},
		{[]ed25519.PublicKey{pubOf(testKey(3))}, m, false, "NOT VERIFIED: trusted key failed", false},
		{op, append([]byte("x"), m...), false, "NOT VERIFIED: manifest digest, manifest lines, merkle root failed", false},
	} {
		got, ok := verdict(c.trusted, c.manifest, c.require)
		if got != c.want || ok != c.ok {
			t.Errorf("verdict %q ok=%v, want %q ok=%v", got, ok, c.want, c.ok)
		}
	}
	if err := AddSignature(env, approver); err != nil {
		t.Fatal(err)
	}
	if got, _ := verdict(op, m, true); got != "VERIFIED" {
		t.Errorf("all signed: %q, want plain VERIFIED", got)
	}
	il, ip := incompleteExample()
	env, m = buildCert(t, il, ip, testKey(1))
	if got, ok := verdict(op, m, false); got != "VERIFIED (1 of 1 approvals pending; the certificate states the migration is INCOMPLETE)" || !ok {
		t.Errorf("incomplete: %q", got)
	}
}
