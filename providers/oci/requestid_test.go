package oci_test

import (
	"testing"

	"github.com/ferrymigrate/ferry/providers/oci/ocitest"
	"github.com/ferrymigrate/ferry/providers/providertest"
)

// TestRequestIDsNoted: every request names its opc-request-id (which OCI Audit events
// carry as data.request.id), for the journal and `ferry audit`.
func TestRequestIDsNoted(t *testing.T) {
	srv := emulator(t, ocitest.Options{})
	providertest.RequestIDs(t, open(t, srv, newBucket(t, srv, false), "users/", fastOptions()))
}
