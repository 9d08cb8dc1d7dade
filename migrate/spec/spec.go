// Package spec parses and checks ferry.yaml, the migration spec (DESIGN.md, "The spec
// (ferry.yaml)").
//
// The parser is strict: unknown keys, wrong types, missing required keys, bad URLs,
// overlapping stores, stages naming unknown sites, out-of-range values and inline
// secrets are all errors, each reported with the file, line, column and key path
// (see Error). Parse reports every problem it can find, not only the first.
//
// After a successful Parse every default is filled in, every relative path is
// resolved against the spec's folder, and the values are ready to use: sizes are
// bytes, durations are time.Duration, the user regex is compiled.
//
// # Decisions where DESIGN.md is silent
//
//   - file URLs: file:///abs/dir names an absolute directory (file://localhost/abs/dir
//     too); file://./rel/dir and file://../rel/dir name a directory relative to the
//     spec's folder. Nothing else (file:rel, file://host/dir) is accepted. The
//     filesystem root is refused as a store. Site.URL and Target.URL hold the
//     resolved absolute file:/// URL; RawURL keeps what was written.
//   - Sizes: a byte count (67108864) or a number with a unit: B, KiB/MiB/GiB/TiB
//     (binary), KB/MB/GB/TB (decimal), K/M/G/T (binary, like rclone). Units are
//     case-insensitive.
//   - Shares (sample, max_delete as a share): a percentage with up to four decimals,
//     "0.5%" to "100%". A bare number is a count for max_delete and an error for
//     sample, so "1" never silently means 100%.
//   - Durations (grace): Go durations ("72h", "90m") with an optional leading day
//     count ("3d", "1d12h"); 0 is allowed.
//   - Credentials hold only names, and only those that apply to the URL's scheme:
//     profile, access_key_env, secret_key_env, session_token_env for s3; oci_profile,
//     oci_config_file, auth (instance_principal, resource_principal, config_file)
//     for oci; nothing for file.
//   - Overlap: a target equal to, inside or around any source is an error, and so are
//     two sources that overlap each other (one store would count as two replicas).
//     Object-store prefixes are compared as written, so s3://b/users overlaps
//     s3://b/users2/ (end prefixes with "/"). Stores at different endpoints never
//     overlap; OCI buckets in different regions never overlap. Directories are
//     compared lexically (symlinks are not followed at parse time); the pipeline
//     then compares what the stores are, and looks for a marker object it writes to
//     the target at every site (migrate/identity.go, DESIGN.md I9).
//   - conflicts: prefer-primary needs at least one primary source.
//   - Each stage may override delete.mode and delete.max_delete.
package spec

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/ferrymigrate/ferry/providers"
)

// Defaults and limits.
const (
	DefaultStateFile   = "ferry.db"
	DefaultConcurrency = 16
	MaxConcurrency     = 1024
	DefaultPartSize    = 16 << 20 // 16 MiB: bounded buffers, many parts in flight
	MinPartSize        = 5 << 20  // 5 MiB: the S3 minimum for all parts but the last
	MaxPartSize        = 5 << 30  // 5 GiB: the S3 maximum part size
	DefaultRetries     = 5
	MaxRetries         = 100
	DefaultGrace       = 72 * time.Hour
	// MaxSpecSize is the largest spec file Load reads.
	MaxSpecSize = 4 << 20
)

// Role is a site's role.
type Role string

// Roles.
const (
	RolePrimary Role = "primary"
	RoleBackup  Role = "backup"
)

// Conflicts says what to do with a record whose replicas differ.
type Conflicts string

// Conflict policies.
const (
	ConflictFail          Conflicts = "fail"           // report, copy nothing, delete nothing
	ConflictPreferPrimary Conflicts = "prefer-primary" // copy the primary's replica
	ConflictKeepBoth      Conflicts = "keep-both"      // copy every distinct version
)

// Mode is how replicas are deleted.
type Mode string

// Delete modes.
const (
	ModeSoft Mode = "soft" // recoverable (versioned delete marker or quarantine) until --purge
	ModeHard Mode = "hard"
)

// Spec is a parsed, checked and defaulted ferry.yaml.
type Spec struct {
	Migration string  `json:"migration"`
	State     string  `json:"state,omitempty"` // as written; StatePath resolves it
	Sources   []Site  `json:"sources"`
	Target    Target  `json:"target"`
	Records   Records `json:"records"`
	Copy      Copy    `json:"copy"`
	Verify    Verify  `json:"verify"`
	Delete    Delete  `json:"delete"`
	Report    Report  `json:"report"`

	// Path is the absolute path of the spec file; Dir its folder. Relative paths in
	// the spec resolve against Dir.
	Path string `json:"-"`
	Dir  string `json:"-"`
}

