package certificate

import (
	"bufio"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"time"
)

// File names written by WriteReport.
const (
	CertificateFile = "certificate.json"
	HTMLFile        = "certificate.html"
	PDFFile         = "certificate.pdf"
)

// ReportOptions are the inputs of WriteReport besides the records.
type ReportOptions struct {
	// Dir receives the four files; it is created if needed. Existing files are replaced
	// atomically.
	Dir string
	// Predicate holds what the pipeline knows: migration, spec and plan digests, tool
	// version, signer (name, title, organization) and approvers, sites, target, residency
	// policy, stages, and any sanitization fields to override. The computed fields
	// (counts, merkle, residency.satisfied, complete, incomplete_reasons, defaults) are
	// filled by Finalize.
	Predicate Predicate
	// Key signs the certificate (the operator's key, spec report.signing_key).
	Key ed25519.PrivateKey
	// Now is the generation time (zero: time.Now()).
	Now time.Time
	// SkipHTML and SkipPDF leave out the human-readable renderings.
	SkipHTML, SkipPDF bool
	// Journal, when not nil, yields the journal's lines (without newlines) in (stream,
	// seq) order: they are written to journal.jsonl, checked against the chain rule (a
	// broken chain fails the report) and their heads go into the predicate.
	Journal iter.Seq2[[]byte, error]
	// RetainedVersion, when not nil, names the version ferry tried to delete of an
	// undeletable replica (site, record key), for the predicate's retention list; it is
	// called after the records are consumed. The list itself is computed from the
	// manifest, so a verifier can recompute it.
	RetainedVersion func(site, key string) string
}

// ReportResult describes what WriteReport wrote. The CLI exits 3 when !Complete.
type ReportResult struct {
	Dir               string          `json:"dir"`
	ManifestPath      string          `json:"manifest"`
	JournalPath       string          `json:"journal,omitempty"`
	CertificatePath   string          `json:"certificate"`
	HTMLPath          string          `json:"html,omitempty"`
	PDFPath           string          `json:"pdf,omitempty"`
	KeyID             string          `json:"keyid"`
	Summary           ManifestSummary `json:"manifest_summary"`
	Complete          bool            `json:"complete"`
	IncompleteReasons []string        `json:"incomplete_reasons"`
	Statement         Statement       `json:"-"`
	Envelope          *Envelope       `json:"-"`
}

// WriteReport does the whole of `ferry report`: it streams records (which must come in
// strictly increasing key order) into manifest.jsonl, finalizes the predicate from the
// manifest, signs the statement into certificate.json, and renders certificate.html and
// certificate.pdf. Memory stays constant in the number of records. An error from the
// records sequence aborts the report and leaves no new files behind.
func WriteReport(records iter.Seq2[ManifestLine, error], opt ReportOptions) (*ReportResult, error) {
	if len(opt.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("report: no Ed25519 signing key")
	}
	if opt.Predicate.Migration == "" {
		return nil, errors.New("report: the predicate has no migration id")
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	if err := os.MkdirAll(opt.Dir, 0o755); err != nil {
		return nil, err
	}
	res := &ReportResult{
		Dir:             opt.Dir,
		ManifestPath:    filepath.Join(opt.Dir, ManifestName),
		CertificatePath: filepath.Join(opt.Dir, CertificateFile),
		KeyID:           KeyID(opt.Key.Public().(ed25519.PublicKey)),
	}
	// Every file is written to a temporary name first and renamed into place only when
	// all of them are ready, certificate.json last: a failure leaves the previous report
	// as it was, never a new manifest beside an old certificate.
	var staged [][2]string // temporary name, final name
	defer func() {
		for _, st := range staged {
			os.Remove(st[0])
		}
	}()
	stage := func(path string, fill func(io.Writer) error) error {
		tmp, err := writeTemp(path, 0o644, fill)
		if err != nil {
			return err
		}
		staged = append(staged, [2]string{tmp, path})
		return nil
	}
	var sum ManifestSummary
	retention := &Retention{}
	err := stage(res.ManifestPath, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		mw := NewManifestWriter(bw)
		for l, err := range records {
			if err != nil {
				return fmt.Errorf("report: reading records: %w", err)
			}
			if err := mw.Add(l); err != nil {
				return fmt.Errorf("report: %w", err)
			}
			retention.AddLine(l)
		}
		s, err := mw.Close()
		if err != nil {
			return err
		}
		sum = s
		return bw.Flush()
	})
	if err != nil {
		return nil, err
	}
	p := opt.Predicate
	if opt.RetainedVersion != nil {
		for i := range retention.Replicas {
			r := &retention.Replicas[i]
			r.Version = opt.RetainedVersion(r.Site, r.Key)
		}
	}
	p.Retention = retention
	if opt.Journal != nil {
		res.JournalPath = filepath.Join(opt.Dir, JournalName)
		var chain JournalChain
		err := stage(res.JournalPath, func(w io.Writer) error {
			bw := bufio.NewWriterSize(w, 1<<20)
			for line, err := range opt.Journal {
				if err != nil {
					return fmt.Errorf("report: reading the journal: %w", err)
				}
				if _, err := chain.Add(line); err != nil {
					return fmt.Errorf("report: the state's journal is broken: %w", err)
				}
				bw.Write(line)
				bw.WriteByte('\n')
			}
			return bw.Flush()
		})
		if err != nil {
			return nil, err
		}
		js := chain.Summary()
		p.Journal = &js
	}
	Finalize(&p, sum, now)
	stmt := NewStatement(sum, p)
	env, err := Sign(stmt, opt.Key)
	if err != nil {
		return nil, err
	}
	_, stmt, err = env.Statement() // the statement exactly as signed (signer filled in)
	if err != nil {
		return nil, err
	}
	if !opt.SkipHTML {
		res.HTMLPath = filepath.Join(opt.Dir, HTMLFile)
		if err := stage(res.HTMLPath, func(w io.Writer) error { return RenderHTML(w, env) }); err != nil {
			return nil, fmt.Errorf("report: %s: %w", HTMLFile, err)
		}
	}
	if !opt.SkipPDF {
		res.PDFPath = filepath.Join(opt.Dir, PDFFile)
		if err := stage(res.PDFPath, func(w io.Writer) error { return WritePDF(w, env) }); err != nil {
			return nil, fmt.Errorf("report: %s: %w", PDFFile, err)
		}
	}
	envBytes, err := MarshalEnvelope(env)
	if err != nil {
		return nil, err
	}
	if err := stage(res.CertificatePath, func(w io.Writer) error { _, err := w.Write(envBytes); return err }); err != nil {
		return nil, err
	}
	for len(staged) > 0 {
		if err := os.Rename(staged[0][0], staged[0][1]); err != nil {
			return nil, err
		}
		staged = staged[1:]
	}
	res.Summary = sum
	res.Statement = stmt
	res.Envelope = env
	res.Complete = stmt.Predicate.Complete
	res.IncompleteReasons = stmt.Predicate.IncompleteReasons
	return res, nil
}

