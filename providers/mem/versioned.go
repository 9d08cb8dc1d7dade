package mem

import (
	"context"
	"fmt"
	"slices"

	"github.com/ferrymigrate/ferry/providers"
)

// Versioned mode: a bucket with versioning enabled, for tests of versioned sites.
//
// Every Put adds a version (its id "v"+ETag, immutable); Delete puts a delete marker
// on top (the key vanishes from view, every version stays); DeleteIf removes exactly
// the version expect names, so an older version becomes current, as S3 and OCI do;
// SoftDelete puts a delete marker on top of the kept version (the handle is its
// version id), Restore removes the marker, Purge deletes that version. Versions lists
// a key's versions newest first.

// WithVersioning turns versioning on for the named store's shared data (every handle
// on the name sees it), like enabling versioning on a bucket. Objects already stored
// become its first versions.
func WithVersioning() Option {
	return func(s *Store) { s.enableVersioning() }
}

// EnableVersioning turns versioning on for the named store (see WithVersioning).
func EnableVersioning(name string) { New(name).enableVersioning() }

func (s *Store) enableVersioning() {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.d.versioned {
		return
	}
	s.d.versioned = true
	for k, e := range s.d.objs {
		v := &entry{obj: e.obj, bytes: e.bytes}
		v.obj.Version = "v" + v.obj.ETag
		s.d.objs[k] = v
		s.d.versions[k] = []*entry{v}
	}
}

// Versioning reports whether the store keeps versions.
func (s *Store) Versioning(context.Context) (bool, error) {
	s.d.mu.RLock()
	defer s.d.mu.RUnlock()
	return s.d.versioned, nil
}

// Versions returns every version of key that is not a delete marker, newest first.
// An unversioned store has at most one: the current object.
func (s *Store) Versions(_ context.Context, key string) ([]providers.Object, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	s.d.mu.RLock()
	defer s.d.mu.RUnlock()
	if !s.d.versioned {
		if e := s.d.objs[key]; e != nil {
			return []providers.Object{e.view()}, nil
		}
		return nil, nil
	}
	var out []providers.Object
	for _, e := range s.d.versions[key] {
		out = append(out, e.view())
	}
	return out, nil
}

// versionLocked finds version id of key.
func (s *Store) versionLocked(key, id string) (int, *entry) {
	for i, e := range s.d.versions[key] {
		if e.obj.Version == id {
			return i, e
		}
	}
	return -1, nil
}

// dropVersionLocked removes version e of key. When e was current, the next older
// version becomes current (no delete marker was on top of it).
func (s *Store) dropVersionLocked(key string, e *entry) {
	vs := s.d.versions[key]
	i := slices.Index(vs, e)
	if i < 0 {
		return
	}
	vs = slices.Delete(slices.Clone(vs), i, i+1)
	if len(vs) == 0 {
		delete(s.d.versions, key)
	} else {
		s.d.versions[key] = vs
	}
	if s.d.objs[key] == e {
		delete(s.d.objs, key)
		if i < len(vs) {
			s.d.objs[key] = vs[i]
		}
	}
}

// restoreVersionLocked removes the delete marker above version id: it is current
// again. ErrAlreadyExists if the key is visible or a newer version exists.
func (s *Store) restoreVersionLocked(key, id string) error {
	i, e := s.versionLocked(key, id)
	switch {
	case e == nil:
		return notFound("restore", key+"@"+id)
	case s.d.objs[key] == e:
		return nil // restored already
	case s.d.objs[key] != nil || i > 0:
		return fmt.Errorf("mem: restore %q: a newer version exists: %w", key, providers.ErrAlreadyExists)
	}
	s.d.objs[key] = e
	return nil
}

// purgeVersionLocked deletes the kept version id for good; never the live version.
func (s *Store) purgeVersionLocked(key, id string) error {
	_, e := s.versionLocked(key, id)
	switch {
	case e == nil:
		return notFound("purge", key+"@"+id)
	case s.d.objs[key] == e:
		return fmt.Errorf("mem: purge %q: version %s is live again (restored): %w", key, id, providers.ErrPrecondition)
	}
	vs := slices.DeleteFunc(slices.Clone(s.d.versions[key]), func(x *entry) bool { return x == e })
	if len(vs) == 0 {
		delete(s.d.versions, key)
	} else {
		s.d.versions[key] = vs
	}
	return nil
}
