package gs_test

import (
	"errors"
	"testing"

	"github.com/ferrymigrate/ferry/providers"
)

// TestVersioned covers a bucket with object versioning on fake-gcs-server. GCS
// differs from S3 here, so providertest.RunVersioned does not apply as a whole:
// deleting the live generation never makes an older one live again (its
// DeleteIfRemovesOnlyThatVersion expects S3's behaviour), and fake-gcs-server cannot
// delete a noncurrent generation at all (it deletes the live object instead; the
// precondition proxy answers 501 for it), so a hard delete by generation and a purge
// of a noncurrent generation cannot be shown on the emulator.
func TestVersioned(t *testing.T) {
	t.Run("VersionsNewestFirst", func(t *testing.T) {
		_, s, _ := fresh(t, true, "v/")
		on, err := s.Versioning(t.Context())
		if err != nil || !on {
			t.Fatalf("Versioning() = %v, %v; want true", on, err)
		}
		o1 := put(t, s, "u/k", []byte("version one"))
		o2 := put(t, s, "u/k", []byte("version two!"))
		o3 := put(t, s, "u/k", []byte("version three"))
		put(t, s, "u/k2", []byte("another key"))
		put(t, s, "u/k/below", []byte("a key below"))
		vs, err := s.Versions(t.Context(), "u/k")
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 3 {
			t.Fatalf("Versions: %d, want 3: %+v", len(vs), vs)
		}
		for i, want := range []providers.Object{o3, o2, o1} {
			if vs[i].Version == "" || vs[i].Version != want.Version || vs[i].Size != want.Size || vs[i].Key != "u/k" {
				t.Errorf("Versions[%d] = %+v, want the version of %+v", i, vs[i], want)
			}
		}
		st, err := s.Stat(t.Context(), "u/k")
		if err != nil || st.Version != o3.Version {
			t.Errorf("Stat = %+v, %v; want version %s", st, err, o3.Version)
		}
		if vs, err := s.Versions(t.Context(), "never"); err != nil || len(vs) != 0 {
			t.Errorf("Versions of a key never written = %+v, %v", vs, err)
		}
	})
	t.Run("DeleteLeavesNoncurrent", func(t *testing.T) {
		_, s, _ := fresh(t, true, "")
		o := put(t, s, "k", []byte("kept as noncurrent"))
		if err := s.Delete(t.Context(), "k"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(t.Context(), "k"); !errors.Is(err, providers.ErrNotFound) {
			t.Fatalf("Stat after Delete: %v, want ErrNotFound", err)
		}
		vs, err := s.Versions(t.Context(), "k")
		if err != nil || len(vs) != 1 || vs[0].Version != o.Version {
			t.Fatalf("Versions after Delete = %+v, %v; want the one noncurrent generation", vs, err)
		}
	})
	t.Run("SoftDeleteRestore", func(t *testing.T) {
		_, s, _ := fresh(t, true, "")
		data := []byte("soft-deleted, then restored")
		put(t, s, "u/k", data)
		o, _ := s.Stat(t.Context(), "u/k")
		h, err := s.SoftDelete(t.Context(), "u/k", o)
		if err != nil {
			t.Fatal(err)
		}
		if h != o.Version || h != s.SoftHandle("u/k", o) {
			t.Fatalf("handle %q, want the generation %q", h, o.Version)
		}
		if _, err := s.Stat(t.Context(), "u/k"); !errors.Is(err, providers.ErrNotFound) {
			t.Fatalf("Stat after SoftDelete: %v, want ErrNotFound", err)
		}
		if ok, err := s.SoftExists(t.Context(), "u/k", h); err != nil || !ok {
			t.Fatalf("SoftExists = %v, %v", ok, err)
		}
		if err := s.Restore(t.Context(), "u/k", h); err != nil {
			t.Fatal(err)
		}
		if got := content(t, s, "u/k"); string(got) != string(data) {
			t.Fatalf("restored %q", got)
		}
		// A new generation with the same bytes, marked with the one it came from (on
		// GCS the kept generation is then deleted; fake-gcs-server cannot, so it stays).
		if st, err := s.Stat(t.Context(), "u/k"); err != nil || st.Version == h || st.Metadata["ferry-restored-from-generation"] != h {
			t.Fatalf("after Restore: %+v, %v; want a new generation restored from %s", st, err, h)
		}
		if err := s.Restore(t.Context(), "u/k", h); err != nil {
			t.Fatalf("a second Restore (interrupted and run again): %v", err)
		}
		put(t, s, "u/k", []byte("other bytes"))
		if err := s.Restore(t.Context(), "u/k", h); !errors.Is(err, providers.ErrAlreadyExists) {
			t.Fatalf("Restore onto other bytes: %v, want ErrAlreadyExists", err)
		}
	})
	t.Run("StaleSoftDelete", func(t *testing.T) {
		_, s, _ := fresh(t, true, "")
		old := put(t, s, "k", []byte("one"))
		put(t, s, "k", []byte("two"))
		if _, err := s.SoftDelete(t.Context(), "k", old); !errors.Is(err, providers.ErrPrecondition) {
			t.Fatalf("SoftDelete of a noncurrent generation: %v, want ErrPrecondition", err)
		}
	})
	t.Run("PurgeNeverTouchesLive", func(t *testing.T) {
		_, s, _ := fresh(t, true, "")
		o := put(t, s, "k", []byte("kept"))
		h, err := s.SoftDelete(t.Context(), "k", o)
		if err != nil {
			t.Fatal(err)
		}
		put(t, s, "k", []byte("written after the soft delete"))
		// On GCS this deletes the noncurrent generation; fake-gcs-server cannot (the
		// proxy says so, 501) and must not delete the live object instead.
		err = s.Purge(t.Context(), "k", h)
		if err != nil && !errors.Is(err, providers.ErrNotSupported) {
			t.Fatalf("Purge: %v", err)
		}
		if got := content(t, s, "k"); string(got) != "written after the soft delete" {
			t.Fatalf("the live object after Purge of a noncurrent generation: %q", got)
		}
		cur, _ := s.Stat(t.Context(), "k")
		if err := s.Purge(t.Context(), "k", cur.Version); !errors.Is(err, providers.ErrPrecondition) {
			t.Fatalf("Purge naming the live generation: %v, want ErrPrecondition", err)
		}
	})
}
