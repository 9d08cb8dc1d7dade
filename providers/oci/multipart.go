package oci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"time"

	"github.com/oracle/oci-go-sdk/v65/common"
	"github.com/oracle/oci-go-sdk/v65/objectstorage"

	"github.com/ferrymigrate/ferry/providers"
)

// partSizeFor grows the part size until the object fits in MaxParts parts.
func (s *Store) partSizeFor(size int64) int64 {
	p := s.partSize
	for (size+p-1)/p > MaxParts {
		p *= 2
	}
	return p
}

// putMultipart uploads r in parts, PartConcurrency at a time, each read into a
// buffer charged to the store's memory bound (so the SDK can retry it) and sent with
// its CRC32C for the service to check. The whole-object SHA-256 and CRC32C are
// computed while reading and checked against the caller's before the commit; the
// service's whole-object CRC32C is checked after it. Anything short of a verified
// commit aborts the upload.
func (s *Store) putMultipart(ctx context.Context, name string, r io.Reader, size int64, sha, crc []byte, meta map[string]string, ifAbsent bool) (providers.Object, error) {
	partSize := s.partSizeFor(size)
	if partSize > s.mem.cap {
		return providers.Object{}, fmt.Errorf("oci: put %s: parts of %d bytes exceed the store's buffer bound of %d bytes", s.uriOf(name), partSize, s.mem.cap)
	}
	nParts := int((size + partSize - 1) / partSize)

	details := objectstorage.CreateMultipartUploadDetails{Object: &name}
	if len(meta) > 0 {
		details.Metadata = make(map[string]string, len(meta))
		for k, v := range meta {
			details.Metadata["opc-meta-"+k] = v
		}
	}
	creq := objectstorage.CreateMultipartUploadRequest{NamespaceName: &s.ns, BucketName: &s.bucket,
		CreateMultipartUploadDetails: details, OpcChecksumAlgorithm: objectstorage.CreateMultipartUploadOpcChecksumAlgorithmCrc32c}
	if s.kms != "" {
		creq.OpcSseKmsKeyId = &s.kms
	}
	if ifAbsent {
		creq.IfNoneMatch = common.String("*")
	}
	up, err := s.client.CreateMultipartUpload(ctx, creq)
	if err != nil {
		return providers.Object{}, s.fail("create multipart upload", name, err)
	}
	uploadID := deref(up.UploadId)
	committed := false
	defer func() {
		if !committed {
			s.abort(ctx, name, uploadID)
		}
	}()

	gctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
		etags    = make([]string, nParts)
		md5s     = make([][]byte, nParts)
		slots    = make(chan struct{}, s.partConc)
		whole    = sha256.New()
		wholeCRC = crc32.New(castagnoli)
	)
	setErr := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel(err)
		}
		errMu.Unlock()
	}
	var off int64
	for i := 0; i < nParts && gctx.Err() == nil; i++ {
		n := min(partSize, size-off)
		select {
		case slots <- struct{}{}:
		case <-gctx.Done():
			continue
		}
		buf, free, err := s.mem.buffer(gctx, n)
		if err != nil {
			<-slots
			setErr(err)
			break
		}
		if err := readExactly(r, buf); err != nil {
			free()
			<-slots
			setErr(fmt.Errorf("oci: put %s: %w", s.uriOf(name), err))
			break
		}
		whole.Write(buf)
		wholeCRC.Write(buf)
		off += n
		num := i + 1
		wg.Go(func() {
			defer func() {
				free()
				<-slots
			}()
			etag, sum, err := s.uploadPart(gctx, name, uploadID, num, buf)
			if err != nil {
				setErr(err)
				return
			}
			etags[num-1], md5s[num-1] = etag, sum
		})
	}
	wg.Wait()
	if firstErr != nil {
		return providers.Object{}, firstErr
	}
	if err := ctx.Err(); err != nil {
		return providers.Object{}, fmt.Errorf("oci: put %s: %w", s.uriOf(name), err)
	}
	if err := noMore(r, size); err != nil {
		return providers.Object{}, fmt.Errorf("oci: put %s: %w", s.uriOf(name), err)
	}
	localCRC := wholeCRC.Sum32()
	if sum := whole.Sum(nil); sha != nil && !bytes.Equal(sum, sha) {
		return providers.Object{}, fmt.Errorf("oci: put %s: sha256 of the bytes read is %x, expected %x; upload aborted: %w",
			s.uriOf(name), sum, sha, providers.ErrChecksum)
	}
	if crc != nil && localCRC != binary.BigEndian.Uint32(crc) {
		return providers.Object{}, fmt.Errorf("oci: put %s: crc32c of the bytes read is %08x, expected %x; upload aborted: %w",
			s.uriOf(name), localCRC, crc, providers.ErrChecksum)
	}

	parts := make([]objectstorage.CommitMultipartUploadPartDetails, nParts)
	for i := range parts {
		parts[i] = objectstorage.CommitMultipartUploadPartDetails{PartNum: common.Int(i + 1), Etag: common.String(etags[i])}
	}
	req := objectstorage.CommitMultipartUploadRequest{NamespaceName: &s.ns, BucketName: &s.bucket, ObjectName: &name,
		UploadId: &uploadID, CommitMultipartUploadDetails: objectstorage.CommitMultipartUploadDetails{PartsToCommit: parts}}
	if ifAbsent {
		req.IfNoneMatch = common.String("*")
	}
	var o providers.Object
	var serverCRC *string
	resp, err := s.client.CommitMultipartUpload(ctx, req)
	switch {
	case err == nil:
		committed = true
		o = providers.Object{Size: size, ETag: deref(resp.ETag), ModTime: sdkTime(resp.LastModified)}
		if s.versioned {
			o.Version = deref(resp.VersionId)
		}
		serverCRC = resp.OpcContentCrc32c
	case isStatus(err, 404):
		// A commit whose response was lost and was retried finds its upload gone. If
		// the object now is exactly these parts, the commit took effect.
		h, herr := s.headObject(ctx, name, "")
		if herr != nil || deref(h.multipartMD5) != multipartMD5(md5s) || h.size != size {
			return providers.Object{}, s.fail("commit multipart upload", name, err)
		}
		committed = true
		o = providers.Object{Size: size, ETag: h.etag, ModTime: h.modified}
		if s.versioned {
			o.Version = h.version
		}
		serverCRC = h.crc32c
	default:
		return providers.Object{}, s.fail("commit multipart upload", name, err)
	}
	if serverCRC == nil {
		h, err := s.headObject(ctx, name, "")
		if err != nil {
			return providers.Object{}, s.fail("verify multipart upload", name, err)
		}
		if h.etag == o.ETag {
			serverCRC = h.crc32c
		}
	}
	got := b64hex(serverCRC, 4)
	want := fmt.Sprintf("%08x", localCRC)
	if got != want {
		s.removeBad(ctx, name, o)
		return providers.Object{}, fmt.Errorf("oci: put %s: the service reports crc32c %q for the assembled object, the bytes read have %s; object removed: %w",
			s.uriOf(name), got, want, providers.ErrChecksum)
	}
	o.Checksums.CRC32C = got
	return o, nil
}

