package file_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/file"
)

// FuzzKeys: whatever key a listing or a hostile server hands the file store, a write
// either is refused as an invalid key or lands inside the root and reads back
// exactly; nothing is ever created outside the root.
func FuzzKeys(f *testing.F) {
	for _, k := range []string{"a", "a/b", "../x", "/abs", "a/../../b", "x\x00y", "a b", "caf\u00e9", "cafe\u0301", "..", "a/..", "./a", "a//b", "\\..\\x", "a/\u2215..", strings.Repeat("d/", 40) + "f"} {
		f.Add(k)
	}
	dir := f.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		f.Fatal(err)
	}
	s, err := file.New(root, file.Options{Migration: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, key string) {
		data := []byte("fuzz:" + key)
		_, err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)), providers.PutOptions{})
		if err == nil {
			rc, _, err := s.Open(t.Context(), key)
			if err != nil {
				t.Fatalf("Open(%q) after Put: %v", key, err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, data) {
				t.Fatalf("Open(%q) = %q", key, got)
			}
			if err := s.Delete(t.Context(), key); err != nil {
				t.Fatalf("Delete(%q): %v", key, err)
			}
		} else if !errors.Is(err, providers.ErrInvalidKey) && !errors.Is(err, providers.ErrPermission) && !errors.Is(err, providers.ErrAlreadyExists) {
			// Other refusals (a file where a folder is needed, a name too long) are
			// fine as long as nothing escaped, checked below.
			t.Logf("Put(%q): %v", key, err)
		}
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && p != dir && p != root && !strings.HasPrefix(p, root+string(filepath.Separator)) && !strings.HasPrefix(p, root+file.QuarantineSuffix) {
				t.Fatalf("Put(%q) created %s outside the root", key, p)
			}
			return nil
		})
	})
}
