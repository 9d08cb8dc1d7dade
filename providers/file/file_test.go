package file_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/file"
	"github.com/ferrymigrate/ferry/providers/providertest"
)

// newStore opens a store on a fresh root inside its own temp dir, so the default
// quarantine (a sibling of the root) is private to the test too.
func newStore(t *testing.T) (*file.Store, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := file.New(root, file.Options{Migration: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, root
}

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providers.Store {
		s, _ := newStore(t)
		return s
	})
}

func put(t *testing.T, s providers.Store, key, data string) providers.Object {
	t.Helper()
	o, err := s.Put(t.Context(), key, strings.NewReader(data), int64(len(data)), providers.PutOptions{})
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return o
}

func listKeys(t *testing.T, s providers.Store) ([]string, error) {
	t.Helper()
	var keys []string
	err := s.List(t.Context(), func(o providers.Object) error {
		keys = append(keys, o.Key)
		return nil
	})
	return keys, err
}

// tree returns every path under dir (files and directories), relative to it, except
// ferry's temporary directory and its marker (the temporary files in it are returned).
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			if rel == file.TempDir || rel == file.TempDir+"/"+file.TempMarker {
				return nil
			}
			paths = append(paths, rel)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return paths
}

func TestOpenerAndURLs(t *testing.T) {
	_, root := newStore(t)
	s, err := providers.Open(t.Context(), providers.Config{Name: "archive", URL: "file://" + root})
	if err != nil {
		t.Fatalf("providers.Open: %v", err)
	}
	defer s.Close()
	put(t, s, "x", "y")
	if b, err := os.ReadFile(filepath.Join(root, "x")); err != nil || string(b) != "y" {
		t.Errorf("file under root = %q, %v", b, err)
	}
	if got, want := s.URI("a b/c"), "file://"+root+"/a b/c"; got != want {
		t.Errorf("URI = %q, want %q", got, want)
	}

	space := filepath.Join(t.TempDir(), "my dir")
	if err := os.Mkdir(space, 0o755); err != nil {
		t.Fatal(err)
	}
	if dir, err := file.DirFromURL("file://" + strings.ReplaceAll(space, " ", "%20")); err != nil || dir != space {
		t.Errorf("DirFromURL(escaped space) = %q, %v; want %q", dir, err, space)
	}
	for _, bad := range []string{
		"file:relative/dir", "file://host/dir", "file:///dir?x=1", "s3://bucket/x",
	} {
		if dir, err := file.DirFromURL(bad); err == nil {
			t.Errorf("DirFromURL(%q) = %q, want an error", bad, dir)
		}
	}
	if _, err := providers.Open(t.Context(), providers.Config{URL: "file://" + root + "/missing"}); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("opening a missing root: %v, want ErrNotFound", err)
	}
}

func TestFileInvalidKeys(t *testing.T) {
	s, root := newStore(t)
	for _, key := range []string{
		"", "a/", "a//b", "./a", "a/.", "a/./b", "..", "nul\x00", "/etc/passwd",
		strings.Repeat("n", 300),
	} {
		_, err := s.Stat(t.Context(), key)
		if !errors.Is(err, providers.ErrInvalidKey) {
			t.Errorf("Stat(%q): %v, want ErrInvalidKey", key, err)
		}
		_, err = s.Put(t.Context(), key, strings.NewReader("x"), 1, providers.PutOptions{})
		if !errors.Is(err, providers.ErrInvalidKey) {
			t.Errorf("Put(%q): %v, want ErrInvalidKey", key, err)
		}
	}
	if got := tree(t, root); len(got) != 0 {
		t.Errorf("invalid keys created %q", got)
	}
}

