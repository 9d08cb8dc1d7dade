package certificate

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ProofVersion is the version of the inclusion proof format.
const ProofVersion = 1

// ErrUserNotFound is returned by ProveUser when no record belongs to the user.
var ErrUserNotFound = errors.New("no record of this user in the manifest")

// Proof shows that one manifest line is in the tree a certificate signs, without the
// rest of the manifest: the line itself, its index, and the RFC 6962 audit path.
type Proof struct {
	Version        int      `json:"version"`         // ProofVersion
	Migration      string   `json:"migration"`       // the certificate's migration id
	ManifestSHA256 string   `json:"manifest_sha256"` // the certificate's subject digest
	TreeSize       uint64   `json:"tree_size"`
	Root           string   `json:"root"` // lowercase hex
	LeafIndex      uint64   `json:"leaf_index"`
	Leaf           string   `json:"leaf"`       // the manifest line, without its newline
	AuditPath      []string `json:"audit_path"` // lowercase hex, from the leaf's sibling up
}

// ProveUser streams the manifest and returns one inclusion proof per record whose user
// is user, in manifest order. It holds 32 bytes per record (the leaf hashes) while it
// runs. With env not nil, the manifest must be the one the certificate commits to
// (digest and root) and the proofs carry its migration id; the envelope's signatures are
// not checked here (VerifyProof does that). It returns an error wrapping
// ErrUserNotFound when the user has no record, and refuses a manifest with bad lines.
// A user id that is not UTF-8 is matched by its escaped rendering (EscapeKey), which is
// how the manifest writes it.
func ProveUser(manifest io.Reader, user string, env *Envelope) ([]Proof, error) {
	if user == "" {
		return nil, errors.New("prove: empty user id")
	}
	var st *Statement
	if env != nil {
		_, s, err := env.Statement()
		if err != nil {
			return nil, fmt.Errorf("prove: certificate: %w", err)
		}
		st = &s
	}
	var leaves [][32]byte
	var indexes []uint64
	var lines []string
	sum, problems, _, err := ReadManifest(manifest, 1, func(i uint64, raw []byte, l *ManifestLine) error {
		leaves = append(leaves, LeafHash(raw))
		if l != nil && (l.User == user || l.User == EscapeKey(user)) {
			indexes = append(indexes, i)
			lines = append(lines, string(raw))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prove: %w", err)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("prove: the manifest is not valid: %w", problems[0])
	}
	if st != nil {
		if sum.SHA256 != st.ManifestDigest() || sum.Root != st.Predicate.Merkle.Root || sum.TreeSize != st.Predicate.Merkle.TreeSize {
			return nil, fmt.Errorf("prove: %w: this manifest (sha256 %s, root %s, %d lines) is not the one the certificate commits to (sha256 %s, root %s, %d lines)",
				ErrVerification, sum.SHA256, sum.Root, sum.TreeSize, st.ManifestDigest(), st.Predicate.Merkle.Root, st.Predicate.Merkle.TreeSize)
		}
	}
	if len(indexes) == 0 {
		return nil, fmt.Errorf("prove: %w: %q", ErrUserNotFound, truncate(user, 200))
	}
	paths, err := InclusionProofs(leaves, indexes)
	if err != nil {
		return nil, err
	}
	proofs := make([]Proof, len(indexes))
	for i, idx := range indexes {
		p := Proof{
			Version:        ProofVersion,
			ManifestSHA256: sum.SHA256,
			TreeSize:       sum.TreeSize,
			Root:           sum.Root,
			LeafIndex:      idx,
			Leaf:           lines[i],
			AuditPath:      make([]string, len(paths[i])),
		}
		if st != nil {
			p.Migration = st.Predicate.Migration
		}
		for j, h := range paths[i] {
			p.AuditPath[j] = hex.EncodeToString(h[:])
		}
		proofs[i] = p
	}
	return proofs, nil
}

// MarshalProofs encodes proofs as an indented JSON array with a final newline (the file
// `ferry report prove --out` writes).
func MarshalProofs(proofs []Proof) ([]byte, error) {
	if proofs == nil {
		proofs = []Proof{}
	}
	b, err := json.MarshalIndent(proofs, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseProof decodes one proof strictly: exactly the Proof fields, no duplicate names,
// version 1, hex hashes, a leaf that is a canonical manifest line, an index below the
// tree size, an audit path no longer than 64.
func ParseProof(b []byte) (Proof, error) {
	if _, err := CanonicalizeJSON(b); err != nil {
		return Proof{}, fmt.Errorf("proof: %w", err)
	}
	var p Proof
	if err := decodeStrict(b, &p); err != nil {
		return Proof{}, fmt.Errorf("proof: %w", err)
	}
	if err := p.validate(); err != nil {
		return Proof{}, err
	}
	return p, nil
}

// ParseProofs decodes a proof file: a JSON array of proofs, or a single proof object.
func ParseProofs(b []byte) ([]Proof, error) {
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 || t[0] != '[' {
		p, err := ParseProof(b)
		if err != nil {
			return nil, err
		}
		return []Proof{p}, nil
	}
	var raws []json.RawMessage
	if _, err := CanonicalizeJSON(b); err != nil {
		return nil, fmt.Errorf("proof file: %w", err)
	}
	if err := json.Unmarshal(b, &raws); err != nil {
		return nil, fmt.Errorf("proof file: %w", err)
	}
	if len(raws) == 0 {
		return nil, errors.New("proof file: no proofs")
	}
	out := make([]Proof, 0, len(raws))
	for i, r := range raws {
		p, err := ParseProof(r)
		if err != nil {
			return nil, fmt.Errorf("proof %d: %w", i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func (p *Proof) validate() error {
	if p.Version != ProofVersion {
		return fmt.Errorf("proof: version %d is not %d", p.Version, ProofVersion)
	}
	if !isLowerHex(p.Root, 64) {
		return errors.New("proof: root is not 64 lowercase hex digits")
	}
	if !isLowerHex(p.ManifestSHA256, 64) {
		return errors.New("proof: manifest_sha256 is not 64 lowercase hex digits")
	}
	if p.LeafIndex >= p.TreeSize {
		return fmt.Errorf("proof: leaf_index %d is not below tree_size %d", p.LeafIndex, p.TreeSize)
	}
	if p.AuditPath == nil {
		return errors.New("proof: audit_path is missing")
	}
	if len(p.AuditPath) > 64 {
		return errors.New("proof: audit_path is longer than 64")
	}
	for i, h := range p.AuditPath {
		if !isLowerHex(h, 64) {
			return fmt.Errorf("proof: audit_path[%d] is not 64 lowercase hex digits", i)
		}
	}
	if _, err := ParseLine([]byte(p.Leaf)); err != nil {
		return fmt.Errorf("proof: leaf: %w", err)
	}
	return nil
}

// VerifyProof checks a proof against a certificate, without the manifest: the
// certificate's envelope and signatures (as VerifyCertificate does without a manifest),
// that the proof names the certificate's migration, manifest digest, tree size and root,
// that the leaf is a valid canonical manifest line, and that the audit path leads from
// the leaf to the signed root. The Report (with Record set to the proven line when it
// parses) is always returned; err is nil when everything verified, else a
// *VerificationError (errors.Is ErrVerification).
func VerifyProof(p Proof, env *Envelope, trusted []ed25519.PublicKey) (*Report, error) {
	r := &Report{IncompleteReasons: []string{}, Signatures: []SignatureResult{}}
	if env == nil {
		r.add(CheckStatement, Fail, "no certificate")
		return r, r.Err()
	}
	st := verifyEnvelope(r, env, trusted)
	if st == nil {
		r.add(CheckProof, Skip, "the certificate did not decode")
		return r, r.Err()
	}
	if err := p.validate(); err != nil {
		r.add(CheckProof, Fail, "%v", err)
		return r, r.Err()
	}
	line, _ := ParseLine([]byte(p.Leaf))
	r.Record = &line
	pred := &st.Predicate
	var mism []string
	if p.Migration != pred.Migration {
		mism = append(mism, fmt.Sprintf("migration %q vs %q", truncate(p.Migration, 80), pred.Migration))
	}
	if p.ManifestSHA256 != st.ManifestDigest() {
		mism = append(mism, fmt.Sprintf("manifest sha256 %s vs %s", p.ManifestSHA256, st.ManifestDigest()))
	}
	if p.TreeSize != pred.Merkle.TreeSize {
		mism = append(mism, fmt.Sprintf("tree size %d vs %d", p.TreeSize, pred.Merkle.TreeSize))
	}
	if p.Root != pred.Merkle.Root {
		mism = append(mism, fmt.Sprintf("root %s vs %s", p.Root, pred.Merkle.Root))
	}
	if len(mism) > 0 {
		r.add(CheckProof, Fail, "the proof is for another certificate (proof vs certificate: %s)", strings.Join(mism, "; "))
	} else {
		r.add(CheckProof, Pass, "the proof names this certificate's migration, manifest, tree size and root")
	}
	root, _ := parseHash32(pred.Merkle.Root)
	path := make([][32]byte, len(p.AuditPath))
	for i, h := range p.AuditPath {
		path[i], _ = parseHash32(h)
	}
	if err := VerifyInclusion(LeafHash([]byte(p.Leaf)), p.LeafIndex, pred.Merkle.TreeSize, path, root); err != nil {
		r.add(CheckInclusion, Fail, "record %q (leaf %d): %v", truncate(line.Key, 200), p.LeafIndex, err)
	} else {
		r.add(CheckInclusion, Pass, "record %q of user %q is leaf %d of the %d-leaf tree whose root the certificate signs", truncate(line.Key, 200), truncate(line.User, 200), p.LeafIndex, pred.Merkle.TreeSize)
	}
	return r, r.Err()
}
