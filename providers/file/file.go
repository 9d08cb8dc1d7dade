// Package file is the provider for a directory tree (file:///abs/dir): legacy NFS
// mounts and archives.
//
// Every path operation goes through an os.Root opened on the directory, so no key
// and no symlink can reach outside it. Symlinks are not objects: List fails on one
// (skipping it would make the listing partial) and Stat/Open refuse to follow one.
//
// Deleting a file also removes the directories it leaves empty, up to the root, so
// a drained archive keeps no skeleton of user directories.
package file

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ferrymigrate/ferry/providers"
)

// Temporary files. Put writes every file first into TempDir, a directory at the root
// that ferry marks as its own with TempMarker, under a name TempPrefix followed by 16
// hex digits, then renames it onto its key. List skips that directory only when it is
// exactly ferry's layout (the marker, and nothing but names of that pattern), so a
// user's file is never hidden by a name that looks like ferry's: a user directory
// called TempDir without the marker is listed as user data, and a marked one that
// holds anything else fails the listing. Keys under TempDir are reserved for Put only.
const (
	TempDir    = ".ferry-tmp"
	TempMarker = "FERRY-TEMP-DIR"
	TempPrefix = "put-"
)

// TempMaxAge is how long a temporary file may go unmodified before the first Put of a
// later process takes it for the leftover of a killed copy and removes it. A Put in
// flight writes its file continuously; one stalled longer than this fails its rename
// and is retried, losing nothing.
var TempMaxAge = time.Hour

const tempMarkerText = "ferry keeps its temporary files here while it writes; files in this directory\n" +
	"that are older than an hour are leftovers of an interrupted copy and are removed.\n"

// isTempName reports whether name is exactly the name of one of ferry's temporary files.
func isTempName(name string) bool {
	hexd := strings.TrimPrefix(name, TempPrefix)
	if len(hexd) != 16 || len(name) != len(TempPrefix)+16 {
		return false
	}
	for i := 0; i < len(hexd); i++ {
		if c := hexd[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// QuarantineSuffix names the default quarantine directory: a sibling of the root,
// so it is on the same filesystem (rename works) and outside every listing.
const QuarantineSuffix = ".ferry-quarantine"

func init() {
	providers.Register("file", func(_ context.Context, cfg providers.Config) (providers.Store, error) {
		dir, err := DirFromURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Name, err)
		}
		s, err := New(dir, Options{Quarantine: cfg.Quarantine, Migration: cfg.Migration})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Name, err)
		}
		return s, nil
	})
}

// Options configure a Store beyond its root directory.
type Options struct {
	// Quarantine is where soft-deleted files are kept. Empty: "<root>.ferry-quarantine".
	// A relative path resolves against the root's parent directory. It must not
	// overlap the root.
	Quarantine string
	// Migration names the quarantine subdirectory; empty means "default".
	Migration string
}

// Store is a directory tree seen as an object store. Safe for concurrent use.
type Store struct {
	dir  string // absolute, clean
	root *os.Root
	qdir string // absolute, clean
	mig  string

	qmu   sync.Mutex
	qroot *os.Root // opened on first use

	cleanOnce sync.Once // leftovers of killed Puts, removed before the first Put
}

var (
	_ providers.Store              = (*Store)(nil)
	_ providers.ConditionalDeleter = (*Store)(nil)
	_ providers.SoftDeleter        = (*Store)(nil)
	_ providers.Featurer           = (*Store)(nil)
)

// DirFromURL returns the absolute directory a file:///abs/dir URL names.
func DirFromURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("file: bad url %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "file":
		return "", fmt.Errorf("file: url %q: scheme is not file", raw)
	case u.Host != "" && u.Host != "localhost":
		return "", fmt.Errorf("file: url %q: host %q not supported; use file:///abs/dir", raw, u.Host)
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(raw, "?") || strings.HasSuffix(raw, "#"):
		return "", fmt.Errorf("file: url %q: query or fragment not allowed; escape ? and # as %%3F and %%23", raw)
	case u.Opaque != "" || !filepath.IsAbs(u.Path):
		return "", fmt.Errorf("file: url %q: path must be absolute (file:///abs/dir)", raw)
	}
	return filepath.Clean(u.Path), nil
}

