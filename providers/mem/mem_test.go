package mem_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/mem"
	"github.com/ferrymigrate/ferry/providers/providertest"
)

var n atomic.Int64

// fresh returns a store with a name no other test uses.
func fresh(t *testing.T) *mem.Store {
	name := fmt.Sprintf("test-%d", n.Add(1))
	t.Cleanup(func() { mem.Reset(name) })
	return mem.New(name)
}

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providers.Store { return fresh(t) })
}

func TestSameNameSharesData(t *testing.T) {
	ctx := t.Context()
	mem.Reset("site-a")
	t.Cleanup(func() { mem.Reset("site-a") })
	a, err := providers.Open(ctx, providers.Config{URL: "mem://site-a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := providers.Open(ctx, providers.Config{URL: "mem://site-a/"})
	if err != nil {
		t.Fatal(err)
	}
	other := mem.New("site-b")
	t.Cleanup(func() { mem.Reset("site-b") })

	if _, err := a.Put(ctx, "k", strings.NewReader("v"), 1, providers.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if o, err := b.Stat(ctx, "k"); err != nil || o.Size != 1 {
		t.Errorf("second handle on site-a: %+v, %v", o, err)
	}
	if _, err := other.Stat(ctx, "k"); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("site-b sees site-a's object: %v", err)
	}
	if got := a.URI("x/y"); got != "mem://site-a/x/y" {
		t.Errorf("URI = %q", got)
	}

	mem.Reset("site-a")
	if n := mem.New("site-a").Len(); n != 0 {
		t.Errorf("after Reset site-a holds %d objects", n)
	}
	if _, err := providers.Open(ctx, providers.Config{URL: "mem://"}); err == nil {
		t.Error("mem:// without a name was accepted")
	}
}

func TestChecksumsAndMetadata(t *testing.T) {
	s := fresh(t)
	ctx := t.Context()
	meta := map[string]string{"source": "virginia"}
	o, err := s.Put(ctx, "k", strings.NewReader("abc"), 3, providers.PutOptions{Metadata: meta, CRC32C: "364B3FB7"})
	if err != nil {
		t.Fatal(err)
	}
	const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if o.Checksums.SHA256 != abc || o.Checksums.CRC32C != "364b3fb7" {
		t.Errorf("checksums %+v", o.Checksums)
	}
	if !providers.FeaturesOf(s).TrustedSHA256 {
		t.Error("mem must report a trusted sha256")
	}
	// Neither the caller's map nor a returned one aliases the stored metadata.
	meta["source"] = "changed"
	o.Metadata["source"] = "changed too"
	st, _ := s.Stat(ctx, "k")
	if st.Metadata["source"] != "virginia" {
		t.Errorf("stored metadata changed to %q", st.Metadata["source"])
	}
	if _, err := s.Put(ctx, "k", strings.NewReader("abc"), 3, providers.PutOptions{CRC32C: "00000000"}); !errors.Is(err, providers.ErrChecksum) {
		t.Errorf("wrong crc32c: %v", err)
	}
	if _, err := s.Put(ctx, "long", strings.NewReader("abcd"), 3, providers.PutOptions{}); err == nil {
		t.Error("reader longer than size accepted")
	}
}

func TestETagsNeverRepeat(t *testing.T) {
	s := fresh(t)
	ctx := t.Context()
	seen := map[string]bool{}
	for range 100 {
		o, err := s.Put(ctx, "k", strings.NewReader("same"), 4, providers.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if seen[o.ETag] {
			t.Fatalf("ETag %s reused for a new version", o.ETag)
		}
		seen[o.ETag] = true
	}
}

func TestRegion(t *testing.T) {
	s, err := providers.Open(t.Context(), providers.Config{URL: "mem://r", Region: "us-ashburn-1"})
	if err != nil {
		t.Fatal(err)
	}
	r, ok := providers.As[providers.Regioner](s)
	if !ok {
		t.Fatal("mem store is not a Regioner")
	}
	if got, err := r.Region(t.Context()); err != nil || got != "us-ashburn-1" {
		t.Errorf("Region = %q, %v", got, err)
	}
	if _, err := mem.New("r").Region(t.Context()); !errors.Is(err, providers.ErrNotSupported) {
		t.Errorf("Region without one: %v, want ErrNotSupported", err)
	}
}

func TestSoftHandleIsPerKey(t *testing.T) {
	s := fresh(t)
	ctx := t.Context()
	o, err := s.Put(ctx, "a", strings.NewReader("x"), 1, providers.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.SoftDelete(ctx, "a", o)
	if err != nil {
		t.Fatal(err)
	}
	// The handle only restores the key it was made for.
	if err := s.Restore(ctx, "b", h); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Restore of another key with a's handle: %v, want ErrNotFound", err)
	}
	if ok, _ := s.SoftExists(ctx, "b", h); ok {
		t.Error("SoftExists true for another key")
	}
	if err := s.Restore(ctx, "a", h); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Stat(ctx, "a"); st.ETag != o.ETag {
		t.Errorf("restored ETag %s, want %s", st.ETag, o.ETag)
	}
}

// List must not hold the lock while calling fn: a callback that writes would
// deadlock.
func TestListCallbackMayWrite(t *testing.T) {
	s := fresh(t)
	ctx := t.Context()
	for i := range 10 {
		k := fmt.Sprintf("k%d", i)
		if _, err := s.Put(ctx, k, strings.NewReader(k), int64(len(k)), providers.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	err := s.List(ctx, func(o providers.Object) error {
		return s.DeleteIf(ctx, o.Key, o)
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 0 {
		t.Errorf("%d objects left", s.Len())
	}
}

func BenchmarkPutStatDelete(b *testing.B) {
	s := mem.New("bench")
	b.Cleanup(func() { mem.Reset("bench") })
	data := bytes.Repeat([]byte("x"), 4096)
	b.SetBytes(int64(len(data)))
	b.RunParallel(func(pb *testing.PB) {
		ctx := b.Context()
		r := bytes.NewReader(data)
		i := 0
		for pb.Next() {
			i++
			k := fmt.Sprintf("u%p/%d", r, i)
			r.Reset(data)
			o, err := s.Put(ctx, k, r, int64(len(data)), providers.PutOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Stat(ctx, k); err != nil {
				b.Fatal(err)
			}
			if err := s.DeleteIf(ctx, k, o); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestVersionedConformance(t *testing.T) {
	providertest.RunVersioned(t, func(t *testing.T) providers.Store {
		s := fresh(t)
		mem.EnableVersioning(s.Name())
		return mem.New(s.Name())
	})
	// The whole suite holds in versioned mode too.
	providertest.Run(t, func(t *testing.T) providers.Store {
		s := fresh(t)
		mem.EnableVersioning(s.Name())
		return mem.New(s.Name())
	})
}
