package gs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/ferrymigrate/ferry/providers"
)

// listAttrs are the object fields listings ask for.
var listAttrs = []string{"Name", "Size", "Generation", "Updated", "CRC32C", "MD5", "ComponentCount"}

var errPastRange = errors.New("past the end of the range")

func (s *Store) incomplete(format string, args ...any) error {
	return fmt.Errorf("gs: list %s: %s: %w", s.URI(""), fmt.Sprintf(format, args...), providers.ErrIncompleteList)
}

// keyOf strips the prefix from a listed name; skip reports a reserved key or the
// folder placeholder object named exactly like the prefix (the console makes them).
func (s *Store) keyOf(name string, size int64) (key string, skip bool, err error) {
	key, ok := strings.CutPrefix(name, s.prefix)
	if !ok {
		return "", false, s.incomplete("GCS listed %q, which is not under the prefix %q", name, s.prefix)
	}
	if key == "" {
		if size == 0 {
			return "", true, nil
		}
		return "", false, s.incomplete("the object named like the prefix itself (%q) holds %d bytes: it cannot be a record", name, size)
	}
	if s.reserved != "" && strings.HasPrefix(key, s.reserved) {
		return "", true, nil
	}
	return key, false, nil
}

// List calls fn for every live object under the prefix, in name order (GCS lists
// in UTF-8 byte order). A listing is complete or fails with ErrIncompleteList: a
// page that fails after the retries, names out of order, repeated or outside the
// prefix.
func (s *Store) List(ctx context.Context, fn func(providers.Object) error) error {
	return s.list(ctx, "", "", fn)
}

// list lists names in [prefix+start, prefix+end) (either "" for no bound).
func (s *Store) list(ctx context.Context, start, end string, fn func(providers.Object) error) error {
	q := &storage.Query{Prefix: s.prefix, Projection: storage.ProjectionNoACL}
	if start != "" {
		q.StartOffset = s.prefix + start
	}
	if end != "" {
		q.EndOffset = s.prefix + end
	}
	if err := q.SetAttrSelection(listAttrs); err != nil {
		return err
	}
	it := s.bucket.Objects(ctx, q)
	it.PageInfo().MaxSize = s.pageSize
	last, n := "", 0
	for {
		a, err := it.Next()
		if err == iterator.Done {
			return nil
		}
		if err != nil {
			return fmt.Errorf("gs: list %s: after %d objects: %w: %w", s.URI(""), n, providers.ErrIncompleteList, s.fail("list", s.prefix, err))
		}
		n++
		if a.Prefix != "" || a.Name == "" {
			return s.incomplete("a listing without a delimiter returned a prefix entry %q", a.Prefix)
		}
		if last != "" && a.Name <= last {
			return s.incomplete("%q listed after %q: out of order or repeated", a.Name, last)
		}
		if q.StartOffset != "" && a.Name < q.StartOffset || q.EndOffset != "" && a.Name >= q.EndOffset {
			return s.incomplete("%q listed outside the range [%q, %q)", a.Name, q.StartOffset, q.EndOffset)
		}
		last = a.Name
		key, skip, err := s.keyOf(a.Name, a.Size)
		if err != nil {
			return err
		}
		if skip {
			continue
		}
		if err := fn(s.objectOf(key, a)); err != nil {
			return err
		}
	}
}

// ListRange lists the keys in (after, through] in byte order: StartOffset at after
// (after itself is left out) and EndOffset just past through (through + "\x00", the
// next name after it in byte order).
func (s *Store) ListRange(ctx context.Context, after, through string, fn func(providers.Object) error) error {
	end := ""
	if through != "" {
		end = through + "\x00"
	}
	err := s.list(ctx, after, end, func(o providers.Object) error {
		if o.Key <= after {
			return nil
		}
		if through != "" && o.Key > through {
			return errPastRange
		}
		return fn(o)
	})
	if errors.Is(err, errPastRange) {
		return nil
	}
	return err
}

