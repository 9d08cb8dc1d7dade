package oci

import (
	"context"
	"net/http"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/oracle/oci-go-sdk/v65/common"
	"github.com/oracle/oci-go-sdk/v65/objectstorage"
)

// The SDK's retry loop (common.Retry) runs each call in a goroutine and, when the
// caller's context is cancelled, returns a response variable that goroutine is still
// writing: a data race on every cancelled call. So the SDK never sees a cancellable
// context: calls get a context without cancellation that carries the caller's, the
// HTTP dispatcher puts the caller's back on each request (cancelling it aborts the
// request, and a cancelled attempt is never retried), and call returns to the caller
// as soon as its context is done.

type callerCtxKey struct{}

func sdkContext(ctx context.Context) context.Context {
	return context.WithValue(context.WithoutCancel(ctx), callerCtxKey{}, ctx)
}

// dispatcher runs each HTTP request under the caller's context, and notes the id
// Object Storage gave it (opc-request-id, which OCI Audit events carry as
// data.request.id) for ferry's journal of its own access.
type dispatcher struct{ inner common.HTTPRequestDispatcher }

func (d dispatcher) Do(req *http.Request) (*http.Response, error) {
	if ctx, ok := req.Context().Value(callerCtxKey{}).(context.Context); ok {
		req = req.WithContext(ctx)
	}
	resp, err := d.inner.Do(req)
	if resp != nil {
		providers.NoteRequestID(req.Context(), resp.Header.Get("opc-request-id"))
	}
	return resp, err
}

type result[T any] struct {
	v   T
	err error
}

// call runs f (an SDK call) and returns when it does or when ctx is done; abandon
// releases what an abandoned successful call returned.
func call[T any](ctx context.Context, f func(context.Context) (T, error), abandon func(T)) (T, error) {
	if ctx.Done() == nil {
		return f(sdkContext(ctx))
	}
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, err
	}
	ch := make(chan result[T], 1)
	go func() {
		v, err := f(sdkContext(ctx))
		ch <- result[T]{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil && abandon != nil {
				abandon(r.v)
			}
		}()
		var zero T
		return zero, ctx.Err()
	}
}

// api is the subset of the Object Storage client the store uses, made safe to
// cancel.
type api struct {
	c objectstorage.ObjectStorageClient
}

func (a api) GetBucket(ctx context.Context, r objectstorage.GetBucketRequest) (objectstorage.GetBucketResponse, error) {
	return call(ctx, func(c context.Context) (objectstorage.GetBucketResponse, error) { return a.c.GetBucket(c, r) }, nil)
}

func (a api) HeadObject(ctx context.Context, r objectstorage.HeadObjectRequest) (objectstorage.HeadObjectResponse, error) {
	return call(ctx, func(c context.Context) (objectstorage.HeadObjectResponse, error) { return a.c.HeadObject(c, r) }, nil)
}

func (a api) GetObject(ctx context.Context, r objectstorage.GetObjectRequest) (objectstorage.GetObjectResponse, error) {
	return call(ctx, func(c context.Context) (objectstorage.GetObjectResponse, error) { return a.c.GetObject(c, r) },
		func(resp objectstorage.GetObjectResponse) {
			if resp.Content != nil {
				resp.Content.Close()
			}
		})
}

func (a api) PutObject(ctx context.Context, r objectstorage.PutObjectRequest) (objectstorage.PutObjectResponse, error) {
	return call(ctx, func(c context.Context) (objectstorage.PutObjectResponse, error) { return a.c.PutObject(c, r) }, nil)
}

func (a api) DeleteObject(ctx context.Context, r objectstorage.DeleteObjectRequest) (objectstorage.DeleteObjectResponse, error) {
	return call(ctx, func(c context.Context) (objectstorage.DeleteObjectResponse, error) { return a.c.DeleteObject(c, r) }, nil)
}

func (a api) ListObjects(ctx context.Context, r objectstorage.ListObjectsRequest) (objectstorage.ListObjectsResponse, error) {
	return call(ctx, func(c context.Context) (objectstorage.ListObjectsResponse, error) { return a.c.ListObjects(c, r) }, nil)
}

func (a api) ListObjectVersions(ctx context.Context, r objectstorage.ListObjectVersionsRequest) (objectstorage.ListObjectVersionsResponse, error) {
	return call(ctx, func(c context.Context) (objectstorage.ListObjectVersionsResponse, error) {
		return a.c.ListObjectVersions(c, r)
	}, nil)
}

func (a api) CreateMultipartUpload(ctx context.Context, r objectstorage.CreateMultipartUploadRequest) (objectstorage.CreateMultipartUploadResponse, error) {
	return call(ctx, func(c context.Context) (objectstorage.CreateMultipartUploadResponse, error) {
		return a.c.CreateMultipartUpload(c, r)
	}, nil)
}

func (a api) UploadPart(ctx context.Context, r objectstorage.UploadPartRequest) (objectstorage.UploadPartResponse, error) {
	return call(ctx, func(c context.Context) (objectstorage.UploadPartResponse, error) { return a.c.UploadPart(c, r) }, nil)
}

func (a api) CommitMultipartUpload(ctx context.Context, r objectstorage.CommitMultipartUploadRequest) (objectstorage.CommitMultipartUploadResponse, error) {
	return call(ctx, func(c context.Context) (objectstorage.CommitMultipartUploadResponse, error) {
		return a.c.CommitMultipartUpload(c, r)
	}, nil)
}

func (a api) AbortMultipartUpload(ctx context.Context, r objectstorage.AbortMultipartUploadRequest) (objectstorage.AbortMultipartUploadResponse, error) {
	return call(ctx, func(c context.Context) (objectstorage.AbortMultipartUploadResponse, error) {
		return a.c.AbortMultipartUpload(c, r)
	}, nil)
}
