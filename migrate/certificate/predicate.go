package certificate

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// In-toto and ferry type URIs.
const (
	StatementType = "https://in-toto.io/Statement/v1"
	PredicateType = "https://ferry.dev/deletion-certificate/v1"
	ToolName      = "ferry"
)

// SanitizationStandard is the guideline the sanitization record follows.
const SanitizationStandard = "NIST SP 800-88 Rev. 2"

// Statement is an in-toto Statement v1 whose one subject is the manifest.
type Statement struct {
	Type          string    `json:"_type"`
	Subject       []Subject `json:"subject"`
	PredicateType string    `json:"predicateType"`
	Predicate     Predicate `json:"predicate"`
}

// Subject is an in-toto ResourceDescriptor reduced to name and digest.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Predicate is the body of the deletion certificate. Fields documented as "computed" are
// filled by Finalize from the manifest and the rest of the predicate; the caller supplies
// the others.
type Predicate struct {
	Migration   string `json:"migration"`    // the spec's migration id
	SpecDigest  string `json:"spec_digest"`  // digest of the spec, as the pipeline prints it
	PlanDigest  string `json:"plan_digest"`  // digest of the plan, "" if not known
	GeneratedAt string `json:"generated_at"` // TimeLayout; Finalize sets it if empty
	Tool        Tool   `json:"tool"`

	// Signer is the operator whose key signs first (Sign fills KeyID and PublicKey).
	Signer Party `json:"signer"`
	// Approvers are the people expected to countersign with AddSignature, declared here so
	// that their names are part of what is signed. A signature by a key that is neither
	// the signer's nor a declared approver's is reported by keyid only.
	Approvers []Party `json:"approvers"`

	Sites     []Site    `json:"sites"`
	Target    Target    `json:"target"`
	Residency Residency `json:"residency"` // Satisfied is computed
	Stages    []Stage   `json:"stages"`

	Counts       Counts       `json:"counts"` // computed from the manifest
	Merkle       Merkle       `json:"merkle"` // computed from the manifest
	Sanitization Sanitization `json:"sanitization"`
	// Journal names the heads of the journal of ferry's own access (journal.jsonl),
	// when the report wrote one.
	Journal *JournalSummary `json:"journal,omitempty"`
	// Audit is the last `ferry audit` run's summary and findings, when one ran.
	Audit *AuditSummary `json:"audit,omitempty"`
	// Retention lists the replicas that sites refused to delete (retention policy,
	// object lock, legal hold), with their reasons; `ferry report` always fills it.
	Retention *Retention `json:"retention,omitempty"`

	// Complete is true only when Assess finds nothing left undone; IncompleteReasons says
	// in plain words what is (computed).
	Complete          bool     `json:"complete"`
	IncompleteReasons []string `json:"incomplete_reasons"`
}

// Tool names the program that produced the certificate.
type Tool struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"` // the VCS revision it was built from, if known
}

// String is "name version (commit C)", the commit shortened to 12 digits.
func (t Tool) String() string {
	s := strings.TrimSpace(t.Name + " " + t.Version)
	if c := t.Commit; c != "" {
		rest := ""
		if i := strings.IndexByte(c, '+'); i >= 0 {
			c, rest = c[:i], c[i:]
		}
		if len(c) > 12 {
			c = c[:12]
		}
		s += " (commit " + c + rest + ")"
	}
	return s
}

// Party is a person or office that signs. PublicKey is the base64 (standard, padded)
// PKIX DER of their Ed25519 key; KeyID is KeyID of that key.
type Party struct {
	Name         string `json:"name"`
	Title        string `json:"title"`
	Organization string `json:"organization"`
	KeyID        string `json:"keyid"`
	PublicKey    string `json:"public_key"`
}

// PartyForKey returns a Party for pub with its KeyID and PublicKey filled in.
func PartyForKey(name string, pub ed25519.PublicKey) (Party, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return Party{}, errors.New("not an Ed25519 public key")
	}
	return Party{Name: name, KeyID: KeyID(pub), PublicKey: base64.StdEncoding.EncodeToString(der)}, nil
}

