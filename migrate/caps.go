package migrate

import (
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
)

// caps returns what the store named name (a site, or spec.TargetName) can do beyond
// providers.Store, resolved once, when the migration opened and decorated it
// (resolveCaps; on first ask for a Migration made otherwise). A
// phase asks it instead of type-asserting the store at each call. A store opened
// lazily (Options.Offline) is resolved at each ask: what it can do is not known
// before it is opened, and it opens on first use.
func (m *Migration) caps(name string) providers.Caps {
	if m.Opts.Offline {
		return capsOf(m.store(name))
	}
	m.capsMu.Lock()
	defer m.capsMu.Unlock()
	c, ok := m.resolved[name]
	if !ok {
		c = capsOf(m.store(name))
		if m.resolved == nil {
			m.resolved = map[string]providers.Caps{}
		}
		m.resolved[name] = c
	}
	return c
}

// resolveCaps resolves every store's capabilities, once they are all opened and
// decorated.
func (m *Migration) resolveCaps() {
	if m.Opts.Offline {
		return
	}
	for name := range m.Sites {
		m.caps(name)
	}
	m.caps(spec.TargetName)
}

// store returns the site or target store named name; nil if there is none.
func (m *Migration) store(name string) providers.Store {
	if name == spec.TargetName {
		return m.Target
	}
	return m.Sites[name]
}

// capsOf resolves what s, a store as the migration decorated it, can do. A dry run's
// store passes every read through unchanged and refuses every write: its
// capabilities are those of the store it wraps without the writes (CapWrites), the
// reads reached on that store, as the dry store would forward them.
func capsOf(s providers.Store) providers.Caps {
	if d, ok := s.(*dryStore); ok {
		return providers.CapsOf(d.Store).Mask(^providers.CapWrites)
	}
	return providers.CapsOf(s)
}
