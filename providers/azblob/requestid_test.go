package azblob_test

import (
	"testing"

	"github.com/ferrymigrate/ferry/providers/azblob/azbtest"
	"github.com/ferrymigrate/ferry/providers/providertest"
)

// TestRequestIDsNoted: every request names its x-ms-request-id (StorageBlobLogs'
// CorrelationId), for the journal and `ferry audit`.
func TestRequestIDsNoted(t *testing.T) {
	srv := azbtest.Shared(t)
	providertest.RequestIDs(t, open(t, srv.Config(srv.Container(t), "users/")))
}