// publicKey decodes and checks the party's key against its keyid.
func (p Party) publicKey() (ed25519.PublicKey, error) {
	der, err := base64.StdEncoding.Strict().DecodeString(p.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("public_key of %q is not base64: %v", p.Name, err)
	}
	pub, err := publicKeyFromDER(der)
	if err != nil {
		return nil, fmt.Errorf("public_key of %q: %w", p.Name, err)
	}
	if KeyID(pub) != p.KeyID {
		return nil, fmt.Errorf("keyid of %q does not match its public_key", p.Name)
	}
	return pub, nil
}

// Site is one source site.
type Site struct {
	Name   string `json:"name"`
	Role   string `json:"role"` // primary | backup
	URI    string `json:"uri"`
	Region string `json:"region"`
	// Inventory, when the last plan read the site's keys from an inventory instead of
	// listing the site, names that inventory and its date.
	Inventory *SiteInventory `json:"inventory,omitempty"`
	// ProviderRecoverability, when the site's store can tell, says whether objects
	// ferry deleted there stay recoverable by the provider of its own accord (a
	// bucket's soft-delete policy), and until when.
	ProviderRecoverability *SiteRecoverability `json:"provider_recoverability,omitempty"`
}

// SiteRecoverability is a site's provider-side recoverability of deleted objects.
type SiteRecoverability struct {
	Recoverable bool   `json:"recoverable"`
	Mechanism   string `json:"mechanism"` // "soft delete policy", ...; "" when not recoverable
	// Until: TimeLayout, when the provider removes them for good (the deletes plus
	// its retention); "" when not recoverable or kept until removed by hand.
	Until string `json:"until"`
}

// Statement is the certificate's sentence for r.
func (r *SiteRecoverability) Statement() string {
	switch {
	case r == nil:
		return ""
	case !r.Recoverable:
		return "deleted objects are not kept by the provider"
	case r.Until == "":
		return "deleted objects stay recoverable by the provider (" + r.Mechanism + ") until removed by hand"
	}
	return "deleted objects stay recoverable by the provider (" + r.Mechanism + ") until " + r.Until
}

// SiteInventory names the inventory a site was planned from.
type SiteInventory struct {
	Format   string `json:"format"`   // s3-csv | keys
	Manifest string `json:"manifest"` // path or URL of the manifest or key list
	Date     string `json:"date"`     // TimeLayout: when the inventory was taken
	Keys     int64  `json:"keys"`     // the site's keys it named
}

// Target is where the records went.
type Target struct {
	URI      string `json:"uri"`
	Region   string `json:"region"`
	KMSKeyID string `json:"kms_key_id"` // "" when the store's default encryption was used
}

// Residency is the data residency policy and whether the target satisfies it.
type Residency struct {
	AllowedRegions []string `json:"allowed_regions"` // empty: no policy
	Satisfied      bool     `json:"satisfied"`       // computed: target region is allowed (or no policy)
}

// Stage is one deletion stage as it ran.
type Stage struct {
	Name        string      `json:"name"`
	Sites       []string    `json:"sites"`
	Mode        string      `json:"mode"`         // soft | hard
	Sample      string      `json:"sample"`       // "" for the whole scope, else e.g. "1%"
	ScopeDigest string      `json:"scope_digest"` // the digest the operator confirmed
	StartedAt   string      `json:"started_at"`   // TimeLayout, "" if never run
	FinishedAt  string      `json:"finished_at"`  // TimeLayout, "" if not finished
	PurgedAt    string      `json:"purged_at"`    // TimeLayout, soft mode only
	Restored    bool        `json:"restored"`     // deletions undone with --restore
	RestoredAt  string      `json:"restored_at"`  // TimeLayout
	Counts      StageCounts `json:"counts"`
}

// StageCounts are the stage's figures as the pipeline recorded them.
type StageCounts struct {
	Scope    int64 `json:"scope"`    // replicas in scope
	Deleted  int64 `json:"deleted"`  // replicas deleted
	Failed   int64 `json:"failed"`   // deletes that failed
	Purged   int64 `json:"purged"`   // soft deletes purged
	Restored int64 `json:"restored"` // soft deletes undone
	Bytes    int64 `json:"bytes"`    // bytes deleted
}

// Merkle commits to the manifest's lines.
type Merkle struct {
	Algorithm string `json:"algorithm"` // MerkleAlgorithm
	TreeSize  uint64 `json:"tree_size"`
	Root      string `json:"root"` // lowercase hex
}

// Person identifies who performed or verified the sanitization.
type Person struct {
	Name         string `json:"name"`
	Title        string `json:"title"`
	Organization string `json:"organization"`
	Contact      string `json:"contact"`
}

