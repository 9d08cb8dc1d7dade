package certificate

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// The renderings (HTML and PDF) share this view of a certificate: what a person reads,
// already formatted. They show what the envelope says; they verify nothing (the first
// page tells the reader how to).

const verifyCommand = "ferry report verify certificate.json --manifest manifest.jsonl --pubkey ferry.pub"

type kv struct{ K, V string }

type siteRow struct {
	Name, Role, URI, Region                               string
	Replicas, Bytes, Erased, Soft, Remaining, Confirmed   string
	ErasedBytes, RemainingBytes, Unconfirmed, StatusLabel string
	Missing                                               string
	// PlannedFrom names the inventory the site was planned from ("" when listed).
	PlannedFrom string
	// Recoverable says whether deleted objects stay recoverable by the provider
	// ("" when the site's store did not say).
	Recoverable string
}

type statusRow struct{ Status, Records, Bytes string }

type stageRow struct {
	Name, Sites, Mode, Sample, Started, Finished, Purged, Scope, Deleted, Failed, State string
}

type signerRow struct{ Name, Role, KeyID, State string }

type siteDetail struct {
	Row    siteRow
	States []statusRow
	Stages []stageRow
}

type view struct {
	Migration        string
	Generated        string
	GeneratedAt      time.Time // the PDF's creation date
	Tool             string
	Complete         bool
	Headline         string
	Reasons          []string
	Facts            []kv
	Integrity        []kv
	Sites            []siteRow
	Statuses         []statusRow
	Stages           []stageRow
	Sanitization     []kv // short fields, shown two per row
	SanitizationLong []kv // long fields, one per row
	Signers          []signerRow
	ManifestSHA256   string
	Root             string
	TreeSize         string
	VerifyCommand    string
	VerifyChecks     []string
	ProveText        string
	PerformedBy      string
	PerformedTitle   string
	ApprovedBy       string
	ApprovedTitle    string
	SiteDetails      []siteDetail
	Evidence         evidence
	// AuditMoreSummary: how many findings the summary page leaves out ("" if none).
	AuditMoreSummary string
}

var statusOrder = []string{
	StatusPlanned, StatusCopied, StatusVerified, StatusDeleteIntent, StatusDeleted,
	StatusPurged, StatusRestored, StatusExcluded, StatusConflict, StatusFailed,
}

func orderedStates(m map[string]Tally) []string {
	var out []string
	for _, s := range statusOrder {
		if _, ok := m[s]; ok {
			out = append(out, s)
		}
	}
	var extra []string
	for s := range m {
		if !knownStates[s] {
			extra = append(extra, s)
		}
	}
	sort.Strings(extra)
	return append(out, extra...)
}

func humanTime(s string) string {
	if s == "" {
		return "—"
	}
	t, err := ParseTime(s)
	if err != nil {
		return s
	}
	return t.Format("2006-01-02 15:04 UTC")
}

// tableTime is humanTime without the zone, for tables whose header says (UTC).
func tableTime(s string) string {
	if s == "" {
		return "—"
	}
	t, err := ParseTime(s)
	if err != nil {
		return s
	}
	return t.Format("2006-01-02 15:04")
}

func parseTimeOrZero(s string) time.Time {
	t, _ := ParseTime(s)
	return t
}

// notSet is how the renderings show a signer the spec did not name (report.signer).
const notSet = "(not set)"

func signerName(s string) string {
	if strings.TrimSpace(s) == "" {
		return notSet
	}
	return s
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "—"
	}
	return s
}

func stageState(st Stage) string {
	switch {
	case st.StartedAt == "":
		return "not run"
	case st.Restored:
		return "restored"
	case st.FinishedAt == "":
		return "running"
	case st.Mode == ModeSoft && st.PurgedAt == "":
		return "awaiting purge"
	case st.Counts.Failed > 0:
		return "done with failures"
	default:
		return "done"
	}
}

func stageRows(stages []Stage, site string) []stageRow {
	var rows []stageRow
	for _, st := range stages {
		if site != "" && !containsString(st.Sites, site) {
			continue
		}
		sample := st.Sample
		if sample == "" {
			sample = "all"
		}
		purged := tableTime(st.PurgedAt)
		if st.Mode == ModeHard {
			purged = "n/a"
		}
		rows = append(rows, stageRow{
			Name: st.Name, Sites: strings.Join(st.Sites, ", "), Mode: orDash(st.Mode), Sample: sample,
			Started: tableTime(st.StartedAt), Finished: tableTime(st.FinishedAt), Purged: purged,
			Scope: FormatCount(st.Counts.Scope), Deleted: FormatCount(st.Counts.Deleted),
			Failed: FormatCount(st.Counts.Failed), State: stageState(st),
		})
	}
	return rows
}