// New opens the existing directory dir (absolute) as a Store.
func New(dir string, opts Options) (*Store, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("file: root %q is not an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fail("open root", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("file: root %s is not a directory", dir)
	}
	mig := opts.Migration
	if mig == "" {
		mig = "default"
	}
	if err := checkSegment(mig); err != nil {
		return nil, fmt.Errorf("file: migration id %q cannot name a quarantine directory: %w", mig, err)
	}
	q := opts.Quarantine
	switch {
	case q == "":
		q = dir + QuarantineSuffix
	case !filepath.IsAbs(q):
		q = filepath.Join(filepath.Dir(dir), q)
	}
	q = filepath.Clean(q)
	if overlaps(dir, q) {
		return nil, fmt.Errorf("file: quarantine %s overlaps root %s; it must be outside it so listings never see it", q, dir)
	}
	// Compare resolved paths too, in case a symlink makes them overlap.
	if rd, err := filepath.EvalSymlinks(dir); err == nil {
		if rq, err := filepath.EvalSymlinks(q); err == nil && overlaps(rd, rq) {
			return nil, fmt.Errorf("file: quarantine %s overlaps root %s (through a symlink)", q, dir)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fail("open root", dir, err)
	}
	return &Store{dir: dir, root: root, qdir: q, mig: mig}, nil
}

func overlaps(a, b string) bool {
	within := func(parent, p string) bool {
		rel, err := filepath.Rel(parent, p)
		return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
	}
	return within(a, b) || within(b, a)
}

// Dir returns the root directory.
func (s *Store) Dir() string { return s.dir }

// QuarantineDir returns the directory soft-deleted files are moved to.
func (s *Store) QuarantineDir() string { return s.qdir }

// URI is for humans: nothing is escaped.
func (s *Store) URI(key string) string { return "file://" + s.dir + "/" + key }

// Features: a file store holds neither dir markers nor "a" next to "a/b", and has no
// checksum of its own to vouch for.
func (s *Store) Features() providers.Features { return providers.Features{} }

// Close releases the root (and quarantine) handles.
func (s *Store) Close() error {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.qroot != nil {
		s.qroot.Close()
		s.qroot = nil
	}
	return s.root.Close()
}

// checkKey enforces the key rules: relative, "/"-separated, no empty, "." or ".."
// segment, no NUL, no trailing "/". Put also refuses keys under TempDir.
func checkKey(key string) error {
	switch {
	case key == "":
		return invalid(key, "empty key")
	case key[0] == '/':
		return invalid(key, "absolute key")
	case strings.HasSuffix(key, "/"):
		return invalid(key, "a file store cannot hold a key ending in /")
	}
	for seg := range strings.SplitSeq(key, "/") {
		if err := checkSegment(seg); err != nil {
			return invalid(key, err.Error())
		}
	}
	return nil
}

func checkSegment(seg string) error {
	switch {
	case seg == "":
		return errors.New("empty path segment")
	case seg == "." || seg == "..":
		return fmt.Errorf("%q segment", seg)
	case strings.IndexByte(seg, 0) >= 0:
		return errors.New("NUL byte")
	case strings.ContainsRune(seg, '/'):
		return errors.New("contains /")
	}
	return nil
}

func invalid(key, why string) error {
	return fmt.Errorf("file: key %q: %s: %w", key, why, providers.ErrInvalidKey)
}

// fail wraps err with the portable error it maps to, keeping the original too.
func fail(op, key string, err error) error {
	var portable error
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		portable = providers.ErrNotFound
	case errors.Is(err, fs.ErrPermission):
		portable = providers.ErrPermission
	case escapes(err), errors.Is(err, syscall.ENAMETOOLONG):
		portable = providers.ErrInvalidKey
	case errors.Is(err, syscall.ELOOP):
		portable = providers.ErrNotSupported
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		portable = providers.ErrNoSpace
	case errors.Is(err, syscall.EROFS):
		portable = providers.ErrReadOnly
	}
	if portable == nil {
		return fmt.Errorf("file: %s %q: %w", op, key, err)
	}
	return fmt.Errorf("file: %s %q: %w: %w", op, key, portable, err)
}

