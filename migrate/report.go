package migrate

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
)

// Version is ferry's version, named in certificates. `make build` stamps it with
// -ldflags "-X github.com/ferrymigrate/ferry/migrate.Version=..."; when it is not
// stamped, the module version the go command recorded in the binary is used.
var Version = ""

// Commit is the VCS revision ferry was built from, stamped by `make build` (-X) for
// builds where the go command records no vcs.revision (-buildvcs=false).
var Commit = ""

// ToolVersion returns the version and the VCS commit of this binary, as certificates
// name them: Version, else the main module's version from the build info, else
// "(devel)"; the commit is vcs.revision ("+modified" for a dirty tree), "" if unknown.
func ToolVersion() (version, commit string) {
	version = Version
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if version == "" || version == "dev" {
			if v := bi.Main.Version; v != "" && v != "(devel)" {
				version = v
			}
		}
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if commit != "" && dirty {
			commit += "+modified"
		}
	}
	if commit == "" {
		commit = Commit
	}
	if version == "" || version == "dev" {
		version = "(devel)"
	}
	return version, commit
}

// ReportResult is what `ferry report` reports.
type ReportResult struct {
	DryRun bool `json:"dry_run"`
	// Warnings are things the certificate cannot vouch for that the operator can fix
	// (report.signer not set).
	Warnings []string `json:"warnings,omitempty"`
	*certificate.ReportResult
}

var errStopIter = errors.New("stop")

// manifestLine turns a record into its manifest line.
func (m *Migration) manifestLine(r checkpoints.Record) certificate.ManifestLine {
	// A key that is not UTF-8 is carried byte for byte (key_hex); its URIs and user,
	// which JSON cannot hold either, are written escaped (see certificate.EscapeKey).
	odd := !utf8.ValidString(r.Key)
	l := certificate.ManifestLine{Key: r.Key, User: certificate.EscapeKey(r.User), Size: r.Size, SHA256: r.SHA256, Status: string(r.State)}
	if r.State == checkpoints.Rejected {
		l.Status = certificate.StatusFailed // not migrated; the manifest's vocabulary has no "rejected"
	}
	if r.State == checkpoints.Copied || r.State == checkpoints.Verified {
		l.Target = certificate.TargetRef{URI: storeURI(m.Target, r.TargetKey, odd), Version: r.TargetVersion, ETag: r.TargetETag}
		if r.State == checkpoints.Verified {
			l.Target.VerifiedAt = certificate.FormatTime(r.VerifiedAt)
		}
	}
	allGone, allPurged, intent := len(r.Replicas) > 0, len(r.Replicas) > 0, false
	l.Replicas = []certificate.ReplicaRef{}
	for _, p := range r.Replicas {
		ref := certificate.ReplicaRef{Site: p.Site, URI: storeURI(m.Sites[p.Site], p.SiteKey, odd), Size: p.Size, State: string(p.State), ConfirmedAbsent: p.ConfirmedAbsent}
		if isSHA256Hex(p.SHA256) {
			ref.SHA256 = p.SHA256 // the replica's own hash: a divergent one differs from the record's
		}
		if gone(p.State) && p.State != checkpoints.Intent && p.State != checkpoints.Retained { // retained: not deleted (I10)
			ref.DeletedAt, ref.Mode = certificate.FormatTime(p.DeletedAt), p.Mode
		}
		if p.State == checkpoints.Undeletable {
			ref.Reason = p.LastError // the site's reason: retention policy or hold
		}
		l.Replicas = append(l.Replicas, ref)
		allGone = allGone && (p.State == checkpoints.Deleted || p.State == checkpoints.Purged)
		erased := p.State == checkpoints.Purged || (p.State == checkpoints.Deleted && p.Mode == "hard")
		allPurged = allPurged && erased
		intent = intent || p.State == checkpoints.Intent
	}
	if r.State == checkpoints.Verified {
		switch {
		case intent:
			l.Status = certificate.StatusDeleteIntent
		case allPurged:
			l.Status = certificate.StatusPurged
		case allGone:
			l.Status = certificate.StatusDeleted
		}
	}
	return l
}

// isSHA256Hex reports whether s is 64 lowercase hex digits (the manifest's spelling).
func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// storeURI is the manifest's URI of key at s. For a record whose key is not UTF-8
// (escape), the key part is escaped with certificate.EscapeKeyBytes, so the URI is valid
// UTF-8 and uriKey gives the exact key back.
func storeURI(s providers.Store, key string, escape bool) string {
	u := s.URI(key)
	if !escape && utf8.ValidString(u) {
		return u
	}
	root := s.URI("")
	if rest, ok := strings.CutPrefix(u, root); ok {
		return root + certificate.EscapeKeyBytes(rest)
	}
	return certificate.EscapeKeyBytes(u)
}

