package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"regexp/syntax"
	"sort"
	"strconv"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
	"gopkg.in/yaml.v3"
)

// parser walks the YAML node tree against the spec's schema, collecting every
// problem with its position.
type parser struct {
	file string
	dir  string
	errs []*Error
	// flagged marks nodes already reported as holding a secret: nothing else is
	// checked or said about them.
	flagged map[*yaml.Node]bool
	// positions maps document positions to key paths, for line-based findings.
	positions []position
	// stageSites holds the nodes of each stage's sites, for cross-check positions.
	stageSites [][]*yaml.Node
	// priceNodes holds each store's prices node by its path, for the currency check.
	priceNodes map[string]*yaml.Node
}

type position struct {
	line, col int
	path      string
}

func newParser(file, dir string) *parser {
	return &parser{file: file, dir: dir, flagged: map[*yaml.Node]bool{}, priceNodes: map[string]*yaml.Node{}}
}

func (p *parser) add(n *yaml.Node, key, format string, args ...any) {
	if len(p.errs) >= maxErrors {
		return
	}
	e := &Error{File: p.file, Key: key, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)

// parse runs every check and returns the spec (meaningful only without errors).
func (p *parser) parse(data []byte) *Spec {
	s := &Spec{}
	root, err := decodeOne(data)
	if err != nil {
		// Still look for secrets, so a broken spec holding one says so.
		p.scanLines(data, func(int, int) string { return "" })
		text := redactQuoted(err.Error())
		e := &Error{File: p.file, Msg: "not valid YAML: " + strings.TrimPrefix(text, "yaml: ")}
		if m := yamlLineRE.FindStringSubmatch(text); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = "not valid YAML: " + m[2]
		}
		p.errs = append(p.errs, e)
		return s
	}
	if root == nil {
		p.errs = append(p.errs, &Error{File: p.file, Msg: "the spec is empty (run ferry init for an annotated one)"})
		return s
	}
	p.index(root, "")
	sort.SliceStable(p.positions, func(i, j int) bool {
		a, b := p.positions[i], p.positions[j]
		if a.line != b.line {
			return a.line < b.line
		}
		return a.col < b.col
	})
	p.scanLines(data, p.pathAt)
	p.flag(root)

	p.spec(root, s)
	return s
}

var quotedRE = regexp.MustCompile("'[^']*'|\"[^\"]*\"|`[^`]*`")

// redactQuoted drops quoted document text (anchor names, tags, values) from a YAML
// library error: it could be a secret.
func redactQuoted(msg string) string {
	return quotedRE.ReplaceAllString(msg, "(...)")
}

// decodeOne decodes exactly one YAML document; nil when the input has none.
func decodeOne(data []byte) (root *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, fmt.Errorf("yaml: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		line := more.Line
		if len(more.Content) > 0 {
			line = more.Content[0].Line
		}
		return nil, fmt.Errorf("yaml: line %d: a spec is one YAML document; found a second one (---)", line)
	} else if !errors.Is(err, io.EOF) {
		return nil, err
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	if doc.Kind == 0 {
		return nil, nil
	}
	return &doc, nil
}

// index records the key path at every node's position (not following aliases).
func (p *parser) index(n *yaml.Node, path string) {
	if n == nil {
		return
	}
	p.positions = append(p.positions, position{n.Line, n.Column, path})
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			kp := joinKey(path, displayKey(k.Value))
			p.positions = append(p.positions, position{k.Line, k.Column, kp})
			p.index(v, kp)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p.index(c, fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

// pathAt is the key path of the last node starting at or before (line, col).
func (p *parser) pathAt(line, col int) string {
	i := sort.Search(len(p.positions), func(i int) bool {
		q := p.positions[i]
		return q.line > line || q.line == line && q.col > col
	})
	if i == 0 {
		return ""
	}
	return p.positions[i-1].path
}

// flag marks every node whose key or value holds a secret (already reported by
// scanLines), not following aliases.
func (p *parser) flag(n *yaml.Node) {
	if n == nil {
		return
	}
	if n.Kind == yaml.ScalarNode {
		if _, _, ok := secretIn(n.Value); ok {
			p.flagged[n] = true
		}
		return
	}
	for _, c := range n.Content {
		p.flag(c)
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if p.flagged[n.Content[i]] {
				p.flagged[n.Content[i+1]] = true // the value of a secret-named key
			}
		}
	}
}

// ---- generic node helpers ----

func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!bool":
			return "true/false"
		case "!!int", "!!float":
			return "a number"
		case "!!null":
			return "empty"
		case "!!str":
			return "a string"
		}
		return "a value with a custom tag (!...)"
	}
	return "something else"
}

