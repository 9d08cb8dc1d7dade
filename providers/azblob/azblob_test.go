package azblob_test

import (
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/azblob"
	"github.com/ferrymigrate/ferry/providers/azblob/azbtest"
	"github.com/ferrymigrate/ferry/providers/providertest"
)

func TestMain(m *testing.M) { azbtest.Main(m) }

// testOptions keeps the small part size tests use to exercise block lists.
var testOptions = azblob.Options{MinPartSize: 64 << 10, ListPageSize: 1000, RetryDelay: 50 * time.Millisecond, MaxRetryDelay: 500 * time.Millisecond}

func open(t *testing.T, cfg providers.Config) *azblob.Store {
	t.Helper()
	s, err := azblob.New(t.Context(), cfg, testOptions)
	if err != nil {
		t.Fatalf("open %s: %v", cfg.URL, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	srv := azbtest.Shared(t)
	providertest.Run(t, func(t *testing.T) providers.Store {
		cfg := srv.Config(srv.Container(t), "users/")
		cfg.PartSize = 1 << 20 // the 3 MiB and 8 MiB objects go up as block lists
		return open(t, cfg)
	})
}