// Sanitization is the record of sanitization that NIST SP 800-88 asks for (the fields of
// its sample certificate of sanitization, in Rev. 2's terms), as it applies to logical
// deletion of objects in storage services, where there is no physical medium with a
// serial number: the "media" are the sites' stores. Finalize fills empty fields with
// ferry's defaults; the caller may override any of them.
type Sanitization struct {
	Standard  string `json:"standard"`  // SanitizationStandard
	Method    string `json:"method"`    // sanitization method: Clear, Purge or Destroy
	Technique string `json:"technique"` // how the method was carried out
	MediaType string `json:"media_type"`
	// MediaSource lists where the sanitized data lived, one entry per site
	// ("name: uri (region)").
	MediaSource []string `json:"media_source"`
	Tool        string   `json:"tool"` // tool and version
	// VerificationMethod says how the result was verified; VerificationScope is "full"
	// (every replica) or "sample".
	VerificationMethod string `json:"verification_method"`
	VerificationScope  string `json:"verification_scope"`
	PerformedBy        Person `json:"performed_by"`
	VerifiedBy         Person `json:"verified_by"` // "" name: not recorded (an approver signs instead)
	StartedAt          string `json:"started_at"`  // first deletion (TimeLayout)
	CompletedAt        string `json:"completed_at"`
	// Confidentiality categorisations before and after (optional in SP 800-88).
	PreSanitizationConfidentiality  string `json:"pre_sanitization_confidentiality"`
	PostSanitizationConfidentiality string `json:"post_sanitization_confidentiality"`
	PostSanitizationDestination     string `json:"post_sanitization_destination"`
	DataBackup                      string `json:"data_backup"` // where the data was kept: the target
	Limitations                     string `json:"limitations"`
	// CryptoErase lists the cryptographic erasures the operator declared in the spec
	// (sources[i].crypto_erase), in spec order; absent when none was declared.
	CryptoErase []CryptoErase `json:"crypto_erase,omitempty"`
}

// NewStatement wraps a finalized predicate in an in-toto Statement whose subject is the
// manifest with the summary's digest.
func NewStatement(sum ManifestSummary, p Predicate) Statement {
	return Statement{
		Type:          StatementType,
		Subject:       []Subject{{Name: ManifestName, Digest: map[string]string{"sha256": sum.SHA256}}},
		PredicateType: PredicateType,
		Predicate:     p,
	}
}

// ManifestDigest returns the subject's sha256 digest.
func (s Statement) ManifestDigest() string {
	if len(s.Subject) == 0 {
		return ""
	}
	return s.Subject[0].Digest["sha256"]
}

// Finalize fills the computed parts of p from the manifest summary: counts, Merkle
// commitment, generated_at (if empty), residency.satisfied, default sanitization fields,
// and the completeness verdict (Assess). Slices are made non-nil so they encode as [].
func Finalize(p *Predicate, sum ManifestSummary, now time.Time) {
	p.Counts = sum.Counts
	if p.Counts.ByStatus == nil {
		p.Counts.ByStatus = map[string]Tally{}
	}
	if p.Counts.BySite == nil {
		p.Counts.BySite = map[string]SiteTally{}
	}
	p.Merkle = Merkle{Algorithm: MerkleAlgorithm, TreeSize: sum.TreeSize, Root: sum.Root}
	if p.GeneratedAt == "" {
		p.GeneratedAt = FormatTime(now)
	}
	if p.Tool.Name == "" {
		p.Tool.Name = ToolName
	}
	p.Residency.Satisfied = residencySatisfied(p)
	normalizeSlices(p)
	fillSanitization(p)
	p.IncompleteReasons = Assess(p)
	p.Complete = len(p.IncompleteReasons) == 0
}

func normalizeSlices(p *Predicate) {
	if p.Approvers == nil {
		p.Approvers = []Party{}
	}
	if p.Sites == nil {
		p.Sites = []Site{}
	}
	if p.Stages == nil {
		p.Stages = []Stage{}
	}
	for i := range p.Stages {
		if p.Stages[i].Sites == nil {
			p.Stages[i].Sites = []string{}
		}
	}
	if p.Residency.AllowedRegions == nil {
		p.Residency.AllowedRegions = []string{}
	}
	if p.Sanitization.MediaSource == nil {
		p.Sanitization.MediaSource = []string{}
	}
	if p.IncompleteReasons == nil {
		p.IncompleteReasons = []string{}
	}
	if p.Retention != nil && p.Retention.Replicas == nil {
		p.Retention.Replicas = []RetainedReplica{}
	}
}

