package certificate

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var renderDir = flag.String("render", "", "also write example certificates (complete and incomplete) to this directory, to look at")

// incompleteExample: conflicts, a failed record, the primary stage not run, the backups
// stage not purged, a signer name outside Latin-1.
func incompleteExample() ([]ManifestLine, Predicate) {
	lines := exampleLines(90)
	for i := range lines {
		l := &lines[i]
		// primary stage not run: virginia replicas still there
		l.Replicas[0] = ReplicaRef{Site: "virginia", URI: l.Replicas[0].URI, Size: l.Size, SHA256: l.SHA256, State: ReplicaIdentical}
		// backups not purged: soft-deleted only
		for j := 1; j < len(l.Replicas); j++ {
			l.Replicas[j].State = StatusDeleted
		}
		l.Status = StatusVerified
		switch i {
		case 7, 8:
			l.Status = StatusConflict
			l.SHA256 = ""
			l.Target = TargetRef{}
			for j := range l.Replicas {
				// each divergent replica has its own size and hash
				l.Replicas[j] = ReplicaRef{Site: l.Replicas[j].Site, URI: l.Replicas[j].URI, Size: l.Size + int64(1000*(j+1)), SHA256: hexSum(fmt.Sprint(l.Key, j)), State: ReplicaDivergent}
			}
		case 20:
			l.Status = StatusFailed
			l.Target = TargetRef{}
			for j := range l.Replicas {
				l.Replicas[j] = ReplicaRef{Site: l.Replicas[j].Site, URI: l.Replicas[j].URI, Size: l.Size, State: ReplicaPresent}
			}
		}
	}
	p := examplePredicate(pubOf(testKey(2)))
	p.Signer.Name = "Łukasz Żółć (Data Protection Office, Kraków) 山田"
	p.Stages[1].PurgedAt = ""
	p.Stages[2].StartedAt, p.Stages[2].FinishedAt = "", ""
	p.Stages[2].Counts = StageCounts{Scope: 87}
	return lines, p
}

func TestRender(t *testing.T) {
	dir := t.TempDir()
	if *renderDir != "" {
		dir = *renderDir
	}
	cases := []struct {
		name     string
		lines    []ManifestLine
		pred     Predicate
		complete bool
		approve  bool
	}{
		{"complete", exampleLines(90), examplePredicate(pubOf(testKey(2))), true, true},
	}
	il, ip := incompleteExample()
	cases = append(cases, struct {
		name     string
		lines    []ManifestLine
		pred     Predicate
		complete bool
		approve  bool
	}{"incomplete", il, ip, false, false})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, c.name)
			res, err := WriteReport(seqOf(c.lines), ReportOptions{Dir: out, Predicate: c.pred, Key: testKey(1), Now: fixtureTime.Add(120 * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			if res.Complete != c.complete {
				t.Fatalf("complete = %v, want %v (reasons %q)", res.Complete, c.complete, res.IncompleteReasons)
			}
			env := res.Envelope
			if c.approve {
				if env, _, err = ApproveFile(res.CertificatePath, writeKey(t, out, testKey(2))); err != nil {
					t.Fatal(err)
				}
				if _, _, err := RenderFiles(out, env); err != nil {
					t.Fatal(err)
				}
			}
			pdf, err := os.ReadFile(filepath.Join(out, PDFFile))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(pdf, []byte("%PDF-")) || !bytes.Contains(pdf, []byte("%%EOF")) {
				t.Fatal("not a PDF")
			}
			// The same envelope renders to the same bytes.
			var again bytes.Buffer
			if err := WritePDF(&again, env); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Bytes(), pdf) {
				t.Error("PDF output is not deterministic")
			}
			html, err := os.ReadFile(filepath.Join(out, HTMLFile))
			if err != nil {
				t.Fatal(err)
			}
			_, st, _ := env.Statement()
			for _, want := range []string{
				"Certificate of Migration and Deletion", "us-users-2022", st.Predicate.Merkle.Root,
				"ferry report verify certificate.json --manifest manifest.jsonl --pubkey ferry.pub",
				"NIST SP 800-88 Rev. 2", "us-ashburn-1", "ap-southeast-1", env.Signatures[0].KeyID,
			} {
				if !strings.Contains(string(html), want) {
					t.Errorf("HTML lacks %q", want)
				}
			}
			word := "COMPLETE"
			if !c.complete {
				word = "INCOMPLETE"
				for _, r := range st.Predicate.IncompleteReasons {
					esc := strings.NewReplacer(`"`, "&#34;", "'", "&#39;").Replace(r)
					if !strings.Contains(string(html), esc) {
						t.Errorf("HTML lacks reason %q", r)
					}
				}
			}
			if !strings.Contains(string(html), `<div class="word">`+word+`</div>`) {
				t.Errorf("HTML lacks the %s banner", word)
			}
			if c.approve && !strings.Contains(string(html), "Jane Auditor") {
				t.Error("HTML does not name the approver")
			}
		})
	}
}

