package spec

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// Secrets never live in the spec (DESIGN.md I8). Two nets catch them:
//
//   - every line of the document, comments included, is scanned for text that is a
//     secret whatever key it sits under: an AWS access key id (AKIA/ASIA + 16), a PEM
//     block, a URL with user:password@, a password=/token=/signature= parameter, a
//     GitHub or Slack token;
//   - credentials accept only names, and a credentials value that looks like key
//     material (a long base64-like string) is refused as a secret.
//
// Either way the error names the line, column and key, never the value.

type secretPattern struct {
	re   *regexp.Regexp
	what string
}

var secretPatterns = []secretPattern{
	{regexp.MustCompile(`(?:^|[^A-Z0-9])((?:AKIA|ASIA)[A-Z0-9]{16})(?:[^A-Z0-9]|$)`), "an AWS access key id"},
	{regexp.MustCompile(`-----BEGIN`), "a PEM block (key or certificate material)"},
	{regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s:]*:[^/?#@\s]*@`), "a URL with a password (user:password@)"},
	{regexp.MustCompile(`(?i)(?:^|[^a-z0-9_])(?:password|passwd|pwd|secret|token|sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|sslpassword)=[^\s&]`), "a password, token or signature parameter"},
	{regexp.MustCompile(`(?:^|[^A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,})`), "a GitHub token"},
	{regexp.MustCompile(`(?:^|[^A-Za-z0-9])xox[abprs]-[A-Za-z0-9-]{10,}`), "a Slack token"},
}

// secretIn returns what kind of secret s holds, the byte offset where it starts, and
// whether it holds one.
func secretIn(s string) (what string, at int, ok bool) {
	best := -1
	for _, p := range secretPatterns {
		loc := p.re.FindStringSubmatchIndex(s)
		if loc == nil {
			continue
		}
		start := loc[0]
		if len(loc) >= 4 && loc[2] >= 0 {
			start = loc[2]
		}
		// Skip the one boundary character some patterns consume.
		for start < len(s) && start < loc[1] && !startsSecret(s[start]) {
			start++
		}
		if best < 0 || start < best {
			best, what = start, p.what
		}
	}
	if best < 0 {
		return "", 0, false
	}
	return what, best, true
}

func startsSecret(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
}

// looksLikeKeyMaterial reports whether a credentials value looks like a secret (an
// AWS secret access key, an API token) rather than a name: long, drawn from the
// base64 alphabet, and random-looking (the character class changes between
// neighbours far more often than in a CamelCase or SNAKE_CASE name).
func looksLikeKeyMaterial(v string) bool {
	if len(v) < 20 {
		return false
	}
	var upper, lower, digit, slashPlus bool
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= '0' && c <= '9':
			digit = true
		case c == '+' || c == '/':
			slashPlus = true
		case c == '=' || c == '_' || c == '-':
		default:
			return false // spaces, dots, @: names and paths, not key material
		}
	}
	if slashPlus && upper && lower {
		return true // base64 with '/' or '+': never a name
	}
	if !(upper && lower && digit) {
		return false
	}
	if len(v) == 40 {
		return true // the shape of an AWS secret access key
	}
	changes := 0
	for i := 1; i < len(v); i++ {
		if charClass(v[i]) != charClass(v[i-1]) {
			changes++
		}
	}
	return len(v) >= 24 && float64(changes)/float64(len(v)-1) >= 0.45
}

func charClass(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return 1
	case c >= 'a' && c <= 'z':
		return 2
	case c >= '0' && c <= '9':
		return 3
	}
	return 4
}

// secretishKeyName reports whether a key name asks for a secret value (access_key,
// secret_access_key, password, token, private_key, ...), as opposed to a name
// (access_key_env, profile).
func secretishKeyName(k string) bool {
	l := strings.ToLower(k)
	if strings.HasSuffix(l, "_env") || strings.HasSuffix(l, "_profile") || l == "profile" {
		return false
	}
	for _, w := range []string{"secret", "password", "passwd", "token", "private", "access_key", "accesskey", "api_key", "apikey", "passphrase", "pass_phrase", "credential", "key_file", "key_content", "key_id"} {
		if strings.Contains(l, w) {
			return true
		}
	}
	return l == "key" || l == "pass"
}

// scanLines finds secrets line by line in the raw document, comments included, so
// that a secret is reported even when the YAML does not parse. at maps a position to
// the key path there ("" when unknown).
func (p *parser) scanLines(data []byte, at func(line, col int) string) {
	line := 0
	for len(data) > 0 {
		line++
		var l []byte
		if i := indexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			l, data = data, nil
		}
		s := string(l)
		what, off, ok := secretIn(s)
		if !ok {
			continue
		}
		if len(p.errs) >= maxErrors {
			return
		}
		col := utf8.RuneCountInString(s[:off]) + 1
		if inComment(s, off) {
			p.errs = append(p.errs, &Error{File: p.file, Line: line, Column: col,
				Msg: "inline secret refused: a comment holds what looks like " + what + "; remove it (secrets never live in the spec)"})
			continue
		}
		p.errs = append(p.errs, &Error{File: p.file, Line: line, Column: col, Key: at(line, col),
			Msg: "inline secret refused: this holds what looks like " + what + "; secrets never live in the spec: name a profile or environment variables under credentials, or the path of a key file"})
	}
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// inComment reports whether byte offset off of a YAML line lies in a comment: after
// a '#' that starts the line or follows a space, outside quotes (approximately).
func inComment(s string, off int) bool {
	var quote byte
	for i := 0; i < off && i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			if i == 0 || s[i-1] == ' ' || s[i-1] == '\t' || s[i-1] == ':' || s[i-1] == '[' || s[i-1] == '{' || s[i-1] == ',' || s[i-1] == '-' {
				quote = c
			}
		case c == '#':
			if i == 0 || s[i-1] == ' ' || s[i-1] == '\t' {
				return true
			}
		}
	}
	return false
}