func residencySatisfied(p *Predicate) bool {
	if len(p.Residency.AllowedRegions) == 0 {
		return true
	}
	return p.Target.Region != "" && slices.Contains(p.Residency.AllowedRegions, p.Target.Region)
}

func fillSanitization(p *Predicate) {
	s := &p.Sanitization
	if s.Standard == "" {
		s.Standard = SanitizationStandard
	}
	if s.Method == "" {
		s.Method = "Clear"
	}
	if s.Technique == "" {
		soft := false
		for _, st := range p.Stages {
			soft = soft || st.Mode == ModeSoft
		}
		s.Technique = "Logical deletion through each store's API: a conditional delete of exactly the verified version, then a read confirming absence."
		if soft {
			s.Technique += " Soft stages hid originals first and purged them after the grace period."
		}
	}
	if s.MediaType == "" {
		s.MediaType = "Logical storage: objects in cloud and on-premises object stores, files on file systems; no physical media handled"
	}
	if len(s.MediaSource) == 0 {
		for _, site := range p.Sites {
			e := site.Name + ": " + site.URI
			if site.Region != "" {
				e += " (" + site.Region + ")"
			}
			s.MediaSource = append(s.MediaSource, e)
		}
	}
	if s.Tool == "" {
		s.Tool = p.Tool.String()
	}
	if s.VerificationMethod == "" {
		s.VerificationMethod = "Full: every deleted original was read back and found absent; every target copy matched the record's SHA-256 before any delete."
	}
	if s.VerificationScope == "" {
		s.VerificationScope = "full"
	}
	if s.PerformedBy.Name == "" {
		s.PerformedBy = Person{Name: p.Signer.Name, Title: p.Signer.Title, Organization: p.Signer.Organization}
	}
	if s.VerifiedBy.Name == "" && len(p.Approvers) > 0 {
		a := p.Approvers[0]
		s.VerifiedBy = Person{Name: a.Name, Title: a.Title, Organization: a.Organization}
	}
	if s.StartedAt == "" || s.CompletedAt == "" {
		first, last := "", ""
		for _, st := range p.Stages {
			if st.StartedAt != "" && (first == "" || st.StartedAt < first) {
				first = st.StartedAt
			}
			for _, t := range []string{st.FinishedAt, st.PurgedAt} {
				if t != "" && t > last {
					last = t
				}
			}
		}
		if s.StartedAt == "" {
			s.StartedAt = first
		}
		if s.CompletedAt == "" {
			s.CompletedAt = last
		}
	}
	if s.PostSanitizationDestination == "" {
		s.PostSanitizationDestination = "The storage stays in service with its owner; only the migrated records were removed from it."
	}
	if s.DataBackup == "" {
		t := "Every record was copied to " + p.Target.URI
		if p.Target.Region != "" {
			t += " (" + p.Target.Region + ")"
		}
		s.DataBackup = t + " and verified (SHA-256) before any original was deleted."
	}
	if s.Limitations == "" {
		s.Limitations = "Logical deletion through the stores' interfaces; the physical media, and copies kept outside those interfaces, are the storage operators' responsibility."
	}
}

