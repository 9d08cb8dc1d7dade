package certificate

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
)

// ErrVerification is wrapped by every error that means "this certificate or proof does
// not verify" (the CLI's exit code 4), as opposed to being unable to read an input.
var ErrVerification = errors.New("verification failed")

// CheckStatus is the outcome of one check.
type CheckStatus string

// Check outcomes. Only Fail makes a report fail; Warn says something the reader should
// know (no pinned key); Skip says a check could not run (no manifest given).
const (
	Pass CheckStatus = "pass"
	Fail CheckStatus = "fail"
	Warn CheckStatus = "warn"
	Skip CheckStatus = "skip"
)

// Names of the checks, in the order they are reported.
const (
	CheckPayloadType = "payload type"
	CheckStatement   = "statement"
	CheckSignatures  = "signatures"
	CheckSigner      = "operator signature"
	CheckTrust       = "trusted key"
	CheckApprovals   = "approvals"
	CheckComplete    = "completeness claim"
	CheckManifest    = "manifest digest"
	CheckLines       = "manifest lines"
	CheckMerkle      = "merkle root"
	CheckCounts      = "counts"
	CheckRetention   = "retained replicas"
	CheckProof       = "proof binding"
	CheckInclusion   = "inclusion"
)

// Check is one verification step and its outcome.
type Check struct {
	Name    string      `json:"name"`
	Status  CheckStatus `json:"status"`
	Message string      `json:"message"`
}

// SignatureResult describes one signature of the envelope.
type SignatureResult struct {
	KeyID   string `json:"keyid"`
	Name    string `json:"name"`    // from the predicate; "" for an undeclared key
	Role    string `json:"role"`    // "operator", "approver", or "undeclared"
	Valid   bool   `json:"valid"`   // the signature verifies over the PAE
	Trusted bool   `json:"trusted"` // valid and made by one of the trusted keys given
	// KeySource says which key it was checked with: "trusted", "certificate" (the
	// public key declared in the signed predicate), or "" (no key known: not checked).
	KeySource string `json:"key_source"`
	Message   string `json:"message"`
}

// Report is the result of VerifyCertificate or VerifyProof. It is meant to be printed
// (or encoded as JSON) as is.
type Report struct {
	Migration         string            `json:"migration"`
	Complete          bool              `json:"complete"`
	IncompleteReasons []string          `json:"incomplete_reasons"`
	ManifestSHA256    string            `json:"manifest_sha256"`
	TreeSize          uint64            `json:"tree_size"`
	Root              string            `json:"root"`
	Signatures        []SignatureResult `json:"signatures"`
	Checks            []Check           `json:"checks"`
	// Approvers is the number of approvers the certificate declares; ApprovalsPending
	// names those who have not signed.
	Approvers        int      `json:"approvers"`
	ApprovalsPending []string `json:"approvals_pending"`
	// Record is the proven manifest line (VerifyProof only).
	Record *ManifestLine `json:"record,omitempty"`
	// Statement is the decoded payload, when it decoded.
	Statement *Statement `json:"-"`
}

// OK reports whether no check failed.
func (r *Report) OK() bool {
	for _, c := range r.Checks {
		if c.Status == Fail {
			return false
		}
	}
	return true
}

// AddCheck records a check made outside this package (the CLI's live check of the
// stores), so the verdict reflects it.
func (r *Report) AddCheck(name string, status CheckStatus, msg string) {
	r.Checks = append(r.Checks, Check{Name: name, Status: status, Message: msg})
}

// Require turns the named checks' warnings into failures (`report verify
// --require-approvals` requires every declared approver's signature).
func (r *Report) Require(names ...string) {
	for i, c := range r.Checks {
		for _, n := range names {
			if c.Name == n && c.Status == Warn {
				r.Checks[i].Status = Fail
			}
		}
	}
}

// Verdict is the one line that sums the report up. A failed check gives "NOT VERIFIED:"
// and the failed checks' names. Otherwise it is "VERIFIED", and plainly so only when
// every check passed: whatever was not proven (no pinned key, the manifest not checked,
// approvals pending, a check that did not run) and a certificate that itself states the
// migration is INCOMPLETE are named in parentheses after it.
func (r *Report) Verdict() string {
	if failed := r.Failed(); len(failed) > 0 {
		var names []string
		for _, c := range failed {
			names = append(names, c.Name)
		}
		return "NOT VERIFIED: " + strings.Join(names, ", ") + " failed"
	}
	var notes []string
	for _, c := range r.Checks {
		switch {
		case c.Status == Warn && c.Name == CheckTrust:
			notes = append(notes, "signature not pinned: pass --pubkey")
		case c.Status == Warn && c.Name == CheckApprovals:
			notes = append(notes, fmt.Sprintf("%d of %d approvals pending", len(r.ApprovalsPending), r.Approvers))
		case c.Status == Skip && c.Name == CheckManifest:
			notes = append(notes, "manifest not checked: pass --manifest")
		case c.Status == Warn:
			notes = append(notes, c.Name+": "+c.Message)
		case c.Status == Skip:
			notes = append(notes, c.Name+" not checked")
		}
	}
	if r.Statement != nil && !r.Complete {
		notes = append(notes, "the certificate states the migration is INCOMPLETE")
	}
	if len(notes) == 0 {
		return "VERIFIED"
	}
	return "VERIFIED (" + strings.Join(notes, "; ") + ")"
}

