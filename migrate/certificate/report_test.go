package certificate

import (
	"crypto/ed25519"
	"errors"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// WriteReport end to end: the four files, and the certificate verifies from the files.
func TestWriteReport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "report")
	key := testKey(1)
	res, err := WriteReport(seqOf(exampleLines(50)), ReportOptions{Dir: dir, Predicate: examplePredicate(nil), Key: key, Now: fixtureTime})
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
