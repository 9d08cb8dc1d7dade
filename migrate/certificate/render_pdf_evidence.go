package certificate

import (
	"fmt"
	"strings"
)

// The evidence in the PDF: short on the summary page (the page a compliance officer
// signs), in full on its own "Evidence and retention" page.

// summaryJournalHeads caps the journal heads the summary page lists; the evidence page
// lists them all.
const summaryJournalHeads = 4

// para writes text wrapped to the full width in the given font size and colour.
func (d *pdfDoc) para(text string, size float64, c [3]int) {
	d.font("", size)
	d.color(c)
	d.f.SetX(d.left)
	d.f.MultiCell(d.width, size*0.44, toPDFText(text), "", "L", false)
}

func (d *pdfDoc) journalHeads(rows []journalRow, size float64) {
	w := widths(d.width, 50, 14, 118)
	cols := []pdfCol{{"Stream", w[0], "L", false, false}, {"Entries", w[1], "R", false, false}, {"Head (SHA-256 of the stream's last line)", w[2], "L", true, false}}
	var out [][]string
	for _, r := range rows {
		out = append(out, []string{r.Stream, r.Count, r.Head})
	}
	d.table(d.left, cols, out, size)
}

func (d *pdfDoc) auditFindings(rows []auditRow, size float64, withOperation bool) {
	var cols []pdfCol
	if withOperation {
		w := widths(d.width, 22, 30, 24, 30, 16, 60)
		cols = []pdfCol{{"Finding", w[0], "L", false, false}, {"Identity", w[1], "L", false, false}, {"Time (UTC)", w[2], "L", false, false},
			{"Store", w[3], "L", false, false}, {"Operation", w[4], "L", false, false}, {"Key", w[5], "L", true, false}}
	} else {
		w := widths(d.width, 22, 34, 24, 36, 66)
		cols = []pdfCol{{"Finding", w[0], "L", false, false}, {"Identity", w[1], "L", false, false}, {"Time (UTC)", w[2], "L", false, false},
			{"Store", w[3], "L", false, false}, {"Key", w[4], "L", true, false}}
	}
	var out [][]string
	for _, r := range rows {
		row := []string{r.Kind, r.Identity, r.Time, r.Store}
		if withOperation {
			row = append(row, r.Operation)
		}
		out = append(out, append(row, r.Key))
	}
	d.table(d.left, cols, out, size)
}

func (d *pdfDoc) cryptoErase(rows []cryptoRow, size float64, withNote bool) {
	var cols []pdfCol
	if withNote {
		w := widths(d.width, 20, 70, 26, 16, 50)
		cols = []pdfCol{{"Site", w[0], "L", false, false}, {"Key", w[1], "L", true, false}, {"Key deletion", w[2], "L", false, false},
			{"Status", w[3], "L", false, false}, {"Note", w[4], "L", false, false}}
	} else {
		w := widths(d.width, 24, 100, 34, 24)
		cols = []pdfCol{{"Site", w[0], "L", false, false}, {"Key", w[1], "L", true, false}, {"Key deletion", w[2], "L", false, false}, {"Status", w[3], "L", false, false}}
	}
	var out [][]string
	for _, r := range rows {
		row := []string{r.Site, r.KeyID, r.Date, r.Status}
		if withNote {
			row = append(row, r.Note)
		}
		out = append(out, row)
	}
	d.table(d.left, cols, out, size)
}

// kvLine writes one key/value row across the page (kvGrid's), the value in colour c,
// on a new page if it does not fit.
func (d *pdfDoc) kvLine(k, v string, c [3]int) {
	const keyW, size = 30.0, 7.0
	d.font("", size)
	d.ensure(float64(len(d.lines(toPDFText(v), d.width-keyW)))*size*0.44 + 0.9)
	d.kvGridIn([]kv{{k, v}}, 1, keyW, size, c)
}