// Failed returns the failed checks.
func (r *Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Status == Fail {
			out = append(out, c)
		}
	}
	return out
}

// Err returns nil if the report is OK, else a *VerificationError (wrapping ErrVerification).
func (r *Report) Err() error {
	if r.OK() {
		return nil
	}
	return &VerificationError{Failed: r.Failed()}
}

func (r *Report) add(name string, status CheckStatus, format string, args ...any) {
	r.Checks = append(r.Checks, Check{Name: name, Status: status, Message: fmt.Sprintf(format, args...)})
}

// VerificationError lists the failed checks.
type VerificationError struct {
	Failed []Check
}

func (e *VerificationError) Error() string {
	var parts []string
	for _, c := range e.Failed {
		parts = append(parts, c.Name+": "+c.Message)
	}
	return "verification failed: " + strings.Join(parts, "; ")
}

// Unwrap makes errors.Is(err, ErrVerification) true.
func (e *VerificationError) Unwrap() error { return ErrVerification }

// VerifyCertificate checks a certificate and, if manifest is not nil, the manifest it
// commits to. Checks: the payload type; the statement (canonical JSON, in-toto v1 shape,
// the ferry predicate type, a valid predicate); every signature verifies (with a trusted
// key when its keyid is one of them, else with the key the predicate declares for that
// keyid; a signature by an unknown key fails); the operator declared as signer has
// signed; with trusted keys given, at least one valid signature is by a trusted key;
// declared approvers who have not signed are reported (warn); a "complete" claim agrees
// with the counts and stages. With the manifest: its SHA-256 equals the subject digest;
// every line is canonical, valid, newline-terminated, and keys are unique and sorted
// (byte order); the RFC 6962 root and tree size recomputed from the lines equal the
// predicate's; the counts recomputed from the lines equal the predicate's.
//
// The manifest is streamed (constant memory). The Report is always returned. err is nil
// when everything verified; a *VerificationError (errors.Is ErrVerification: exit 4) when
// a check failed; any other error when the manifest could not be read (exit 1).
func VerifyCertificate(env *Envelope, manifest io.Reader, trusted []ed25519.PublicKey) (*Report, error) {
	r := &Report{IncompleteReasons: []string{}, Signatures: []SignatureResult{}, ApprovalsPending: []string{}}
	if env == nil {
		r.add(CheckStatement, Fail, "no certificate")
		return r, r.Err()
	}
	st := verifyEnvelope(r, env, trusted)
	if manifest == nil {
		r.add(CheckManifest, Skip, "no manifest given: the manifest's digest, lines, Merkle root and counts were not checked")
		return r, r.Err()
	}
	if st == nil {
		r.add(CheckManifest, Skip, "the statement did not decode, so there is nothing to check the manifest against")
		return r, r.Err()
	}
	var retained Retention
	sum, problems, nProblems, err := ReadManifest(manifest, 5, func(_ uint64, _ []byte, l *ManifestLine) error {
		if l != nil {
			retained.AddLine(*l)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrIO) {
			return r, err
		}
		r.add(CheckLines, Fail, "%v", err)
		return r, r.Err()
	}
	p := &st.Predicate
	if want := st.ManifestDigest(); sum.SHA256 == want {
		r.add(CheckManifest, Pass, "sha256 %s matches the certificate's subject", sum.SHA256)
	} else {
		r.add(CheckManifest, Fail, "the manifest's sha256 is %s but the certificate commits to %s", sum.SHA256, want)
	}
	if nProblems == 0 {
		r.add(CheckLines, Pass, "%s, each canonical JSON, keys unique and in byte order", plural(int64(sum.TreeSize), "line", "lines"))
	} else {
		var msgs []string
		for _, pr := range problems {
			msgs = append(msgs, pr.Error())
		}
		more := ""
		if n := nProblems - int64(len(problems)); n > 0 {
			more = fmt.Sprintf(" (and %d more)", n)
		}
		r.add(CheckLines, Fail, "%s%s", strings.Join(msgs, "; "), more)
	}
	if sum.Root == p.Merkle.Root && sum.TreeSize == p.Merkle.TreeSize {
		r.add(CheckMerkle, Pass, "recomputed RFC 6962 root %s over %s matches", sum.Root, plural(int64(sum.TreeSize), "line", "lines"))
	} else {
		r.add(CheckMerkle, Fail, "recomputed root %s over %d lines; the certificate says %s over %d", sum.Root, sum.TreeSize, p.Merkle.Root, p.Merkle.TreeSize)
	}
	if nProblems == 0 {
		if countsEqual(sum.Counts, p.Counts) {
			r.add(CheckCounts, Pass, "counts by status and by site recomputed from the manifest match")
		} else {
			r.add(CheckCounts, Fail, "the counts recomputed from the manifest differ from the certificate's: %s", countsDiff(sum.Counts, p.Counts))
		}
	} else {
		r.add(CheckCounts, Skip, "not recomputed: some manifest lines did not parse")
	}
	if p.Retention != nil {
		switch {
		case nProblems > 0:
			r.add(CheckRetention, Skip, "not recomputed: some manifest lines did not parse")
		case retentionEqual(&retained, p.Retention):
			r.add(CheckRetention, Pass, "the %s the sites refused to delete, recomputed from the manifest, match the certificate's list", plural(retained.Total, "replica", "replicas"))
		default:
			r.add(CheckRetention, Fail, "the manifest has %s that the sites refused to delete; the certificate lists %d of a total of %d, not the same", plural(retained.Total, "undeletable replica", "undeletable replicas"), len(p.Retention.Replicas), p.Retention.Total)
		}
	}
	return r, r.Err()
}

// verifyEnvelope runs the envelope and statement checks and fills the report's summary
// fields. It returns the statement, or nil if it did not decode.
func verifyEnvelope(r *Report, env *Envelope, trusted []ed25519.PublicKey) *Statement {
	if env.PayloadType == PayloadType {
		r.add(CheckPayloadType, Pass, "%s", PayloadType)
	} else {
		r.add(CheckPayloadType, Fail, "payloadType is %q, not %q", truncate(env.PayloadType, 80), PayloadType)
		return nil
	}
	payload, st, err := env.Statement()
	if err != nil {
		r.add(CheckStatement, Fail, "%v", err)
		return nil
	}
	declared, parties, err := st.Predicate.declaredKeys()
	if err != nil {
		r.add(CheckStatement, Fail, "%v", err)
		return nil
	}
	r.add(CheckStatement, Pass, "in-toto Statement v1, predicate %s, migration %s", PredicateType, st.Predicate.Migration)
	p := &st.Predicate
	r.Statement = &st
	r.Migration = p.Migration
	r.Complete = p.Complete
	r.IncompleteReasons = append([]string{}, p.IncompleteReasons...)
	r.ManifestSHA256 = st.ManifestDigest()
	r.TreeSize = p.Merkle.TreeSize
	r.Root = p.Merkle.Root

	trustedByID := map[string]ed25519.PublicKey{}
	for _, k := range trusted {
		if id := KeyID(k); id != "" {
			trustedByID[id] = k
		}
	}
	pae := PAE(env.PayloadType, payload)
	seen := map[string]bool{}
	var bad []string
	for _, s := range env.Signatures {
		res := SignatureResult{KeyID: s.KeyID, Role: "undeclared"}
		if party, ok := parties[s.KeyID]; ok {
			res.Name = party.Name
			res.Role = "approver"
			if s.KeyID == p.Signer.KeyID {
				res.Role = "operator"
			}
		}
		var key ed25519.PublicKey
		if k, ok := trustedByID[s.KeyID]; ok {
			key, res.KeySource = k, "trusted"
		} else if k, ok := declared[s.KeyID]; ok {
			key, res.KeySource = k, "certificate"
		}
		sig, derr := base64.StdEncoding.Strict().DecodeString(s.Sig)
		switch {
		case seen[s.KeyID]:
			res.Message = "a second signature by the same key"
		case derr != nil || len(sig) != ed25519.SignatureSize:
			res.Message = "the signature is not a base64 Ed25519 signature"
		case key == nil:
			res.Message = "no public key known for this keyid: pass it as a trusted key (--pubkey) to check it"
		case !ed25519.Verify(key, pae, sig):
			res.Message = "the signature does not verify"
		default:
			res.Valid = true
			res.Trusted = res.KeySource == "trusted"
			res.Message = "valid"
		}
		seen[s.KeyID] = true
		if !res.Valid {
			bad = append(bad, fmt.Sprintf("keyid %s: %s", s.KeyID, res.Message))
		}
		r.Signatures = append(r.Signatures, res)
	}
	switch {
	case len(env.Signatures) == 0:
		r.add(CheckSignatures, Fail, "the certificate has no signatures")
	case len(bad) > 0:
		r.add(CheckSignatures, Fail, "%s", strings.Join(bad, "; "))
	default:
		r.add(CheckSignatures, Pass, "%s verify (Ed25519 over the DSSE PAE)", plural(int64(len(env.Signatures)), "signature", "signatures"))
	}

	signerOK := false
	for _, res := range r.Signatures {
		if res.KeyID == p.Signer.KeyID && res.Valid {
			signerOK = true
		}
	}
	if signerOK {
		r.add(CheckSigner, Pass, "signed by %s (keyid %s), the signer the certificate names", p.Signer.Name, p.Signer.KeyID)
	} else {
		r.add(CheckSigner, Fail, "no valid signature by the signer the certificate names, %s (keyid %s)", p.Signer.Name, p.Signer.KeyID)
	}

	if len(trustedByID) == 0 {
		r.add(CheckTrust, Warn, "no trusted public key given: signatures were checked against the keys the certificate itself names, which proves integrity but not who signed; pass the signer's public key (--pubkey ferry.pub) to pin it")
	} else {
		var ids []string
		for _, res := range r.Signatures {
			if res.Trusted {
				ids = append(ids, res.KeyID)
			}
		}
		if len(ids) > 0 {
			r.add(CheckTrust, Pass, "signed by trusted keyid %s", strings.Join(ids, ", "))
		} else {
			var given []string
			for id := range trustedByID {
				given = append(given, id)
			}
			sort.Strings(given)
			r.add(CheckTrust, Fail, "no valid signature by a trusted key (trusted keyids: %s)", strings.Join(given, ", "))
		}
	}

	var pending []string
	for _, a := range p.Approvers {
		signed := false
		for _, res := range r.Signatures {
			if res.KeyID == a.KeyID && res.Valid {
				signed = true
			}
		}
		if !signed {
			pending = append(pending, fmt.Sprintf("%s (keyid %s)", a.Name, a.KeyID))
		}
	}
	r.Approvers, r.ApprovalsPending = len(p.Approvers), append([]string{}, pending...)
	switch {
	case len(p.Approvers) == 0:
	case len(pending) == 0:
		r.add(CheckApprovals, Pass, "every declared approver has signed")
	default:
		r.add(CheckApprovals, Warn, "%d of %d approvals pending: %s", len(pending), len(p.Approvers), strings.Join(pending, ", "))
	}

	if reasons := Assess(p); p.Complete && len(reasons) > 0 {
		r.add(CheckComplete, Fail, "the certificate claims the migration is complete, but its own figures say: %s", strings.Join(reasons, " "))
	} else if p.Complete {
		r.add(CheckComplete, Pass, "COMPLETE, consistent with the counts and stages")
	} else {
		r.add(CheckComplete, Pass, "the certificate states the migration is INCOMPLETE (%s)", plural(int64(len(p.IncompleteReasons)), "reason", "reasons"))
	}
	return &st
}

func normCounts(c Counts) Counts {
	if c.ByStatus == nil {
		c.ByStatus = map[string]Tally{}
	}
	if c.BySite == nil {
		c.BySite = map[string]SiteTally{}
	}
	for k, s := range c.BySite {
		if s.ByState == nil {
			s.ByState = map[string]Tally{}
			c.BySite[k] = s
		}
	}
	return c
}

func countsEqual(a, b Counts) bool {
	return reflect.DeepEqual(normCounts(a), normCounts(b))
}

func countsDiff(got, want Counts) string {
	got, want = normCounts(got), normCounts(want)
	var d []string
	if got.Records != want.Records || got.Bytes != want.Bytes {
		d = append(d, fmt.Sprintf("records/bytes %d/%d vs %d/%d", got.Records, got.Bytes, want.Records, want.Bytes))
	}
	if !reflect.DeepEqual(got.ByStatus, want.ByStatus) {
		d = append(d, "by status differs")
	}
	for site := range mergeKeys(got.BySite, want.BySite) {
		if !reflect.DeepEqual(got.BySite[site], want.BySite[site]) {
			d = append(d, "site "+site+" differs")
		}
	}
	sort.Strings(d)
	return strings.Join(d, "; ")
}

func mergeKeys[V any](a, b map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// retentionEqual compares a retention list recomputed from the manifest with the
// certificate's. The version is not in the manifest, so it is not compared.
func retentionEqual(got, want *Retention) bool {
	if got.Total != want.Total || len(got.Replicas) != len(want.Replicas) {
		return false
	}
	for i, g := range got.Replicas {
		w := want.Replicas[i]
		w.Version = ""
		if g != w {
			return false
		}
	}
	return true
}