// uploadPart sends one part with its CRC32C and returns its ETag and MD5.
func (s *Store) uploadPart(ctx context.Context, name, uploadID string, num int, buf []byte) (string, []byte, error) {
	n := int64(len(buf))
	c := crc32.Checksum(buf, castagnoli)
	req := objectstorage.UploadPartRequest{NamespaceName: &s.ns, BucketName: &s.bucket, ObjectName: &name,
		UploadId: &uploadID, UploadPartNum: &num, ContentLength: &n,
		UploadPartBody:       &body{ctx: ctx, rs: newBytesReader(buf), size: n},
		OpcChecksumAlgorithm: objectstorage.UploadPartOpcChecksumAlgorithmCrc32c,
		OpcContentCrc32c:     common.String(crc32cB64(c))}
	if s.kms != "" {
		req.OpcSseKmsKeyId = &s.kms
	}
	resp, err := s.client.UploadPart(ctx, req)
	if err != nil {
		return "", nil, s.fail(fmt.Sprintf("upload part %d to", num), name, err)
	}
	if got := b64hex(resp.OpcContentCrc32c, 4); got != "" && got != fmt.Sprintf("%08x", c) {
		return "", nil, fmt.Errorf("oci: upload part %d to %s: the service reports crc32c %s, the part has %08x: %w",
			num, s.uriOf(name), got, c, providers.ErrChecksum)
	}
	sum, _ := hex.DecodeString(b64hex(resp.OpcContentMd5, 16))
	if resp.ETag == nil {
		return "", nil, fmt.Errorf("oci: upload part %d to %s: no ETag in the response", num, s.uriOf(name))
	}
	return *resp.ETag, sum, nil
}

// cleanupContext outlives the caller's cancellation, briefly.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
}

func (s *Store) abort(ctx context.Context, name, uploadID string) {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	s.client.AbortMultipartUpload(cctx, objectstorage.AbortMultipartUploadRequest{NamespaceName: &s.ns,
		BucketName: &s.bucket, ObjectName: &name, UploadId: &uploadID})
}

// removeBad deletes an object version that failed verification after it was
// written (best effort: the caller reports the failure either way).
func (s *Store) removeBad(ctx context.Context, name string, o providers.Object) {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	req := objectstorage.DeleteObjectRequest{NamespaceName: &s.ns, BucketName: &s.bucket, ObjectName: &name}
	if o.ETag != "" {
		req.IfMatch = common.String(o.ETag)
	}
	if o.Version != "" {
		req.VersionId = common.String(o.Version)
	}
	s.client.DeleteObject(cctx, req)
}
