package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
)

// DigestVersion names the canonical form Digest hashes. It changes only if that form
// does; digests of different versions are never compared.
const DigestVersion = "ferry-spec-digest/v1"

// Digest is the hex SHA-256 of a canonical form of the parsed, defaulted spec. It is
// the "spec" part of the plan digest and goes into the certificate.
//
// It covers what the migration is: what is read, what counts as a record and whose,
// where copies go, how they are verified, and what is deleted how:
//
//   - migration;
//   - every source, in spec order: name, role, URL (a normal form of what was
//     written, so file://./data/x stays relative and the digest does not depend on
//     where the spec is checked out), endpoint, region, quarantine;
//   - the target: URL, endpoint, region, residency (as a set), kms_key_id (or kms_key_name),
//     encryption_scope;
//   - records: the user regex as written, include and exclude (as sets), conflicts;
//   - verify.reread;
//   - delete: mode, grace, max_delete, and every stage in order with its name, sites
//     (as a set), sample, effective mode and effective max_delete.
//
// It leaves out what only tunes or operates a run and may differ between operators
// or machines without changing the outcome: state, credentials (names of profiles
// and variables), path_style, checksum_when_required, part sizes, copy.concurrency,
// copy.retries, verify.concurrency, limits and report (signing key path, signer).
//
// Defaults are applied first, so leaving a key out and writing its default give the
// same digest; whitespace, comments, key order, quoting and YAML style never matter.
func (s *Spec) Digest() string {
	type store struct {
		Name       string   `json:"name,omitempty"`
		Role       string   `json:"role,omitempty"`
		URL        string   `json:"url"`
		Endpoint   string   `json:"endpoint"`
		Region     string   `json:"region"`
		Quarantine string   `json:"quarantine,omitempty"`
		Residency  []string `json:"residency,omitempty"`
		KMSKeyID   string   `json:"kms_key_id,omitempty"`
		Scope      string   `json:"encryption_scope,omitempty"`
	}
	type stage struct {
		Name      string   `json:"name"`
		Sites     []string `json:"sites"`
		Sample    string   `json:"sample"`
		Mode      string   `json:"mode"`
		MaxDelete string   `json:"max_delete"`
	}
	type canon struct {
		Version   string  `json:"version"`
		Migration string  `json:"migration"`
		Sources   []store `json:"sources"`
		Target    store   `json:"target"`
		Records   struct {
			User      string   `json:"user"`
			Include   []string `json:"include"`
			Exclude   []string `json:"exclude"`
			Conflicts string   `json:"conflicts"`
		} `json:"records"`
		Verify struct {
			Reread bool `json:"reread"`
		} `json:"verify"`
		Delete struct {
			Mode      string  `json:"mode"`
			Grace     string  `json:"grace_ns"`
			MaxDelete string  `json:"max_delete"`
			Stages    []stage `json:"stages"`
		} `json:"delete"`
	}
	set := func(in []string) []string {
		out := slices.Clone(in)
		slices.Sort(out)
		out = slices.Compact(out)
		if out == nil {
			out = []string{}
		}
		return out
	}
	c := canon{Version: DigestVersion, Migration: s.Migration, Sources: []store{}}
	for _, site := range s.Sources {
		c.Sources = append(c.Sources, store{
			Name: site.Name, Role: string(site.Role), URL: canonicalURL(site.loc, site.RawURL),
			Endpoint: site.loc.endpoint, Region: site.Region, Quarantine: site.Quarantine,
		})
	}
	c.Target = store{
		URL: canonicalURL(s.Target.loc, s.Target.RawURL), Endpoint: s.Target.loc.endpoint,
		Region: s.Target.Region, Residency: set(s.Target.Residency), KMSKeyID: s.Target.KMSKeyID, Scope: s.Target.EncryptionScope,
	}
	c.Records.User = s.Records.UserPattern
	c.Records.Include = set(s.Records.Include)
	c.Records.Exclude = set(s.Records.Exclude)
	c.Records.Conflicts = string(s.Records.Conflicts)
	c.Verify.Reread = s.Verify.Reread
	c.Delete.Mode = string(s.Delete.Mode)
	c.Delete.Grace = strconv.FormatInt(int64(s.Delete.Grace), 10)
	c.Delete.MaxDelete = s.Delete.MaxDelete.String()
	c.Delete.Stages = []stage{}
	for _, st := range s.Delete.Stages {
		c.Delete.Stages = append(c.Delete.Stages, stage{
			Name: st.Name, Sites: set(st.Sites), Sample: st.Sample.String(),
			Mode: string(st.Mode), MaxDelete: st.MaxDelete.String(),
		})
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic("spec: digest: " + err.Error()) // plain strings and slices: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func canonicalURL(loc location, raw string) string {
	if loc.canonical != "" {
		return loc.canonical
	}
	return raw
}