// Site is one place holding replicas of user records (sources[i]).
type Site struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// URL is the store's URL, resolved: a relative file://./dir becomes file:///abs/dir.
	URL string `json:"url"`
	// RawURL is the URL as written in the spec.
	RawURL               string      `json:"-"`
	Endpoint             string      `json:"endpoint,omitempty"`
	Region               string      `json:"region,omitempty"`
	PathStyle            bool        `json:"path_style,omitempty"`
	ChecksumWhenRequired bool        `json:"checksum_when_required,omitempty"`
	Credentials          Credentials `json:"credentials,omitzero"`
	// Quarantine is where soft-deleted replicas go when the store has no versioning
	// (a directory or key prefix at the same site); empty: the provider's default.
	Quarantine string `json:"quarantine,omitempty"`
	// PartSize in bytes; copy.part_size unless the site sets part_size.
	PartSize int64 `json:"part_size"`
	// Limits cap requests and bytes per second taken from the site (limits.go).
	Limits Limits `json:"limits,omitzero"`
	// Inventory, when set, is what plan reads instead of listing the site
	// (inventory.go).
	Inventory *Inventory `json:"inventory,omitempty"`
	// Prices, when set, price the estimate plan prints (prices.go).
	Prices *Prices `json:"prices,omitempty"`
	// CryptoErase, when set, declares that the site's data was encrypted under a key
	// that is (to be) destroyed (cryptoerase.go). Not part of the spec digest.
	CryptoErase *CryptoErase `json:"crypto_erase,omitempty"`

	loc location
}

// Target is where records go.
type Target struct {
	URL                  string      `json:"url"` // resolved, like Site.URL
	RawURL               string      `json:"-"`
	Endpoint             string      `json:"endpoint,omitempty"`
	Region               string      `json:"region,omitempty"`
	PathStyle            bool        `json:"path_style,omitempty"`
	ChecksumWhenRequired bool        `json:"checksum_when_required,omitempty"`
	Credentials          Credentials `json:"credentials,omitzero"`
	// Residency lists the regions the target may be in; empty: no policy.
	Residency []string `json:"residency,omitempty"`
	KMSKeyID  string   `json:"kms_key_id,omitempty"` // kms_key_id (s3, oci) or kms_key_name (gs)
	// EncryptionScope is the Azure encryption scope of an azblob:// target.
	EncryptionScope string `json:"encryption_scope,omitempty"`
	PartSize        int64  `json:"part_size"` // bytes; copy.part_size unless set
	// Limits cap requests and bytes per second sent to the target (limits.go).
	Limits Limits `json:"limits,omitzero"`
	// Prices, when set, price the estimate plan prints (prices.go).
	Prices *Prices `json:"prices,omitempty"`

	loc location
}

// Credentials names how to authenticate. It never holds a secret: only names of
// profiles, environment variables and files, and an auth method.
type Credentials struct {
	Profile         string `json:"profile,omitempty"`           // s3: shared config profile
	AccessKeyEnv    string `json:"access_key_env,omitempty"`    // s3: env var holding the key id
	SecretKeyEnv    string `json:"secret_key_env,omitempty"`    // s3: env var holding the secret
	SessionTokenEnv string `json:"session_token_env,omitempty"` // s3: env var holding a session token
	OCIProfile      string `json:"oci_profile,omitempty"`       // oci: profile in the OCI config file
	OCIConfigFile   string `json:"oci_config_file,omitempty"`   // oci: config file path (resolved)
	Auth            string `json:"auth,omitempty"`              // oci: instance_principal | resource_principal | config_file; gs: none
	// GCPCredentialsFile is a service-account key file (gs), resolved like oci_config_file.
	GCPCredentialsFile string `json:"gcp_credentials_file,omitempty"`
	AccountKeyEnv      string `json:"account_key_env,omitempty"` // azblob: env var holding the account key
	SASTokenEnv        string `json:"sas_token_env,omitempty"`   // azblob: env var holding a SAS token
}

// IsZero reports whether no credentials were named (the store's default chain).
func (c Credentials) IsZero() bool { return c == Credentials{} }

