package s3

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrymigrate/ferry/providers"
)

// MinIO's shape guard.
//
// MinIO stores an object "a" next to keys under "a/" but then lists only one of
// them, so Put refuses such a pair (ErrAlreadyExists): an object named like a
// parent directory of the key, or keys under the key itself.
//
// Asking the server before every Put (a HEAD per parent and a LIST under the key)
// cost about three requests per object. Instead the guard lists each directory of
// the bucket once, with a delimiter, and keeps the names of the objects and
// sub-directories directly in it. A directory that a complete listing of its parent
// does not show is known to be empty without asking. Each Put then checks and
// records its key in that cache under one lock, so ferry's own concurrent writes
// through one store can never create a pair (one of "a" and "a/b" written at once
// is refused). A directory with more than maxDirNames entries is not cached: there
// the guard asks the server per key as before.
//
// What the cache cannot see: keys written through other clients after a directory
// was listed. Such writers could create a pair before this cache; they still can.
// Every other write or delete through the store (Delete, DeleteIf, soft deletes,
// Restore, Purge) drops the cache, so those never leave it stale.

const (
	// maxDirNames bounds one directory's listing for the guard.
	maxDirNames = 10000
	// maxShapeNames bounds all the names the guard holds (about 25 MB); past it the
	// cache is dropped and directories are listed again as Puts reach them.
	maxShapeNames = 250000
)

type shapeCache struct {
	mu    sync.Mutex
	gen   uint64              // bumped whenever the cache is dropped
	busy  int                 // writes other than Put in flight: nothing is cached meanwhile
	dirs  map[string]*dirList // by bucket prefix: "" or ending in "/"
	names int                 // names held in dirs
}

// dirList is what the guard knows of one directory.
type dirList struct {
	done chan struct{} // closed once listed (err and whole are then set)
	err  error
	// whole: a complete listing, so objs and subs name everything directly in the
	// directory (plus what Puts through this store added since).
	whole bool
	objs  map[string]bool // objects directly in the directory, by name
	subs  map[string]bool // names with keys under name + "/"
	// notObj: in a directory too large to list, names a HEAD found not to be objects.
	notObj map[string]bool
}

func newDirList() *dirList {
	return &dirList{done: make(chan struct{}), objs: map[string]bool{}, subs: map[string]bool{}, notObj: map[string]bool{}}
}

// drop forgets everything; the caller holds mu.
func (c *shapeCache) drop() {
	c.dirs, c.names = nil, 0
	c.gen++
}

// mutating marks a write or delete other than Put: the cache is dropped when it
// starts and again when it ends, and nothing is cached while it runs. Use it as
// defer s.mutating()().
func (s *Store) mutating() func() {
	if s.server != "minio" {
		return func() {}
	}
	c := &s.shape
	c.mu.Lock()
	c.busy++
	c.drop()
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.busy--
		c.drop()
		c.mu.Unlock()
	}
}

// shapeLevel is one step down a key: name is checked in the directory dir.
type shapeLevel struct {
	dir, name string
	leaf      bool // name is the key's last segment (an object), not a parent
	d         *dirList
}

func shapeLevels(fk string) []shapeLevel {
	var ls []shapeLevel
	start := 0
	for i := 0; i < len(fk); i++ {
		if fk[i] == '/' {
			ls = append(ls, shapeLevel{dir: fk[:start], name: fk[start:i]})
			start = i + 1
		}
	}
	if start < len(fk) {
		// A directory marker ("a/") has no leaf: keys may sit under it.
		ls = append(ls, shapeLevel{dir: fk[:start], name: fk[start:], leaf: true})
	}
	return ls
}

// checkShape refuses, on MinIO, a key that would sit next to an object named like
// one of its parents ("a/b" next to "a"), or an object named like a prefix of
// existing keys ("a" over "a/b"); see above.
func (s *Store) checkShape(ctx context.Context, fk string) error {
	uri := s.uriFull(fk)
	levels := shapeLevels(fk)
	for attempt := 0; ; attempt++ {
		gen, err := s.loadLevels(ctx, levels)
		if err != nil {
			return fmt.Errorf("s3: put %s: checking the key's directories: %w", uri, err)
		}
		// Directories too large to cache are asked per key.
		for i := range levels {
			if err := s.checkUncached(ctx, fk, &levels[i]); err != nil {
				return err
			}
		}
		c := &s.shape
		c.mu.Lock()
		if c.gen != gen && attempt < 3 {
			// Dropped while loading: a delete or another write ran. Look again.
			c.mu.Unlock()
			continue
		}
		err = s.claimShape(fk, levels)
		if c.names > maxShapeNames {
			c.drop()
		}
		c.mu.Unlock()
		return err
	}
}

// claimShape checks the key against the cached directories and records it there;
// the caller holds s.shape.mu.
func (s *Store) claimShape(fk string, levels []shapeLevel) error {
	uri := s.uriFull(fk)
	for _, l := range levels {
		if !l.d.whole {
			continue
		}
		if !l.leaf && l.d.objs[l.name] {
			return fmt.Errorf("s3: put %s: %s is an object, so this server cannot also hold keys under it: %w", uri, s.uriFull(l.dir+l.name), providers.ErrAlreadyExists)
		}
		if l.leaf && l.d.subs[l.name] {
			return fmt.Errorf("s3: put %s: keys exist under %s/, so this server cannot also hold it as an object: %w", uri, uri, providers.ErrAlreadyExists)
		}
	}
	c := &s.shape
	for _, l := range levels {
		m := l.d.subs
		switch {
		case l.leaf:
			m = l.d.objs
		case !l.d.whole:
			m = l.d.notObj
		}
		if !m[l.name] {
			m[l.name] = true
			c.names++
		}
	}
	return nil
}

