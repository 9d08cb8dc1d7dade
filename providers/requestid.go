package providers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
)

// RequestIDs collects the ids a store gave the requests made under one context (S3's
// x-amz-request-id, OCI's opc-request-id), for ferry's journal of its own access.
// A listing of many pages makes many requests: every id is kept, in order.
type RequestIDs struct {
	mu  sync.Mutex
	ids []string
}

type requestIDsKey struct{}

// WithRequestIDs returns a context under which a store that knows its requests' ids
// notes them (NoteRequestID), and the collector they are noted in.
func WithRequestIDs(ctx context.Context) (context.Context, *RequestIDs) {
	ids := &RequestIDs{}
	return context.WithValue(ctx, requestIDsKey{}, ids), ids
}

// NoteRequestID records id for the request just made under ctx; nothing happens when
// no one asked (no collector in ctx) or id is empty.
func NoteRequestID(ctx context.Context, id string) {
	if id == "" {
		return
	}
	if ids, ok := ctx.Value(requestIDsKey{}).(*RequestIDs); ok {
		ids.mu.Lock()
		if len(ids.ids) < maxRequestIDs {
			ids.ids = append(ids.ids, id)
		}
		ids.mu.Unlock()
	}
}

// maxRequestIDs bounds what one collector keeps (a listing of a huge site).
const maxRequestIDs = 64

// IDs returns the noted ids, in order.
func (r *RequestIDs) IDs() []string {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// Principal is implemented by stores that can name the identity they act as: an
// access key id, an OCI user or principal, a service account. Never a secret.
type Principal interface {
	Principal(ctx context.Context) (string, error)
}

// AccessKeyIdentity names an access key id in the journal without writing it whole:
// ferry treats the key id as a credential too (DESIGN.md I8). It keeps the first and
// last four characters, as consoles show them, and the SHA-256 of the whole id, so
// that a store's access log (which names the id) can be matched by hashing it.
func AccessKeyIdentity(id string) string {
	sum := sha256.Sum256([]byte(id))
	shown := "…"
	if len(id) >= 16 {
		shown = id[:4] + "…" + id[len(id)-4:]
	}
	return "access_key_id:" + shown + " sha256:" + hex.EncodeToString(sum[:])
}