// Map returns the non-empty names keyed as in the spec, the form providers.Config
// carries. It returns nil when nothing is set.
func (c Credentials) Map() map[string]string {
	m := map[string]string{}
	for _, kv := range [][2]string{
		{"profile", c.Profile},
		{"access_key_env", c.AccessKeyEnv},
		{"secret_key_env", c.SecretKeyEnv},
		{"session_token_env", c.SessionTokenEnv},
		{"oci_profile", c.OCIProfile},
		{"oci_config_file", c.OCIConfigFile},
		{"auth", c.Auth},
		{"gcp_credentials_file", c.GCPCredentialsFile},
		{"account_key_env", c.AccountKeyEnv},
		{"sas_token_env", c.SASTokenEnv},
	} {
		if kv[1] != "" {
			m[kv[0]] = kv[1]
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// Records says which keys are records and who owns them.
type Records struct {
	// User is the compiled records.user regex; its named group `user` is the owner.
	User *regexp.Regexp `json:"-"`
	// UserPattern is records.user as written.
	UserPattern string `json:"user"`
	// Include and Exclude are doublestar globs over relative keys. A key is a
	// record when it matches some include and no exclude. Default include: ["**"].
	Include   []string  `json:"include"`
	Exclude   []string  `json:"exclude"`
	Conflicts Conflicts `json:"conflicts"`
}

// Copy tunes the copy phase.
type Copy struct {
	Concurrency int   `json:"concurrency"` // default 16, 1..1024
	PartSize    int64 `json:"part_size"`   // bytes; default 16 MiB, 5 MiB..5 GiB
	Retries     int   `json:"retries"`     // default 5, 0..100
}

// Verify tunes the verify phase.
type Verify struct {
	Reread      bool `json:"reread"`      // read every target copy back and re-hash
	Concurrency int  `json:"concurrency"` // default copy.concurrency
}

// Delete is the deletion policy and its stages.
type Delete struct {
	Mode      Mode          `json:"mode"`       // default soft
	Grace     time.Duration `json:"grace"`      // default 72h
	MaxDelete MaxDelete     `json:"max_delete"` // default 100%
	// Stages run in this order. Empty: nothing is ever deleted.
	Stages []Stage `json:"stages"`
}

// Stage is one step of deletion.
type Stage struct {
	Name   string   `json:"name"`
	Sites  []string `json:"sites"`
	Sample Share    `json:"sample"` // default 100%
	// Mode is the stage's delete mode: its own mode key, else delete.mode.
	Mode Mode `json:"mode"`
	// MaxDelete is the stage's guard: its own max_delete key, else delete.max_delete.
	MaxDelete MaxDelete `json:"max_delete"`
}

// SampleFraction is the stage's sample as a fraction in (0, 1].
func (s *Stage) SampleFraction() float64 { return s.Sample.Fraction() }

// InSample reports whether the record with this relative key is in the stage's
// sample (see InSample).
func (s *Stage) InSample(key string) bool { return InSample(key, s.SampleFraction()) }

// HasSite reports whether the stage deletes at the named site.
func (s *Stage) HasSite(name string) bool {
	for _, n := range s.Sites {
		if n == name {
			return true
		}
	}
	return false
}

// Report configures the certificate.
type Report struct {
	// SigningKey is the path of the PKCS#8 PEM private key, resolved against the
	// spec's folder ("~/" expands to the home directory). Empty: not set.
	SigningKey string `json:"signing_key,omitempty"`
	Signer     string `json:"signer,omitempty"`
	// Approvers countersign the certificate with `ferry report sign`; declaring them
	// here puts their names and keys into what the operator signs.
	Approvers []Approver `json:"approvers,omitempty"`
}

// Approver is a person or office expected to countersign the certificate.
type Approver struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"` // path of the PKIX PEM public key, resolved
}

// Load reads and parses the spec file at path.
func Load(path string) (*Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read the spec: " + describeOSError(err), Err: err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSpecSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read the spec: " + describeOSError(err), Err: err}
	}
	if len(data) > MaxSpecSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("larger than %d bytes: is this a spec?", MaxSpecSize)}
	}
	return Parse(data, path)
}

