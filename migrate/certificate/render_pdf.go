package certificate

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/go-pdf/fpdf"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/gomono"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/sfnt"
	"golang.org/x/text/unicode/norm"
)

// RenderPDF writes certificate.pdf for env to path (atomically).
func RenderPDF(path string, env *Envelope) error {
	return writeAtomic(path, 0o644, func(w io.Writer) error { return WritePDF(w, env) })
}

// WritePDF writes the PDF rendering of env to w: an A4 summary page a compliance officer
// signs, then the per-site tables. Its text is set in the Go fonts (Go, Go Bold, Go
// Mono; golang.org/x/image/font/gofont), embedded as subsets, so every character of
// the Latin, Greek and Cyrillic scripts (the WGL4 set) prints as it is; a character
// the fonts lack (CJK, Arabic, Hebrew, emoji, ...) is decomposed and stripped of
// accents if that helps, else written as <U+XXXX>, so nothing is lost silently. The
// output is deterministic for a given envelope.
func WritePDF(w io.Writer, env *Envelope) error {
	v, err := buildView(env)
	if err != nil {
		return err
	}
	d := newPDFDoc(v.GeneratedAt)
	d.summaryPage(v)
	d.detailPages(v)
	d.evidencePage(v)
	if err := d.f.Error(); err != nil {
		return err
	}
	return d.f.Output(w)
}

// pdfFonts are the parsed embedded fonts, for their glyph coverage.
var pdfFonts = sync.OnceValues(func() ([]*sfnt.Font, error) {
	var out []*sfnt.Font
	for _, ttf := range [][]byte{goregular.TTF, gobold.TTF, gomono.TTF} {
		f, err := sfnt.Parse(ttf)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
})

// pdfCovered reports whether every embedded font has a glyph for r.
func pdfCovered(r rune) bool {
	if r > 0xffff || r < 0x20 {
		return false
	}
	fonts, err := pdfFonts()
	if err != nil {
		return false
	}
	var buf sfnt.Buffer
	for _, f := range fonts {
		if g, err := f.GlyphIndex(&buf, r); err != nil || g == 0 {
			return false
		}
	}
	return true
}

// toPDFText maps s to the text the embedded fonts can print: characters they have are
// kept, others are decomposed and stripped of accents, a few are spelled out, and the
// rest become <U+XXXX>. Control characters become spaces.
func toPDFText(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			b.WriteByte(' ')
			continue
		}
		if pdfCovered(r) {
			b.WriteRune(r)
			continue
		}
		if t, ok := pdfTranslit[r]; ok && allCovered(t) {
			b.WriteString(t)
			continue
		}
		var base strings.Builder
		allOK := true
		for _, x := range norm.NFKD.String(string(r)) {
			if unicode.Is(unicode.Mn, x) {
				continue
			}
			if !pdfCovered(x) {
				if t, ok := pdfTranslit[x]; ok && allCovered(t) {
					base.WriteString(t)
					continue
				}
				allOK = false
				break
			}
			base.WriteRune(x)
		}
		if allOK && base.Len() > 0 {
			b.WriteString(base.String())
			continue
		}
		fmt.Fprintf(&b, "<U+%04X>", r)
	}
	return b.String()
}

// pdfInfo sets a document information field: plain ASCII as is, anything else as
// UTF-16 (PDF text strings hold either PDFDocEncoding or UTF-16).
func pdfInfo(set func(string, bool), s string) {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			set(s, true)
			return
		}
	}
	set(s, false)
}

func allCovered(s string) bool {
	for _, r := range s {
		if !pdfCovered(r) {
			return false
		}
	}
	return true
}

// pdfTranslit spells letters that have no decomposition into Latin-1 letters.
var pdfTranslit = map[rune]string{
	'Ł': "L", 'ł': "l", 'Đ': "D", 'đ': "d", 'Ħ': "H", 'ħ': "h", 'ı': "i", 'Ŀ': "L", 'ŀ': "l",
	'Ŧ': "T", 'ŧ': "t", 'ĸ': "k", 'Ŋ': "N", 'ŋ': "n", 'Ə': "E", 'ə': "e", 'Ɛ': "E", 'ɛ': "e",
	'ẞ': "SS",
	'‐': "-", '‑': "-", '‒': "-", '―': "-", '−': "-", '′': "'", '″': "\"",
	'←': "<-", '→': "->", '≤': "<=", '≥': ">=", '≠': "!=", '✓': "v", '✗': "x",
	'\u00a0': " ", '\u2009': " ", '\u202f': " ", '\u200b': "",
}