// escapes reports os.Root's refusal to leave the root (through a symlink): its error
// value is unexported, so match its text. TestSymlinkEscape pins this.
func escapes(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == "path escapes from parent" {
			return true
		}
	}
	return false
}

func symlinkErr(op, key string) error {
	return fmt.Errorf("file: %s %q: a symlink or other non-regular file; ferry does not follow symlinks: %w",
		op, key, providers.ErrNotSupported)
}

// attrs is what the store reads from a stat: enough for an Object and its ETag.
type attrs struct {
	typ   fs.FileMode // type bits only
	size  int64
	mtime time.Time
	ctime int64 // status change time (ns), 0 where not read; not part of the ETag
	dev   uint64
	ino   uint64
}

func attrsOf(fi fs.FileInfo) attrs {
	dev, ino := devIno(fi)
	return attrs{typ: fi.Mode().Type(), size: fi.Size(), mtime: fi.ModTime(), ctime: ctimeOf(fi), dev: dev, ino: ino}
}

// same reports whether a and b describe one inode in one state: a write in place
// changes the ctime even when the writer sets the mtime back.
func (a attrs) same(b attrs) bool {
	return a.typ == b.typ && a.size == b.size && a.mtime.Equal(b.mtime) && a.ctime == b.ctime && a.dev == b.dev && a.ino == b.ino
}

// regular turns attrs into an Object, refusing what is not a regular file. A
// directory is not an object (ErrNotFound); a symlink is not followed.
func (a attrs) regular(op, key string) (providers.Object, error) {
	switch {
	case a.typ.IsRegular():
		return object(key, a), nil
	case a.typ.IsDir():
		return providers.Object{}, fmt.Errorf("file: %s %q: a directory, not an object: %w", op, key, providers.ErrNotFound)
	default:
		return providers.Object{}, symlinkErr(op, key)
	}
}

func object(key string, a attrs) providers.Object {
	return providers.Object{Key: key, Size: a.size, ETag: etag(a), ModTime: a.mtime}
}

// etag names a file version by size, mtime and inode: what DeleteIf compares.
func etag(a attrs) string {
	b := make([]byte, 0, 48)
	b = append(b, 's')
	b = strconv.AppendInt(b, a.size, 10)
	b = append(b, "-m"...)
	b = strconv.AppendInt(b, a.mtime.UnixNano(), 10)
	b = append(b, "-i"...)
	b = strconv.AppendUint(b, a.ino, 10)
	return string(b)
}

func dirOf(key string) string { return path.Dir(key) }

// List walks the tree depth-first, streaming directory entries in batches so a
// huge flat directory does not have to fit in memory.
func (s *Store) List(ctx context.Context, fn func(providers.Object) error) error {
	return s.walk(ctx, ".", fn)
}

func (s *Store) walk(ctx context.Context, rel string, fn func(providers.Object) error) error {
	d, err := s.root.Open(rel)
	if err != nil {
		return incomplete(rel, err)
	}
	defer d.Close()
	for {
		ents, rerr := d.ReadDir(256)
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return incomplete(rel, err)
			}
			name := e.Name()
			key := name
			if rel != "." {
				key = rel + "/" + name
			}
			switch t := e.Type(); {
			case t.IsDir():
				if key == TempDir {
					ours, err := s.tempLayout()
					if err != nil {
						return err
					}
					if ours {
						continue // ferry's own temporary files: in-flight or abandoned Puts
					}
				}
				if err := s.walk(ctx, key, fn); err != nil {
					return err
				}
			case t.IsRegular():
				a, err := statAt(d, name)
				if errors.Is(err, fs.ErrNotExist) {
					continue // deleted since ReadDir: listing it a moment later would not show it either
				}
				if err != nil {
					return incomplete(key, err)
				}
				if !a.typ.IsRegular() {
					return fmt.Errorf("file: list: %q changed type during the listing: %w", key, providers.ErrIncompleteList)
				}
				if err := fn(object(key, a)); err != nil {
					return err
				}
			case providers.ListSkipped(ctx, key):
				continue // not an object, and excluded by the caller: it would never be a record
			case t&fs.ModeSymlink != 0:
				return fmt.Errorf("file: list: %q is a symlink; ferry does not follow symlinks, and skipping it would make the listing partial: %w",
					key, providers.ErrIncompleteList)
			default:
				return fmt.Errorf("file: list: %q is not a regular file (%v): %w", key, t, providers.ErrIncompleteList)
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return incomplete(rel, rerr)
		}
	}
}

