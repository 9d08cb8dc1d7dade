package certificate

import (
	"bytes"
	"compress/zlib"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

// pdfPageTexts returns the text each content stream of a PDF written by WritePDF draws,
// in order (one stream per page): the strings of its Tj operators, decoded from the
// UTF-16BE the embedded fonts use, one per line.
func pdfPageTexts(t *testing.T, pdf []byte) []string {
	t.Helper()
	var pages []string
	streamRe := regexp.MustCompile(`(?s)/Filter /FlateDecode /Length (\d+)>>\nstream\n`)
	for _, m := range streamRe.FindAllSubmatchIndex(pdf, -1) {
		zr, err := zlib.NewReader(bytes.NewReader(pdf[m[1]:]))
		if err != nil {
			continue
		}
		raw, err := io.ReadAll(zr)
		if err != nil || !bytes.Contains(raw, []byte(")Tj")) {
			continue
		}
		var sb strings.Builder
		for i := 0; i < len(raw); i++ {
			if raw[i] != '(' {
				continue
			}
			var s []byte
			j := i + 1
			for ; j < len(raw) && raw[j] != ')'; j++ {
				if raw[j] == '\\' && j+1 < len(raw) {
					j++
					if raw[j] == 'r' {
						s = append(s, '\r')
						continue
					}
				}
				s = append(s, raw[j])
			}
			if !bytes.HasPrefix(raw[j:], []byte(")Tj")) || len(s)%2 != 0 {
				continue
			}
			u := make([]uint16, len(s)/2)
			for k := range u {
				u[k] = uint16(s[2*k])<<8 | uint16(s[2*k+1])
			}
			sb.WriteString(string(utf16.Decode(u)))
			sb.WriteByte('\n')
			i = j
		}
		pages = append(pages, sb.String())
	}
	if len(pages) == 0 {
		t.Fatal("no text found in the PDF")
	}
	return pages
}

// squash drops whitespace, so that text wrapped over several lines or cells still
// matches.
func squash(s string) string {
	return strings.Join(strings.Fields(s), "")
}

// TestRenderEvidencePDF: the page a compliance officer signs (the summary, before the
// signature lines) carries the journal heads in full, the audit result with its
// findings, the declared crypto-erase and the retained replicas; the Evidence and
// retention page lists them all, with the finding's operation and the site's reason.
func TestRenderEvidencePDF(t *testing.T) {
	lines, p := incompleteExample()
	lines[3].Replicas[1].State = ReplicaUndeletable
	lines[3].Replicas[1].Reason = "undeletable: object is under a legal hold (case 2026-117)"
	heads := []JournalHead{
		{Stream: "ferry@host-a:4242", Count: 120, Head: hexSum("head-a")},
		{Stream: "worker-2@host-b:77", Count: 64, Head: hexSum("head-b")},
	}
	p.Journal = &JournalSummary{Algorithm: JournalAlgorithm, Entries: 184, Streams: heads}
	p.Audit = &AuditSummary{
		CheckedAt: ts(110 * time.Hour), WindowFrom: ts(0), WindowTo: ts(110 * time.Hour),
		Sources:         []AuditSource{{Location: "s3://logs/minio/", Format: "minio", Entries: 900, Ferry: 890, Other: 10}},
		FerryIdentities: []string{"ferry-migrator"},
		Findings: []AuditFinding{
			{Kind: "foreign-access", Store: "target", Key: "alice/a.json", Operation: "read", Identity: "MALLORY", Time: ts(30 * time.Hour)},
			{Kind: "foreign-access", Store: "singapore", Key: "bob/c.json", Operation: "delete", Identity: "MALLORY", Time: ts(31 * time.Hour)},
			{Kind: "foreign-access", Store: "singapore", Key: "dave/x.json", Operation: "list", Identity: "EVE", Time: ts(32 * time.Hour)},
			{Kind: "after-deletion", Store: "virginia", Key: "carol/e.json", Operation: "read", Identity: "TRUDY", Time: ts(60 * time.Hour)},
		},
		FindingsTotal: 4,
	}
	p.Sanitization.CryptoErase = []CryptoErase{{Site: "singapore", KeyID: "ocid1.key.oc1.ap-singapore-1.amaaaaaexamplekeyid0123456789abcdefghijklmnop", DeletionDate: ts(200 * time.Hour), Status: CryptoEraseScheduled, Note: "vault key scheduled for deletion by ticket SEC-88"}}

	dir := t.TempDir()
	if *renderDir != "" {
		dir = filepath.Join(*renderDir, "evidence")
	}
	res, err := WriteReport(seqOf(lines), ReportOptions{Dir: dir, Predicate: p, Key: testKey(1), Now: fixtureTime.Add(120 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var pdf bytes.Buffer
	if err := WritePDF(&pdf, res.Envelope); err != nil {
		t.Fatal(err)
	}
	pages := pdfPageTexts(t, pdf.Bytes())
	for i, pg := range pages {
		if !strings.Contains(pg, "Certificate of Migration and Deletion - "+p.Migration) {
			t.Errorf("page %d's footer does not name the migration", i+1)
		}
	}

	// The summary: the pages up to the one with the signature lines.
	var summary, rest string
	for i, pg := range pages {
		if strings.Contains(pg, "Performed by\n") && strings.Contains(pg, "Approved by\n") {
			summary = strings.Join(pages[:i+1], "\n")
			rest = strings.Join(pages[i+1:], "\n")
			break
		}
	}
	if summary == "" {
		t.Fatal("no page carries the signature lines")
	}
	for _, want := range []string{
		"EVIDENCE", heads[0].Head, heads[1].Head, "ferry@host-a:4242", "184 entries",
		"4 findings", "MALLORY", "alice/a.json", "bob/c.json", "dave/x.json",
		"and 1 more under Evidence and retention",
		"ocid1.key.oc1.ap-singapore-1.amaaaaaexamplekeyid0123456789abcdefghijklmnop", "scheduled",
		"1 replica could not be deleted", "object is under a legal hold (case 2026-117)",
	} {
		if !strings.Contains(squash(summary), squash(want)) {
			t.Errorf("the summary lacks %q", want)
		}
	}
	// Signatures come after the evidence on the signed page.
	if e, s := strings.Index(summary, "EVIDENCE"), strings.Index(summary, "SIGNATURES"); e < 0 || s < e {
		t.Errorf("the evidence is not above the signatures (at %d, signatures at %d)", e, s)
	}
	for _, want := range []string{
		"Evidence and retention", "TRUDY", "carol/e.json", "after-deletion", "delete",
		"vault key scheduled for deletion by ticket SEC-88",
		"undeletable: object is under a legal hold (case 2026-117)", lines[3].Key,
	} {
		if !strings.Contains(squash(rest), squash(want)) {
			t.Errorf("the Evidence and retention page lacks %q", want)
		}
	}

	// Without any of it, the summary says so instead of leaving the section out.
	_, bare := incompleteExample()
	res, err = WriteReport(seqOf(exampleLines(9)), ReportOptions{Dir: t.TempDir(), Predicate: bare, Key: testKey(1), Now: fixtureTime.Add(120 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	pdf.Reset()
	if err := WritePDF(&pdf, res.Envelope); err != nil {
		t.Fatal(err)
	}
	all := squash(strings.Join(pdfPageTexts(t, pdf.Bytes()), "\n"))
	for _, want := range []string{"No journal was written with this certificate.", "None run: no access logs were checked", "None declared.", "None: no site refused a delete."} {
		if !strings.Contains(all, squash(want)) {
			t.Errorf("a certificate without evidence lacks %q", want)
		}
	}
}