// Assess lists, in plain words, why the migration is not complete: records in conflict,
// failed or not verified, replicas not deleted, soft deletes not purged, deletes not
// confirmed, stages not run, not finished, not purged or restored, a residency policy not
// met, or an empty manifest. An empty list means complete. It reads only p (Counts,
// Stages, Residency, Target), so a verifier can recompute it.
func Assess(p *Predicate) []string {
	reasons := []string{}
	c := p.Counts
	if c.Records == 0 {
		reasons = append(reasons, "The manifest has no records: nothing was migrated.")
	}
	recs := func(n int64) string { return plural(n, "record", "records") }
	if t := c.ByStatus[StatusConflict]; t.Records > 0 {
		reasons = append(reasons, fmt.Sprintf("%s (%s) are in conflict: their copies at different sites differ, so they were neither copied nor deleted.", recs(t.Records), FormatBytes(t.Bytes)))
	}
	if t := c.ByStatus[StatusFailed]; t.Records > 0 {
		reasons = append(reasons, fmt.Sprintf("%s (%s) failed and were not migrated.", recs(t.Records), FormatBytes(t.Bytes)))
	}
	if n := c.ByStatus[StatusPlanned].Records + c.ByStatus[StatusCopied].Records; n > 0 {
		reasons = append(reasons, fmt.Sprintf("%s were not yet verified at the target.", recs(n)))
	}
	if t := c.ByStatus[StatusDeleteIntent]; t.Records > 0 {
		reasons = append(reasons, fmt.Sprintf("%s have a deletion that was started but not recorded as finished.", recs(t.Records)))
	}
	reps := func(n int64) string { return plural(n, "replica", "replicas") }
	for _, site := range siteOrder(p) {
		s := c.BySite[site]
		if s.Remaining > 0 {
			reasons = append(reasons, fmt.Sprintf("%s (%s) at site %s were not deleted.", reps(s.Remaining), FormatBytes(s.RemainingBytes), site))
		}
		if s.SoftDeleted > 0 {
			reasons = append(reasons, fmt.Sprintf("%s at site %s were soft-deleted and remain recoverable until they are purged.", reps(s.SoftDeleted), site))
		}
		if s.Missing > 0 {
			reasons = append(reasons, fmt.Sprintf("%s at site %s vanished without ferry deleting them; their removal is not certified.", reps(s.Missing), site))
		}
		if t := s.ByState[ReplicaRetained]; t.Records > 0 {
			reasons = append(reasons, fmt.Sprintf("%s at site %s were not deleted: the site keeps versions and other versions of their keys remain there (retained_for_versions); every version is user data.", reps(t.Records), site))
		}
		if t := s.ByState[ReplicaUndeletable]; t.Records > 0 {
			reasons = append(reasons, fmt.Sprintf("%s at site %s could not be deleted: the site holds them under a retention policy, an object hold, a legal hold or an immutability policy (see each replica's reason in the manifest).", reps(t.Records), site))
		}
		if s.Unconfirmed > 0 {
			reasons = append(reasons, fmt.Sprintf("%s deleted at site %s were not confirmed absent.", reps(s.Unconfirmed), site))
		}
	}
	for _, st := range p.Stages {
		switch {
		case st.StartedAt == "":
			reasons = append(reasons, fmt.Sprintf("Deletion stage %q was not run.", st.Name))
		case st.Restored:
			reasons = append(reasons, fmt.Sprintf("Deletion stage %q was restored: its deletions were undone.", st.Name))
		case st.FinishedAt == "":
			reasons = append(reasons, fmt.Sprintf("Deletion stage %q was started but did not finish.", st.Name))
		case st.Mode == ModeSoft && st.PurgedAt == "":
			reasons = append(reasons, fmt.Sprintf("Deletion stage %q (soft delete) was not purged.", st.Name))
		}
		if st.Counts.Failed > 0 {
			reasons = append(reasons, fmt.Sprintf("Deletion stage %q had %s that failed.", st.Name, plural(st.Counts.Failed, "delete", "deletes")))
		}
	}
	if !residencySatisfied(p) {
		if p.Target.Region == "" {
			reasons = append(reasons, fmt.Sprintf("The target region is not recorded, so the residency policy (%s) cannot be shown to be met.", strings.Join(p.Residency.AllowedRegions, ", ")))
		} else {
			reasons = append(reasons, fmt.Sprintf("The target region %s is outside the residency policy (%s).", p.Target.Region, strings.Join(p.Residency.AllowedRegions, ", ")))
		}
	}
	return reasons
}