func containsString(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func buildView(env *Envelope) (*view, error) {
	_, st, err := env.Statement()
	if err != nil {
		return nil, err
	}
	p := &st.Predicate
	v := &view{
		Migration:     p.Migration,
		Generated:     humanTime(p.GeneratedAt),
		GeneratedAt:   parseTimeOrZero(p.GeneratedAt),
		Tool:          p.Tool.String(),
		Complete:      p.Complete,
		Reasons:       p.IncompleteReasons,
		VerifyCommand: verifyCommand,
	}
	c := p.Counts
	var replicas, erased int64
	for _, s := range c.BySite {
		replicas += s.Replicas
		erased += s.Erased
	}
	nSites := len(siteOrder(p))
	if p.Complete {
		v.Headline = fmt.Sprintf("All %s (%s) were copied to the target and verified byte for byte; all %s of them at %s were deleted and confirmed absent.",
			plural(c.Records, "record", "records"), FormatBytes(c.Bytes), plural(replicas, "original", "originals"), plural(int64(nSites), "site", "sites"))
	} else {
		v.Headline = "This migration is not finished: this certificate records what was done so far and does not certify complete deletion."
	}

	residency := "no residency policy"
	if len(p.Residency.AllowedRegions) > 0 {
		met := "met"
		if !p.Residency.Satisfied {
			met = "NOT met"
		}
		residency = fmt.Sprintf("%s (allowed: %s)", met, strings.Join(p.Residency.AllowedRegions, ", "))
	}
	kms := p.Target.KMSKeyID
	if kms == "" {
		kms = "store default"
	}
	v.Facts = []kv{
		{"Target", p.Target.URI},
		{"Target region", orDash(p.Target.Region)},
		{"Encryption key", kms},
		{"Residency policy", residency},
		{"Records", fmt.Sprintf("%s, %s", FormatCount(c.Records), FormatBytes(c.Bytes))},
		{"Tool", orDash(v.Tool)},
		{"Signer", signerName(p.Signer.Name)},
	}
	v.Integrity = []kv{
		{"Manifest SHA-256", st.ManifestDigest()},
		{"Merkle root", p.Merkle.Root},
		{"Tree size", FormatCount(int64(p.Merkle.TreeSize)) + " records (RFC 6962, SHA-256)"},
		{"Spec digest", orDash(p.SpecDigest)},
		{"Plan digest", orDash(p.PlanDigest)},
	}

	roles := map[string]Site{}
	for _, s := range p.Sites {
		roles[s.Name] = s
	}
	for _, name := range siteOrder(p) {
		s := roles[name]
		t := c.BySite[name]
		label := "all deleted"
		switch {
		case t.Replicas == 0:
			label = "no replicas"
		case t.Remaining > 0:
			label = "not all deleted"
		case t.SoftDeleted > 0:
			label = "awaiting purge"
		case t.Missing > 0:
			label = "anomalies"
		case t.Unconfirmed > 0:
			label = "unconfirmed"
		}
		row := siteRow{
			Name: name, Role: orDash(s.Role), URI: orDash(s.URI), Region: orDash(s.Region),
			Replicas: FormatCount(t.Replicas), Bytes: FormatBytes(t.Bytes),
			Erased: FormatCount(t.Erased), ErasedBytes: FormatBytes(t.ErasedBytes),
			Soft: FormatCount(t.SoftDeleted), Remaining: FormatCount(t.Remaining),
			RemainingBytes: FormatBytes(t.RemainingBytes), Confirmed: FormatCount(t.ConfirmedAbsent),
			Unconfirmed: FormatCount(t.Unconfirmed), StatusLabel: label, Missing: FormatCount(t.Missing),
		}
		if in := s.Inventory; in != nil {
			row.PlannedFrom = fmt.Sprintf("planned from the %s inventory %s of %s (%s keys)", in.Format, in.Manifest, in.Date, FormatCount(in.Keys))
		}
		row.Recoverable = s.ProviderRecoverability.Statement()
		v.Sites = append(v.Sites, row)
		d := siteDetail{Row: row, Stages: stageRows(p.Stages, name)}
		for _, state := range orderedStates(t.ByState) {
			d.States = append(d.States, statusRow{state, FormatCount(t.ByState[state].Records), FormatBytes(t.ByState[state].Bytes)})
		}
		v.SiteDetails = append(v.SiteDetails, d)
	}
	for _, s := range orderedStates(c.ByStatus) {
		v.Statuses = append(v.Statuses, statusRow{s, FormatCount(c.ByStatus[s].Records), FormatBytes(c.ByStatus[s].Bytes)})
	}
	v.Stages = stageRows(p.Stages, "")

	z := p.Sanitization
	person := func(x Person) string {
		parts := []string{}
		for _, s := range []string{x.Name, x.Title, x.Organization, x.Contact} {
			if s != "" {
				parts = append(parts, s)
			}
		}
		return orDash(strings.Join(parts, ", "))
	}
	v.Sanitization = []kv{
		{"Standard", z.Standard},
		{"Method", z.Method},
		{"Tool", orDash(z.Tool)},
		{"Verification scope", orDash(z.VerificationScope)},
		{"Period (UTC)", fmt.Sprintf("%s to %s", tableTime(z.StartedAt), tableTime(z.CompletedAt))},
		{"Verified by", person(z.VerifiedBy)},
	}
	if z.PreSanitizationConfidentiality != "" || z.PostSanitizationConfidentiality != "" {
		v.Sanitization = append(v.Sanitization,
			kv{"Confidentiality before", orDash(z.PreSanitizationConfidentiality)},
			kv{"Confidentiality after", orDash(z.PostSanitizationConfidentiality)})
	}
	var sourceNames []string
	for _, src := range z.MediaSource {
		name, _, _ := strings.Cut(src, ":")
		sourceNames = append(sourceNames, name)
	}
	mediaSource := "—"
	if len(sourceNames) > 0 {
		mediaSource = strings.Join(sourceNames, ", ") + " (locations and regions under Sites)"
	}
	v.SanitizationLong = []kv{
		{"Performed by", signerName(strings.Trim(person(z.PerformedBy), "—"))},
		{"Technique", z.Technique},
		{"Verification", z.VerificationMethod},
		{"Media type", z.MediaType},
		{"Media source", mediaSource},
		{"Data backup", orDash(z.DataBackup)},
		{"After sanitization", orDash(z.PostSanitizationDestination)},
		{"Limitations", orDash(z.Limitations)},
	}

	declared := map[string]Party{p.Signer.KeyID: p.Signer}
	for _, a := range p.Approvers {
		declared[a.KeyID] = a
	}
	signed := map[string]bool{}
	for _, s := range env.Signatures {
		signed[s.KeyID] = true
		party, ok := declared[s.KeyID]
		row := signerRow{KeyID: s.KeyID, State: "signed"}
		switch {
		case s.KeyID == p.Signer.KeyID:
			row.Name, row.Role = signerName(party.Name), "Operator"
		case ok:
			row.Name, row.Role = party.Name, "Approver"
		default:
			row.Name, row.Role = "(not named in the certificate)", "Co-signer"
		}
		if ok && party.Title != "" {
			row.Name += ", " + party.Title
		}
		v.Signers = append(v.Signers, row)
	}
	for _, a := range p.Approvers {
		if !signed[a.KeyID] {
			name := a.Name
			if a.Title != "" {
				name += ", " + a.Title
			}
			v.Signers = append(v.Signers, signerRow{Name: name, Role: "Approver", KeyID: a.KeyID, State: "pending"})
		}
	}

	v.Evidence = buildEvidence(p)
	if p.Audit != nil {
		v.AuditMoreSummary = v.Evidence.MoreFindings(p.Audit.FindingsTotal)
	}

	v.ManifestSHA256 = st.ManifestDigest()
	v.Root = p.Merkle.Root
	v.TreeSize = FormatCount(int64(p.Merkle.TreeSize))
	v.VerifyChecks = []string{
		"every signature (Ed25519 over the DSSE envelope) and that one is by the key in ferry.pub;",
		"that manifest.jsonl has the SHA-256 above and holds canonical JSON lines sorted by key;",
		"and it recomputes the Merkle root, the tree size and the counts on this page from the manifest.",
	}
	v.ProveText = "One person's records, without the manifest: ferry report prove --user ID, then ferry report verify-proof PROOF --cert certificate.json."

	v.PerformedBy = orDash(z.PerformedBy.Name)
	v.PerformedTitle = z.PerformedBy.Title
	if v.PerformedBy == "—" {
		v.PerformedBy = signerName(p.Signer.Name)
	}
	if z.VerifiedBy.Name != "" {
		v.ApprovedBy, v.ApprovedTitle = z.VerifiedBy.Name, z.VerifiedBy.Title
	} else if len(p.Approvers) > 0 {
		v.ApprovedBy, v.ApprovedTitle = p.Approvers[0].Name, p.Approvers[0].Title
	}
	return v, nil
}
