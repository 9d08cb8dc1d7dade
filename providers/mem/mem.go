// Package mem is an in-memory provider (mem://name) for tests and benchmarks. Stores
// opened with the same name in one process share their objects, so a test can open
// "mem://site-a" twice, as a site and again to inspect it.
//
// It behaves like an object store: dir markers ("a/") and "a" next to "a/b" are
// allowed, and it reports a SHA-256 computed at Put as a trusted checksum.
package mem

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymigrate/ferry/providers"
)

func init() {
	providers.Register("mem", func(_ context.Context, cfg providers.Config) (providers.Store, error) {
		name, err := NameFromURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Name, err)
		}
		var opts []Option
		if cfg.Region != "" {
			opts = append(opts, WithRegion(cfg.Region))
		}
		return New(name, opts...), nil
	})
}

// NameFromURL returns the store name of mem://name (host and path, without a
// trailing slash).
func NameFromURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("mem: bad url %q: %w", raw, err)
	}
	if u.Scheme != "mem" {
		return "", fmt.Errorf("mem: url %q: scheme is not mem", raw)
	}
	name := strings.TrimSuffix(u.Host+u.Path, "/")
	if name == "" {
		return "", fmt.Errorf("mem: url %q names no store (mem://name)", raw)
	}
	return name, nil
}

// data is the shared state behind every Store of one name.
type data struct {
	mu   sync.RWMutex
	objs map[string]*entry
	soft map[string]*entry // handle -> kept object
	// versioned mode (see versioned.go): every version of a key, newest first; objs
	// holds the current one, or nothing when a delete marker is on top.
	versioned bool
	versions  map[string][]*entry
}

// entry is immutable once stored: readers share it without copying the bytes.
type entry struct {
	obj   providers.Object
	bytes []byte
}

var (
	regMu sync.Mutex
	named = map[string]*data{}
	// seq numbers every Put in the process, so an ETag is never reused, not even
	// across Reset.
	seq atomic.Uint64
)

func shared(name string) *data {
	regMu.Lock()
	defer regMu.Unlock()
	d := named[name]
	if d == nil {
		d = &data{objs: map[string]*entry{}, soft: map[string]*entry{}, versions: map[string][]*entry{}}
		named[name] = d
	}
	return d
}

// Reset drops every object (and soft-deleted object) of the named store. Stores
// already open keep the old data; open them again.
func Reset(name string) {
	regMu.Lock()
	defer regMu.Unlock()
	delete(named, name)
}

// Option configures a Store.
type Option func(*Store)

// WithRegion makes the store report region (Regioner), for residency tests.
func WithRegion(region string) Option { return func(s *Store) { s.region = region } }

// Store is one handle on a named in-memory store. Safe for concurrent use.
type Store struct {
	name   string
	region string
	d      *data
}

var (
	_ providers.Store              = (*Store)(nil)
	_ providers.ConditionalDeleter = (*Store)(nil)
	_ providers.SoftDeleter        = (*Store)(nil)
	_ providers.Featurer           = (*Store)(nil)
	_ providers.Regioner           = (*Store)(nil)
	_ providers.Versioner          = (*Store)(nil)
	_ providers.RangeLister        = (*Store)(nil)
)

// New opens the in-memory store called name, creating it empty if needed.
func New(name string, opts ...Option) *Store {
	s := &Store{name: name, d: shared(name)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Name returns the store's name.
func (s *Store) Name() string { return s.name }

// URI names key for reports.
func (s *Store) URI(key string) string { return "mem://" + s.name + "/" + key }

// Features: an object store with a trusted SHA-256; Open hands out a version's
// bytes, which a later Put replaces but never changes.
func (s *Store) Features() providers.Features {
	return providers.Features{DirMarkers: true, PrefixAndChild: true, TrustedSHA256: true, SnapshotReads: true}
}

// Region returns the region given by WithRegion, or ErrNotSupported without one.
func (s *Store) Region(context.Context) (string, error) {
	if s.region == "" {
		return "", fmt.Errorf("mem: %s has no region: %w", s.name, providers.ErrNotSupported)
	}
	return s.region, nil
}

// Close does nothing: the data lives until Reset.
func (s *Store) Close() error { return nil }

// Len returns the number of objects stored.
func (s *Store) Len() int {
	s.d.mu.RLock()
	defer s.d.mu.RUnlock()
	return len(s.d.objs)
}

// checkKey rejects what ferry's keys never contain: an empty or absolute key, a ".."
// segment, a NUL byte.
func checkKey(key string) error {
	why := ""
	switch {
	case key == "":
		why = "empty key"
	case key[0] == '/':
		why = "absolute key"
	case strings.IndexByte(key, 0) >= 0:
		why = "NUL byte"
	case key == ".." || strings.HasPrefix(key, "../") || strings.HasSuffix(key, "/..") || strings.Contains(key, "/../"):
		why = `".." segment`
	default:
		return nil
	}
	return fmt.Errorf("mem: key %q: %s: %w", key, why, providers.ErrInvalidKey)
}

func notFound(op, key string) error {
	return fmt.Errorf("mem: %s %q: %w", op, key, providers.ErrNotFound)
}

// view returns a copy of e's Object that the caller may modify.
func (e *entry) view() providers.Object {
	o := e.obj
	if o.Metadata != nil {
		o.Metadata = maps.Clone(o.Metadata)
	}
	return o
}

// List snapshots the entries, then calls fn without holding the lock, so fn may
// call back into the store.
func (s *Store) List(ctx context.Context, fn func(providers.Object) error) error {
	s.d.mu.RLock()
	snap := make([]*entry, 0, len(s.d.objs))
	for _, e := range s.d.objs {
		snap = append(snap, e)
	}
	s.d.mu.RUnlock()
	for i, e := range snap {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("mem: list: %w: %w", providers.ErrIncompleteList, err)
			}
		}
		if err := fn(e.view()); err != nil {
			return err
		}
	}
	return nil
}