func writeKey(t *testing.T, dir string, k []byte) string {
	t.Helper()
	b, err := MarshalPrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "approver.key")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestToPDFText: with the Go fonts embedded, Latin, Greek and Cyrillic text is kept as
// it is (it was transliterated to Windows-1252 with the core fonts); what the fonts
// lack is decomposed if that helps, else shown as <U+XXXX>, never dropped.
func TestToPDFText(t *testing.T) {
	for in, want := range map[string]string{
		"plain ASCII":     "plain ASCII",
		"Zürich café":     "Zürich café",
		"Łódź Kraków":     "Łódź Kraków",
		"Đorđe Ħal":       "Đorđe Ħal",
		"Škoda – “quote”": "Škoda – “quote”",
		"Αθήνα Ελλάδα":    "Αθήνα Ελλάδα",
		"Москва, Україна, Беларусь": "Москва, Україна, Беларусь",
		"Türkçe İstanbul ğüşöç":     "Türkçe İstanbul ğüşöç",
		"Tiếng Việt":                "Tieng Viet", // stacked diacritics are not in WGL4: accents stripped
		"山":                         "<U+5C71>",
		"שלום":                      "<U+05E9><U+05DC><U+05D5><U+05DD>",
		"😀":                         "<U+1F600>",
		"tab\there":                 "tab here",
		"ﬁ":                         "fi", // NFKD of the ligature, if the fonts lack it
	} {
		got := toPDFText(in)
		if in == "ﬁ" && got == "ﬁ" {
			continue // the fonts have the ligature itself
		}
		if got != want {
			t.Errorf("toPDFText(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRenderSignerDateTool: an unset signer is shown as "(not set)" (never a blank);
// the PDF is dated at the certificate's generation time (not 2000-01-01) and names
// the tool with its version and commit.
func TestRenderSignerDateTool(t *testing.T) {
	p := examplePredicate(nil)
	p.Signer.Name = ""
	p.Tool = Tool{Name: "ferry", Version: "v1.4.2", Commit: "0123456789abcdef0123456789abcdef01234567+modified"}
	now := fixtureTime.Add(120 * time.Hour)
	res, err := WriteReport(seqOf(exampleLines(9)), ReportOptions{Dir: t.TempDir(), Predicate: p, Key: testKey(1), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	html, err := os.ReadFile(res.HTMLPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(html, []byte("(not set)")) {
		t.Error("the HTML does not say the signer is not set")
	}
	if !bytes.Contains(html, []byte("ferry v1.4.2 (commit 0123456789ab&#43;modified)")) {
		t.Error("the HTML does not name the tool's version and commit")
	}
	pdf, err := os.ReadFile(res.PDFPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := "/CreationDate (D:" + now.UTC().Format("20060102150405") + ")"; !bytes.Contains(pdf, []byte(want)) {
		t.Errorf("the PDF has no %s", want)
	}
	// The Go fonts are embedded (TrueType subsets, Identity-H), not the core fonts.
	for _, want := range []string{"/FontFile2", "/BaseFont /utf8go", "/Encoding /Identity-H"} {
		if !bytes.Contains(pdf, []byte(want)) {
			t.Errorf("the PDF lacks %s", want)
		}
	}
	if bytes.Contains(pdf, []byte("/Helvetica")) || bytes.Contains(pdf, []byte("/Courier")) {
		t.Error("the PDF still uses a core font")
	}
	if bytes.Contains(pdf, []byte("D:20000101")) {
		t.Error("the PDF is dated 2000-01-01")
	}
	if !bytes.Contains(pdf, []byte(`/Creator (ferry v1.4.2 \(commit 0123456789ab+modified\))`)) {
		t.Error("the PDF's creator does not name the tool's version and commit")
	}
}
