package migrate

import (
	"cmp"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
)

// storeError is an error that retrying cannot fix (providers.Fatal), with the name of
// the store it came from: a site's name or "target".
type storeError struct {
	store string
	err   error
}

func (e *storeError) Error() string { return e.store + ": " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// blame marks err as store's when it is fatal; other errors pass unchanged.
func blame(store string, err error) error {
	var se *storeError
	if err == nil || !providers.Fatal(err) || errors.As(err, &se) {
		return err
	}
	return &storeError{store: store, err: err}
}

// stopFatal returns the one message that stops phase after a fatal store error: it
// names the store, what is wrong and the setting to check (exit 1). It returns nil
// when err is not fatal.
func (m *Migration) stopFatal(phase string, err error) error {
	if err == nil || !providers.Fatal(err) {
		return nil
	}
	name := "a store"
	var se *storeError
	if errors.As(err, &se) {
		name, err = se.store, se.err
	}
	m.Opts.Metrics.Failure(cmp.Or(phase, "open"), name, err)
	if phase == "" {
		return Errorf(ExitRuntime, "%s: %s (cause: %v)", name, m.fatalHint(name, err), err)
	}
	return Errorf(ExitRuntime, "%s: %s; %s stopped at the first such error, nothing retried (cause: %v)",
		name, m.fatalHint(name, err), phase, err)
}

// fatalHint says what is wrong with store and which setting to check.
func (m *Migration) fatalHint(store string, err error) string {
	url, creds := "", spec.Credentials{}
	if store == spec.TargetName {
		url, creds = m.Spec.Target.RawURL, m.Spec.Target.Credentials
	} else if s := m.siteSpec(store); s != nil {
		url, creds = s.RawURL, s.Credentials
	}
	if url == "" {
		url = "its url"
	}
	switch {
	case errors.Is(err, providers.ErrCredentials):
		return "credentials rejected (wrong, rotated or expired key, or a bad signature): check credentials " + credText(creds)
	case errors.Is(err, providers.ErrNoBucket):
		return fmt.Sprintf("the bucket or container does not exist (or these credentials may not see it): check url %s, endpoint and region, and credentials %s", url, credText(creds))
	case errors.Is(err, providers.ErrAccessDenied):
		return "access denied: check credentials " + credText(creds) + " and the permissions they grant on " + url
	case errors.Is(err, providers.ErrNoSpace):
		return fmt.Sprintf("no space left (disk full or quota reached) at %s: free space there and rerun", url)
	case errors.Is(err, providers.ErrReadOnly):
		return fmt.Sprintf("%s is on a read-only filesystem: remount it writable and rerun", url)
	}
	return "an error retrying cannot fix"
}

// credText shows the credential setting as written in the spec (names only, never a
// secret), or says the default chain is used.
func credText(c spec.Credentials) string {
	m := c.Map()
	if len(m) == 0 {
		return "(none set: the default credential chain of the environment)"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + m[k]
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
