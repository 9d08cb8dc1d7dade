package file_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrymigrate/ferry/providers"
)

// rewriteInPlace writes data over path's bytes (same inode, same size) and sets its
// mtime back: size, mtime and inode, and so the ETag, stay what they were.
func rewriteInPlace(t *testing.T, path, data string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// DeleteIf and SoftDelete with the proven SHA-256 in expect read the file again: a
// file rewritten in place with its mtime set back keeps its ETag but is refused
// (ErrPrecondition) and stays; the same bytes are deleted.
func TestConditionalDeleteRehashes(t *testing.T) {
	for _, soft := range []bool{false, true} {
		t.Run(map[bool]string{false: "DeleteIf", true: "SoftDelete"}[soft], func(t *testing.T) {
			s, root := newStore(t)
			ctx := t.Context()
			del := func(key string, expect providers.Object) error {
				if soft {
					_, err := s.SoftDelete(ctx, key, expect)
					return err
				}
				return s.DeleteIf(ctx, key, expect)
			}
			o := put(t, s, "u/a", "original bytes")
			o.Checksums.SHA256 = sha("original bytes")
			rewriteInPlace(t, filepath.Join(root, "u", "a"), "rewritten byte")
			now, err := s.Stat(ctx, "u/a")
			if err != nil || now.ETag != o.ETag {
				t.Fatalf("the rewrite changed the ETag (%v): the test proves nothing", err)
			}
			if err := del("u/a", o); !errors.Is(err, providers.ErrPrecondition) {
				t.Fatalf("delete of a file rewritten in place: %v, want ErrPrecondition", err)
			}
			if b, err := os.ReadFile(filepath.Join(root, "u", "a")); err != nil || string(b) != "rewritten byte" {
				t.Fatalf("the rewritten file is gone or changed: %q %v", b, err)
			}
			o2 := put(t, s, "u/b", "kept as proven")
			o2.Checksums.SHA256 = sha("kept as proven")
			if err := del("u/b", o2); err != nil {
				t.Fatalf("delete of unchanged bytes: %v", err)
			}
			if _, err := s.Stat(ctx, "u/b"); !errors.Is(err, providers.ErrNotFound) {
				t.Fatalf("u/b still there: %v", err)
			}
		})
	}
}
