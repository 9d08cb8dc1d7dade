package migrate

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
)

// No store is two things (DESIGN.md I9). The spec refuses overlapping URLs as they
// are written; this file checks what the stores are:
//
//   - by identity (providers.Identifier): a file store's resolved root and the
//     device and inode of its directories, an object store's server (its endpoint
//     normalised and resolved), bucket and prefix. It catches a site directory that
//     is a symlink to the target, a target that is a symlink into a site, a bind
//     mount, and an S3 bucket reached as localhost and as 127.0.0.1.
//   - by a marker object: spelled identity is never complete for object stores (a
//     proxy, a second DNS name, a gateway over the same disks), so ferry writes a
//     marker to the target, MarkerDir + "<migration>-<token>" with the token kept in
//     the state, and looks for it at every site through the site's own store. A site
//     that can see the target's marker is the target (or overlaps it).
//
// validate, copy, every delete stage and every purge run both checks before they
// touch anything; plan refuses a site whose listing holds this migration's marker,
// and never lets any marker become a record.

// MarkerDir is the key prefix of ferry's marker objects at the target root.
const MarkerDir = ".ferry-marker/"

// metaMarker is the state meta key holding the target marker's key.
const metaMarker = "target_marker"

// isMarkerKey reports whether key is a ferry marker object, at the root of the store
// that lists it or below (a site around the target sees the target's marker under
// the target's prefix).
func isMarkerKey(key string) bool {
	return strings.HasPrefix(key, MarkerDir) || strings.Contains(key, "/"+MarkerDir)
}

// ownMarker reports whether a marker key belongs to this migration (any token: a
// stale marker of this migration name still says the site was its target).
func (m *Migration) ownMarker(key string) bool {
	i := strings.LastIndex(key, MarkerDir)
	return i >= 0 && strings.HasPrefix(key[i+len(MarkerDir):], m.Spec.Migration+"-")
}