// ListRange lists the keys in (after, through] in byte order.
func (s *Store) ListRange(ctx context.Context, after, through string, fn func(providers.Object) error) error {
	s.d.mu.RLock()
	snap := make([]*entry, 0, len(s.d.objs))
	for k, e := range s.d.objs {
		if k > after && (through == "" || k <= through) {
			snap = append(snap, e)
		}
	}
	s.d.mu.RUnlock()
	sort.Slice(snap, func(i, j int) bool { return snap[i].obj.Key < snap[j].obj.Key })
	for _, e := range snap {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("mem: list: %w: %w", providers.ErrIncompleteList, err)
		}
		if err := fn(e.view()); err != nil {
			return err
		}
	}
	return nil
}

// SplitKeys returns parts-1 keys at even intervals of the sorted key space.
func (s *Store) SplitKeys(_ context.Context, parts int) ([]string, error) {
	s.d.mu.RLock()
	keys := make([]string, 0, len(s.d.objs))
	for k := range s.d.objs {
		keys = append(keys, k)
	}
	s.d.mu.RUnlock()
	sort.Strings(keys)
	return evenly(keys, parts), nil
}

// evenly picks up to parts-1 boundaries from sorted keys.
func evenly(keys []string, parts int) []string {
	if parts < 2 || len(keys) < 2 {
		return nil
	}
	var out []string
	for i := 1; i < parts; i++ {
		k := keys[i*len(keys)/parts]
		if len(out) == 0 || out[len(out)-1] != k {
			out = append(out, k)
		}
	}
	return out
}

func (s *Store) get(key string) *entry {
	s.d.mu.RLock()
	e := s.d.objs[key]
	s.d.mu.RUnlock()
	return e
}

// Stat returns key's description.
func (s *Store) Stat(_ context.Context, key string) (providers.Object, error) {
	if err := checkKey(key); err != nil {
		return providers.Object{}, err
	}
	e := s.get(key)
	if e == nil {
		return providers.Object{}, notFound("stat", key)
	}
	return e.view(), nil
}

// Open returns the bytes of the current version and its description.
func (s *Store) Open(_ context.Context, key string) (io.ReadCloser, providers.Object, error) {
	if err := checkKey(key); err != nil {
		return nil, providers.Object{}, err
	}
	e := s.get(key)
	if e == nil {
		return nil, providers.Object{}, notFound("open", key)
	}
	return io.NopCloser(bytes.NewReader(e.bytes)), e.view(), nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Put reads all size bytes, checks them against opts, and only then makes them
// visible.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
	if err := checkKey(key); err != nil {
		return providers.Object{}, err
	}
	if size < 0 {
		return providers.Object{}, fmt.Errorf("mem: put %q: negative size %d", key, size)
	}
	if err := ctx.Err(); err != nil {
		return providers.Object{}, fmt.Errorf("mem: put %q: %w", key, err)
	}
	b := make([]byte, size)
	if n, err := io.ReadFull(r, b); err != nil {
		return providers.Object{}, fmt.Errorf("mem: put %q: read %d of %d bytes: %w", key, n, size, err)
	}
	var extra [1]byte
	if n, err := io.ReadFull(r, extra[:]); n > 0 {
		return providers.Object{}, fmt.Errorf("mem: put %q: reader has more than %d bytes", key, size)
	} else if err != io.EOF {
		return providers.Object{}, fmt.Errorf("mem: put %q: %w", key, err)
	}
	sum := sha256.Sum256(b)
	shaHex := hex.EncodeToString(sum[:])
	if opts.SHA256 != "" && !strings.EqualFold(opts.SHA256, shaHex) {
		return providers.Object{}, fmt.Errorf("mem: put %q: sha256 of the bytes is %s, expected %s: %w",
			key, shaHex, opts.SHA256, providers.ErrChecksum)
	}
	var crcHex string
	if opts.CRC32C != "" {
		crcHex = fmt.Sprintf("%08x", crc32.Checksum(b, castagnoli))
		if !strings.EqualFold(opts.CRC32C, crcHex) {
			return providers.Object{}, fmt.Errorf("mem: put %q: crc32c of the bytes is %s, expected %s: %w",
				key, crcHex, opts.CRC32C, providers.ErrChecksum)
		}
	}
	e := &entry{bytes: b, obj: providers.Object{
		Key:       key,
		Size:      size,
		ETag:      strconv.FormatUint(seq.Add(1), 16),
		ModTime:   time.Now(),
		Checksums: providers.Checksums{SHA256: shaHex, CRC32C: crcHex},
	}}
	if len(opts.Metadata) > 0 {
		e.obj.Metadata = maps.Clone(opts.Metadata)
	}
	s.d.mu.Lock()
	if s.d.versioned {
		e.obj.Version = "v" + e.obj.ETag
		s.d.versions[key] = append([]*entry{e}, s.d.versions[key]...)
	}
	s.d.objs[key] = e
	s.d.mu.Unlock()
	return e.view(), nil
}

