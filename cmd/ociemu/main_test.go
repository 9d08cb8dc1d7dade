package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/oci"
	"github.com/ferrymigrate/ferry/providers/oci/ocitest"
)

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"-bogus"}, {"-pubkey", "/nonexistent.pem", "extra"}} {
		err := run(t.Context(), args, io.Discard, io.Discard, nil)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
}

// TestServe runs ociemu with a data directory and a bare -pubkey, and migrates
// through it with the oci provider.
func TestServe(t *testing.T) {
	id := ocitest.NewIdentity(t)
	pub := filepath.Join(t.TempDir(), "key_public.pem")
	if err := os.WriteFile(pub, id.PublicKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	serve := func(t *testing.T) (string, func()) {
		ctx, cancel := context.WithCancel(t.Context())
		addr := make(chan string, 1)
		done := make(chan error, 1)
		var out bytes.Buffer
		go func() {
			done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-data", data, "-pubkey", pub, "-bucket", "users:versioned", "-namespace", "acme"},
				&out, io.Discard, func(a string) { addr <- a })
		}()
		select {
		case a := <-addr:
			return a, func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run: %v", err)
				}
				if !strings.Contains(out.String(), "fingerprint "+id.Fingerprint) {
					t.Errorf("output does not name the key: %s", out.String())
				}
			}
		case err := <-done:
			t.Fatalf("run: %v", err)
		}
		return "", nil
	}
	open := func(t *testing.T, addr string) providers.Store {
		cfg := providers.Config{URL: "oci://acme/users/site/", Endpoint: "http://" + addr, Region: "us-ashburn-1",
			Credentials: map[string]string{"oci_config_file": id.ConfigFile}}
		s, err := oci.New(t.Context(), cfg, oci.Options{DisableCircuitBreaker: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}

	addr, stop := serve(t)
	s := open(t, addr)
	o, err := s.Put(t.Context(), "alice/1", strings.NewReader("hello"), 5, providers.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if o.Version == "" {
		t.Errorf("no version id from a versioned bucket")
	}
	stop()

	// The data directory keeps the object across a restart.
	addr, stop = serve(t)
	defer stop()
	s = open(t, addr)
	rc, st, err := s.Open(t.Context(), "alice/1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "hello" || !st.SameVersion(o) {
		t.Errorf("after restart: %q %+v, want hello %+v", b, st, o)
	}
}