// evidenceSummary is the Evidence section of the summary page: one row each for the
// journal, the audit, the crypto-erase and the retained replicas, with the journal
// heads, the first findings and the declared keys under their rows.
func (d *pdfDoc) evidenceSummary(v *view) {
	e := v.Evidence
	d.ensure(30)
	d.section("Evidence")

	d.kvLine("Journal", strings.Replace(e.Journal, fullHeadsElsewhere, "", 1), colInk)
	heads := e.JournalHeads
	if len(heads) > summaryJournalHeads {
		heads = heads[:summaryJournalHeads]
	}
	if len(heads) > 0 {
		d.journalHeads(heads, 6.8)
		if n := len(e.JournalHeads) - len(heads); n > 0 {
			d.para(fmt.Sprintf("... and %s more under Evidence and retention.", plural(int64(n), "stream", "streams")), 6.8, colMuted)
		}
	}

	c := colInk
	if e.AuditBad {
		c = colBad
	}
	d.kvLine("Access-log audit", e.Audit, c)
	if f := e.SummaryFindings(); len(f) > 0 {
		d.auditFindings(f, 6.8, false)
		if v.AuditMoreSummary != "" {
			d.para(v.AuditMoreSummary, 6.8, colMuted)
		}
	}

	if len(e.CryptoErase) > 0 {
		d.kvLine("Cryptographic erase", "Declared by the operator (ferry does not call the KMS):", colInk)
		d.cryptoErase(e.CryptoErase, 6.8, false)
	} else {
		d.kvLine("Cryptographic erase", e.CryptoNone, colInk)
	}

	retained := e.Retained
	if len(e.RetainedBySite) > 0 {
		retained += " " + strings.Join(e.RetainedBySite, "; ") + "."
	}
	d.kvLine("Retained replicas", retained, colInk)
}

// evidencePage lists the evidence in full.
func (d *pdfDoc) evidencePage(v *view) {
	e := v.Evidence
	d.cont = "Evidence and retention (continued)"
	d.addPage("Evidence and retention")

	d.section("Journal heads")
	d.para(strings.Replace(e.Journal, fullHeadsElsewhere, "", 1), 8, colInk)
	if len(e.JournalHeads) > 0 {
		d.journalHeads(e.JournalHeads, 7.2)
	}

	d.ensure(16)
	d.section("Access-log audit")
	c := colInk
	if e.AuditBad {
		c = colBad
	}
	d.para(e.Audit, 8, c)
	if len(e.AuditFindings) > 0 {
		d.auditFindings(e.AuditFindings, 7, true)
		if e.AuditMore != "" {
			d.para(e.AuditMore, 7.2, colMuted)
		}
	}

	d.ensure(20)
	d.section("Cryptographic erase")
	d.para(`NIST SP 800-88 Rev. 2 "cryptographic erase": the site's data was encrypted under the key named, and destroying the key sanitizes every copy encrypted under it. These entries are as the operator declared them in the spec; ferry did not contact the key management service. Status is the declared date against the certificate's generation time.`, 7.5, colMuted)
	if len(e.CryptoErase) > 0 {
		d.cryptoErase(e.CryptoErase, 7, true)
	} else {
		d.para(e.CryptoNone, 8, colInk)
	}

	d.ensure(16)
	d.section("Retained replicas")
	d.para(e.Retained, 8, colInk)
	if len(e.RetainedRows) > 0 {
		w := widths(d.width, 20, 60, 34, 68)
		cols := []pdfCol{{"Site", w[0], "L", false, false}, {"Key", w[1], "L", true, false}, {"Version", w[2], "L", true, false}, {"Reason", w[3], "L", false, false}}
		var rows [][]string
		for _, r := range e.RetainedRows {
			rows = append(rows, []string{r.Site, r.Key, r.Version, r.Reason})
		}
		d.table(d.left, cols, rows, 7)
		if e.RetainedMore != "" {
			d.para(e.RetainedMore, 7.2, colMuted)
		}
	}
}