// Delete removes key; ErrNotFound if it is absent.
func (s *Store) Delete(_ context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.d.objs[key] == nil {
		return notFound("delete", key)
	}
	delete(s.d.objs, key) // versioned: a delete marker on top, every version kept
	return nil
}

// matchLocked returns key's entry if it is still the version expect names.
func (s *Store) matchLocked(op, key string, expect providers.Object) (*entry, error) {
	e := s.d.objs[key]
	if e == nil {
		return nil, notFound(op, key)
	}
	if expect.ETag == "" || e.obj.ETag != expect.ETag {
		return nil, fmt.Errorf("mem: %s %q: now %s, expected %q: %w", op, key, e.obj.ETag, expect.ETag, providers.ErrPrecondition)
	}
	return e, nil
}

// DeleteIf removes key only if its ETag is expect's.
func (s *Store) DeleteIf(_ context.Context, key string, expect providers.Object) error {
	if err := checkKey(key); err != nil {
		return err
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	e, err := s.matchLocked("delete", key, expect)
	if err != nil {
		return err
	}
	if s.d.versioned {
		s.dropVersionLocked(key, e) // exactly this version; an older one becomes current
		return nil
	}
	delete(s.d.objs, key)
	return nil
}

// SoftHandle is key@etag: ETags are never reused, so it names one version.
func (s *Store) SoftHandle(key string, expect providers.Object) string {
	if s.d.versioned {
		return "v" + expect.ETag // the version id mem gives every version
	}
	return key + "@" + expect.ETag
}

// SoftDelete moves key's entry aside, under its handle.
func (s *Store) SoftDelete(_ context.Context, key string, expect providers.Object) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	e, err := s.matchLocked("soft delete", key, expect)
	if err != nil {
		return "", err
	}
	h := s.SoftHandle(key, expect)
	if s.d.versioned {
		delete(s.d.objs, key) // a delete marker on top of the kept version
		return e.obj.Version, nil
	}
	s.d.soft[h] = e
	delete(s.d.objs, key)
	return h, nil
}

// softLocked returns the entry kept under handle for key.
func (s *Store) softLocked(key, handle string) *entry {
	e := s.d.soft[handle]
	if e == nil || e.obj.Key != key {
		return nil
	}
	return e
}

// Restore puts the kept entry back, with its original ETag; ErrAlreadyExists if key
// is taken.
func (s *Store) Restore(_ context.Context, key, handle string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.d.versioned {
		return s.restoreVersionLocked(key, handle)
	}
	e := s.softLocked(key, handle)
	if e == nil {
		return notFound("restore", handle)
	}
	if s.d.objs[key] != nil {
		return fmt.Errorf("mem: restore %q: key is taken: %w", key, providers.ErrAlreadyExists)
	}
	s.d.objs[key] = e
	delete(s.d.soft, handle)
	return nil
}

// Purge drops the kept entry.
func (s *Store) Purge(_ context.Context, key, handle string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.d.versioned {
		return s.purgeVersionLocked(key, handle)
	}
	if s.softLocked(key, handle) == nil {
		return notFound("purge", handle)
	}
	delete(s.d.soft, handle)
	return nil
}

// SoftExists reports whether handle still keeps key's bytes.
func (s *Store) SoftExists(_ context.Context, key, handle string) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, err
	}
	s.d.mu.RLock()
	defer s.d.mu.RUnlock()
	if s.d.versioned {
		_, e := s.versionLocked(key, handle)
		return e != nil && s.d.objs[key] != e, nil
	}
	return s.softLocked(key, handle) != nil, nil
}
