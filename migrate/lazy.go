package migrate

import (
	"context"
	"io"
	"net/url"
	"strings"
	"sync"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/file"
)

// lazyStore is a store opened on its first use, for phases that need no access to
// it (Options.Offline: status, report, a delete dry run): they must work without the
// site's secrets, an environment variable the spec names but that is unset, or a
// network path to the store. URI is computed from the configured URL without opening
// (object stores name keys as URL root + key: s3://bucket/prefix/key,
// oci://ns/bucket/prefix/key), so reports name the same places as with the store
// open; a file site's directory need not exist on this machine either. Any other
// call opens the store, and fails as opening it would.
type lazyStore struct {
	cfg  providers.Config
	open func(ctx context.Context, cfg providers.Config) (providers.Store, error)

	mu  sync.Mutex
	s   providers.Store
	err error
}

var (
	_ providers.Store       = (*lazyStore)(nil)
	_ providers.RangeLister = (*lazyStore)(nil)
)

func (l *lazyStore) get(ctx context.Context) (providers.Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s == nil && l.err == nil {
		l.s, l.err = l.open(ctx, l.cfg)
		if l.err != nil {
			l.s = nil // an opener may return a typed nil with its error
			l.err = blame(l.cfg.Name, l.err)
		}
	}
	return l.s, l.err
}

// URI names key under the configured URL, without opening the store, as the
// providers do: file://DIR/key, scheme://host/path/key for object stores.
func (l *lazyStore) URI(key string) string {
	u, err := url.Parse(l.cfg.URL)
	switch {
	case err == nil && u.Scheme == "file":
		if dir, err := file.DirFromURL(l.cfg.URL); err == nil {
			return "file://" + dir + "/" + key
		}
	case err == nil && u.Host != "":
		p := strings.TrimPrefix(u.Path, "/")
		if p != "" && !strings.HasSuffix(p, "/") {
			p += "/"
		}
		return u.Scheme + "://" + u.Host + "/" + p + key
	}
	return strings.TrimSuffix(l.cfg.URL, "/") + "/" + key
}

func (l *lazyStore) List(ctx context.Context, fn func(providers.Object) error) error {
	s, err := l.get(ctx)
	if err != nil {
		return err
	}
	return s.List(ctx, fn)
}

func (l *lazyStore) Stat(ctx context.Context, key string) (providers.Object, error) {
	s, err := l.get(ctx)
	if err != nil {
		return providers.Object{}, err
	}
	return s.Stat(ctx, key)
}

func (l *lazyStore) Open(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	s, err := l.get(ctx)
	if err != nil {
		return nil, providers.Object{}, err
	}
	return s.Open(ctx, key)
}

func (l *lazyStore) Put(ctx context.Context, key string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
	s, err := l.get(ctx)
	if err != nil {
		return providers.Object{}, err
	}
	return s.Put(ctx, key, r, size, opts)
}

func (l *lazyStore) Delete(ctx context.Context, key string) error {
	s, err := l.get(ctx)
	if err != nil {
		return err
	}
	return s.Delete(ctx, key)
}

// ListRange lists by range when the opened store can; ErrNotSupported otherwise
// (before listing anything, as the contract asks), so plan lists it whole.
func (l *lazyStore) ListRange(ctx context.Context, after, through string, fn func(providers.Object) error) error {
	s, err := l.get(ctx)
	if err != nil {
		return err
	}
	rl, ok := s.(providers.RangeLister)
	if !ok {
		return providers.ErrNotSupported
	}
	return rl.ListRange(ctx, after, through, fn)
}

func (l *lazyStore) SplitKeys(ctx context.Context, parts int) ([]string, error) {
	s, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	rl, ok := s.(providers.RangeLister)
	if !ok {
		return nil, providers.ErrNotSupported
	}
	return rl.SplitKeys(ctx, parts)
}

// Unwrap is the opened store, or nil while it is not open: read capabilities
// (a region, features) of a store never opened are simply not known.
func (l *lazyStore) Unwrap() providers.Store {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s
}

func (l *lazyStore) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s == nil {
		return nil
	}
	return l.s.Close()
}

// Region opens the store to ask it; an error (no credentials here) leaves the caller
// with the region the spec states.
func (l *lazyStore) Region(ctx context.Context) (string, error) {
	s, err := l.get(ctx)
	if err != nil {
		return "", err
	}
	r, ok := providers.As[providers.Regioner](s)
	if !ok {
		return "", providers.ErrNotSupported
	}
	return r.Region(ctx)
}