// checkIdentity refuses phase when a site is the target or another site, judged by
// what the stores are. Outside a dry run it first makes sure the target's marker
// exists, then looks for it at every site.
func (m *Migration) checkIdentity(ctx context.Context, phase string) error {
	if err := m.checkStoreIdentities(ctx, phase); err != nil {
		return err
	}
	if m.Opts.DryRun || m.State == nil {
		return nil
	}
	key, err := m.ensureMarker(ctx, phase)
	if phase == "validate" && errors.Is(err, providers.ErrPermission) {
		// Read-only credentials (an auditor's): validate stays a probe; copy writes
		// the marker, and every delete and purge looks for it.
		m.log.Warn("validate could not write ferry's marker to the target (read-only credentials?); copy will", "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	return m.lookForMarker(ctx, phase, key)
}

// storeIdentity returns s's identity, or false when the store cannot tell.
func storeIdentity(ctx context.Context, s providers.Store) (providers.Identity, bool, error) {
	if l, ok := s.(*lazyStore); ok {
		if _, err := l.get(ctx); err != nil {
			return providers.Identity{}, false, err
		}
	}
	idf, ok := providers.As[providers.Identifier](s)
	if !ok {
		return providers.Identity{}, false, nil
	}
	id, err := idf.Identity(ctx)
	return id, err == nil, err
}

// checkStoreIdentities compares the identities of every site and the target.
func (m *Migration) checkStoreIdentities(ctx context.Context, phase string) error {
	type named struct {
		name, url string
		id        providers.Identity
	}
	var all []named
	add := func(name, url string, s providers.Store) error {
		id, ok, err := storeIdentity(ctx, s)
		if err != nil {
			if ferr := m.stopFatal(phase, blame(name, err)); ferr != nil {
				return ferr
			}
			return Errorf(ExitRuntime, "%s: cannot tell what the store is (needed to prove it is not another one): %w", name, err)
		}
		if ok {
			all = append(all, named{name, url, id})
		}
		return nil
	}
	if err := add(spec.TargetName, m.Spec.Target.RawURL, m.Target); err != nil {
		return err
	}
	for _, site := range m.Spec.Sources {
		if err := add(site.Name, site.RawURL, m.Sites[site.Name]); err != nil {
			return err
		}
	}
	for i := 1; i < len(all); i++ {
		for j := 0; j < i; j++ {
			a, b := all[i], all[j]
			if !a.id.Overlaps(b.id) {
				continue
			}
			if b.name == spec.TargetName {
				return Refused("site %s (%s) is the target (%s) under another name, or overlaps it: both are %s; "+
					"a delete at the site would delete the target's copies, so ferry refuses to %s; fix the site's or the target's url",
					a.name, a.url, b.url, describe(a.id, b.id), phase)
			}
			return Refused("sites %s (%s) and %s (%s) are one store under two names, or overlap: both are %s; "+
				"one store would count as two replicas, so ferry refuses to %s; fix one of the urls",
				b.name, b.url, a.name, a.url, describe(b.id, a.id), phase)
		}
	}
	return nil
}

// describe names what two overlapping identities share, for the refusal.
func describe(a, b providers.Identity) string {
	if a.Dir != "" && b.Dir != "" && a.Dir != b.Dir {
		return fmt.Sprintf("%s and %s (symlinks resolved), one inside the other or the same directory", a.Dir, b.Dir)
	}
	if a.Dir != "" {
		return a.Dir + " (symlinks resolved)"
	}
	return b.String()
}

// markerMu serialises ensureMarker within one process (workers of one process).
var markerMu sync.Mutex

// ensureMarker returns the key of the target's marker, writing it (and recording its
// key in the state) when it is not there yet.
func (m *Migration) ensureMarker(ctx context.Context, phase string) (string, error) {
	markerMu.Lock()
	defer markerMu.Unlock()
	key, ok, err := m.State.Meta(ctx, metaMarker)
	if err != nil {
		return "", Errorf(ExitRuntime, "%w", err)
	}
	if !ok || key == "" {
		var tok [8]byte
		if _, err := rand.Read(tok[:]); err != nil {
			return "", Errorf(ExitRuntime, "marker token: %w", err)
		}
		if err := m.State.SetMeta(ctx, metaMarker, MarkerDir+m.Spec.Migration+"-"+hex.EncodeToString(tok[:])); err != nil {
			return "", Errorf(ExitRuntime, "%w", err)
		}
		// Another process may have raced this one: the recorded key is the one.
		if key, _, err = m.State.Meta(ctx, metaMarker); err != nil {
			return "", Errorf(ExitRuntime, "%w", err)
		}
	}
	// Written only when missing: nothing reaches the target once every record is
	// verified, and delete and purge work with credentials that only read it. Copy
	// writes to the target anyway: when the marker cannot even be looked at, its
	// Put says why in the words a record's Put would (a HEAD's bare 403 cannot tell
	// rejected credentials from a denied action).
	_, err = m.Target.Stat(ctx, key)
	if err == nil {
		return key, nil
	}
	if errors.Is(err, providers.ErrNotFound) || (phase == "copy" && providers.Fatal(err)) {
		body, _ := json.Marshal(map[string]string{
			"what":      "ferry's target marker: ferry looks for this object at every site to prove no site is this target under another name; it is not user data",
			"migration": m.Spec.Migration,
			"target":    m.Spec.Target.RawURL,
		})
		sum := sha256.Sum256(body)
		_, err = m.Target.Put(ctx, key, bytes.NewReader(body), int64(len(body)), providers.PutOptions{SHA256: hex.EncodeToString(sum[:])})
		if err == nil {
			m.log.Info("wrote the target marker", "key", key)
			return key, nil
		}
	}
	if errors.Is(err, context.Canceled) {
		return "", phaseErr(phase, err)
	}
	if ferr := m.stopFatal(phase, blame(spec.TargetName, err)); ferr != nil {
		return "", ferr
	}
	return "", Errorf(ExitRuntime, "target: ferry's marker object %s (needed to prove no site is the target): %w", key, err)
}

// lookForMarker looks for the target's marker at every site, through the site's own
// store: a site that sees it is the target, or overlaps it.
func (m *Migration) lookForMarker(ctx context.Context, phase, key string) error {
	for _, site := range m.Spec.Sources {
		_, err := m.Sites[site.Name].Stat(ctx, key)
		switch {
		case err == nil:
			return Refused("site %s (%s) is the target (%s) under another name, or overlaps it: the site holds the target's marker object %s, "+
				"which ferry wrote to the target only; a delete at the site would delete the target's copies, so ferry refuses to %s; fix the site's or the target's url",
				site.Name, site.RawURL, m.Spec.Target.RawURL, key, phase)
		case errors.Is(err, providers.ErrNotFound), errors.Is(err, providers.ErrInvalidKey):
			// Not there (a store that cannot even name the key cannot hold it).
		default:
			if ferr := m.stopFatal(phase, blame(site.Name, err)); ferr != nil {
				return ferr
			}
			return Errorf(ExitRuntime, "site %s: looking for the target's marker object %s (needed to prove the site is not the target): %w", site.Name, key, err)
		}
	}
	return nil
}

// markerSightings collects the marker objects a plan listing met: none of them
// becomes a record, and one of this migration's makes the plan refuse.
type markerSightings struct {
	mu   sync.Mutex
	seen map[string][]string // site -> keys
}

// skipMarker reports whether the listed key is a marker object (and notes it): the
// caller leaves it out of the listing.
func (m *Migration) skipMarker(site, key string) bool {
	if !isMarkerKey(key) {
		return false
	}
	m.markers.mu.Lock()
	defer m.markers.mu.Unlock()
	if m.markers.seen == nil {
		m.markers.seen = map[string][]string{}
	}
	if len(m.markers.seen[site]) < 10 {
		m.markers.seen[site] = append(m.markers.seen[site], key)
	}
	return true
}

// refuseMarkers refuses a plan whose listing of a site held this migration's
// marker: the site is the target, or holds it. Another migration's marker is only
// logged (the site was that migration's target): it is ferry's, not user data.
func (m *Migration) refuseMarkers() error {
	m.markers.mu.Lock()
	defer m.markers.mu.Unlock()
	defer func() { m.markers.seen = nil }() // each plan judges its own listing
	sites := make([]string, 0, len(m.markers.seen))
	for s := range m.markers.seen {
		sites = append(sites, s)
	}
	sort.Strings(sites)
	for _, site := range sites {
		for _, key := range m.markers.seen[site] {
			if m.ownMarker(key) {
				url := ""
				if s := m.siteSpec(site); s != nil {
					url = s.RawURL
				}
				return Refused("site %s (%s) lists %s, the marker object ferry writes to this migration's target (%s): the site is the target, "+
					"or holds it, under another name; plan refused, nothing changed; fix the site's or the target's url",
					site, url, key, m.Spec.Target.RawURL)
			}
			m.log.Warn("a site holds another migration's target marker; it is not a record", "site", site, "key", key)
		}
	}
	return nil
}
