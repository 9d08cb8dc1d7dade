package s3

import (
	"testing"

	"github.com/ferrymigrate/ferry/providers/providertest"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// TestRequestIDsNoted: every request names its x-amz-request-id (the request id of S3
// server access logs and MinIO's audit log), for the journal and `ferry audit`.
func TestRequestIDsNoted(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	providertest.RequestIDs(t, open(t, srv, srv.Bucket(t, false), false))
}