func incomplete(rel string, err error) error {
	return fmt.Errorf("file: list %q: %w: %w", rel, providers.ErrIncompleteList, err)
}

// Stat describes key without following a symlink at it.
func (s *Store) Stat(_ context.Context, key string) (providers.Object, error) {
	if err := checkKey(key); err != nil {
		return providers.Object{}, err
	}
	fi, err := s.root.Lstat(key)
	if err != nil {
		return providers.Object{}, fail("stat", key, err)
	}
	return attrsOf(fi).regular("stat", key)
}

// Open returns the file and its description taken from the open descriptor, so the
// two always agree even if the key is replaced meanwhile.
func (s *Store) Open(_ context.Context, key string) (io.ReadCloser, providers.Object, error) {
	if err := checkKey(key); err != nil {
		return nil, providers.Object{}, err
	}
	f, err := openNoFollow(s.root, key)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, providers.Object{}, symlinkErr("open", key)
		}
		return nil, providers.Object{}, fail("open", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, providers.Object{}, fail("open", key, err)
	}
	o, err := attrsOf(fi).regular("open", key)
	if err != nil {
		f.Close()
		return nil, providers.Object{}, err
	}
	return f, o, nil
}

// Put writes into a temp file in the destination directory, checks size and
// checksums, fsyncs, renames onto key and fsyncs the directory: readers see the old
// file or the whole new one.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
	if err := checkKey(key); err != nil {
		return providers.Object{}, err
	}
	if key == TempDir || strings.HasPrefix(key, TempDir+"/") {
		return providers.Object{}, fmt.Errorf("file: put %q: %s/ at the root of a file store is reserved for ferry's temporary files: %w",
			key, TempDir, providers.ErrInvalidKey)
	}
	if size < 0 {
		return providers.Object{}, fmt.Errorf("file: put %q: negative size %d", key, size)
	}
	s.cleanOnce.Do(func() { s.cleanTemp(time.Now()) })
	check, err := newChecker(opts)
	if err != nil {
		return providers.Object{}, fmt.Errorf("file: put %q: %w", key, err)
	}
	dir := dirOf(key)
	f, tmp, err := s.createTemp(key, dir)
	if err != nil {
		return providers.Object{}, err
	}
	committed := false
	defer func() {
		if !committed {
			f.Close()
			s.root.Remove(tmp)
		}
	}()

	var w io.Writer = f
	if check.w != nil {
		w = io.MultiWriter(f, check.w)
	}
	n, err := io.Copy(w, io.LimitReader(ctxReader{ctx, r}, size))
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Path == f.Name() {
			return providers.Object{}, fail("put", key, err) // the write failed: a full or read-only disk
		}
		return providers.Object{}, fmt.Errorf("file: put %q: %w", key, err)
	}
	if n != size {
		return providers.Object{}, fmt.Errorf("file: put %q: reader ended after %d of %d bytes", key, n, size)
	}
	var extra [1]byte
	if m, err := io.ReadFull(r, extra[:]); m > 0 {
		return providers.Object{}, fmt.Errorf("file: put %q: reader has more than %d bytes", key, size)
	} else if err != io.EOF {
		return providers.Object{}, fmt.Errorf("file: put %q: %w", key, err)
	}
	if err := check.verify(); err != nil {
		return providers.Object{}, fmt.Errorf("file: put %q: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return providers.Object{}, fail("put", key, err)
	}
	// Describe the file from our own descriptor: rename keeps size, mtime and inode,
	// and a later Stat could already see someone else's write.
	fi, err := f.Stat()
	if err != nil {
		return providers.Object{}, fail("put", key, err)
	}
	if err := f.Close(); err != nil {
		return providers.Object{}, fail("put", key, err)
	}
	err = s.root.Rename(tmp, key)
	for attempt := 0; attempt < retries && errors.Is(err, fs.ErrNotExist); attempt++ {
		// A concurrent delete pruned key's directory, now empty but for what we are
		// about to add: make it again. (If the temp file itself is gone, this ends
		// in the same error.)
		if merr := s.mkdirAll("put", key, dir); merr != nil && !errors.Is(merr, fs.ErrNotExist) {
			return providers.Object{}, merr
		}
		err = s.root.Rename(tmp, key)
	}
	if err != nil {
		if errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
			return providers.Object{}, fmt.Errorf("file: put %q: a directory holds keys under it (a file store cannot have both): %w",
				key, providers.ErrAlreadyExists)
		}
		if errors.Is(err, syscall.EXDEV) {
			return providers.Object{}, fmt.Errorf("file: put %q: %s is on another filesystem than %s/%s (a mount inside the root?): %w",
				key, dir, s.dir, TempDir, err)
		}
		return providers.Object{}, fail("put", key, err)
	}
	committed = true
	if err := s.syncDir(dir); err != nil {
		return providers.Object{}, fail("put (sync directory)", key, err)
	}
	return object(key, attrsOf(fi)), nil
}