// siteOrder is the spec's site order, then any other site seen in the counts, sorted.
func siteOrder(p *Predicate) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range p.Sites {
		if !seen[s.Name] {
			out = append(out, s.Name)
			seen[s.Name] = true
		}
	}
	var extra []string
	for name := range p.Counts.BySite {
		if !seen[name] {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	return append(out, extra...)
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%s %s", FormatCount(n), many)
}

// FormatCount writes n with thousands separators ("1,234,567").
func FormatCount(n int64) string {
	neg := n < 0
	if neg {
		n = -n
	}
	s := fmt.Sprintf("%d", n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// FormatBytes writes a byte count in IEC units ("1.5 GiB", "512 B").
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// validate checks a statement's shape before signing and after parsing.
func (s *Statement) validate() error {
	if s.Type != StatementType {
		return fmt.Errorf("statement _type is %q, not %q", truncate(s.Type, 80), StatementType)
	}
	if s.PredicateType != PredicateType {
		return fmt.Errorf("predicateType is %q, not %q", truncate(s.PredicateType, 80), PredicateType)
	}
	if len(s.Subject) != 1 || s.Subject[0].Name != ManifestName {
		return fmt.Errorf("the statement must have exactly one subject, named %s", ManifestName)
	}
	if len(s.Subject[0].Digest) != 1 || !isLowerHex(s.Subject[0].Digest["sha256"], 64) {
		return errors.New("the subject's digest must be exactly {\"sha256\": 64 lowercase hex digits}")
	}
	p := &s.Predicate
	if p.Migration == "" {
		return errors.New("predicate.migration is empty")
	}
	if p.Merkle.Algorithm != MerkleAlgorithm {
		return fmt.Errorf("predicate.merkle.algorithm is %q, not %q", truncate(p.Merkle.Algorithm, 80), MerkleAlgorithm)
	}
	if !isLowerHex(p.Merkle.Root, 64) {
		return errors.New("predicate.merkle.root is not 64 lowercase hex digits")
	}
	if p.Merkle.TreeSize != uint64(p.Counts.Records) {
		return fmt.Errorf("predicate.merkle.tree_size (%d) differs from counts.records (%d)", p.Merkle.TreeSize, p.Counts.Records)
	}
	if _, err := ParseTime(p.GeneratedAt); err != nil {
		return fmt.Errorf("predicate.generated_at: %w", err)
	}
	for _, st := range p.Stages {
		for _, f := range []struct{ n, v string }{{"started_at", st.StartedAt}, {"finished_at", st.FinishedAt}, {"purged_at", st.PurgedAt}, {"restored_at", st.RestoredAt}} {
			if err := checkTime("stage "+st.Name+" "+f.n, f.v); err != nil {
				return err
			}
		}
	}
	if p.Complete != (len(p.IncompleteReasons) == 0) {
		return errors.New("predicate.complete contradicts predicate.incomplete_reasons")
	}
	for i, ce := range p.Sanitization.CryptoErase {
		at := fmt.Sprintf("predicate.sanitization.crypto_erase[%d]", i)
		if ce.Site == "" || ce.KeyID == "" {
			return fmt.Errorf("%s: site and key_id must not be empty", at)
		}
		d, err := ParseTime(ce.DeletionDate)
		if err != nil {
			return fmt.Errorf("%s.deletion_date: %w", at, err)
		}
		// The status is what the declared date says at generated_at, nothing more.
		gen, _ := ParseTime(p.GeneratedAt)
		if want := CryptoEraseStatus(d, gen); ce.Status != want {
			return fmt.Errorf("%s.status is %q, but the declared deletion date %s is %q at generated_at %s", at, truncate(ce.Status, 40), ce.DeletionDate, want, p.GeneratedAt)
		}
	}
	if r := p.Retention; r != nil {
		if int64(len(r.Replicas)) > r.Total || len(r.Replicas) > MaxRetained || (int64(len(r.Replicas)) < r.Total && len(r.Replicas) < MaxRetained) {
			return fmt.Errorf("predicate.retention lists %d replicas of a total of %d (at most %d are listed)", len(r.Replicas), r.Total, MaxRetained)
		}
	}
	return nil
}

// declaredKeys returns the keys the predicate names (signer first), by keyid.
func (p *Predicate) declaredKeys() (map[string]ed25519.PublicKey, map[string]Party, error) {
	keys := map[string]ed25519.PublicKey{}
	parties := map[string]Party{}
	all := append([]Party{p.Signer}, p.Approvers...)
	for i, party := range all {
		pub, err := party.publicKey()
		if err != nil {
			if i == 0 {
				return nil, nil, fmt.Errorf("predicate.signer: %w", err)
			}
			return nil, nil, fmt.Errorf("predicate.approvers[%d]: %w", i-1, err)
		}
		if _, dup := keys[party.KeyID]; dup {
			return nil, nil, fmt.Errorf("keyid %s is declared twice in the predicate", party.KeyID)
		}
		keys[party.KeyID] = pub
		parties[party.KeyID] = party
	}
	return keys, parties, nil
}
