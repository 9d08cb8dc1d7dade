package providertest

import (
	"testing"

	"github.com/ferrymigrate/ferry/providers"
)

// RunVersioned checks a store's Versioner on a bucket with versioning enabled. open
// must return a fresh, empty store whose bucket keeps versions. A versioned site is
// where deleting the listed version makes an older one current (issue 13 class 2):
// Versions must show every version, the delete of one version must remove exactly
// that one, and the conditional deletes must name it.
func RunVersioned(t *testing.T, open func(t *testing.T) providers.Store) {
	versioner := func(t *testing.T, s providers.Store) providers.Versioner {
		t.Helper()
		v, ok := providers.As[providers.Versioner](s)
		if !ok {
			t.Fatal("store does not implement providers.Versioner")
		}
		on, err := v.Versioning(t.Context())
		if err != nil || !on {
			t.Fatalf("Versioning() = %v, %v on a versioned bucket; want true", on, err)
		}
		return v
	}
	t.Run("VersionsNewestFirst", func(t *testing.T) {
		s := open(t)
		v := versioner(t, s)
		o1 := put(t, s, "u/k", []byte("version one"))
		o2 := put(t, s, "u/k", []byte("version two!"))
		o3 := put(t, s, "u/k", []byte("version three"))
		put(t, s, "u/k2", []byte("another key"))
		if providers.FeaturesOf(s).PrefixAndChild {
			put(t, s, "u/k/below", []byte("a key below"))
		}
		vs, err := v.Versions(t.Context(), "u/k")
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 3 {
			t.Fatalf("Versions: %d versions, want 3: %+v", len(vs), vs)
		}
		for i, want := range []providers.Object{o3, o2, o1} {
			got := vs[i]
			if got.Version == "" || got.Key != "u/k" || got.Size != want.Size || (want.Version != "" && got.Version != want.Version) {
				t.Errorf("Versions[%d] = %+v, want the version of %+v", i, got, want)
			}
		}
		if vs[0].Version == vs[1].Version || vs[1].Version == vs[2].Version {
			t.Errorf("versions share an id: %+v", vs)
		}
		cur := stat(t, s, "u/k")
		if cur.Version != vs[0].Version {
			t.Errorf("Stat names version %q, Versions' newest is %q", cur.Version, vs[0].Version)
		}
		if vs, err := v.Versions(t.Context(), "never"); err != nil || len(vs) != 0 {
			t.Errorf("Versions of a key never written = %+v, %v; want none", vs, err)
		}
	})
	t.Run("DeleteIfRemovesOnlyThatVersion", func(t *testing.T) {
		s := open(t)
		v := versioner(t, s)
		cd := conditional(t, s)
		put(t, s, "u/k", []byte("older bytes"))
		put(t, s, "u/k", []byte("newer bytes, verified"))
		cur := stat(t, s, "u/k")
		if err := cd.DeleteIf(t.Context(), "u/k", cur); err != nil {
			t.Fatalf("DeleteIf: %v", err)
		}
		// The older version is current now: the key is not absent, and the deleted
		// version is gone from the history.
		wantContent(t, s, "u/k", []byte("older bytes"))
		vs, err := v.Versions(t.Context(), "u/k")
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 1 || vs[0].Version == cur.Version {
			t.Fatalf("after deleting version %s: versions %+v, want only the older one", cur.Version, vs)
		}
	})
	t.Run("DeleteMarkerHidesVersions", func(t *testing.T) {
		s := open(t)
		v := versioner(t, s)
		o := put(t, s, "u/k", []byte("kept below a marker"))
		if err := s.Delete(t.Context(), "u/k"); err != nil {
			t.Fatal(err)
		}
		wantAbsent(t, s, "u/k")
		vs, err := v.Versions(t.Context(), "u/k")
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 1 || vs[0].Size != o.Size {
			t.Fatalf("versions below a delete marker: %+v, want the one version", vs)
		}
	})
}