// retries bounds the loops that redo a step after a concurrent delete pruned a
// directory the step had just made: each race is microseconds wide.
const retries = 10

// createTemp makes key's directory, and an exclusive temp file in TempDir. It retries
// when a concurrent delete prunes the fresh directory or a random name collides.
func (s *Store) createTemp(key, dir string) (*os.File, string, error) {
	for attempt := 0; ; attempt++ {
		if err := s.mkdirAll("put", key, dir); err != nil {
			if attempt < retries && errors.Is(err, fs.ErrNotExist) {
				continue // a concurrent delete pruned a directory MkdirAll had just made
			}
			return nil, "", err
		}
		if err := s.tempDir(); err != nil {
			return nil, "", fail("put (temporary directory)", key, err)
		}
		tmp := TempDir + "/" + fmt.Sprintf("%s%016x", TempPrefix, rand.Uint64())
		f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
		if err == nil {
			return f, tmp, nil
		}
		if attempt < retries && (errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrNotExist)) {
			continue
		}
		return nil, "", fail("put", key, err)
	}
}

// tempDir makes TempDir and its marker, unless they are there already.
func (s *Store) tempDir() error {
	if err := s.root.Mkdir(TempDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	f, err := s.root.OpenFile(TempDir+"/"+TempMarker, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	_, werr := f.WriteString(tempMarkerText)
	if err := f.Close(); werr == nil {
		werr = err
	}
	return werr
}

// tempLayout reports whether the TempDir at the root is ferry's own: it holds the
// marker and nothing but temporary files. Without the marker it is a user's directory
// (false); with the marker and anything else in it, ferry cannot tell whose the rest
// is, and the listing fails rather than hide it.
func (s *Store) tempLayout() (bool, error) {
	fi, err := s.root.Lstat(TempDir + "/" + TempMarker)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, incomplete(TempDir, err)
	}
	if !fi.Mode().IsRegular() {
		return false, nil
	}
	d, err := s.root.Open(TempDir)
	if err != nil {
		return false, incomplete(TempDir, err)
	}
	defer d.Close()
	for {
		ents, rerr := d.ReadDir(256)
		for _, e := range ents {
			if e.Name() == TempMarker {
				continue
			}
			if !isTempName(e.Name()) || !e.Type().IsRegular() {
				return false, fmt.Errorf("file: list: %s/%s is in ferry's temporary directory but is not one of ferry's temporary files; "+
					"move it out of %s/ so it can be planned: %w", TempDir, e.Name(), TempDir, providers.ErrIncompleteList)
			}
		}
		if rerr == io.EOF {
			return true, nil
		}
		if rerr != nil {
			return false, incomplete(TempDir, rerr)
		}
	}
}

// cleanTemp removes ferry's temporary files that have not been written to for
// TempMaxAge: what Puts of a killed process left behind. Only in ferry's own marked
// layout, only names of ferry's pattern; best effort (a failure leaves a file that
// List keeps skipping).
func (s *Store) cleanTemp(now time.Time) {
	if ours, err := s.tempLayout(); err != nil || !ours {
		return
	}
	d, err := s.root.Open(TempDir)
	if err != nil {
		return
	}
	defer d.Close()
	ents, _ := d.ReadDir(-1)
	for _, e := range ents {
		if !isTempName(e.Name()) || !e.Type().IsRegular() {
			continue
		}
		a, err := statAt(d, e.Name())
		if err != nil || !a.typ.IsRegular() || now.Sub(a.mtime) < TempMaxAge {
			continue
		}
		s.root.Remove(TempDir + "/" + e.Name())
	}
}

// CleanTemp removes the leftovers of killed Puts now (Put does it once by itself).
func (s *Store) CleanTemp() { s.cleanTemp(time.Now()) }

// mkdirAll creates dir (key's parent) and explains the one common failure: an
// ancestor that is a file.
func (s *Store) mkdirAll(op, key, dir string) error {
	if dir == "." {
		return nil
	}
	err := mkdirAllRetry(s.root, dir, 0o755)
	if err == nil {
		return nil
	}
	if p := fileAncestor(s.root, dir); p != "" {
		return fmt.Errorf("file: %s %q: %q is a file, so it cannot hold %q (a file store cannot have both): %w",
			op, key, p, key, providers.ErrAlreadyExists)
	}
	return fail(op, key, err)
}

// mkdirAllRetry is r.MkdirAll, retried when it reports ENOENT or EEXIST because a
// concurrent delete pruned a directory it was walking through.
func mkdirAllRetry(r *os.Root, dir string, perm fs.FileMode) error {
	for attempt := 0; ; attempt++ {
		err := r.MkdirAll(dir, perm)
		if err == nil || attempt == retries ||
			!(errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrNotExist)) || fileAncestor(r, dir) != "" {
			return err
		}
	}
}