type pdfCol struct {
	title string
	w     float64
	align string // "L" or "R"
	mono  bool
	bold  bool
}

type pdfDoc struct {
	f      *fpdf.Fpdf
	left   float64
	width  float64
	bottom float64 // lowest y content may reach
	// migration names the certificate in every footer; cont is the title of a
	// continuation page of the part being drawn.
	migration, cont string
}

const (
	pdfMargin    = 14.0
	pdfPageH     = 297.0
	pdfFooterGap = 12.0
)

// Colours.
var (
	colInk   = [3]int{27, 36, 48}
	colMuted = [3]int{91, 102, 115}
	colRule  = [3]int{213, 219, 226}
	colBand  = [3]int{240, 243, 247}
	colOK    = [3]int{29, 107, 58}
	colBad   = [3]int{163, 38, 27}
)

// newPDFDoc starts a document dated at the certificate's generation time (so the
// output stays deterministic for a given envelope; the zero time if it has none).
func newPDFDoc(generated time.Time) *pdfDoc {
	f := fpdf.New("P", "mm", "A4", "")
	f.SetMargins(pdfMargin, 12, pdfMargin)
	f.SetAutoPageBreak(false, 0)
	f.AddUTF8FontFromBytes("go", "", goregular.TTF)
	f.AddUTF8FontFromBytes("go", "B", gobold.TTF)
	f.AddUTF8FontFromBytes("gomono", "", gomono.TTF)
	f.SetCreationDate(generated)
	f.SetModificationDate(generated)
	f.SetCatalogSort(true)
	f.SetCompression(true)
	f.AliasNbPages("{nb}")
	d := &pdfDoc{f: f, left: pdfMargin, width: 210 - 2*pdfMargin, bottom: pdfPageH - pdfFooterGap - 2.5}
	return d
}

func (d *pdfDoc) color(c [3]int) { d.f.SetTextColor(c[0], c[1], c[2]) }
func (d *pdfDoc) fill(c [3]int)  { d.f.SetFillColor(c[0], c[1], c[2]) }
func (d *pdfDoc) draw(c [3]int)  { d.f.SetDrawColor(c[0], c[1], c[2]) }
func (d *pdfDoc) font(style string, size float64) {
	d.f.SetFont("go", style, size)
}
func (d *pdfDoc) mono(size float64) { d.f.SetFont("gomono", "", size) }

func (d *pdfDoc) addPage(title string) {
	d.f.AddPage()
	// footer drawn per page: page numbers and the migration id
	d.f.SetFooterFunc(func() {
		d.f.SetY(pdfPageH - pdfFooterGap)
		d.font("", 7)
		d.color(colMuted)
		d.f.CellFormat(d.width/2, 4, toPDFText("Certificate of Migration and Deletion - "+d.migration), "", 0, "L", false, 0, "")
		d.f.CellFormat(d.width/2, 4, fmt.Sprintf("Page %d of {nb}", d.f.PageNo()), "", 0, "R", false, 0, "")
	})
	if title != "" {
		d.font("B", 14)
		d.color(colInk)
		d.f.CellFormat(d.width, 7, toPDFText(title), "", 1, "L", false, 0, "")
		d.rule(colInk, 0.5)
		d.f.Ln(2)
	}
}

func (d *pdfDoc) rule(c [3]int, lw float64) {
	d.draw(c)
	d.f.SetLineWidth(lw)
	y := d.f.GetY()
	d.f.Line(d.left, y, d.left+d.width, y)
}

// ensure starts a continuation page (titled d.cont) when h more millimetres do not fit.
func (d *pdfDoc) ensure(h float64) {
	if d.f.GetY()+h > d.bottom {
		d.addPage(d.cont)
	}
}

