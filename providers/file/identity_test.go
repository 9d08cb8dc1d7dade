package file

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// A directory and a symlink to it, or to a directory around or inside it, are one
// store; two sibling directories are not.
func TestIdentityThroughSymlinks(t *testing.T) {
	base := t.TempDir()
	mk := func(p string) string {
		p = filepath.Join(base, p)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	link := func(to, name string) string {
		p := filepath.Join(base, name)
		if err := os.Symlink(to, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	target, site, sub := mk("target"), mk("site"), mk("site/sub")
	open := func(dir string) *Store {
		s, err := New(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	cases := []struct {
		name string
		a, b string
		want bool
	}{
		{"site is a symlink to the target", link(target, "site-link"), target, true},
		{"target is a symlink into a site", link(sub, "target-link"), site, true},
		{"target is a symlink around a site", link(base, "base-link"), site, true},
		{"siblings", target, site, false},
	}
	for _, c := range cases {
		a, err := open(c.a).Identity(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		b, err := open(c.b).Identity(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := a.Overlaps(b); got != c.want {
			t.Errorf("%s: %v overlaps %v = %v, want %v", c.name, a, b, got, c.want)
		}
	}
}