func TestSymlinkEscape(t *testing.T) {
	s, root := newStore(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("outside the root"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "dirlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(root, "filelink")); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	// Through a symlinked directory: the key would leave the root.
	if _, err := s.Stat(ctx, "dirlink/secret"); !errors.Is(err, providers.ErrInvalidKey) {
		t.Errorf("Stat through a symlink out of the root: %v, want ErrInvalidKey", err)
	}
	if rc, _, err := s.Open(ctx, "dirlink/secret"); !errors.Is(err, providers.ErrInvalidKey) {
		t.Errorf("Open through a symlink out of the root: %v, want ErrInvalidKey", err)
		if err == nil {
			rc.Close()
		}
	}
	if _, err := s.Put(ctx, "dirlink/new", strings.NewReader("x"), 1, providers.PutOptions{}); err == nil {
		t.Error("Put through a symlink out of the root succeeded")
	}
	if err := s.Delete(ctx, "dirlink/secret"); err == nil {
		t.Error("Delete through a symlink out of the root succeeded")
	}
	if err := s.DeleteIf(ctx, "dirlink/secret", providers.Object{ETag: "x"}); err == nil {
		t.Error("DeleteIf through a symlink out of the root succeeded")
	}
	if _, err := s.SoftDelete(ctx, "dirlink/secret", providers.Object{ETag: "x"}); err == nil {
		t.Error("SoftDelete through a symlink out of the root succeeded")
	}

	// The symlink itself is not an object: not followed, not deleted.
	if _, err := s.Stat(ctx, "filelink"); !errors.Is(err, providers.ErrNotSupported) {
		t.Errorf("Stat(symlink): %v, want ErrNotSupported", err)
	}
	if rc, _, err := s.Open(ctx, "filelink"); err == nil {
		rc.Close()
		t.Error("Open(symlink) followed it")
	}
	if err := s.Delete(ctx, "filelink"); err == nil {
		t.Error("Delete(symlink) succeeded")
	}

	if b, err := os.ReadFile(secret); err != nil || string(b) != "outside the root" {
		t.Errorf("file outside the root changed: %q, %v", b, err)
	}
	if got := tree(t, outside); len(got) != 1 {
		t.Errorf("outside dir now holds %q", got)
	}

	// A listing that meets a symlink fails, naming it.
	_, err := listKeys(t, s)
	if !errors.Is(err, providers.ErrIncompleteList) || !strings.Contains(err.Error(), "link") {
		t.Errorf("List over a symlink: %v, want ErrIncompleteList naming it", err)
	}
}

// A symlink the caller excludes (providers.WithListSkip) is left out of the listing;
// one it does not exclude still fails it, naming it.
func TestListSkipsExcludedSymlinkOnly(t *testing.T) {
	s, root := newStore(t)
	put(t, s, "u/a", "a")
	if err := os.Symlink("a", filepath.Join(root, "u/link")); err != nil {
		t.Fatal(err)
	}
	var keys []string
	ctx := providers.WithListSkip(t.Context(), func(k string) bool { return k == "u/link" })
	err := s.List(ctx, func(o providers.Object) error { keys = append(keys, o.Key); return nil })
	if err != nil || !slices.Equal(keys, []string{"u/a"}) {
		t.Errorf("List with u/link excluded = %q, %v; want [u/a]", keys, err)
	}
	ctx = providers.WithListSkip(t.Context(), func(k string) bool { return k == "u/a" })
	err = s.List(ctx, func(o providers.Object) error { return nil })
	if !errors.Is(err, providers.ErrIncompleteList) || !strings.Contains(err.Error(), "u/link") {
		t.Errorf("List with u/link not excluded: %v, want ErrIncompleteList naming it", err)
	}
}

// User files whose names look like ferry's temporary files are user data: only
// ferry's own marked directory at the root is skipped, and only while it holds nothing
// but ferry's temporary files (issue 13 class 10).
func TestListSkipsOnlyFerrysTempDir(t *testing.T) {
	s, root := newStore(t)
	put(t, s, "d/real", "r")
	put(t, s, "top", "t")
	// The names earlier ferry versions skipped, a user directory called like ferry's
	// (no marker), and one nested deeper: all user data.
	for _, p := range []string{".ferry-tmp-abandoned", "d/.ferry-tmp-x", "d/.ferry-tmp/put-0123456789abcdef",
		".hidden", "put-0123456789abcdef"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte("user"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "empty/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	// An in-flight Put's file in ferry's own directory is not.
	leftover := filepath.Join(root, file.TempDir, file.TempPrefix+"00000000deadbeef")
	if err := os.WriteFile(leftover, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := []string{".ferry-tmp-abandoned", ".hidden", "d/.ferry-tmp-x", "d/.ferry-tmp/put-0123456789abcdef", "d/real",
		"put-0123456789abcdef", "top"}
	check := func(want []string) {
		t.Helper()
		keys, err := listKeys(t, s)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, want) {
			t.Errorf("List = %q, want %q", keys, want)
		}
	}
	check(want)
	for _, k := range want {
		if _, err := s.Stat(t.Context(), k); err != nil {
			t.Errorf("Stat(%q): %v", k, err)
		}
	}

	// A user file dropped into ferry's marked directory fails the listing, naming it.
	if err := os.WriteFile(filepath.Join(root, file.TempDir, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := listKeys(t, s); !errors.Is(err, providers.ErrIncompleteList) || !strings.Contains(err.Error(), "notes.txt") {
		t.Errorf("List with a user file in ferry's temp dir: %v, want ErrIncompleteList naming it", err)
	}
	os.Remove(filepath.Join(root, file.TempDir, "notes.txt"))

	// Without the marker the directory is a user's: everything in it is listed.
	if err := os.Remove(filepath.Join(root, file.TempDir, file.TempMarker)); err != nil {
		t.Fatal(err)
	}
	check([]string{".ferry-tmp-abandoned", ".ferry-tmp/put-00000000deadbeef", ".hidden",
		"d/.ferry-tmp-x", "d/.ferry-tmp/put-0123456789abcdef", "d/real", "put-0123456789abcdef", "top"})

	// Put never writes into the reserved directory.
	if _, err := s.Put(t.Context(), file.TempDir+"/x", strings.NewReader("x"), 1, providers.PutOptions{}); !errors.Is(err, providers.ErrInvalidKey) {
		t.Errorf("Put under %s: %v, want ErrInvalidKey", file.TempDir, err)
	}
}

// A killed copy leaves its temporary file behind; the next process's first Put
// removes ferry's leftovers older than TempMaxAge and nothing else.
func TestPutCleansLeftoverTempFiles(t *testing.T) {
	s, root := newStore(t)
	put(t, s, "a", "a") // makes the marked directory
	tmpdir := filepath.Join(root, file.TempDir)
	old := time.Now().Add(-2 * file.TempMaxAge)
	stale := filepath.Join(tmpdir, file.TempPrefix+"0123456789abcdef")
	fresh := filepath.Join(tmpdir, file.TempPrefix+"fedcba9876543210")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}

	s2, err := file.New(root, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	put(t, s2, "b", "b")
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a killed copy's leftover is still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a temporary file younger than TempMaxAge (a Put in flight) was removed: %v", err)
	}
	if keys, err := listKeys(t, s2); err != nil || len(keys) != 2 {
		t.Errorf("List = %q, %v; want a and b", keys, err)
	}
}

func TestListFailsOnUnreadableEntry(t *testing.T) {
	s, root := newStore(t)
	put(t, s, "a", "a")
	// A FIFO is neither an object nor something to skip silently.
	if err := mkfifo(filepath.Join(root, "pipe")); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if _, err := listKeys(t, s); !errors.Is(err, providers.ErrIncompleteList) {
		t.Errorf("List over a FIFO: %v, want ErrIncompleteList", err)
	}
	if rc, _, err := s.Open(t.Context(), "pipe"); err == nil {
		rc.Close()
		t.Error("Open(FIFO) succeeded")
	}
}

// errReader fails after n bytes.
type errReader struct{ n int }

func (r *errReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("network down")
	}
	n := min(len(p), r.n)
	for i := range n {
		p[i] = 'z'
	}
	r.n -= n
	return n, nil
}

func TestPutAtomicOnFailure(t *testing.T) {
	s, root := newStore(t)
	_, err := s.Put(t.Context(), "u/obj", &errReader{n: 4096}, 8192, providers.PutOptions{})
	if err == nil {
		t.Fatal("Put with a failing reader succeeded")
	}
	if _, err := os.Lstat(filepath.Join(root, "u/obj")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("final name exists after a failed Put: %v", err)
	}
	for _, p := range tree(t, root) {
		if strings.HasPrefix(p, file.TempDir+"/") {
			t.Errorf("temp file left behind: %s", p)
		}
	}

	put(t, s, "u/obj", "old")
	_, err = s.Put(t.Context(), "u/obj", strings.NewReader("new!"), 4, providers.PutOptions{SHA256: strings.Repeat("0", 64)})
	if !errors.Is(err, providers.ErrChecksum) {
		t.Errorf("Put with a wrong sha256: %v, want ErrChecksum", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "u/obj")); string(b) != "old" {
		t.Errorf("after a failed overwrite the file holds %q, want old", b)
	}
	if got := tree(t, root); len(got) != 2 { // u, u/obj
		t.Errorf("tree after failed writes = %q", got)
	}

	// A reader longer than size is a caller bug, not a truncated object.
	if _, err := s.Put(t.Context(), "long", strings.NewReader("12345"), 3, providers.PutOptions{}); err == nil {
		t.Error("Put of a reader longer than size succeeded")
	}
	if _, err := os.Lstat(filepath.Join(root, "long")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("long: %v", err)
	}
	// A wrong CRC32C is caught too.
	if _, err := s.Put(t.Context(), "crc", strings.NewReader("abc"), 3, providers.PutOptions{CRC32C: "00000000"}); !errors.Is(err, providers.ErrChecksum) {
		t.Errorf("Put with a wrong crc32c: %v, want ErrChecksum", err)
	}
	if _, err := s.Put(t.Context(), "crc", strings.NewReader("abc"), 3, providers.PutOptions{CRC32C: "364b3fb7"}); err != nil {
		t.Errorf("Put with the right crc32c: %v", err)
	}
}

func TestPutParentIsFile(t *testing.T) {
	s, _ := newStore(t)
	put(t, s, "a", "file a")
	_, err := s.Put(t.Context(), "a/b/c", strings.NewReader("x"), 1, providers.PutOptions{})
	if !errors.Is(err, providers.ErrAlreadyExists) || !strings.Contains(err.Error(), `"a" is a file`) {
		t.Errorf("Put under a file: %v, want ErrAlreadyExists naming a", err)
	}
	put(t, s, "d/x", "x")
	_, err = s.Put(t.Context(), "d", strings.NewReader("x"), 1, providers.PutOptions{})
	if !errors.Is(err, providers.ErrAlreadyExists) || !strings.Contains(err.Error(), "directory") {
		t.Errorf("Put over a directory: %v, want ErrAlreadyExists", err)
	}
}

func TestETagAndConditionalDelete(t *testing.T) {
	s, root := newStore(t)
	ctx := t.Context()
	o := put(t, s, "k", "12345")
	fi, err := os.Stat(filepath.Join(root, "k"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(o.ETag, "s5-m") || !strings.Contains(o.ETag, "-i") {
		t.Errorf("ETag %q does not encode size, mtime and inode", o.ETag)
	}
	if !o.ModTime.Equal(fi.ModTime()) || o.Checksums != (providers.Checksums{}) {
		t.Errorf("Object %+v: want mtime %v and no checksums", o, fi.ModTime())
	}
	if f := providers.FeaturesOf(s); f != (providers.Features{}) {
		t.Errorf("Features = %+v, want none", f)
	}

	// Touching the file (same size, same inode, new mtime) is a new version.
	if err := os.Chtimes(filepath.Join(root, "k"), time.Now(), fi.ModTime().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteIf(ctx, "k", o); !errors.Is(err, providers.ErrPrecondition) {
		t.Errorf("DeleteIf after touch: %v, want ErrPrecondition", err)
	}
	// Rewriting in place keeps the inode; size and mtime change.
	if err := os.WriteFile(filepath.Join(root, "k"), []byte("1234"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteIf(ctx, "k", o); !errors.Is(err, providers.ErrPrecondition) {
		t.Errorf("DeleteIf after in-place rewrite: %v, want ErrPrecondition", err)
	}
	// Replaced by another file with the same size and mtime: the inode differs.
	cur, _ := s.Stat(ctx, "k")
	repl := filepath.Join(root, "repl")
	if err := os.WriteFile(repl, []byte("abcd"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(repl, time.Now(), cur.ModTime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(repl, filepath.Join(root, "k")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteIf(ctx, "k", cur); !errors.Is(err, providers.ErrPrecondition) {
		t.Errorf("DeleteIf after replacement with equal size and mtime: %v, want ErrPrecondition", err)
	}
	if err := s.DeleteIf(ctx, "k", providers.Object{Size: 4}); !errors.Is(err, providers.ErrPrecondition) {
		t.Errorf("DeleteIf without an ETag: %v, want ErrPrecondition", err)
	}
	if _, err := os.Stat(filepath.Join(root, "k")); err != nil {
		t.Fatalf("k was deleted by a failed DeleteIf: %v", err)
	}
	cur, _ = s.Stat(ctx, "k")
	if err := s.DeleteIf(ctx, "k", cur); err != nil {
		t.Errorf("DeleteIf with the current version: %v", err)
	}
}

func TestOpenDescribesTheOpenFile(t *testing.T) {
	s, root := newStore(t)
	put(t, s, "k", "first version")
	rc, o, err := s.Open(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// Replace the file while it is open: the reader and its description stay with
	// the first version.
	put(t, s, "k", "second")
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "first version" || o.Size != int64(len(b)) {
		t.Errorf("read %q described as %d bytes", b, o.Size)
	}
	now, _ := s.Stat(t.Context(), "k")
	if now.SameVersion(o) {
		t.Errorf("Stat after replacement %+v still matches the opened version %+v", now, o)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "k")); string(b) != "second" {
		t.Errorf("file holds %q", b)
	}
}

func TestQuarantineOutsideRoot(t *testing.T) {
	s, root := newStore(t)
	ctx := t.Context()
	if got, want := s.QuarantineDir(), root+file.QuarantineSuffix; got != want {
		t.Errorf("QuarantineDir = %s, want %s", got, want)
	}
	o := put(t, s, "alice/photo.jpg", "jpeg")
	h, err := s.SoftDelete(ctx, "alice/photo.jpg", o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "m1/alice/photo.jpg.") {
		t.Errorf("handle %q, want m1/alice/photo.jpg.<version>", h)
	}
	kept := filepath.Join(s.QuarantineDir(), filepath.FromSlash(h))
	if b, err := os.ReadFile(kept); err != nil || string(b) != "jpeg" {
		t.Errorf("quarantined file %s: %q, %v", kept, b, err)
	}
	if rel, _ := filepath.Rel(root, kept); !strings.HasPrefix(rel, "..") {
		t.Errorf("quarantine %s is inside the root %s", kept, root)
	}
	if got := tree(t, root); len(got) != 0 {
		t.Errorf("root after soft delete holds %q, want nothing (empty dirs pruned)", got)
	}
	if fi, err := os.Stat(s.QuarantineDir()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("quarantine dir: %v, %v; want mode 0700", fi, err)
	}

	// Restore brings back the same version (inode and mtime kept).
	if err := s.Restore(ctx, "alice/photo.jpg", h); err != nil {
		t.Fatal(err)
	}
	if now, err := s.Stat(ctx, "alice/photo.jpg"); err != nil || now.ETag != o.ETag {
		t.Errorf("restored %+v, %v; want ETag %s", now, err, o.ETag)
	}
	if _, err := os.Lstat(kept); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("quarantined name still there after Restore: %v", err)
	}

	// Handles must name a quarantined copy of the key given.
	for _, bad := range []string{"../../etc/passwd", "m1/bob/x.1", "m1/alice/photo.jpg", "m1/alice/photo.jpg./x", h + "/x", "/abs"} {
		if err := s.Restore(ctx, "alice/photo.jpg", bad); !errors.Is(err, providers.ErrInvalidKey) {
			t.Errorf("Restore(handle %q): %v, want ErrInvalidKey", bad, err)
		}
		if err := s.Purge(ctx, "alice/photo.jpg", bad); !errors.Is(err, providers.ErrInvalidKey) {
			t.Errorf("Purge(handle %q): %v, want ErrInvalidKey", bad, err)
		}
	}
}

func TestQuarantineConfig(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{root, filepath.Join(root, "q"), "root/q", base, "."} {
		if s, err := file.New(root, file.Options{Quarantine: q}); err == nil {
			s.Close()
			t.Errorf("quarantine %q overlapping the root was accepted", q)
		}
	}
	if _, err := file.New(root, file.Options{Migration: "a/b"}); err == nil {
		t.Error("migration id with a slash was accepted")
	}
	s, err := file.New(root, file.Options{Quarantine: "held"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.QuarantineDir(); got != filepath.Join(base, "held") {
		t.Errorf("relative quarantine resolved to %s, want beside the root", got)
	}
	o := put(t, s, "k", "v")
	h, err := s.SoftDelete(t.Context(), "k", o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "default/") {
		t.Errorf("handle %q, want the default migration dir", h)
	}
	if _, err := os.Stat(filepath.Join(base, "held", h)); err != nil {
		t.Errorf("kept bytes not in the configured quarantine: %v", err)
	}
}

// A Restore that crashed after linking leaves both names; rerunning it, or soft
// deleting the same version again, converges.
func TestSoftDeleteConvergesAfterCrash(t *testing.T) {
	s, root := newStore(t)
	ctx := t.Context()
	o := put(t, s, "k", "bytes")
	h, err := s.SoftDelete(ctx, "k", o)
	if err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(s.QuarantineDir(), h)
	// Simulate the crash: the link is made, the quarantined name not yet removed.
	if err := os.Link(kept, filepath.Join(root, "k")); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(ctx, "k", h); err != nil {
		t.Fatalf("rerun Restore: %v", err)
	}
	if _, err := os.Lstat(kept); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("quarantined name remains: %v", err)
	}
	// Same inode in both places, then SoftDelete of that version again.
	if err := os.MkdirAll(filepath.Dir(kept), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "k"), kept); err != nil {
		t.Fatal(err)
	}
	h2, err := s.SoftDelete(ctx, "k", o)
	if err != nil || h2 != h {
		t.Fatalf("SoftDelete of a version already kept: %q, %v", h2, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "k")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("k still under the root: %v", err)
	}
	if ok, err := s.SoftExists(ctx, "k", h); !ok || err != nil {
		t.Errorf("SoftExists = %v, %v", ok, err)
	}
}

func TestNFCAndNFDAreTwoFiles(t *testing.T) {
	s, root := newStore(t)
	put(t, s, "caf\u00e9", "nfc")
	put(t, s, "cafe\u0301", "nfd")
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	ents = slices.DeleteFunc(ents, func(e os.DirEntry) bool { return e.Name() == file.TempDir })
	if len(ents) != 2 {
		t.Fatalf("root holds %d entries, want 2", len(ents))
	}
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(root, e.Name()))
		want := map[string]string{"caf\u00e9": "nfc", "cafe\u0301": "nfd"}[e.Name()]
		if !bytes.Equal(b, []byte(want)) {
			t.Errorf("%+q holds %q, want %q", e.Name(), b, want)
		}
	}
}

func TestDeletePrunesOnlyEmptyDirs(t *testing.T) {
	s, root := newStore(t)
	put(t, s, "u/1/a", "a")
	put(t, s, "u/2/b", "b")
	if err := s.Delete(t.Context(), "u/1/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "u/1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty u/1 kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "u/2/b")); err != nil {
		t.Errorf("u/2/b: %v", err)
	}
	if _, err := os.Stat(root); err != nil {
		t.Errorf("root itself removed: %v", err)
	}
}

// Deletes prune empty directories while other calls create files in them: every
// call must still succeed.
func TestConcurrentChurnInOneDirectory(t *testing.T) {
	s, root := newStore(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				key := fmt.Sprintf("shared/dir/%d-%d", g, i)
				o, err := s.Put(ctx, key, strings.NewReader("x"), 1, providers.PutOptions{})
				if err != nil {
					errs <- err
					return
				}
				if g%2 == 0 {
					err = s.DeleteIf(ctx, key, o)
				} else {
					var h string
					if h, err = s.SoftDelete(ctx, key, o); err == nil {
						if i%2 == 0 {
							err = s.Purge(ctx, key, h)
						} else if err = s.Restore(ctx, key, h); err == nil {
							err = s.Delete(ctx, key)
						}
					}
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := tree(t, root); len(got) != 0 {
		t.Errorf("root holds %q after everything was deleted", got)
	}
	if got := tree(t, s.QuarantineDir()); len(got) != 0 {
		t.Errorf("quarantine holds %q after everything was purged or restored", got)
	}
}