func (d *pdfDoc) section(title string) {
	d.f.Ln(1.8)
	d.font("B", 7.5)
	d.color(colMuted)
	d.f.CellFormat(d.width, 3.8, toPDFText(strings.ToUpper(title)), "", 1, "L", false, 0, "")
	d.rule(colRule, 0.2)
	d.f.Ln(0.5)
}

// lines wraps text (already mapped by toPDFText) to width w in the current font.
func (d *pdfDoc) lines(text string, w float64) []string {
	if text == "" {
		return []string{""}
	}
	var out []string
	out = append(out, d.f.SplitText(text, w)...)
	if len(out) == 0 {
		out = []string{""}
	}
	return out
}

// kvGrid draws key/value pairs in ncol columns; values wrap.
func (d *pdfDoc) kvGrid(rows []kv, ncol int, keyW, size float64) {
	d.kvGridIn(rows, ncol, keyW, size, colInk)
}

// kvGridIn is kvGrid with the values in colour c.
func (d *pdfDoc) kvGridIn(rows []kv, ncol int, keyW, size float64, c [3]int) {
	lh := size * 0.44
	colW := (d.width - float64(ncol-1)*5) / float64(ncol)
	for i := 0; i < len(rows); i += ncol {
		y := d.f.GetY()
		maxH := 0.0
		for j := 0; j < ncol && i+j < len(rows); j++ {
			r := rows[i+j]
			x := d.left + float64(j)*(colW+5)
			d.font("", size)
			vl := d.lines(toPDFText(r.V), colW-keyW)
			d.font("B", size)
			kl := d.lines(toPDFText(r.K), keyW)
			n := max(len(vl), len(kl))
			h := float64(n)*lh + 0.9
			maxH = max(maxH, h)
			d.color(colMuted)
			for k, l := range kl {
				d.f.SetXY(x, y+0.45+float64(k)*lh)
				d.f.CellFormat(keyW, lh, l, "", 0, "L", false, 0, "")
			}
			d.font("", size)
			d.color(c)
			for k, l := range vl {
				d.f.SetXY(x+keyW, y+0.45+float64(k)*lh)
				d.f.CellFormat(colW-keyW, lh, l, "", 0, "L", false, 0, "")
			}
		}
		d.draw(colBand)
		d.f.SetLineWidth(0.2)
		d.f.Line(d.left, y+maxH, d.left+d.width, y+maxH)
		d.f.SetXY(d.left, y+maxH)
	}
}

// table draws a table with a shaded header; cells wrap. x and the column widths give its
// position; migration is for continuation pages.
func (d *pdfDoc) table(x float64, cols []pdfCol, rows [][]string, size float64) {
	lh := size * 0.43
	total := 0.0
	for _, c := range cols {
		total += c.w
	}
	header := func() {
		y := d.f.GetY()
		d.fill(colBand)
		d.font("B", size)
		d.color(colInk)
		hh := 0.0
		for _, c := range cols {
			hh = max(hh, float64(len(d.lines(toPDFText(c.title), c.w)))*lh+1.2)
		}
		d.f.Rect(x, y, total, hh, "F")
		cx := x
		for _, c := range cols {
			for k, l := range d.lines(toPDFText(c.title), c.w) {
				d.f.SetXY(cx, y+0.6+float64(k)*lh)
				d.f.CellFormat(c.w, lh, l, "", 0, c.align, false, 0, "")
			}
			cx += c.w
		}
		d.f.SetXY(x, y+hh)
	}
	header()
	for _, row := range rows {
		wrapped := make([][]string, len(cols))
		n := 1
		for i, c := range cols {
			d.cellFont(c, size)
			wrapped[i] = d.lines(toPDFText(row[i]), c.w)
			n = max(n, len(wrapped[i]))
		}
		h := float64(n)*lh + 1.1
		if d.f.GetY()+h > d.bottom {
			d.addPage(d.cont)
			d.f.SetX(x)
			header()
		}
		y := d.f.GetY()
		cx := x
		for i, c := range cols {
			d.cellFont(c, size)
			d.color(colInk)
			for k, l := range wrapped[i] {
				d.f.SetXY(cx, y+0.55+float64(k)*lh)
				d.f.CellFormat(c.w, lh, l, "", 0, c.align, false, 0, "")
			}
			cx += c.w
		}
		d.draw(colRule)
		d.f.SetLineWidth(0.15)
		d.f.Line(x, y+h, x+total, y+h)
		d.f.SetXY(x, y+h)
	}
}

