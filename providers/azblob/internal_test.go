package azblob

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzMetadata: every metadata name ferry may write (letters, digits, '-', '_',
// '.') encodes to an Azure identifier and decodes back to itself in lower case, and
// every value survives the header encoding.
func FuzzMetadata(f *testing.F) {
	for _, s := range []string{"ferry-sha256", "ferry-source-key", "Ferry_Odd.Name-2", "_d", "__", "1abc", "a_n1", "x_p_d", "ü"} {
		f.Add(s, "value "+s)
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		enc, err := encodeMetaName(name)
		if err != nil {
			return // a name ferry refuses to write
		}
		for i, r := range enc {
			ok := r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' && i > 0
			if !ok {
				t.Fatalf("%q encodes to %q, not an identifier", name, enc)
			}
		}
		if dec := decodeMetaName(strings.ToUpper(enc)); dec != strings.ToLower(name) {
			t.Fatalf("%q -> %q -> %q", name, enc, dec)
		}
		if !utf8.ValidString(value) {
			return
		}
		v := encodeMetaValue(value)
		got := decodeMeta(map[string]*string{enc: &v})[strings.ToLower(name)]
		if got != value {
			t.Fatalf("value %q -> %q -> %q", value, v, got)
		}
	})
}

// FuzzParseURL: ParseURL never panics, and what it accepts names a valid account,
// container and a prefix that is empty or a folder free of ".." segments.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"azblob://acct/cont/", "azblob://acct/cont/users", "azblob://acct/cont/a/../b", "azblob://ACCT/c/", "azblob://acct/cont/p?sig=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		acct, cont, prefix, err := ParseURL(raw)
		if err != nil {
			// The message may show the url's other parts, which can hold the same
			// text as the signature by chance: a leak is the signature shown more
			// often than the rest of the url holds it.
			for _, sep := range []string{"?sig=", "&sig="} {
				if _, v, ok := strings.Cut(raw, sep); ok {
					v, _, _ = strings.Cut(v, "&")
					rest := strings.Replace(raw, sep+v, sep, 1)
					if len(v) >= 4 && strings.Count(err.Error(), v) > strings.Count(rest, v) {
						t.Fatalf("the error shows the signature %q: %v", v, err)
					}
				}
			}
			return
		}
		if !accountRE.MatchString(acct) || !containerRE.MatchString(cont) {
			t.Fatalf("%q: account %q container %q", raw, acct, cont)
		}
		if prefix != "" && (!strings.HasSuffix(prefix, "/") || checkName(prefix, true) != nil) {
			t.Fatalf("%q: prefix %q", raw, prefix)
		}
	})
}

func TestServiceURL(t *testing.T) {
	for _, c := range []struct{ account, endpoint, want, err string }{
		{"acct", "", "https://acct.blob.core.windows.net/", ""},
		{"acct", "https://acct.blob.core.usgovcloudapi.net", "https://acct.blob.core.usgovcloudapi.net/", ""},
		{"devstoreaccount1", "http://127.0.0.1:10000/devstoreaccount1/", "http://127.0.0.1:10000/devstoreaccount1/", ""},
		{"acct", "http://localhost:10000/other", "", "serves storage account \"other\""},
		{"acct", "http://127.0.0.1:10000", "", "names no storage account"},
		{"acct", "https://acct.blob.core.windows.net/?sv=1&sig=abc", "", "does not belong in the endpoint"},
		{"acct", "ftp://acct.blob.core.windows.net", "", "want http(s)"},
	} {
		got, _, err := serviceURL(c.account, c.endpoint)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || strings.Contains(err.Error(), "sig=abc") {
				t.Errorf("serviceURL(%q, %q) = %q, %v; want an error with %q", c.account, c.endpoint, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("serviceURL(%q, %q) = %q, %v; want %q", c.account, c.endpoint, got, err, c.want)
		}
	}
}

func TestRedact(t *testing.T) {
	msg := `Get "https://a.blob.core.windows.net/c/b?se=2030&sp=r&sv=2022&sig=S3cr3t%2Bsig&x=1": dial tcp: refused`
	got := redactString(msg)
	if strings.Contains(got, "S3cr3t") || !strings.Contains(got, "sig=REDACTED") || !strings.Contains(got, "x=1") {
		t.Errorf("redactString = %q", got)
	}
	err := redact(errors.New(msg))
	if strings.Contains(err.Error(), "S3cr3t") {
		t.Errorf("redact = %v", err)
	}
}