// fileAncestor returns the first of dir and its ancestors that exists and is not a
// directory, or "".
func fileAncestor(r *os.Root, dir string) string {
	for p := dir; p != "." && p != "/"; p = path.Dir(p) {
		if fi, err := r.Lstat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return ""
}

func (s *Store) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Delete removes key unconditionally (ErrNotFound if absent).
func (s *Store) Delete(_ context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	fi, err := s.root.Lstat(key)
	if err != nil {
		return fail("delete", key, err)
	}
	if _, err := attrsOf(fi).regular("delete", key); err != nil {
		return err
	}
	if err := s.root.Remove(key); err != nil {
		return fail("delete", key, err)
	}
	prune(s.root, dirOf(key))
	return nil
}

// DeleteIf removes key only if its size, mtime and inode (the ETag) are those of
// expect and, when expect carries a SHA-256, its bytes still hash to it: a file
// rewritten in place with its mtime set back keeps its ETag, so the bytes are read
// again just before the unlink.
func (s *Store) DeleteIf(_ context.Context, key string, expect providers.Object) error {
	if err := checkKey(key); err != nil {
		return err
	}
	a, err := s.current("delete", key, expect)
	if err != nil {
		return err
	}
	if err := s.unchanged("delete", key, a); err != nil {
		return err
	}
	// Race window: POSIX has no compare-and-unlink, so a writer that renames a new
	// file onto key between the Lstat above and the unlink below loses its file. The
	// window is two syscalls wide, and a legacy store being drained is not being
	// written to; SoftDelete has the same window but keeps the bytes.
	if err := s.root.Remove(key); err != nil {
		return fail("delete", key, err)
	}
	prune(s.root, dirOf(key))
	return nil
}

// current returns key's attrs if it is still the version expect names, and when
// expect carries a SHA-256, if its bytes (read now) still hash to it.
func (s *Store) current(op, key string, expect providers.Object) (attrs, error) {
	if expect.ETag == "" {
		return attrs{}, fmt.Errorf("file: %s %q: the expected version has no ETag: %w", op, key, providers.ErrPrecondition)
	}
	fi, err := s.root.Lstat(key)
	if err != nil {
		return attrs{}, fail(op, key, err)
	}
	a := attrsOf(fi)
	cur, err := a.regular(op, key)
	if err != nil {
		return attrs{}, err
	}
	if cur.ETag != expect.ETag {
		return attrs{}, fmt.Errorf("file: %s %q: now %s, expected %s: %w", op, key, cur.ETag, expect.ETag, providers.ErrPrecondition)
	}
	if expect.Checksums.SHA256 == "" {
		return a, nil
	}
	return s.sameBytes(op, key, a, expect.Checksums.SHA256)
}

// sameBytes reads key whole and checks that it hashes to want, and that the inode
// read is the one a describes and did not change (ctime included) during the read.
// It returns the attrs of what was read, for unchanged to compare just before the
// unlink or rename.
func (s *Store) sameBytes(op, key string, a attrs, want string) (attrs, error) {
	f, err := openNoFollow(s.root, key)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return attrs{}, symlinkErr(op, key)
		}
		return attrs{}, fail(op, key, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return attrs{}, fail(op, key, err)
	}
	before := attrsOf(fi)
	if before.dev != a.dev || before.ino != a.ino || etag(before) != etag(a) {
		return attrs{}, fmt.Errorf("file: %s %q: replaced while it was checked: %w", op, key, providers.ErrPrecondition)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return attrs{}, fail(op, key, err)
	}
	if fi, err = f.Stat(); err != nil {
		return attrs{}, fail(op, key, err)
	}
	if !attrsOf(fi).same(before) {
		return attrs{}, fmt.Errorf("file: %s %q: changed while it was read: %w", op, key, providers.ErrPrecondition)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, want) {
		return attrs{}, fmt.Errorf("file: %s %q: its bytes hash to sha256 %.12s, expected %.12s (rewritten in place with the same size and mtime): %w",
			op, key, got, want, providers.ErrPrecondition)
	}
	return before, nil
}