func (d *pdfDoc) cellFont(c pdfCol, size float64) {
	switch {
	case c.mono:
		d.mono(size - 0.6)
	case c.bold:
		d.font("B", size)
	default:
		d.font("", size)
	}
}

// widths scales relative column weights to the given total width.
func widths(total float64, weights ...float64) []float64 {
	sum := 0.0
	for _, w := range weights {
		sum += w
	}
	out := make([]float64, len(weights))
	for i, w := range weights {
		out[i] = total * w / sum
	}
	return out
}

const maxReasonsOnSummary = 5

func (d *pdfDoc) summaryPage(v *view) {
	f := d.f
	d.migration, d.cont = v.Migration, "Certificate of Migration and Deletion (continued)"
	d.addPage("")
	pdfInfo(f.SetTitle, "Certificate of Migration and Deletion - "+v.Migration)
	pdfInfo(f.SetSubject, "Migration "+v.Migration+", Merkle root "+v.Root)
	pdfInfo(f.SetCreator, orDash(v.Tool))
	pdfInfo(f.SetAuthor, v.PerformedBy)

	// Title block.
	d.font("B", 18)
	d.color(colInk)
	f.CellFormat(d.width*0.66, 9, "Certificate of Migration and Deletion", "", 0, "L", false, 0, "")
	d.font("", 8)
	d.color(colMuted)
	x := d.left + d.width*0.66
	y := f.GetY()
	f.SetXY(x, y)
	f.CellFormat(d.width*0.34, 4.5, toPDFText("Migration "+v.Migration), "", 2, "R", false, 0, "")
	f.SetX(x)
	f.CellFormat(d.width*0.34, 4.5, toPDFText("Generated "+v.Generated), "", 1, "R", false, 0, "")
	f.SetY(y + 10)
	d.rule(colInk, 0.6)
	f.Ln(2.5)

	// Status banner.
	bannerColor := colOK
	word := "COMPLETE"
	if !v.Complete {
		bannerColor = colBad
		word = "INCOMPLETE"
	}
	reasons := v.Reasons
	more := 0
	if len(reasons) > maxReasonsOnSummary {
		more = len(reasons) - (maxReasonsOnSummary - 1)
		reasons = reasons[:maxReasonsOnSummary-1]
	}
	d.font("", 8)
	textW := d.width - 8
	head := d.lines(toPDFText(v.Headline), textW)
	var reasonLines [][]string
	for _, r := range reasons {
		reasonLines = append(reasonLines, d.lines(toPDFText(r), textW-4))
	}
	lh := 3.6
	h := 2.5 + 6.5 + float64(len(head))*lh + 2
	for _, rl := range reasonLines {
		h += float64(len(rl)) * lh
	}
	if more > 0 {
		h += lh
	}
	y = f.GetY()
	d.fill(bannerColor)
	f.Rect(d.left, y, d.width, h, "F")
	f.SetTextColor(255, 255, 255)
	d.font("B", 14)
	f.SetXY(d.left+4, y+2.5)
	f.CellFormat(textW, 6.5, word, "", 2, "L", false, 0, "")
	d.font("", 8)
	for _, l := range head {
		f.SetX(d.left + 4)
		f.CellFormat(textW, lh, l, "", 2, "L", false, 0, "")
	}
	for _, rl := range reasonLines {
		for k, l := range rl {
			f.SetX(d.left + 4)
			bullet := ""
			if k == 0 {
				bullet = "•"
			}
			f.CellFormat(4, lh, bullet, "", 0, "L", false, 0, "")
			f.CellFormat(textW-4, lh, l, "", 2, "L", false, 0, "")
		}
	}
	if more > 0 {
		f.SetX(d.left + 8)
		f.CellFormat(textW-4, lh, fmt.Sprintf("... and %d more: see the full list on page 2.", more), "", 2, "L", false, 0, "")
	}
	f.SetY(y + h)

	// Migration facts.
	d.section("Migration")
	d.kvGrid(v.Facts, 2, 25, 7.5)

	// Sites.
	d.ensure(25)
	d.section("Sites (originals)")
	sw := []float64{16, 12, 44, 20, 14, 15, 12, 13, 17, 19}
	siteCols := []pdfCol{
		{"Site", sw[0], "L", false, true}, {"Role", sw[1], "L", false, false}, {"Location", sw[2], "L", true, false},
		{"Region", sw[3], "L", false, false}, {"Replicas", sw[4], "R", false, false}, {"Bytes", sw[5], "R", false, false},
		{"Deleted", sw[6], "R", false, false}, {"Awaiting purge", sw[7], "R", false, false}, {"Remaining", sw[8], "R", false, false},
		{"Status", sw[9], "L", false, false},
	}
	var siteRows [][]string
	for _, s := range v.Sites {
		siteRows = append(siteRows, []string{s.Name, s.Role, s.URI, s.Region, s.Replicas, s.Bytes, s.Erased, s.Soft, s.Remaining, s.StatusLabel})
	}
	if len(siteRows) == 0 {
		siteRows = append(siteRows, []string{"(none)", "", "", "", "", "", "", "", "", ""})
	}
	d.table(d.left, siteCols, siteRows, 7.2)

	// Records by status (left) and integrity (right).
	d.ensure(30)
	d.section("Records by status, and integrity")
	top := f.GetY()
	stCols := []pdfCol{{"Status", 21, "L", false, false}, {"Records", 15, "R", false, false}, {"Bytes", 17, "R", false, false}}
	leftW := 53.0
	var stRows [][]string
	for _, s := range v.Statuses {
		stRows = append(stRows, []string{s.Status, s.Records, s.Bytes})
	}
	if len(stRows) == 0 {
		stRows = append(stRows, []string{"(no records)", "0", "0 B"})
	}
	d.table(d.left, stCols, stRows, 7.2)
	leftBottom := f.GetY()
	ix := d.left + leftW + 5
	iw := d.width - leftW - 5
	keyW := 24.0
	f.SetXY(ix, top)
	for _, r := range v.Integrity {
		y := f.GetY()
		d.font("B", 7.2)
		d.color(colMuted)
		f.SetXY(ix, y)
		f.CellFormat(keyW, 4.1, toPDFText(r.K), "", 0, "L", false, 0, "")
		if r.K == "Tree size" {
			d.font("", 7.2)
		} else {
			d.mono(6.3)
		}
		d.color(colInk)
		f.CellFormat(iw-keyW, 4.1, toPDFText(r.V), "", 2, "L", false, 0, "")
		d.draw(colBand)
		f.SetLineWidth(0.2)
		f.Line(ix, y+4.1, ix+iw, y+4.1)
		f.SetXY(ix, y+4.1)
	}
	f.SetXY(d.left, max(leftBottom, f.GetY()))

	// Stages.
	d.ensure(22)
	d.section("Deletion stages")
	gw := widths(d.width, 16, 28, 10, 11, 22, 22, 22, 20, 20)
	stageCols := []pdfCol{
		{"Stage", gw[0], "L", false, true}, {"Sites", gw[1], "L", false, false}, {"Mode", gw[2], "L", false, false},
		{"Sample", gw[3], "L", false, false}, {"Started (UTC)", gw[4], "L", false, false}, {"Finished (UTC)", gw[5], "L", false, false},
		{"Purged (UTC)", gw[6], "L", false, false}, {"Deleted / scope", gw[7], "R", false, false}, {"State", gw[8], "L", false, false},
	}
	var sgRows [][]string
	for _, s := range v.Stages {
		sgRows = append(sgRows, []string{s.Name, s.Sites, s.Mode, s.Sample, s.Started, s.Finished, s.Purged, s.Deleted + " / " + s.Scope, s.State})
	}
	if len(sgRows) == 0 {
		sgRows = append(sgRows, []string{"(none)", "", "", "", "", "", "", "", ""})
	}
	d.table(d.left, stageCols, sgRows, 7.2)

	// Sanitization record.
	d.ensure(40)
	d.section("Sanitization record (NIST SP 800-88 Rev. 2)")
	d.kvGrid(v.Sanitization, 2, 26, 7)
	d.kvGrid(v.SanitizationLong, 1, 26, 7)

	d.evidenceSummary(v)

	// Signatures.
	d.ensure(20)
	d.section("Signatures")
	sgw := widths(d.width, 60, 16, 94, 12)
	sigCols := []pdfCol{{"Signer", sgw[0], "L", false, false}, {"Role", sgw[1], "L", false, false}, {"Key ID (SHA-256 of the public key)", sgw[2], "L", true, false}, {"State", sgw[3], "L", false, false}}
	var sigRows [][]string
	for _, s := range v.Signers {
		sigRows = append(sigRows, []string{s.Name, s.Role, s.KeyID, s.State})
	}
	d.table(d.left, sigCols, sigRows, 7.2)

	// Signature lines, right under the signatures, on the page with the evidence when
	// it fits (the instructions to verify come after them).
	d.ensure(24)
	sy := f.GetY() + 11
	half := (d.width - 12) / 2
	for i, who := range []struct{ label, name, title string }{
		{"Performed by", v.PerformedBy, v.PerformedTitle},
		{"Approved by", v.ApprovedBy, v.ApprovedTitle},
	} {
		x := d.left + float64(i)*(half+12)
		sigW, dateW := half*0.7, half*0.25
		d.draw(colInk)
		f.SetLineWidth(0.3)
		f.Line(x, sy, x+sigW, sy)
		f.Line(x+half-dateW, sy, x+half, sy)
		d.font("B", 6.8)
		d.color(colMuted)
		f.SetXY(x, sy+0.6)
		f.CellFormat(sigW, 3.2, toPDFText(who.label), "", 0, "L", false, 0, "")
		f.SetXY(x+half-dateW, sy+0.6)
		f.CellFormat(dateW, 3.2, "Date", "", 0, "L", false, 0, "")
		name := strings.TrimSpace(who.name)
		if name == "" {
			continue
		}
		if who.title != "" {
			name += ", " + who.title
		}
		d.font("", 7)
		d.color(colInk)
		nl := d.lines(toPDFText(name), sigW)
		if len(nl) > 2 {
			nl = nl[:2]
			nl[1] += "..."
		}
		for k, l := range nl {
			f.SetXY(x, sy+3.8+float64(k)*3.2)
			f.CellFormat(sigW, 3.2, l, "", 0, "L", false, 0, "")
		}
	}
	f.SetY(sy + 10)
	// How to verify.
	d.font("", 7.2)
	intro := d.lines(toPDFText("Anyone can check this certificate offline, with the files handed over with it and the signer's public key:"), d.width-6)
	checks := d.lines(toPDFText("It checks "+strings.Join(v.VerifyChecks, " ")), d.width-6)
	prove := d.lines(toPDFText(v.ProveText), d.width-6)
	lh = 3.2
	boxH := float64(len(intro)+len(checks)+len(prove))*lh + 5.5 + 3
	d.ensure(boxH + 8)
	d.section("How to verify")
	d.font("", 7.2)
	y = f.GetY()
	d.fill(colBand)
	f.Rect(d.left, y, d.width, boxH, "F")
	d.fill(colInk)
	f.Rect(d.left, y, 0.8, boxH, "F")
	f.SetXY(d.left+3, y+1)
	d.color(colInk)
	for _, l := range intro {
		f.SetX(d.left + 3)
		f.CellFormat(d.width-6, lh, l, "", 2, "L", false, 0, "")
	}
	f.SetX(d.left + 3)
	f.SetFillColor(255, 255, 255)
	d.draw(colRule)
	f.SetLineWidth(0.2)
	d.mono(8)
	f.CellFormat(d.width-6, 5, " "+toPDFText(v.VerifyCommand), "1", 2, "L", true, 0, "")
	d.font("", 7.2)
	for _, l := range append(checks, prove...) {
		f.SetX(d.left + 3)
		f.CellFormat(d.width-6, lh, l, "", 2, "L", false, 0, "")
	}
	f.SetY(y + boxH)

}