func joinKey(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func idx(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

var plainKeyRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// displayKey is a key name safe to print: unusual or secret-looking names are
// replaced by a placeholder.
func displayKey(k string) string {
	if !plainKeyRE.MatchString(k) || looksLikeKeyMaterial(k) {
		return "<key>"
	}
	if _, _, ok := secretIn(k); ok {
		return "<key>"
	}
	return k
}

type entry struct{ key, val *yaml.Node }

// fields checks that n is a mapping whose keys are all in allowed, each at most
// once, and returns the entries (values with aliases resolved). A null n is an
// empty mapping.
func (p *parser) fields(n *yaml.Node, path string, allowed ...string) (map[string]entry, bool) {
	n = resolveAlias(n)
	if isNull(n) {
		return map[string]entry{}, true
	}
	if p.flagged[n] {
		return nil, false
	}
	if n.Kind != yaml.MappingNode {
		p.add(n, path, "must be a mapping (key: value), not %s", kindName(n))
		return nil, false
	}
	out := map[string]entry{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if p.flagged[k] {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			p.add(k, path, "keys must be plain names, not %s", kindName(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			p.add(k, path, "merge keys (<<) are not supported: write the keys out (aliases *name are fine)")
			continue
		}
		name := k.Value
		if !contains(allowed, name) {
			p.unknownKey(k, path, name, allowed)
			continue
		}
		if prev, dup := out[name]; dup {
			p.add(k, joinKey(path, name), "duplicate key (first at line %d)", prev.key.Line)
			continue
		}
		out[name] = entry{k, resolveAlias(v)}
	}
	return out, true
}

func (p *parser) unknownKey(k *yaml.Node, path, name string, allowed []string) {
	shown := displayKey(name)
	kp := joinKey(path, shown)
	if secretishKeyName(name) {
		p.add(k, kp, "unknown key, and it looks like an inline secret: secrets never live in the spec (name a profile or an environment variable under credentials)")
		return
	}
	msg := "unknown key"
	if s := suggest(name, allowed); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	msg += "; allowed here: " + strings.Join(allowed, ", ")
	p.add(k, kp, "%s", msg)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns the allowed key closest to name, if close enough to be a typo.
func suggest(name string, allowed []string) string {
	best, bestD := "", 3
	l := strings.ToLower(strings.ReplaceAll(name, "-", "_"))
	for _, a := range allowed {
		if l == a {
			return a
		}
		if d := editDistance(l, a); d < bestD {
			best, bestD = a, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// present reports whether the key is set to a non-null value.
func present(m map[string]entry, k string) bool {
	e, ok := m[k]
	return ok && !isNull(e.val)
}

// required reports a missing or null key.
func (p *parser) required(m map[string]entry, parent *yaml.Node, path, k string) bool {
	if present(m, k) {
		return true
	}
	if e, ok := m[k]; ok {
		p.add(e.key, joinKey(path, k), "must not be empty")
		return false
	}
	p.add(parent, joinKey(path, k), "missing required key")
	return false
}

// str reads a scalar as a string. Numbers and dates are taken as written; booleans,
// lists and mappings are type errors.
func (p *parser) str(n *yaml.Node, key string) (string, bool) {
	if isNull(n) || p.flagged[n] {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		p.add(n, key, "must be a string, not %s", kindName(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!timestamp":
		return n.Value, true
	}
	p.add(n, key, "must be a string, not %s (quote it if you mean the text)", kindName(n))
	return "", false
}

// nonEmpty reads a string that must not be empty or blank.
func (p *parser) nonEmpty(n *yaml.Node, key string) (string, bool) {
	v, ok := p.str(n, key)
	if !ok {
		return "", false
	}
	if strings.TrimSpace(v) == "" {
		p.add(n, key, "must not be empty")
		return "", false
	}
	return strings.TrimSpace(v), true
}

func (p *parser) boolean(n *yaml.Node, key string) (bool, bool) {
	if isNull(n) || p.flagged[n] {
		return false, false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		p.add(n, key, "must be true or false, not %s", kindName(n))
		return false, false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		p.add(n, key, "must be true or false")
		return false, false
	}
	return b, true
}

func (p *parser) integer(n *yaml.Node, key string, lo, hi int64) (int64, bool) {
	if isNull(n) || p.flagged[n] {
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		p.add(n, key, "must be a whole number, not %s", kindName(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		p.add(n, key, "must be a whole number from %d to %d", lo, hi)
		return 0, false
	}
	if v < lo || v > hi {
		p.add(n, key, "must be from %d to %d", lo, hi)
		return 0, false
	}
	return v, true
}

// list reads a sequence; each item is passed to fn with its path.
func (p *parser) list(n *yaml.Node, key string, fn func(i int, item *yaml.Node, path string)) bool {
	if isNull(n) || p.flagged[n] {
		return false
	}
	if n.Kind != yaml.SequenceNode {
		p.add(n, key, "must be a list, not %s", kindName(n))
		return false
	}
	for i, c := range n.Content {
		fn(i, resolveAlias(c), idx(key, i))
	}
	return true
}

// strList reads a list of non-empty strings.
func (p *parser) strList(n *yaml.Node, key string) ([]string, []*yaml.Node, bool) {
	var out []string
	var nodes []*yaml.Node
	bad := false
	ok := p.list(n, key, func(_ int, item *yaml.Node, path string) {
		if isNull(item) {
			p.add(item, path, "must not be empty")
			bad = true
			return
		}
		v, ok := p.nonEmpty(item, path)
		if !ok {
			bad = true
			return
		}
		out = append(out, v)
		nodes = append(nodes, item)
	})
	return out, nodes, ok && !bad
}

// ---- the schema ----

var (
	nameRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	migrationRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	regionRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	envRE       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	// kmsKeyNameRE: a Cloud KMS key resource name.
	kmsKeyNameRE = regexp.MustCompile(`^projects/[^/\s]+/locations/[^/\s]+/keyRings/[^/\s]+/cryptoKeys/[^/\s]+$`)
	profileRE    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._@+-]{0,127}$`)
)

// ValidateMigrationID checks a migration id: 1-128 letters, digits, '.', '_' or '-',
// starting with a letter or digit (it names quarantines and files).
func ValidateMigrationID(id string) error {
	if !migrationRE.MatchString(id) {
		return errors.New("a migration id is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	return nil
}

var topKeys = []string{"migration", "state", "sources", "target", "records", "copy", "verify", "delete", "report"}

func (p *parser) spec(root *yaml.Node, s *Spec) {
	root = resolveAlias(root)
	if root.Kind != yaml.MappingNode {
		p.add(root, "", "the spec must be a mapping of keys (migration, sources, target, ...), not %s", kindName(root))
		return
	}
	m, _ := p.fields(root, "", topKeys...)

	if p.required(m, root, "", "migration") {
		if v, ok := p.nonEmpty(m["migration"].val, "migration"); ok {
			if ValidateMigrationID(v) != nil {
				p.add(m["migration"].val, "migration", "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit (it names quarantines and appears in the certificate)")
			} else {
				s.Migration = v
			}
		}
	}
	if e, ok := m["state"]; ok {
		s.State = p.state(e.val)
	}

	// copy first: its part size is the sites' default.
	p.copySection(m["copy"].val, &s.Copy)
	p.verifySection(m["verify"].val, &s.Verify, s.Copy.Concurrency)

	if p.required(m, root, "", "sources") {
		p.sources(m["sources"].val, s)
	}
	if p.required(m, root, "", "target") {
		p.target(m["target"].val, s)
	}
	if p.required(m, root, "", "records") {
		p.records(m["records"].val, s)
	}
	p.deleteSection(m["delete"].val, s)
	p.report(m["report"].val, &s.Report)

	p.crossChecks(m, s)
	p.checkCurrencies(s, p.priceNodes)
}

var kvDSNRE = regexp.MustCompile(`^\s*[A-Za-z_]+\s*=`)

func (p *parser) state(n *yaml.Node) string {
	v, ok := p.str(n, "state")
	if !ok {
		return ""
	}
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return ""
	case isPostgres(v):
		if _, err := parseStateURL(v); err != nil {
			p.add(n, "state", "%s", err.Error())
			return ""
		}
	case strings.Contains(v, "://"):
		p.add(n, "state", "must be a file path (SQLite) or a postgres:// URL")
		return ""
	case kvDSNRE.MatchString(v):
		p.add(n, "state", "write a PostgreSQL state as a postgres://user@host/db URL (the password comes from PGPASSWORD or ~/.pgpass)")
		return ""
	case strings.ContainsAny(v, "\x00\n\r"):
		p.add(n, "state", "must not contain control characters")
		return ""
	}
	return v
}

func parseStateURL(v string) (string, error) {
	// The password forms are caught by the secret scan; this is the backstop.
	u, err := url.Parse(v)
	if err != nil {
		return "", errors.New("is not a valid postgres:// URL")
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return "", errors.New("inline secret refused: the state URL carries a password; use PGPASSWORD or ~/.pgpass")
		}
	}
	for k := range u.Query() {
		if strings.Contains(strings.ToLower(k), "password") {
			return "", errors.New("inline secret refused: the state URL carries a password; use PGPASSWORD or ~/.pgpass")
		}
	}
	if u.Host == "" && u.Query().Get("host") == "" {
		return "", errors.New("a postgres:// URL needs a host")
	}
	return v, nil
}

var siteKeys = []string{"name", "role", "url", "endpoint", "region", "path_style", "checksum_when_required", "credentials", "quarantine", "part_size", "limits", "inventory", "prices", "crypto_erase"}

func (p *parser) sources(n *yaml.Node, s *Spec) {
	ok := p.list(n, "sources", func(i int, item *yaml.Node, path string) {
		var site Site
		p.site(item, path, &site, s.Copy.PartSize)
		s.Sources = append(s.Sources, site)
	})
	if ok && len(s.Sources) == 0 {
		p.add(n, "sources", "must list at least one site")
	}
}

func (p *parser) site(n *yaml.Node, path string, site *Site, partSize int64) {
	if isNull(n) {
		p.add(n, path, "must not be empty")
		return
	}
	m, ok := p.fields(n, path, siteKeys...)
	if !ok {
		return
	}
	if p.required(m, n, path, "name") {
		kp := joinKey(path, "name")
		if v, ok := p.nonEmpty(m["name"].val, kp); ok {
			if !nameRE.MatchString(v) {
				p.add(m["name"].val, kp, "must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
			} else {
				site.Name = v
			}
		}
	}
	if p.required(m, n, path, "role") {
		kp := joinKey(path, "role")
		if v, ok := p.nonEmpty(m["role"].val, kp); ok {
			switch Role(v) {
			case RolePrimary, RoleBackup:
				site.Role = Role(v)
			default:
				p.add(m["role"].val, kp, "must be primary or backup")
			}
		}
	}
	site.PartSize = partSize
	p.store(m, n, path, storeFields{
		url: &site.URL, raw: &site.RawURL, endpoint: &site.Endpoint, region: &site.Region,
		pathStyle: &site.PathStyle, checksum: &site.ChecksumWhenRequired,
		creds: &site.Credentials, partSize: &site.PartSize, loc: &site.loc, limits: &site.Limits, prices: &site.Prices,
	})
	if e, ok := m["inventory"]; ok {
		site.Inventory = p.inventory(e.val, joinKey(path, "inventory"), site.loc) // inventory.go
	}
	if e, ok := m["crypto_erase"]; ok {
		site.CryptoErase = p.cryptoErase(e.val, joinKey(path, "crypto_erase")) // cryptoerase.go
	}
	if e, ok := m["quarantine"]; ok && !isNull(e.val) {
		kp := joinKey(path, "quarantine")
		if v, ok := p.nonEmpty(e.val, kp); ok {
			if strings.ContainsAny(v, "\x00\n\r") {
				p.add(e.val, kp, "must not contain control characters")
			} else if hasDotDot(v) {
				p.add(e.val, kp, "must not have .. segments")
			} else {
				site.Quarantine = v
			}
		}
	}
}

func hasDotDot(p string) bool {
	for _, s := range strings.Split(strings.ReplaceAll(p, "\\", "/"), "/") {
		if s == ".." {
			return true
		}
	}
	return false
}

// storeFields are the keys sites and the target share.
type storeFields struct {
	url, raw, endpoint, region *string
	pathStyle, checksum        *bool
	creds                      *Credentials
	partSize                   *int64
	loc                        *location
	limits                     *Limits
	prices                     **Prices
}

func (p *parser) store(m map[string]entry, n *yaml.Node, path string, f storeFields) {
	if p.required(m, n, path, "url") {
		kp := joinKey(path, "url")
		v := m["url"].val
		if raw, ok := p.nonEmpty(v, kp); ok {
			loc, err := parseLocation(raw, p.dir)
			if err != nil {
				p.add(v, kp, "%s", err.Error())
			} else {
				*f.raw, *f.url, *f.loc = raw, loc.resolved, loc
			}
		}
	}
	if e, ok := m["endpoint"]; ok && !isNull(e.val) {
		kp := joinKey(path, "endpoint")
		if v, ok := p.nonEmpty(e.val, kp); ok {
			norm, err := parseEndpoint(v)
			if err != nil {
				p.add(e.val, kp, "%s", err.Error())
			} else {
				*f.endpoint = v
				f.loc.endpoint = norm
			}
		}
	}
	if e, ok := m["region"]; ok && !isNull(e.val) {
		kp := joinKey(path, "region")
		if v, ok := p.nonEmpty(e.val, kp); ok {
			if !regionRE.MatchString(v) {
				p.add(e.val, kp, "must be a region id like us-east-1 or us-ashburn-1")
			} else {
				*f.region = v
				f.loc.region = v
			}
		}
	}
	if e, ok := m["path_style"]; ok {
		if b, ok := p.boolean(e.val, joinKey(path, "path_style")); ok {
			*f.pathStyle = b
		}
	}
	if e, ok := m["checksum_when_required"]; ok {
		if b, ok := p.boolean(e.val, joinKey(path, "checksum_when_required")); ok {
			*f.checksum = b
		}
	}
	if e, ok := m["part_size"]; ok && !isNull(e.val) {
		if v, ok := p.size(e.val, joinKey(path, "part_size")); ok {
			*f.partSize = v
		}
	}
	if e, ok := m["credentials"]; ok {
		*f.creds = p.credentials(e.val, joinKey(path, "credentials"), f.loc.scheme)
	}
	if e, ok := m["limits"]; ok {
		*f.limits = p.limits(e.val, joinKey(path, "limits")) // limits.go
	}
	if e, ok := m["prices"]; ok {
		*f.prices = p.prices(e.val, joinKey(path, "prices")) // prices.go
		p.priceNodes[path] = e.val
	}
	if f.loc.scheme != "s3" && f.loc.scheme != "" {
		if *f.pathStyle {
			p.add(m["path_style"].key, joinKey(path, "path_style"), "applies only to s3:// stores")
		}
		if *f.checksum {
			p.add(m["checksum_when_required"].key, joinKey(path, "checksum_when_required"), "applies only to s3:// stores")
		}
	}
	if f.loc.scheme == "file" {
		for _, k := range []string{"endpoint", "region"} {
			if present(m, k) {
				p.add(m[k].key, joinKey(path, k), "does not apply to a file:// store")
			}
		}
	}
}

func (p *parser) size(n *yaml.Node, key string) (int64, bool) {
	if isNull(n) || p.flagged[n] {
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int") {
		p.add(n, key, "must be a size like 64MiB, not %s", kindName(n))
		return 0, false
	}
	v, err := parseSize(n.Value)
	if err != nil {
		p.add(n, key, "%s", err.Error())
		return 0, false
	}
	if v < MinPartSize || v > MaxPartSize {
		p.add(n, key, "must be from 5MiB to 5GiB (the limits of multipart uploads)")
		return 0, false
	}
	return v, true
}

var credentialKeys = []string{"profile", "access_key_env", "secret_key_env", "session_token_env", "oci_profile", "oci_config_file", "auth", "gcp_credentials_file", "account_key_env", "sas_token_env"}

var schemeCredentials = map[string][]string{
	"s3":     {"profile", "access_key_env", "secret_key_env", "session_token_env"},
	"oci":    {"oci_profile", "oci_config_file", "auth"},
	"gs":     {"gcp_credentials_file", "auth"},
	"azblob": {"account_key_env", "sas_token_env"},
	"file":   {},
}

func (p *parser) credentials(n *yaml.Node, path, scheme string) Credentials {
	var c Credentials
	n = resolveAlias(n)
	if isNull(n) || p.flagged[n] {
		return c
	}
	if n.Kind != yaml.MappingNode {
		p.add(n, path, "must be a mapping of names, like {profile: NAME} or {access_key_env: VAR, secret_key_env: VAR}")
		return c
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		if p.flagged[k] {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			p.add(k, path, "keys must be plain names")
			continue
		}
		name := k.Value
		kp := joinKey(path, displayKey(name))
		if !contains(credentialKeys, name) {
			p.add(k, kp, "inline secret refused: credentials hold only names (%s), never secret values; put the secret in an environment variable and name it (access_key_env, secret_key_env) or use a profile", strings.Join(credentialKeys, ", "))
			continue
		}
		if prev, dup := seen[name]; dup {
			p.add(k, kp, "duplicate key (first at line %d)", prev.Line)
			continue
		}
		seen[name] = k
		if isNull(v) || p.flagged[v] {
			if isNull(v) {
				p.add(k, kp, "must not be empty")
			}
			continue
		}
		if v.Kind != yaml.ScalarNode {
			p.add(v, kp, "must be a name, not %s", kindName(v))
			continue
		}
		val := strings.TrimSpace(v.Value)
		if looksLikeKeyMaterial(val) {
			p.add(v, kp, "inline secret refused: this looks like a secret value, not a name; secrets never live in the spec")
			continue
		}
		if scheme != "" {
			if okFor := schemeCredentials[scheme]; !contains(okFor, name) {
				if len(okFor) == 0 {
					p.add(k, kp, "a %s:// store takes no credentials", scheme)
				} else {
					p.add(k, kp, "does not apply to a %s:// store (use %s)", scheme, strings.Join(okFor, ", "))
				}
				continue
			}
		}
		switch name {
		case "access_key_env", "secret_key_env", "session_token_env", "account_key_env", "sas_token_env":
			if !envRE.MatchString(val) {
				p.add(v, kp, "must be the name of an environment variable (letters, digits and _), never its value")
				continue
			}
		case "profile", "oci_profile":
			if !profileRE.MatchString(val) {
				p.add(v, kp, "must be a profile name (letters, digits, '.', '_', '-', '@', '+')")
				continue
			}
		case "oci_config_file", "gcp_credentials_file":
			if val == "" || strings.ContainsAny(val, "\x00\n\r") {
				what := "an OCI config file"
				if name == "gcp_credentials_file" {
					what = "a service-account key file (JSON)"
				}
				p.add(v, kp, "must be the path of %s", what)
				continue
			}
			val = resolvePath(p.dir, val)
		case "auth":
			if scheme == "gs" {
				if val != "none" {
					p.add(v, kp, "must be none (no credentials, for an emulator); leave it out for Application Default Credentials")
					continue
				}
				break
			}
			switch val {
			case "instance_principal", "resource_principal", "config_file":
			default:
				p.add(v, kp, "must be instance_principal, resource_principal or config_file")
				continue
			}
		}
		switch name {
		case "profile":
			c.Profile = val
		case "access_key_env":
			c.AccessKeyEnv = val
		case "secret_key_env":
			c.SecretKeyEnv = val
		case "session_token_env":
			c.SessionTokenEnv = val
		case "oci_profile":
			c.OCIProfile = val
		case "oci_config_file":
			c.OCIConfigFile = val
		case "auth":
			c.Auth = val
		case "gcp_credentials_file":
			c.GCPCredentialsFile = val
		case "account_key_env":
			c.AccountKeyEnv = val
		case "sas_token_env":
			c.SASTokenEnv = val
		}
	}
	// Combinations.
	at := func(k string) *yaml.Node {
		if kn := seen[k]; kn != nil {
			return kn
		}
		return n
	}
	hasAK, hasSK := seen["access_key_env"] != nil, seen["secret_key_env"] != nil
	switch {
	case hasAK && !hasSK:
		p.add(at("access_key_env"), joinKey(path, "secret_key_env"), "missing: access_key_env needs secret_key_env")
	case hasSK && !hasAK:
		p.add(at("secret_key_env"), joinKey(path, "access_key_env"), "missing: secret_key_env needs access_key_env")
	}
	if c.SessionTokenEnv != "" && seen["access_key_env"] == nil {
		p.add(at("session_token_env"), joinKey(path, "session_token_env"), "needs access_key_env and secret_key_env")
	}
	if c.Profile != "" && (seen["access_key_env"] != nil || seen["secret_key_env"] != nil) {
		p.add(at("profile"), joinKey(path, "profile"), "use a profile or environment variables, not both")
	}
	if (c.Auth == "instance_principal" || c.Auth == "resource_principal") && (seen["oci_profile"] != nil || seen["oci_config_file"] != nil) {
		p.add(at("auth"), joinKey(path, "auth"), "%s takes no oci_profile or oci_config_file", c.Auth)
	}
	if c.Auth == "none" && c.GCPCredentialsFile != "" {
		p.add(at("auth"), joinKey(path, "auth"), "none takes no gcp_credentials_file")
	}
	if c.AccountKeyEnv != "" && c.SASTokenEnv != "" {
		p.add(at("sas_token_env"), joinKey(path, "sas_token_env"), "use an account key or a SAS token, not both")
	}
	return c
}

var targetKeys = []string{"url", "endpoint", "region", "path_style", "checksum_when_required", "credentials", "residency", "kms_key_id", "kms_key_name", "encryption_scope", "part_size", "limits", "prices"}

// encryptionScopeRE: an Azure encryption scope name.
var encryptionScopeRE = regexp.MustCompile(`^[A-Za-z0-9]{3,63}$`)

func (p *parser) target(n *yaml.Node, s *Spec) {
	t := &s.Target
	m, ok := p.fields(n, "target", targetKeys...)
	if !ok {
		return
	}
	n = resolveAlias(n)
	t.PartSize = s.Copy.PartSize
	p.store(m, n, "target", storeFields{
		url: &t.URL, raw: &t.RawURL, endpoint: &t.Endpoint, region: &t.Region,
		pathStyle: &t.PathStyle, checksum: &t.ChecksumWhenRequired,
		creds: &t.Credentials, partSize: &t.PartSize, loc: &t.loc, limits: &t.Limits, prices: &t.Prices,
	})
	if e, ok := m["residency"]; ok {
		regions, nodes, ok := p.strList(e.val, "target.residency")
		if ok {
			if len(regions) == 0 {
				p.add(e.val, "target.residency", "must list at least one region (leave it out for no residency policy)")
			}
			for i, r := range regions {
				if !regionRE.MatchString(r) {
					p.add(nodes[i], idx("target.residency", i), "must be a region id like us-ashburn-1")
					ok = false
				}
			}
			if ok {
				t.Residency = regions
			}
		}
	}
	if e, ok := m["kms_key_id"]; ok && !isNull(e.val) {
		if v, ok := p.nonEmpty(e.val, "target.kms_key_id"); ok {
			switch {
			case strings.ContainsAny(v, " \t\x00\n\r"):
				p.add(e.val, "target.kms_key_id", "must be a key id (an OCID or an ARN), without spaces")
			case t.loc.scheme == "gs":
				p.add(e.val, "target.kms_key_id", "a gs:// target names its Cloud KMS key as kms_key_name")
			case t.loc.scheme == "azblob":
				p.add(e.val, "target.kms_key_id", "an azblob:// target names its customer-managed key through encryption_scope")
			default:
				t.KMSKeyID = v
			}
		}
	}
	if e, ok := m["kms_key_name"]; ok && !isNull(e.val) {
		if v, ok := p.nonEmpty(e.val, "target.kms_key_name"); ok {
			switch {
			case t.loc.scheme != "gs" && t.loc.scheme != "":
				p.add(e.val, "target.kms_key_name", "only a gs:// target takes kms_key_name (use kms_key_id)")
			case !kmsKeyNameRE.MatchString(v):
				p.add(e.val, "target.kms_key_name", "must be a Cloud KMS key name: projects/P/locations/L/keyRings/R/cryptoKeys/K")
			case present(m, "kms_key_id"):
				p.add(e.val, "target.kms_key_name", "name the key once: kms_key_name or kms_key_id, not both")
			default:
				t.KMSKeyID = v
			}
		}
	}
	if e, ok := m["encryption_scope"]; ok && !isNull(e.val) {
		if v, ok := p.nonEmpty(e.val, "target.encryption_scope"); ok {
			switch {
			case t.loc.scheme != "azblob" && t.loc.scheme != "":
				p.add(e.val, "target.encryption_scope", "only an azblob:// target takes encryption_scope")
			case !encryptionScopeRE.MatchString(v):
				p.add(e.val, "target.encryption_scope", "must be an encryption scope name: 3 to 63 letters and digits")
			default:
				t.EncryptionScope = v
			}
		}
	}
	if len(t.Residency) > 0 && present(m, "residency") {
		if t.Region == "" {
			if present(m, "region") {
				return // the region itself was reported
			}
			p.add(n, "target.region", "missing: residency is set, so the target's region must be named")
		} else if !t.InResidency(t.Region) {
			p.add(m["region"].val, "target.region", "region outside residency: the target's region is not one of target.residency (%s)", strings.Join(t.Residency, ", "))
		}
	}
}

var recordKeys = []string{"user", "include", "exclude", "conflicts"}

func (p *parser) records(n *yaml.Node, s *Spec) {
	r := &s.Records
	r.Include = []string{"**"}
	r.Exclude = []string{}
	r.Conflicts = ConflictFail
	m, ok := p.fields(n, "records", recordKeys...)
	if !ok {
		return
	}
	n = resolveAlias(n)
	if p.required(m, n, "records", "user") {
		if v, ok := p.nonEmpty(m["user"].val, "records.user"); ok {
			re, err := regexp.Compile(v)
			switch {
			case err != nil:
				msg := "is not a valid regular expression"
				var se *syntax.Error
				if errors.As(err, &se) {
					msg += ": " + string(se.Code)
				}
				p.add(m["user"].val, "records.user", "%s", msg)
			case re.SubexpIndex("user") < 0:
				p.add(m["user"].val, "records.user", "needs a named group `user`, like ^(?P<user>[^/]+)/")
			default:
				r.User, r.UserPattern = re, v
			}
		}
	}
	for _, k := range []string{"include", "exclude"} {
		e, ok := m[k]
		if !ok {
			continue
		}
		kp := "records." + k
		globs, nodes, ok := p.strList(e.val, kp)
		if !ok {
			continue
		}
		good := true
		for i, g := range globs {
			switch {
			case !doublestar.ValidatePattern(g):
				p.add(nodes[i], idx(kp, i), "is not a valid glob (doublestar syntax: *, **, ?, [a-z], {a,b})")
				good = false
			case strings.HasPrefix(g, "/"):
				p.add(nodes[i], idx(kp, i), "globs match relative keys: drop the leading /")
				good = false
			}
		}
		if k == "include" && len(globs) == 0 {
			p.add(e.val, kp, "an empty include matches nothing; leave it out for ['**']")
			good = false
		}
		if good {
			if k == "include" {
				r.Include = globs
			} else {
				r.Exclude = globs
			}
		}
	}
	if e, ok := m["conflicts"]; ok && !isNull(e.val) {
		if v, ok := p.nonEmpty(e.val, "records.conflicts"); ok {
			switch Conflicts(v) {
			case ConflictFail, ConflictPreferPrimary, ConflictKeepBoth:
				r.Conflicts = Conflicts(v)
			default:
				p.add(e.val, "records.conflicts", "must be fail, prefer-primary or keep-both")
			}
		}
	}
}

var copyKeys = []string{"concurrency", "part_size", "retries"}

func (p *parser) copySection(n *yaml.Node, c *Copy) {
	c.Concurrency, c.PartSize, c.Retries = DefaultConcurrency, DefaultPartSize, DefaultRetries
	m, ok := p.fields(n, "copy", copyKeys...)
	if !ok {
		return
	}
	if e, ok := m["concurrency"]; ok && !isNull(e.val) {
		if v, ok := p.integer(e.val, "copy.concurrency", 1, MaxConcurrency); ok {
			c.Concurrency = int(v)
		}
	}
	if e, ok := m["part_size"]; ok && !isNull(e.val) {
		if v, ok := p.size(e.val, "copy.part_size"); ok {
			c.PartSize = v
		}
	}
	if e, ok := m["retries"]; ok && !isNull(e.val) {
		if v, ok := p.integer(e.val, "copy.retries", 0, MaxRetries); ok {
			c.Retries = int(v)
		}
	}
}

var verifyKeys = []string{"reread", "concurrency"}

func (p *parser) verifySection(n *yaml.Node, v *Verify, copyConcurrency int) {
	v.Concurrency = copyConcurrency
	m, ok := p.fields(n, "verify", verifyKeys...)
	if !ok {
		return
	}
	if e, ok := m["reread"]; ok {
		if b, ok := p.boolean(e.val, "verify.reread"); ok {
			v.Reread = b
		}
	}
	if e, ok := m["concurrency"]; ok && !isNull(e.val) {
		if c, ok := p.integer(e.val, "verify.concurrency", 1, MaxConcurrency); ok {
			v.Concurrency = int(c)
		}
	}
}

var deleteKeys = []string{"mode", "grace", "max_delete", "stages"}
var stageKeys = []string{"name", "sites", "sample", "mode", "max_delete"}

func (p *parser) mode(n *yaml.Node, key string) (Mode, bool) {
	v, ok := p.nonEmpty(n, key)
	if !ok {
		return "", false
	}
	switch Mode(v) {
	case ModeSoft, ModeHard:
		return Mode(v), true
	}
	p.add(n, key, "must be soft or hard")
	return "", false
}

func (p *parser) maxDelete(n *yaml.Node, key string) (MaxDelete, bool) {
	if isNull(n) || p.flagged[n] {
		return MaxDelete{}, false
	}
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int") {
		p.add(n, key, "must be a count like 5000 or a share like 10%%, not %s", kindName(n))
		return MaxDelete{}, false
	}
	md, err := parseMaxDelete(n.Value)
	if err != nil {
		p.add(n, key, "%s", err.Error())
		return MaxDelete{}, false
	}
	return md, true
}

func (p *parser) deleteSection(n *yaml.Node, s *Spec) {
	d := &s.Delete
	d.Mode, d.Grace, d.MaxDelete, d.Stages = ModeSoft, DefaultGrace, AllMaxDelete, []Stage{}
	m, ok := p.fields(n, "delete", deleteKeys...)
	if !ok {
		return
	}
	if e, ok := m["mode"]; ok && !isNull(e.val) {
		if v, ok := p.mode(e.val, "delete.mode"); ok {
			d.Mode = v
		}
	}
	if e, ok := m["grace"]; ok && !isNull(e.val) {
		v := e.val
		switch {
		case p.flagged[v]:
		case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int" && v.Value == "0":
			d.Grace = 0
		case v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str":
			p.add(v, "delete.grace", "must be a duration like 72h or 3d, not %s", kindName(v))
		default:
			g, err := parseDuration(v.Value)
			if err != nil {
				p.add(v, "delete.grace", "%s", err.Error())
			} else {
				d.Grace = g
			}
		}
	}
	if e, ok := m["max_delete"]; ok && !isNull(e.val) {
		if v, ok := p.maxDelete(e.val, "delete.max_delete"); ok {
			d.MaxDelete = v
		}
	}
	if e, ok := m["stages"]; ok {
		names := map[string]int{}
		p.list(e.val, "delete.stages", func(i int, item *yaml.Node, path string) {
			st := Stage{Sample: FullShare, Mode: d.Mode, MaxDelete: d.MaxDelete}
			p.stageSites = append(p.stageSites[:i], nil)
			defer func() { d.Stages = append(d.Stages, st) }()
			if isNull(item) {
				p.add(item, path, "must not be empty")
				return
			}
			sm, ok := p.fields(item, path, stageKeys...)
			if !ok {
				return
			}
			if p.required(sm, item, path, "name") {
				kp := joinKey(path, "name")
				if v, ok := p.nonEmpty(sm["name"].val, kp); ok {
					if !nameRE.MatchString(v) {
						p.add(sm["name"].val, kp, "must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
					} else if first, dup := names[v]; dup {
						p.add(sm["name"].val, kp, "duplicate stage name (also delete.stages[%d])", first)
					} else {
						names[v] = i
						st.Name = v
					}
				}
			}
			if p.required(sm, item, path, "sites") {
				kp := joinKey(path, "sites")
				sites, nodes, ok := p.strList(sm["sites"].val, kp)
				if ok && len(sites) == 0 {
					p.add(sm["sites"].val, kp, "must name at least one site")
				}
				seen := map[string]bool{}
				for j, name := range sites {
					if seen[name] {
						p.add(nodes[j], idx(kp, j), "site listed twice")
						continue
					}
					seen[name] = true
					st.Sites = append(st.Sites, name)
				}
				p.stageSites = append(p.stageSites[:i], nodes)
			}
			if e, ok := sm["sample"]; ok && !isNull(e.val) {
				kp := joinKey(path, "sample")
				v := e.val
				switch {
				case p.flagged[v]:
				case v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str":
					p.add(v, kp, "must be a percentage like 1%%, not %s", kindName(v))
				default:
					sh, err := parseShare(v.Value)
					if err != nil {
						p.add(v, kp, "%s", err.Error())
					} else {
						st.Sample = sh
					}
				}
			}
			if e, ok := sm["mode"]; ok && !isNull(e.val) {
				if v, ok := p.mode(e.val, joinKey(path, "mode")); ok {
					st.Mode = v
				}
			}
			if e, ok := sm["max_delete"]; ok && !isNull(e.val) {
				if v, ok := p.maxDelete(e.val, joinKey(path, "max_delete")); ok {
					st.MaxDelete = v
				}
			}
		})
	}
}

var reportKeys = []string{"signing_key", "signer", "approvers"}

func (p *parser) report(n *yaml.Node, r *Report) {
	m, ok := p.fields(n, "report", reportKeys...)
	if !ok {
		return
	}
	if e, ok := m["signing_key"]; ok && !isNull(e.val) {
		if v, ok := p.nonEmpty(e.val, "report.signing_key"); ok {
			if strings.ContainsAny(v, "\x00\n\r") {
				p.add(e.val, "report.signing_key", "must be the path of a key file, not key material")
			} else {
				r.SigningKey = resolvePath(p.dir, v)
			}
		}
	}
	if e, ok := m["signer"]; ok && !isNull(e.val) {
		if v, ok := p.nonEmpty(e.val, "report.signer"); ok {
			if strings.ContainsAny(v, "\x00\n\r") {
				p.add(e.val, "report.signer", "must be one line")
			} else {
				r.Signer = v
			}
		}
	}
	if e, ok := m["approvers"]; ok && !isNull(e.val) {
		seq := resolveAlias(e.val)
		if seq.Kind != yaml.SequenceNode {
			p.add(seq, "report.approvers", "must be a list of {name, public_key}")
			return
		}
		seenName, seenKey := map[string]int{}, map[string]int{}
		for i, item := range seq.Content {
			path := fmt.Sprintf("report.approvers[%d]", i)
			am, ok := p.fields(item, path, "name", "public_key")
			if !ok {
				continue
			}
			var a Approver
			if n, ok := am["name"]; !ok || isNull(n.val) {
				p.add(item, path+".name", "is required")
			} else if v, ok := p.nonEmpty(n.val, path+".name"); ok {
				a.Name = v
			}
			if k, ok := am["public_key"]; !ok || isNull(k.val) {
				p.add(item, path+".public_key", "is required (the path of the approver's PKIX PEM public key)")
			} else if v, ok := p.nonEmpty(k.val, path+".public_key"); ok {
				if strings.ContainsAny(v, "\x00\n\r") {
					p.add(k.val, path+".public_key", "must be the path of a key file, not key material")
				} else {
					a.PublicKey = resolvePath(p.dir, v)
					if j, dup := seenKey[a.PublicKey]; dup {
						p.add(k.val, path+".public_key", "is the same key file as report.approvers[%d]: each approver signs with a key of their own", j)
					}
					seenKey[a.PublicKey] = i
				}
			}
			if a.Name != "" {
				if j, dup := seenName[a.Name]; dup {
					p.add(am["name"].val, path+".name", "%q is already report.approvers[%d]", a.Name, j)
				}
				seenName[a.Name] = i
			}
			r.Approvers = append(r.Approvers, a)
		}
	}
}

// crossChecks are the checks between keys: unique names, overlapping stores, stages
// naming known sites, prefer-primary having a primary.
func (p *parser) crossChecks(m map[string]entry, s *Spec) {
	srcNode := resolveAlias(m["sources"].val)
	itemNode := func(i int) *yaml.Node {
		if srcNode != nil && srcNode.Kind == yaml.SequenceNode && i < len(srcNode.Content) {
			return resolveAlias(srcNode.Content[i])
		}
		return srcNode
	}
	fieldNode := func(i int, k string) *yaml.Node {
		it := itemNode(i)
		if it != nil && it.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(it.Content); j += 2 {
				if it.Content[j].Value == k {
					return resolveAlias(it.Content[j+1])
				}
			}
		}
		return it
	}

	// Unique site names.
	byName := map[string]int{}
	var known []string
	for i, site := range s.Sources {
		if site.Name == "" {
			continue
		}
		if first, dup := byName[site.Name]; dup {
			p.add(fieldNode(i, "name"), idx("sources", i)+".name", "duplicate site name (also sources[%d])", first)
			continue
		}
		byName[site.Name] = i
		known = append(known, site.Name)
	}

	// Overlapping stores.
	for i := range s.Sources {
		a := s.Sources[i].loc
		if a.scheme == "" {
			continue
		}
		for j := 0; j < i; j++ {
			if overlaps(a, s.Sources[j].loc) {
				p.add(fieldNode(i, "url"), idx("sources", i)+".url",
					"overlaps sources[%d] (%s): one store would count as two replicas and be deleted twice", j, s.Sources[j].Name)
			}
		}
	}
	if t := s.Target.loc; t.scheme != "" {
		tn := resolveAlias(m["target"].val)
		urlNode := tn
		if tn != nil && tn.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(tn.Content); j += 2 {
				if tn.Content[j].Value == "url" {
					urlNode = resolveAlias(tn.Content[j+1])
				}
			}
		}
		for i, site := range s.Sources {
			if overlaps(t, site.loc) {
				hint := ""
				if t.prefix != "" && !strings.HasSuffix(t.prefix, "/") || site.loc.prefix != "" && !strings.HasSuffix(site.loc.prefix, "/") {
					hint = " (a prefix without a trailing / also covers keys that merely start with it)"
				}
				p.add(urlNode, "target.url", "the target overlaps sources[%d] (%s): deleting originals would delete the copies%s", i, site.Name, hint)
			}
		}
	}

	// Stages name known sites.
	for i := range s.Delete.Stages {
		st := &s.Delete.Stages[i]
		for j, name := range st.Sites {
			if _, ok := byName[name]; ok {
				continue
			}
			var n *yaml.Node
			if i < len(p.stageSites) && j < len(p.stageSites[i]) {
				n = p.stageSites[i][j]
			}
			msg := "no source site has this name"
			if len(known) > 0 {
				msg += " (sites: " + strings.Join(known, ", ") + ")"
			}
			p.add(n, fmt.Sprintf("delete.stages[%d].sites[%d]", i, j), "%s", msg)
		}
	}

	// prefer-primary needs a primary.
	if s.Records.Conflicts == ConflictPreferPrimary && len(s.Sources) > 0 {
		has := false
		for _, site := range s.Sources {
			if site.Role == RolePrimary {
				has = true
			}
		}
		if !has {
			var n *yaml.Node
			if rn := resolveAlias(m["records"].val); rn != nil && rn.Kind == yaml.MappingNode {
				for j := 0; j+1 < len(rn.Content); j += 2 {
					if rn.Content[j].Value == "conflicts" {
						n = rn.Content[j+1]
					}
				}
			}
			p.add(n, "records.conflicts", "prefer-primary needs a source with role: primary")
		}
	}
}
