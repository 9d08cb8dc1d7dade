package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/ferrymigrate/ferry/providers"
)

// Soft deletes move the file into the quarantine directory, to
// <quarantine>/<migration>/<key>.<etag>; the handle is that path relative to the
// quarantine directory. The ETag (size, mtime in nanoseconds, inode) makes the
// handle a function of the version deleted, as SoftHandle promises. A rename keeps
// inode and mtime, so a restored file has its old ETag back.

// SoftHandle returns the handle SoftDelete(key, expect) uses, without touching the
// store.
func (s *Store) SoftHandle(key string, expect providers.Object) string {
	return path.Join(s.mig, key) + "." + expect.ETag
}

// quarantine returns the quarantine root, creating the directory when create is
// set. Without create, a quarantine that was never made is (nil, nil).
func (s *Store) quarantine(create bool) (*os.Root, error) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.qroot != nil {
		return s.qroot, nil
	}
	if create {
		// 0700: the quarantine holds user records that were meant to be gone.
		if err := os.MkdirAll(s.qdir, 0o700); err != nil {
			return nil, fail("create quarantine", s.qdir, err)
		}
	}
	r, err := os.OpenRoot(s.qdir)
	if err != nil {
		if !create && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fail("open quarantine", s.qdir, err)
	}
	s.qroot = r
	return r, nil
}

// checkHandle makes sure handle names a quarantined copy of key:
// "<migration>/<key>.<etag>". Taking the migration from the handle lets a
// quarantine made under an earlier migration id be restored.
func checkHandle(key, handle string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	bad := func() error {
		return fmt.Errorf("file: handle %q does not name a quarantined copy of %q: %w", handle, key, providers.ErrInvalidKey)
	}
	mig, rest, ok := strings.Cut(handle, "/")
	if !ok || checkSegment(mig) != nil {
		return bad()
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 || rest[:i] != key || i+1 == len(rest) {
		return bad()
	}
	for _, c := range rest[i+1:] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') && c != '-' {
			return bad()
		}
	}
	return nil
}

// openParent opens key's directory inside r (confined to it) and returns it with
// key's base name, for the *at system calls.
func openParent(r *os.Root, key string) (*os.File, string, error) {
	d, err := r.Open(path.Dir(key))
	if err != nil {
		return nil, "", err
	}
	return d, path.Base(key), nil
}

// SoftDelete moves key into the quarantine if it is still the version expect names.
func (s *Store) SoftDelete(_ context.Context, key string, expect providers.Object) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	cur, err := s.current("soft delete", key, expect)
	if err != nil {
		return "", err
	}
	q, err := s.quarantine(true)
	if err != nil {
		return "", err
	}
	pd, base, err := openParent(s.root, key)
	if err != nil {
		return "", fail("soft delete", key, err)
	}
	defer pd.Close()
	handle := s.SoftHandle(key, expect)
	for attempt := 0; ; attempt++ {
		err := s.quarantineFile(q, key, handle, pd, base, cur)
		if err == nil {
			break
		}
		// A concurrent Purge or Restore can prune the quarantine directory we just
		// made before our rename: if the file is still here, make it again.
		if attempt < retries && errors.Is(err, fs.ErrNotExist) {
			if _, serr := statAt(pd, base); serr == nil {
				continue
			}
		}
		return "", err
	}
	if err := pd.Sync(); err != nil {
		return "", fail("soft delete (sync directory)", key, err)
	}
	prune(s.root, dirOf(key))
	return handle, nil
}