// uriKey is the store key of a manifest URI under root (storeURI's inverse); escaped
// says the line's key is not UTF-8 (its URIs are escaped).
func uriKey(uri, root string, escaped bool) (string, bool) {
	key, ok := strings.CutPrefix(uri, root)
	if !ok || !escaped {
		return key, ok
	}
	key, err := certificate.UnescapeKey(key)
	return key, err == nil
}

// Report writes manifest.jsonl, certificate.json (signed), certificate.html and
// certificate.pdf into dir. It exits 3 (with the files written) when the migration is
// not complete: the certificate says so plainly.
func (m *Migration) Report(ctx context.Context, dir string) (*ReportResult, error) {
	if err := m.Lock(ctx, "report"); err != nil {
		return nil, err
	}
	if err := m.needPlan(ctx); err != nil {
		return nil, err
	}
	if err := m.checkPlanContext(ctx, "report"); err != nil {
		return nil, err
	}
	keyPath := m.Spec.Report.SigningKey
	if keyPath == "" {
		return nil, Errorf(ExitUsage, "%s: report.signing_key is not set: create a key with `ferry keys generate --out keys` and name it there", m.Spec.Path)
	}
	key, err := certificate.LoadPrivateKey(keyPath)
	if err != nil {
		return nil, Errorf(ExitUsage, "report.signing_key: %w", err)
	}
	if dir == "" {
		dir = filepath.Join(m.Spec.Dir, "report")
	}
	res := &ReportResult{DryRun: m.Opts.DryRun}
	if m.Spec.Report.Signer == "" {
		w := fmt.Sprintf("%s: report.signer is not set: the certificate names no signer (it says \"signer: (not set)\"); set report.signer to the person or office that signs", m.Spec.Path)
		res.Warnings = append(res.Warnings, w)
		m.log.Warn("report.signer is not set", "spec", m.Spec.Path)
	}
	if m.Opts.DryRun {
		// Write into a scratch folder: the real report folder is left alone.
		tmp, err := os.MkdirTemp("", "ferry-report-dryrun-")
		if err != nil {
			return nil, Errorf(ExitRuntime, "%w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	pred, err := m.predicate(ctx)
	if err != nil {
		return nil, err
	}
	operator := certificate.KeyID(key.Public().(ed25519.PublicKey))
	for _, a := range pred.Approvers {
		if a.KeyID == operator {
			return nil, Errorf(ExitUsage, "report.approvers %q: that is the operator's own key (report.signing_key): an approver countersigns with a key of their own", a.Name)
		}
	}
	// The versions of undeletable replicas, for the certificate's retention list (the
	// manifest, which the list is computed from, does not carry versions).
	retainedVersions := map[[2]string]string{}
	records := func(yield func(certificate.ManifestLine, error) bool) {
		err := m.State.Records(ctx, checkpoints.Query{}, func(r checkpoints.Record) error {
			failpoint("report-mid")
			for _, p := range r.Replicas {
				if p.State == checkpoints.Undeletable && p.Version != "" && len(retainedVersions) < certificate.MaxRetained {
					retainedVersions[[2]string{p.Site, certificate.EscapeKey(r.Key)}] = p.Version
				}
			}
			if !yield(m.manifestLine(r), nil) {
				return errStopIter
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopIter) {
			yield(certificate.ManifestLine{}, err)
		}
	}
	// This process's own requests so far belong in the journal it reports.
	if m.journal != nil {
		if err := m.journal.flush(ctx); err != nil {
			return nil, Errorf(ExitRuntime, "%w", err)
		}
	}
	journal := func(yield func([]byte, error) bool) {
		err := m.State.Journal(ctx, func(e checkpoints.JournalEntry) error {
			if !yield([]byte(e.Line), nil) {
				return errStopIter
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopIter) {
			yield(nil, err)
		}
	}
	out, err := certificate.WriteReport(iter.Seq2[certificate.ManifestLine, error](records), certificate.ReportOptions{
		Dir: dir, Predicate: pred, Key: key, Now: m.now(), SkipHTML: m.Opts.DryRun, SkipPDF: m.Opts.DryRun,
		Journal: journal,
		RetainedVersion: func(site, key string) string {
			return retainedVersions[[2]string{site, key}]
		},
	})
	if err != nil {
		return nil, phaseErr("report", err)
	}
	res.ReportResult = out
	if m.Opts.DryRun {
		out.Dir, out.ManifestPath, out.CertificatePath, out.JournalPath = "", "", "", ""
	}
	if !out.Complete {
		return res, Errorf(ExitIncomplete, "the migration is not complete (the certificate says so): %d reasons, first: %s", len(out.IncompleteReasons), out.IncompleteReasons[0])
	}
	return res, nil
}

// predicate gathers what the certificate states besides the manifest.
func (m *Migration) predicate(ctx context.Context) (certificate.Predicate, error) {
	sp := m.Spec
	p := certificate.Predicate{
		Migration:  sp.Migration,
		SpecDigest: sp.Digest(),
		Tool:       certificate.Tool{Name: "ferry"},
		Signer:     certificate.Party{Name: sp.Report.Signer},
		Target:     certificate.Target{URI: sp.Target.URL, Region: sp.Target.Region, KMSKeyID: sp.Target.KMSKeyID},
		Residency:  certificate.Residency{AllowedRegions: sp.Target.Residency},
	}
	p.Tool.Version, p.Tool.Commit = ToolVersion()
	if r := m.caps(spec.TargetName).Regioner; r != nil {
		if region, err := r.Region(ctx); err == nil && region != "" {
			p.Target.Region = region
		}
	}
	p.PlanDigest, _, _ = m.State.Meta(ctx, "plan_digest")
	for _, a := range sp.Report.Approvers {
		pub, err := certificate.LoadPublicKey(a.PublicKey)
		if err != nil {
			return p, Errorf(ExitUsage, "report.approvers %q: %w", a.Name, err)
		}
		party, err := certificate.PartyForKey(a.Name, pub)
		if err != nil {
			return p, Errorf(ExitUsage, "report.approvers %q: %w", a.Name, err)
		}
		p.Approvers = append(p.Approvers, party)
	}
	invs, err := m.Inventories(ctx)
	if err != nil {
		return p, err
	}
	for _, s := range sp.Sources {
		cs := certificate.Site{Name: s.Name, Role: string(s.Role), URI: s.URL, Region: s.Region}
		cs.ProviderRecoverability = m.siteRecoverability(ctx, s.Name)
		if in, ok := invs[s.Name]; ok {
			cs.Inventory = &certificate.SiteInventory{Format: in.Format, Manifest: in.Manifest, Date: certificate.FormatTime(in.Date), Keys: in.Keys}
		}
		p.Sites = append(p.Sites, cs)
		if ce := s.CryptoErase; ce != nil {
			// Declared by the operator; ferry does not call the KMS. The status is
			// the declared date against the certificate's generation time.
			p.Sanitization.CryptoErase = append(p.Sanitization.CryptoErase, certificate.CryptoErase{
				Site: s.Name, KeyID: ce.KeyID, DeletionDate: certificate.FormatTime(ce.DeletionDate), Note: ce.Note,
				Status: certificate.CryptoEraseStatus(ce.DeletionDate.Truncate(time.Second), m.now().UTC().Truncate(time.Second)),
			})
		}
	}
	if a, ok, err := m.auditSummary(ctx); err != nil {
		return p, err
	} else if ok {
		p.Audit = a // the last `ferry audit`'s findings
	}
	states, err := m.stageStates(ctx)
	if err != nil {
		return p, err
	}
	stats, err := m.State.Stats(ctx, m.now())
	if err != nil {
		return p, Errorf(ExitRuntime, "%w", err)
	}
	for _, st := range sp.Delete.Stages {
		ss := states[st.Name]
		c := stats.StageCounts[st.Name]
		cs := certificate.Stage{
			Name: st.Name, Sites: st.Sites, Mode: m.stageMode(st.Name), ScopeDigest: ss.Digest,
			StartedAt: certificate.FormatTime(ss.StartedAt), FinishedAt: certificate.FormatTime(ss.FinishedAt),
			PurgedAt: certificate.FormatTime(ss.PurgedAt), RestoredAt: certificate.FormatTime(ss.RestoredAt),
			Restored: ss.State == StageRestored,
			Counts: certificate.StageCounts{
				Deleted:  c[checkpoints.Deleted].N + c[checkpoints.Purged].N,
				Purged:   c[checkpoints.Purged].N,
				Restored: c[checkpoints.Restored].N,
				Failed:   c[checkpoints.Intent].N,
				Bytes:    c[checkpoints.Deleted].Bytes + c[checkpoints.Purged].Bytes,
			},
		}
		for _, n := range c {
			cs.Counts.Scope += n.N
		}
		if f := st.SampleFraction(); f < 1 {
			cs.Sample = strconv.FormatFloat(f*100, 'f', -1, 64) + "%"
		}
		p.Stages = append(p.Stages, cs)
	}
	return p, nil
}