func describeOSError(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// Parse parses spec data read from path. path names the file in errors and fixes the
// folder relative paths resolve against; an empty path means "ferry.yaml" in the
// current directory.
func Parse(data []byte, path string) (*Spec, error) {
	file := path
	if file == "" {
		file = "ferry.yaml"
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, &Error{File: file, Msg: "cannot resolve the spec's path: " + err.Error(), Err: err}
	}
	p := newParser(file, filepath.Dir(abs))
	s := p.parse(data)
	if err := result(p.errs); err != nil {
		return nil, err
	}
	s.Path = abs
	s.Dir = filepath.Dir(abs)
	return s, nil
}

// Site returns the source site with this name.
func (s *Spec) Site(name string) (*Site, bool) {
	for i := range s.Sources {
		if s.Sources[i].Name == name {
			return &s.Sources[i], true
		}
	}
	return nil, false
}

// Stage returns the deletion stage with this name.
func (s *Spec) Stage(name string) (*Stage, bool) {
	for i := range s.Delete.Stages {
		if s.Delete.Stages[i].Name == name {
			return &s.Delete.Stages[i], true
		}
	}
	return nil, false
}

// Match reports whether a relative key is a record: it matches at least one
// records.include glob and no records.exclude glob. Globs are doublestar patterns
// over the whole key with "/" as separator: "*" stays within one segment, "**"
// spans any number of them ("**/*.tmp" excludes .tmp files at any depth).
func (s *Spec) Match(key string) bool {
	in := false
	for _, g := range s.Records.Include {
		if doublestar.MatchUnvalidated(g, key) {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, g := range s.Records.Exclude {
		if doublestar.MatchUnvalidated(g, key) {
			return false
		}
	}
	return true
}

// User returns the owner of a relative key: the text of the records.user regex's
// `user` group at the leftmost match. It returns false when the regex does not
// match the key, or the group did not take part in the match or matched nothing.
func (s *Spec) User(key string) (string, bool) {
	re := s.Records.User
	if re == nil {
		return "", false
	}
	idx := re.SubexpIndex("user")
	if idx < 0 {
		return "", false
	}
	m := re.FindStringSubmatchIndex(key)
	if m == nil || m[2*idx] < 0 || m[2*idx+1] <= m[2*idx] {
		return "", false
	}
	return key[m[2*idx]:m[2*idx+1]], true
}

// StatePath returns the checkpoint store's DSN: a postgres:// or postgresql:// URL
// unchanged, else an absolute SQLite file path (state resolved against the spec's
// folder; default ferry.db beside the spec).
func (s *Spec) StatePath() string {
	st := strings.TrimSpace(s.State)
	if isPostgres(st) {
		return st
	}
	if st == "" {
		st = DefaultStateFile
	}
	return resolvePath(s.Dir, st)
}

func isPostgres(dsn string) bool {
	l := strings.ToLower(dsn)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

// resolvePath makes p absolute: "~/" expands to the home directory (when known),
// other relative paths join dir.
func resolvePath(dir, p string) string {
	if p == "" {
		return ""
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil && home != "" {
			return filepath.Join(home, strings.TrimPrefix(p[1:], "/"))
		}
		return p
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

// ProviderConfig is the providers.Config that opens this site.
func (s *Site) ProviderConfig(migration string) providers.Config {
	return providers.Config{
		Name:                 s.Name,
		URL:                  s.URL,
		Endpoint:             s.Endpoint,
		Region:               s.Region,
		PathStyle:            s.PathStyle,
		ChecksumWhenRequired: s.ChecksumWhenRequired,
		Credentials:          s.Credentials.Map(),
		PartSize:             s.PartSize,
		Quarantine:           s.Quarantine,
		Migration:            migration,
	}
}

// TargetName is the name a target carries in messages and provider configs.
const TargetName = "target"

// ProviderConfig is the providers.Config that opens the target.
func (t *Target) ProviderConfig(migration string) providers.Config {
	return providers.Config{
		Name:                 TargetName,
		URL:                  t.URL,
		Endpoint:             t.Endpoint,
		Region:               t.Region,
		PathStyle:            t.PathStyle,
		ChecksumWhenRequired: t.ChecksumWhenRequired,
		Credentials:          t.Credentials.Map(),
		PartSize:             t.PartSize,
		KMSKeyID:             t.KMSKeyID,
		EncryptionScope:      t.EncryptionScope,
		Migration:            migration,
	}
}

// InResidency reports whether region satisfies the target's residency policy: true
// when there is no policy, else when region is one of the listed regions (compared
// case-insensitively).
func (t *Target) InResidency(region string) bool {
	if len(t.Residency) == 0 {
		return true
	}
	for _, r := range t.Residency {
		if strings.EqualFold(r, region) {
			return true
		}
	}
	return false
}
