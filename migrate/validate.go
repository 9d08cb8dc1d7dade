package migrate

import (
	"context"
	"errors"

	"github.com/ferrymigrate/ferry/providers"
)

// Probe is the outcome of one read-only probe of a store.
type Probe struct {
	Name   string `json:"name"`
	URL    string `json:"url"`
	OK     bool   `json:"ok"`
	Empty  bool   `json:"empty"`
	Region string `json:"region,omitempty"`
	// Versioning is "on" for a store whose bucket keeps versions (enabled, or
	// suspended after it was: older versions may remain), "unknown" when it cannot
	// tell, "" otherwise. On a versioned site every version is user data (I10).
	Versioning string `json:"versioning,omitempty"`
	Error      string `json:"error,omitempty"`
	// Inventory describes the inventory a site is planned from, as validate read its
	// manifest (inventory.go).
	Inventory string `json:"inventory,omitempty"`
}

// ValidateResult is what `ferry validate` reports.
type ValidateResult struct {
	Migration  string  `json:"migration"`
	SpecDigest string  `json:"spec_digest"`
	Sites      []Probe `json:"sites"`
	Target     Probe   `json:"target"`
	// Marker is the key of the marker object validate made sure the target holds
	// (and found at no site); empty in a dry run.
	Marker string `json:"marker,omitempty"`
}

var errProbeDone = errors.New("probe done")

// Validate reaches every site and the target with read-only probes: a listing that
// stops at the first object, and the target's region against the residency policy.
func (m *Migration) Validate(ctx context.Context) (*ValidateResult, error) {
	res := &ValidateResult{Migration: m.Spec.Migration, SpecDigest: m.Spec.Digest()}
	probe := func(name, url string, s providers.Store) Probe {
		p := Probe{Name: name, URL: url, Empty: true}
		err := s.List(ctx, func(o providers.Object) error {
			if isMarkerKey(o.Key) {
				return nil // ferry's own marker is not data
			}
			p.Empty = false
			return errProbeDone
		})
		if err != nil && !errors.Is(err, errProbeDone) {
			p.Error = errString(err)
			return p
		}
		if r := m.caps(name).Regioner; r != nil {
			region, err := r.Region(ctx)
			if err != nil && !errors.Is(err, providers.ErrNotSupported) {
				p.Error = errString(err)
				return p
			}
			p.Region = region
		}
		p.Versioning = versioningOf(ctx, s)
		p.OK = true
		return p
	}
	failed := 0
	for _, site := range m.Spec.Sources {
		p := probe(site.Name, site.URL, m.Sites[site.Name])
		if p.OK && site.Inventory != nil {
			if desc, err := m.probeInventory(ctx, &site); err != nil {
				p.OK, p.Error = false, "inventory: "+errString(err)
			} else {
				p.Inventory = desc
			}
		}
		if !p.OK {
			failed++
		}
		res.Sites = append(res.Sites, p)
	}
	res.Target = probe("target", m.Spec.Target.URL, m.Target)
	if !res.Target.OK {
		failed++
	}
	if failed > 0 {
		return res, Errorf(ExitRuntime, "%d of %d stores could not be reached", failed, len(res.Sites)+1)
	}
	if err := m.checkResidency(ctx); err != nil {
		return res, err
	}
	if err := m.checkIdentity(ctx, "validate"); err != nil {
		return res, err
	}
	if m.State != nil && !m.Opts.DryRun {
		res.Marker, _, _ = m.State.Meta(ctx, metaMarker)
	}
	return res, nil
}
