package file

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ferrymigrate/ferry/providers"
)

func TestFailMapsToPortableErrors(t *testing.T) {
	for _, c := range []struct {
		errno syscall.Errno
		want  error
	}{
		{syscall.ENOENT, providers.ErrNotFound},
		{syscall.ENOTDIR, providers.ErrNotFound},
		{syscall.EACCES, providers.ErrPermission},
		{syscall.EPERM, providers.ErrPermission},
		{syscall.ENAMETOOLONG, providers.ErrInvalidKey},
		{syscall.ELOOP, providers.ErrNotSupported},
		{syscall.ENOSPC, providers.ErrNoSpace},
		{syscall.EDQUOT, providers.ErrNoSpace},
		{syscall.EFBIG, providers.ErrNoSpace},
		{syscall.EROFS, providers.ErrReadOnly},
	} {
		err := fail("stat", "k", &os.PathError{Op: "lstat", Path: "/r/k", Err: c.errno})
		if !errors.Is(err, c.want) || !errors.Is(err, c.errno) {
			t.Errorf("fail(%v) = %v, want it to wrap %v and the errno", c.errno, err, c.want)
		}
		// A full or read-only disk stops a phase; one unreadable file does not.
		fatal := c.want == providers.ErrNoSpace || c.want == providers.ErrReadOnly
		if providers.Fatal(err) != fatal {
			t.Errorf("providers.Fatal(fail(%v)) = %v, want %v", c.errno, !fatal, fatal)
		}
	}
	if err := fail("stat", "k", errors.New("odd")); errors.Is(err, providers.ErrNotFound) || !strings.Contains(err.Error(), "odd") {
		t.Errorf("unmapped error became %v", err)
	}
}

// As root, permission bits do not stop us, so this only runs as an ordinary user.
func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores permission bits")
	}
	dir := t.TempDir()
	s, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := filepath.Join(dir, "locked")
	if err := os.WriteFile(p, []byte("x"), 0o000); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Open(t.Context(), "locked"); !errors.Is(err, providers.ErrPermission) {
		t.Errorf("Open of an unreadable file: %v, want ErrPermission", err)
	}
}