// splitSample bounds the first-level entries SplitKeys holds.
const splitSample = 4096

// SplitKeys lists the first level under the prefix (Delimiter "/") and returns up to
// parts-1 of its entries at even intervals, each a key or a folder, from an even
// sample of at most splitSample entries.
func (s *Store) SplitKeys(ctx context.Context, parts int) ([]string, error) {
	q := &storage.Query{Prefix: s.prefix, Delimiter: "/", Projection: storage.ProjectionNoACL}
	if err := q.SetAttrSelection([]string{"Name"}); err != nil {
		return nil, err
	}
	var first []string
	stride, seen := 1, 0
	keep := func(k string) {
		if seen++; (seen-1)%stride != 0 {
			return
		}
		first = append(first, k)
		if len(first) >= splitSample {
			half := first[:0]
			for i := 0; i < len(first); i += 2 {
				half = append(half, first[i])
			}
			first, stride = half, stride*2
		}
	}
	it := s.bucket.Objects(ctx, q)
	it.PageInfo().MaxSize = s.pageSize
	for {
		a, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("gs: split %s: %w: %w", s.URI(""), providers.ErrIncompleteList, s.fail("list", s.prefix, err))
		}
		full := a.Name
		if a.Prefix != "" {
			full = a.Prefix
		}
		key, ok := strings.CutPrefix(full, s.prefix)
		if !ok || key == "" || s.reserved != "" && strings.HasPrefix(key, s.reserved) {
			continue
		}
		keep(key)
	}
	sort.Strings(first)
	if parts < 2 || len(first) < 2 {
		return nil, nil
	}
	var cut []string
	for i := 1; i < parts; i++ {
		k := first[i*len(first)/parts]
		if len(cut) == 0 || cut[len(cut)-1] != k {
			cut = append(cut, k)
		}
	}
	return cut, nil
}

// Versioning reports whether the bucket has object versioning on, asking the
// bucket again. A bucket whose versioning was turned off may still hold noncurrent
// generations from before; Versions lists them either way.
func (s *Store) Versioning(ctx context.Context) (bool, error) {
	b, err := s.readBucket(ctx)
	if err != nil {
		return false, err
	}
	return b.versioned, nil
}

// Versions lists every generation of exactly key, live and noncurrent, newest first
// (GCS has no delete markers: a deleted live generation becomes noncurrent).
func (s *Store) Versions(ctx context.Context, key string) ([]providers.Object, error) {
	name, err := s.object("list versions", key)
	if err != nil {
		return nil, err
	}
	vs, err := s.versions(ctx, name)
	if err != nil {
		return nil, err
	}
	out := make([]providers.Object, 0, len(vs))
	for _, a := range vs {
		o := s.objectOf(key, a)
		o.Version = o.ETag
		out = append(out, o)
	}
	return out, nil
}

// versions lists the generations of name, newest first.
func (s *Store) versions(ctx context.Context, name string) ([]*storage.ObjectAttrs, error) {
	q := &storage.Query{Prefix: name, Versions: true, Projection: storage.ProjectionNoACL}
	if err := q.SetAttrSelection(append(listAttrs, "Deleted")); err != nil {
		return nil, err
	}
	// Names below name ("name/x", "name2") share the prefix; StartOffset and
	// EndOffset keep the listing to name itself.
	q.StartOffset, q.EndOffset = name, name+"\x00"
	it := s.bucket.Objects(ctx, q)
	var out []*storage.ObjectAttrs
	seen := map[int64]bool{}
	for {
		a, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("gs: list versions of %s: %w: %w", s.uriOf(name), providers.ErrIncompleteList, s.fail("list versions", name, err))
		}
		if a.Name != name {
			continue
		}
		if seen[a.Generation] {
			return nil, fmt.Errorf("gs: list versions of %s: generation %d listed twice: %w", s.uriOf(name), a.Generation, providers.ErrIncompleteList)
		}
		seen[a.Generation] = true
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Generation > out[j].Generation })
	return out, nil
}