// loadLevels fills in each level's directory, listing the ones not known yet. It
// returns the cache generation the directories belong to.
func (s *Store) loadLevels(ctx context.Context, levels []shapeLevel) (uint64, error) {
	c := &s.shape
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	var parent *dirList
	for i := range levels {
		l := &levels[i]
		d, err := s.dirList(ctx, l.dir, parent, gen)
		if err != nil {
			return 0, err
		}
		l.d, parent = d, d
	}
	return gen, nil
}

// dirList returns what is known of the directory dir, listing it when needed.
// parent is dir's parent directory (nil for the bucket's root).
func (s *Store) dirList(ctx context.Context, dir string, parent *dirList, gen uint64) (*dirList, error) {
	c := &s.shape
	c.mu.Lock()
	if c.gen == gen && c.busy == 0 {
		if d := c.dirs[dir]; d != nil {
			c.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return d, d.err
		}
	}
	d := newDirList()
	keep := c.gen == gen && c.busy == 0
	if keep {
		if c.dirs == nil {
			c.dirs = map[string]*dirList{}
		}
		c.dirs[dir] = d
	}
	if parent != nil && parent.whole && !parent.subs[baseName(dir)] {
		// The parent's complete listing shows nothing under dir.
		d.whole = true
		close(d.done)
		c.mu.Unlock()
		return d, nil
	}
	c.mu.Unlock()

	objs, subs, whole, err := s.listDir(ctx, dir)
	c.mu.Lock()
	d.err, d.whole = err, whole
	if err == nil && whole {
		d.objs, d.subs = objs, subs
		if c.gen == gen {
			c.names += len(objs) + len(subs)
		}
	}
	if err != nil && c.dirs[dir] == d {
		delete(c.dirs, dir) // the next Put asks again
	}
	close(d.done)
	c.mu.Unlock()
	return d, err
}

// baseName is the last segment of a directory prefix ("a/b/" -> "b").
func baseName(dir string) string {
	dir = strings.TrimSuffix(dir, "/")
	return dir[strings.LastIndexByte(dir, '/')+1:]
}

// listDir lists the names directly in dir (a delimiter listing). whole is false
// when there are more than maxDirNames of them.
func (s *Store) listDir(ctx context.Context, dir string) (objs, subs map[string]bool, whole bool, err error) {
	objs, subs = map[string]bool{}, map[string]bool{}
	var prefix *string
	if dir != "" {
		prefix = &dir
	}
	seen := map[string]bool{}
	var token *string
	for {
		out, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
			Bucket: &s.bucket, Prefix: prefix, Delimiter: aws.String("/"), ContinuationToken: token,
			EncodingType: types.EncodingTypeUrl, MaxKeys: aws.Int32(1000),
		})
		if err != nil {
			return nil, nil, false, fail("list", s.uriFull(dir), err)
		}
		dec := func(raw string) (string, error) {
			if out.EncodingType != types.EncodingTypeUrl {
				return raw, nil
			}
			return url.QueryUnescape(raw)
		}
		for _, o := range out.Contents {
			k, err := dec(aws.ToString(o.Key))
			if err != nil || !strings.HasPrefix(k, dir) {
				return nil, nil, false, fmt.Errorf("s3: list %s: unexpected key %q", s.uriFull(dir), aws.ToString(o.Key))
			}
			if name := k[len(dir):]; name != "" { // "" is the directory's own marker
				objs[name] = true
			}
		}
		for _, p := range out.CommonPrefixes {
			k, err := dec(aws.ToString(p.Prefix))
			if err != nil || !strings.HasPrefix(k, dir) || !strings.HasSuffix(k, "/") {
				return nil, nil, false, fmt.Errorf("s3: list %s: unexpected prefix %q", s.uriFull(dir), aws.ToString(p.Prefix))
			}
			subs[strings.TrimSuffix(k[len(dir):], "/")] = true
		}
		if len(objs)+len(subs) > maxDirNames {
			return nil, nil, false, nil
		}
		next := aws.ToString(out.NextContinuationToken)
		if !aws.ToBool(out.IsTruncated) {
			return objs, subs, true, nil
		}
		if next == "" || seen[next] {
			return nil, nil, false, fmt.Errorf("s3: list %s: %w: truncated without a new continuation token", s.uriFull(dir), providers.ErrIncompleteList)
		}
		seen[next] = true
		token = &next
	}
}

// checkUncached asks the server about a level whose directory is too large to
// cache: a HEAD of a parent (once per name), a LIST under the key itself.
func (s *Store) checkUncached(ctx context.Context, fk string, l *shapeLevel) error {
	if l.d.whole {
		return nil
	}
	uri := s.uriFull(fk)
	if !l.leaf {
		c := &s.shape
		c.mu.Lock()
		known := l.d.notObj[l.name]
		c.mu.Unlock()
		if known {
			return nil
		}
		parent := l.dir + l.name
		_, err := s.head(ctx, parent, "")
		switch {
		case err == nil:
			return fmt.Errorf("s3: put %s: %s is an object, so this server cannot also hold keys under it: %w", uri, s.uriFull(parent), providers.ErrAlreadyExists)
		case !errors.Is(err, providers.ErrNotFound):
			return fmt.Errorf("s3: put %s: checking the parent: %w", uri, err)
		}
		return nil
	}
	out, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(fk + "/"), MaxKeys: aws.Int32(1),
		EncodingType: types.EncodingTypeUrl})
	if err != nil {
		return fail("put (checking for keys under it)", uri, err)
	}
	if len(out.Contents) > 0 {
		return fmt.Errorf("s3: put %s: keys exist under %s/, so this server cannot also hold it as an object: %w", uri, uri, providers.ErrAlreadyExists)
	}
	return nil
}
