package certificate

import (
	"fmt"
	"sort"
	"strings"
)

// The evidence part of the renderings: the journal heads, the audit result, the declared
// crypto-erasures and the replicas the sites retained. The summary page shows them
// short; the "Evidence and retention" page shows them in full.

type journalRow struct{ Stream, Count, Head, HeadShort string }

type auditRow struct{ Kind, Identity, Time, Store, Key, Operation string }

type cryptoRow struct{ Site, KeyID, Date, Status, Note string }

type retainedRow struct{ Site, Key, Version, Reason string }

type evidence struct {
	Journal        string // one sentence: entries and streams, or that there is none
	JournalHeads   []journalRow
	Audit          string // none run / clean / N findings
	AuditBad       bool   // the audit found accesses by other identities
	AuditFindings  []auditRow
	AuditMore      string // "" or how many more are in certificate.json
	CryptoErase    []cryptoRow
	CryptoNone     string
	Retained       string   // one sentence with the count
	RetainedBySite []string // "singapore: 3 (reason)" per site and reason
	RetainedRows   []retainedRow
	RetainedMore   string
}

// Caps on what the renderings list; certificate.json has the rest.
const (
	summaryFindings     = 3
	detailFindings      = 100
	detailRetained      = 200
	shortHashDigits     = 16
	retainedReasonShown = 160
)

// fullHeadsElsewhere ends the journal sentence where the heads are shown short (the
// HTML summary); renderings that show them whole drop it.
const fullHeadsElsewhere = " (full values under Evidence and retention)"

func shortHash(h string) string {
	if len(h) > shortHashDigits {
		return h[:shortHashDigits] + "…"
	}
	return h
}

func buildEvidence(p *Predicate) evidence {
	var e evidence
	if j := p.Journal; j == nil {
		e.Journal = "No journal was written with this certificate."
	} else {
		e.Journal = fmt.Sprintf("%s of ferry's own requests in %s (%s), in journal.jsonl; each head is the SHA-256 of its stream's last line%s.",
			plural(j.Entries, "entry", "entries"), plural(int64(len(j.Streams)), "stream", "streams"), j.Algorithm, fullHeadsElsewhere)
		for _, s := range j.Streams {
			e.JournalHeads = append(e.JournalHeads, journalRow{Stream: s.Stream, Count: FormatCount(s.Count), Head: s.Head, HeadShort: shortHash(s.Head)})
		}
	}

	switch a := p.Audit; {
	case a == nil:
		e.Audit = "None run: no access logs were checked (ferry audit) before this certificate was generated."
	case a.FindingsTotal == 0:
		e.Audit = fmt.Sprintf("Clean: %s read (checked %s, window %s to %s); no access to a migrated record by an identity other than ferry's.",
			plural(int64(len(a.Sources)), "access log", "access logs"), humanTime(a.CheckedAt), humanTime(a.WindowFrom), humanTime(a.WindowTo))
	default:
		e.AuditBad = true
		e.Audit = fmt.Sprintf("%s: accesses to migrated records by identities other than ferry's, in %s read (checked %s).",
			plural(a.FindingsTotal, "finding", "findings"), plural(int64(len(a.Sources)), "access log", "access logs"), humanTime(a.CheckedAt))
		for _, f := range a.Findings {
			e.AuditFindings = append(e.AuditFindings, auditRow{Kind: f.Kind, Identity: orDash(f.Identity), Time: tableTime(f.Time), Store: orDash(f.Store), Key: EscapeKey(f.Key), Operation: orDash(f.Operation)})
		}
	}

	for _, c := range p.Sanitization.CryptoErase {
		e.CryptoErase = append(e.CryptoErase, cryptoRow{Site: c.Site, KeyID: c.KeyID, Date: humanTime(c.DeletionDate), Status: c.Status, Note: orDash(c.Note)})
	}
	if len(e.CryptoErase) == 0 {
		e.CryptoNone = "None declared."
	}

	switch r := p.Retention; {
	case r == nil:
		e.Retained = "Not recorded in this certificate."
	case r.Total == 0:
		e.Retained = "None: no site refused a delete."
	default:
		e.Retained = fmt.Sprintf("%s could not be deleted: their sites hold them under a retention policy, an object lock, a legal hold or an immutability policy.",
			plural(r.Total, "replica", "replicas"))
		type sr struct{ site, reason string }
		n := map[sr]int64{}
		var order []sr
		for _, x := range r.Replicas {
			k := sr{x.Site, retainedReason(x.Reason)}
			if n[k] == 0 {
				order = append(order, k)
			}
			n[k]++
		}
		sort.SliceStable(order, func(i, j int) bool { return order[i].site < order[j].site })
		for _, k := range order {
			e.RetainedBySite = append(e.RetainedBySite, fmt.Sprintf("%s: %s — %s", k.site, plural(n[k], "replica", "replicas"), k.reason))
		}
		if listed := int64(len(r.Replicas)); listed < r.Total {
			e.RetainedBySite = append(e.RetainedBySite, fmt.Sprintf("and %s not listed in the certificate (it lists the first %s)", plural(r.Total-listed, "more", "more"), FormatCount(listed)))
		}
		for i, x := range r.Replicas {
			if i == detailRetained {
				e.RetainedMore = fmt.Sprintf("… and %s more in certificate.json (predicate.retention).", FormatCount(int64(len(r.Replicas)-i)))
				break
			}
			e.RetainedRows = append(e.RetainedRows, retainedRow{Site: x.Site, Key: x.Key, Version: orDash(x.Version), Reason: x.Reason})
		}
	}
	if a := p.Audit; a != nil && a.FindingsTotal > int64(min(len(a.Findings), detailFindings)) {
		e.AuditMore = fmt.Sprintf("… and %s more in certificate.json (predicate.audit).", FormatCount(a.FindingsTotal-int64(min(len(a.Findings), detailFindings))))
	}
	if len(e.AuditFindings) > detailFindings {
		e.AuditFindings = e.AuditFindings[:detailFindings]
	}
	return e
}

// retainedReason shortens a site's reason for the summary: without ferry's own
// "undeletable: " prefix, at most retainedReasonShown characters.
func retainedReason(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "undeletable: ")
	if s == "" {
		return "no reason given"
	}
	if r := []rune(s); len(r) > retainedReasonShown {
		return string(r[:retainedReasonShown]) + "…"
	}
	return s
}

// SummaryFindings are the first findings, for the summary page.
func (e evidence) SummaryFindings() []auditRow {
	if len(e.AuditFindings) > summaryFindings {
		return e.AuditFindings[:summaryFindings]
	}
	return e.AuditFindings
}

// MoreFindings says how many findings the summary page leaves out ("" when none).
func (e evidence) MoreFindings(total int64) string {
	if n := total - int64(len(e.SummaryFindings())); n > 0 {
		return fmt.Sprintf("… and %s more under Evidence and retention.", FormatCount(n))
	}
	return ""
}
