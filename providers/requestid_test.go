package providers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// An access key id is never written whole; its SHA-256 names it.
func TestAccessKeyIdentity(t *testing.T) {
	id := "AKIAIOSFODNN7EXAMPLE"
	got := AccessKeyIdentity(id)
	sum := sha256.Sum256([]byte(id))
	if want := "access_key_id:AKIA…MPLE sha256:" + hex.EncodeToString(sum[:]); got != want || strings.Contains(got, id) {
		t.Fatalf("identity %q, want %q", got, want)
	}
	if short := AccessKeyIdentity("minio"); strings.Contains(short, "minio") {
		t.Fatalf("a short id shown: %q", short)
	}
}

// Ids noted under a collector's context are kept in order; without one nothing happens.
func TestRequestIDs(t *testing.T) {
	NoteRequestID(context.Background(), "lost")
	ctx, ids := WithRequestIDs(context.Background())
	NoteRequestID(ctx, "a")
	NoteRequestID(ctx, "")
	NoteRequestID(ctx, "b")
	if got := strings.Join(ids.IDs(), ","); got != "a,b" {
		t.Fatalf("ids %q", got)
	}
}