// unchanged checks, just before an unlink or rename of key, that it is still the
// inode a describes, in the same state (a write since changed its ctime).
func (s *Store) unchanged(op, key string, a attrs) error {
	fi, err := s.root.Lstat(key)
	if err != nil {
		return fail(op, key, err)
	}
	if !attrsOf(fi).same(a) {
		return fmt.Errorf("file: %s %q: changed since it was checked: %w", op, key, providers.ErrPrecondition)
	}
	return nil
}

// prune removes dir and its ancestors while they are empty, so deleting every file
// leaves no skeleton of directories behind. Best effort: a non-empty or vanished
// directory stops it.
func prune(r *os.Root, dir string) {
	for ; dir != "." && dir != "/"; dir = path.Dir(dir) {
		fi, err := r.Lstat(dir)
		if err != nil || !fi.IsDir() {
			return
		}
		if r.Remove(dir) != nil {
			return
		}
	}
}

// checker verifies PutOptions checksums while the bytes stream through.
type checker struct {
	w         io.Writer
	sha, crc  hash.Hash
	sha256Hex string
	crc32cHex string
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func newChecker(opts providers.PutOptions) (checker, error) {
	c := checker{sha256Hex: strings.ToLower(opts.SHA256), crc32cHex: strings.ToLower(opts.CRC32C)}
	var ws []io.Writer
	if c.sha256Hex != "" {
		if b, err := hex.DecodeString(c.sha256Hex); err != nil || len(b) != sha256.Size {
			return c, fmt.Errorf("malformed sha256 %q", opts.SHA256)
		}
		c.sha = sha256.New()
		ws = append(ws, c.sha)
	}
	if c.crc32cHex != "" {
		if b, err := hex.DecodeString(c.crc32cHex); err != nil || len(b) != 4 {
			return c, fmt.Errorf("malformed crc32c %q", opts.CRC32C)
		}
		c.crc = crc32.New(castagnoli)
		ws = append(ws, c.crc)
	}
	switch len(ws) {
	case 1:
		c.w = ws[0]
	case 2:
		c.w = io.MultiWriter(ws...)
	}
	return c, nil
}

func (c checker) verify() error {
	if c.sha != nil {
		if got := hex.EncodeToString(c.sha.Sum(nil)); got != c.sha256Hex {
			return fmt.Errorf("sha256 of the bytes is %s, expected %s: %w", got, c.sha256Hex, providers.ErrChecksum)
		}
	}
	if c.crc != nil {
		if got := hex.EncodeToString(c.crc.Sum(nil)); got != c.crc32cHex {
			return fmt.Errorf("crc32c of the bytes is %s, expected %s: %w", got, c.crc32cHex, providers.ErrChecksum)
		}
	}
	return nil
}

// ctxReader stops a long copy when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