// ApproveFile is `ferry report sign CERT --key FILE`: it loads the approver's key, adds
// its signature to the certificate (see AddSignature: only a declared approver may sign),
// checks that the signed envelope verifies, and replaces the file atomically; it reads
// the file back and, should that copy not verify, puts the previous bytes back. The
// caller may then re-render the HTML and PDF with RenderFiles so they list the new signer.
func ApproveFile(certPath, keyPath string) (env *Envelope, keyID string, err error) {
	key, err := LoadPrivateKey(keyPath)
	if err != nil {
		return nil, "", err
	}
	orig, err := os.ReadFile(certPath)
	if err != nil {
		return nil, "", err
	}
	env, err = ReadEnvelope(certPath)
	if err != nil {
		return nil, "", err
	}
	if err := AddSignature(env, key); err != nil {
		return nil, "", err
	}
	if err := envelopeVerifies(env); err != nil {
		return nil, "", fmt.Errorf("add signature: the signed certificate would not verify, left unchanged: %w", err)
	}
	if err := WriteEnvelope(certPath, env); err != nil {
		return nil, "", err
	}
	back, err := ReadEnvelope(certPath)
	if err == nil {
		err = envelopeVerifies(back)
	}
	if err != nil {
		if rerr := writeFileAtomic(certPath, orig, 0o644); rerr != nil {
			return nil, "", fmt.Errorf("add signature: the written certificate does not verify (%v) and restoring it failed: %w", err, rerr)
		}
		return nil, "", fmt.Errorf("add signature: the written certificate does not verify, previous file restored: %w", err)
	}
	return env, KeyID(key.Public().(ed25519.PublicKey)), nil
}

// envelopeVerifies runs the envelope checks (no manifest, no pinned key) and returns the
// failed ones as an error.
func envelopeVerifies(env *Envelope) error {
	r := &Report{}
	verifyEnvelope(r, env, nil)
	return r.Err()
}

// RenderFiles writes certificate.html and certificate.pdf for env into dir.
func RenderFiles(dir string, env *Envelope) (htmlPath, pdfPath string, err error) {
	htmlPath = filepath.Join(dir, HTMLFile)
	pdfPath = filepath.Join(dir, PDFFile)
	if err := writeAtomic(htmlPath, 0o644, func(w io.Writer) error { return RenderHTML(w, env) }); err != nil {
		return "", "", err
	}
	if err := RenderPDF(pdfPath, env); err != nil {
		return "", "", err
	}
	return htmlPath, pdfPath, nil
}