// quarantineFile renames key (base in pd, currently cur) to handle in q.
func (s *Store) quarantineFile(q *os.Root, key, handle string, pd *os.File, base string, cur attrs) error {
	qdir, qbase := path.Dir(handle), path.Base(handle)
	if err := mkdirAllRetry(q, qdir, 0o700); err != nil {
		return fail("soft delete (quarantine dir)", qdir, err)
	}
	qd, err := q.Open(qdir)
	if err != nil {
		return fail("soft delete (quarantine dir)", qdir, err)
	}
	defer qd.Close()
	// Same race window as DeleteIf between the caller's check and the rename below,
	// but a file renamed onto key meanwhile is quarantined, not lost.
	if qa, err := statAt(qd, qbase); err == nil {
		// This version is already kept: a Restore that crashed between its link and
		// unlink left two names for one inode, and rename(2) between two names of
		// one file does nothing. Drop the name under the root.
		if qa.dev != cur.dev || qa.ino != cur.ino {
			return fmt.Errorf("file: soft delete %q: quarantine already holds different bytes at %s: %w",
				key, handle, providers.ErrAlreadyExists)
		}
		if err := unlinkAt(pd, base); err != nil {
			return fail("soft delete", key, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fail("soft delete", handle, err)
	} else if now, err := statAt(pd, base); err != nil {
		return fail("soft delete", key, err)
	} else if !now.same(cur) {
		return fmt.Errorf("file: soft delete %q: changed since it was checked: %w", key, providers.ErrPrecondition)
	} else if err := renameAt(pd, base, qd, qbase); err != nil {
		if errors.Is(err, syscall.EXDEV) {
			return fmt.Errorf("file: soft delete %q: quarantine %s is on another filesystem than %s; set a quarantine beside the root: %w",
				key, s.qdir, s.dir, err)
		}
		return fail("soft delete", handle, err)
	}
	if err := qd.Sync(); err != nil {
		return fail("soft delete (sync quarantine)", handle, err)
	}
	return nil
}

// Restore moves the quarantined file back to key, failing with ErrAlreadyExists if
// key is taken.
//
// It links first and unlinks the quarantined name after: link(2) refuses to replace
// an existing name atomically, where check-then-rename could clobber a file written
// in between. If a crash left both names (the same inode), a rerun finishes the job.
// Filesystems that refuse hard links fall back to check-then-rename, with that
// small race.
func (s *Store) Restore(_ context.Context, key, handle string) error {
	if err := checkHandle(key, handle); err != nil {
		return err
	}
	q, err := s.quarantine(false)
	if err != nil {
		return err
	}
	if q == nil {
		return fmt.Errorf("file: restore %q: no quarantine at %s: %w", key, s.qdir, providers.ErrNotFound)
	}
	qd, qbase, err := openParent(q, handle)
	if err != nil {
		return fail("restore", handle, err)
	}
	defer qd.Close()
	qa, err := statAt(qd, qbase)
	if err != nil {
		return fail("restore", handle, err)
	}
	if !qa.typ.IsRegular() {
		return symlinkErr("restore", handle)
	}

	var pd *os.File
	var base string
	for attempt := 0; ; attempt++ {
		err = s.mkdirAll("restore", key, dirOf(key))
		if err == nil {
			pd, base, err = openParent(s.root, key)
		}
		if err != nil {
			if attempt < retries && errors.Is(err, fs.ErrNotExist) {
				continue // a concurrent delete pruned the directory we just made
			}
			return err
		}
		err = linkAt(qd, qbase, pd, base)
		if attempt == retries || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		pd.Close()
	}
	defer pd.Close()

	switch {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		cur, serr := statAt(pd, base)
		if serr != nil || cur.dev != qa.dev || cur.ino != qa.ino {
			return fmt.Errorf("file: restore %q: key is taken: %w", key, providers.ErrAlreadyExists)
		}
		// An earlier Restore linked it and stopped before the unlink.
	case errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSUP) ||
		errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EMLINK):
		if _, serr := statAt(pd, base); serr == nil {
			return fmt.Errorf("file: restore %q: key is taken: %w", key, providers.ErrAlreadyExists)
		} else if !errors.Is(serr, fs.ErrNotExist) {
			return fail("restore", key, serr)
		}
		if err := renameAt(qd, qbase, pd, base); err != nil {
			return fail("restore", key, err)
		}
	default:
		return fail("restore", key, err)
	}
	if err := unlinkAt(qd, qbase); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail("restore (remove quarantined name)", handle, err)
	}
	if err := pd.Sync(); err != nil {
		return fail("restore (sync directory)", key, err)
	}
	prune(q, path.Dir(handle))
	return nil
}

// Purge removes the quarantined file for good.
func (s *Store) Purge(_ context.Context, key, handle string) error {
	if err := checkHandle(key, handle); err != nil {
		return err
	}
	q, err := s.quarantine(false)
	if err != nil {
		return err
	}
	if q == nil {
		return fmt.Errorf("file: purge %q: no quarantine at %s: %w", handle, s.qdir, providers.ErrNotFound)
	}
	fi, err := q.Lstat(handle)
	if err != nil {
		return fail("purge", handle, err)
	}
	if !fi.Mode().IsRegular() {
		return symlinkErr("purge", handle)
	}
	if err := q.Remove(handle); err != nil {
		return fail("purge", handle, err)
	}
	prune(q, path.Dir(handle))
	return nil
}

// SoftExists reports whether the quarantined file is still there.
func (s *Store) SoftExists(_ context.Context, key, handle string) (bool, error) {
	if err := checkHandle(key, handle); err != nil {
		return false, err
	}
	q, err := s.quarantine(false)
	if err != nil || q == nil {
		return false, err
	}
	fi, err := q.Lstat(handle)
	switch {
	case err == nil:
		return fi.Mode().IsRegular(), nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return false, nil
	default:
		return false, fail("soft exists", handle, err)
	}
}