func (d *pdfDoc) detailPages(v *view) {
	f := d.f
	d.cont = "Site details (continued)"
	d.addPage("Site details")
	d.font("", 8)
	d.color(colMuted)
	f.MultiCell(d.width, 3.6, toPDFText("Each site's originals as the manifest records them. Deleted for good: hard-deleted, or soft-deleted and purged. Stage figures are totals for the stage, which may cover several sites."), "", "L", false)
	if len(v.Reasons) > maxReasonsOnSummary {
		d.section("Why this migration is incomplete")
		d.font("", 8)
		d.color(colInk)
		for _, r := range v.Reasons {
			d.ensure(8)
			f.SetX(d.left)
			f.CellFormat(4, 3.8, "•", "", 0, "L", false, 0, "")
			f.MultiCell(d.width-4, 3.8, toPDFText(r), "", "L", false)
		}
	}
	for _, s := range v.SiteDetails {
		d.ensure(60)
		f.Ln(3)
		d.font("B", 11)
		d.color(colInk)
		f.CellFormat(d.width, 6, toPDFText(s.Row.Name), "", 1, "L", false, 0, "")
		d.font("", 8)
		d.color(colMuted)
		f.CellFormat(d.width, 4, toPDFText(fmt.Sprintf("%s site, region %s", s.Row.Role, s.Row.Region)), "", 1, "L", false, 0, "")
		d.mono(7.5)
		f.MultiCell(d.width, 3.6, toPDFText(s.Row.URI), "", "L", false)
		if s.Row.Recoverable != "" {
			d.font("", 8)
			d.color(colMuted)
			f.MultiCell(d.width, 4, toPDFText(s.Row.Recoverable), "", "L", false)
		}
		d.rule(colRule, 0.2)
		f.Ln(1.5)
		top := f.GetY()
		half := (d.width - 8) / 2
		origCols := []pdfCol{{"Originals", half - 36, "L", false, false}, {"Count", 16, "R", false, false}, {"Bytes", 20, "R", false, false}}
		origRows := [][]string{
			{"Replicas in the manifest", s.Row.Replicas, s.Row.Bytes},
			{"Deleted for good", s.Row.Erased, s.Row.ErasedBytes},
			{"Soft-deleted, awaiting purge", s.Row.Soft, ""},
			{"Remaining at the site", s.Row.Remaining, s.Row.RemainingBytes},
			{"Confirmed absent after delete", s.Row.Confirmed, ""},
			{"Deleted, not confirmed absent", s.Row.Unconfirmed, ""},
			{"Vanished without ferry deleting them", s.Row.Missing, ""},
		}
		d.table(d.left, origCols, origRows, 7.5)
		leftBottom := f.GetY()
		f.SetXY(d.left+half+8, top)
		stateCols := []pdfCol{{"Replica state", half - 36, "L", false, false}, {"Replicas", 16, "R", false, false}, {"Bytes", 20, "R", false, false}}
		var stateRows [][]string
		for _, r := range s.States {
			stateRows = append(stateRows, []string{r.Status, r.Records, r.Bytes})
		}
		if len(stateRows) == 0 {
			stateRows = [][]string{{"(no replicas)", "", ""}}
		}
		d.table(d.left+half+8, stateCols, stateRows, 7.5)
		f.SetXY(d.left, max(leftBottom, f.GetY())+3)
		gw := widths(d.width, 16, 9, 11, 22, 22, 22, 12, 12, 11, 20)
		cols := []pdfCol{
			{"Stage", gw[0], "L", false, true}, {"Mode", gw[1], "L", false, false}, {"Sample", gw[2], "L", false, false},
			{"Started (UTC)", gw[3], "L", false, false}, {"Finished (UTC)", gw[4], "L", false, false}, {"Purged (UTC)", gw[5], "L", false, false},
			{"Scope", gw[6], "R", false, false}, {"Deleted", gw[7], "R", false, false}, {"Failed", gw[8], "R", false, false},
			{"State", gw[9], "L", false, false},
		}
		var rows [][]string
		for _, st := range s.Stages {
			rows = append(rows, []string{st.Name, st.Mode, st.Sample, st.Started, st.Finished, st.Purged, st.Scope, st.Deleted, st.Failed, st.State})
		}
		if len(rows) == 0 {
			rows = [][]string{{"(no deletion stage covers this site)", "", "", "", "", "", "", "", "", ""}}
		}
		d.table(d.left, cols, rows, 7.5)
	}
}
