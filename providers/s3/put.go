package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/ferrymigrate/ferry/providers"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Put writes size bytes from r under key.
//
// Up to the part size it is one PutObject carrying x-amz-checksum-sha256, so the
// server refuses bytes that do not hash to it. The body is always seekable so the
// SDK can retry: a reader that is an io.ReaderAt and io.Seeker is read in place,
// any other is read into a buffer first (hashed on the way in). When the caller
// gives opts.SHA256 and the server is one known to check the header (AWS, MinIO,
// versitygw), that SHA-256 is sent as is and the bytes are not hashed here: the
// server refuses a mismatch (ErrChecksum) and stores nothing.
//
// Above the part size it is a multipart upload with the CRC32C checksum algorithm and
// the FULL_OBJECT checksum type: each part carries its CRC32C, the completion
// carries the whole object's, and the server then reports that whole-object CRC32C.
// At most uploadParallelism parts are in flight, each in a pooled buffer (memory is
// bounded per store, however many uploads run), and the SDK retries each part on
// its own. opts.SHA256 is checked locally before completing. Any failure aborts the
// upload, so no parts are left behind.
//
// Bodies are sent as UNSIGNED-PAYLOAD: the signed x-amz-checksum-* header already
// makes the server check every byte, so the SigV4 payload hash (a second SHA-256 of
// the body, which the SDK computes over plain http) would only repeat that.
//
// The result is what the server reports of the write (see afterPut), checked
// against what was sent.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
	fk, err := s.full(key)
	if err != nil {
		return providers.Object{}, err
	}
	uri := s.uriFull(fk)
	if size < 0 {
		return providers.Object{}, fmt.Errorf("s3: put %s: negative size %d", uri, size)
	}
	want, err := parseWant(opts)
	if err != nil {
		return providers.Object{}, fmt.Errorf("s3: put %s: %w", uri, err)
	}
	if s.server == "minio" {
		if err := s.checkShape(ctx, fk); err != nil {
			return providers.Object{}, err
		}
	}
	var sent sentSums
	var w written
	if size <= s.partSize {
		sent, w, err = s.putSingle(ctx, fk, r, size, want, opts.Metadata)
	} else {
		sent, w, err = s.putMultipart(ctx, fk, r, size, want, opts.Metadata)
	}
	if err != nil {
		return providers.Object{}, err
	}
	return s.afterPut(ctx, key, fk, size, sent, w)
}

type wantSums struct {
	sha256 []byte // nil: not given
	crc32c []byte
}

func parseWant(opts providers.PutOptions) (wantSums, error) {
	var w wantSums
	if opts.SHA256 != "" {
		b, err := hex.DecodeString(opts.SHA256)
		if err != nil || len(b) != sha256.Size {
			return w, fmt.Errorf("malformed sha256 %q", opts.SHA256)
		}
		w.sha256 = b
	}
	if opts.CRC32C != "" {
		b, err := hex.DecodeString(opts.CRC32C)
		if err != nil || len(b) != 4 {
			return w, fmt.Errorf("malformed crc32c %q", opts.CRC32C)
		}
		w.crc32c = b
	}
	return w, nil
}

// sentSums is what ferry computed of the bytes it sent.
type sentSums struct {
	sha256 []byte
	crc32c []byte
}

// check compares the computed sums with what the caller expects.
func (w wantSums) check(uri string, sent sentSums) error {
	if w.sha256 != nil && !bytes.Equal(w.sha256, sent.sha256) {
		return fmt.Errorf("s3: put %s: sha256 of the bytes is %x, expected %x: %w", uri, sent.sha256, w.sha256, providers.ErrChecksum)
	}
	if w.crc32c != nil && !bytes.Equal(w.crc32c, sent.crc32c) {
		return fmt.Errorf("s3: put %s: crc32c of the bytes is %x, expected %x: %w", uri, sent.crc32c, w.crc32c, providers.ErrChecksum)
	}
	return nil
}

func b64(b []byte) *string { return aws.String(base64.StdEncoding.EncodeToString(b)) }

func crcBytes(h hash.Hash32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], h.Sum32())
	return b[:]
}

// ctxReader stops a long read when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// inPlace returns r as a ReaderAt over exactly [offset, offset+size) when it can be
// read in place (an io.ReaderAt and io.Seeker holding exactly size more bytes).
func inPlace(r io.Reader, size int64) (io.ReaderAt, int64, bool, error) {
	ra, ok1 := r.(io.ReaderAt)
	sk, ok2 := r.(io.Seeker)
	if !ok1 || !ok2 {
		return nil, 0, false, nil
	}
	cur, err := sk.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, 0, false, nil // not really seekable: buffer it
	}
	end, err := sk.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, 0, false, nil
	}
	if _, err := sk.Seek(cur, io.SeekStart); err != nil {
		return nil, 0, false, err
	}
	if end-cur != size {
		return nil, 0, false, fmt.Errorf("reader holds %d bytes, declared %d", end-cur, size)
	}
	return ra, cur, true, nil
}

// consumed moves a reader read in place to its end, as if it had been read.
func consumed(r io.Reader, end int64) {
	if sk, ok := r.(io.Seeker); ok {
		sk.Seek(end, io.SeekStart)
	}
}

// readExact reads exactly len(buf) bytes and checks r then ends.
func readExact(ctx context.Context, r io.Reader, buf []byte) error {
	n, err := io.ReadFull(ctxReader{ctx, r}, buf)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("reader ended after %d of %d bytes", n, len(buf))
		}
		return err
	}
	return nil
}

func readEnd(r io.Reader, size int64) error {
	var one [1]byte
	for {
		n, err := r.Read(one[:])
		if n > 0 {
			return fmt.Errorf("reader has more than the declared %d bytes", size)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// written is what a write's response reports.
type written struct {
	etag, version string
	rep           reported
}

func (s *Store) putSingle(ctx context.Context, fk string, r io.Reader, size int64, want wantSums, meta map[string]string) (sentSums, written, error) {
	uri := s.uriFull(fk)
	// With the expected SHA-256 in hand and a server that checks the header, the
	// server's check is the only hash of the bytes.
	trust := want.sha256 != nil && s.checksHeader()
	var sha hash.Hash
	var crc hash.Hash32
	var hw io.Writer = io.Discard
	if !trust {
		sha, crc = sha256.New(), crc32.New(castagnoli)
		hw = io.MultiWriter(sha, crc)
	}
	var body io.ReadSeeker
	ra, off, ok, err := inPlace(r, size)
	if err != nil {
		return sentSums{}, written{}, fmt.Errorf("s3: put %s: %w", uri, err)
	}
	if ok {
		if !trust {
			if _, err := io.Copy(hw, io.NewSectionReader(ra, off, size)); err != nil {
				return sentSums{}, written{}, fmt.Errorf("s3: put %s: read: %w", uri, err)
			}
		}
		body = io.NewSectionReader(ra, off, size)
	} else {
		buf, release, err := s.getBuf(ctx, size)
		if err != nil {
			return sentSums{}, written{}, err
		}
		defer release()
		if err := readExact(ctx, io.TeeReader(r, hw), buf); err != nil {
			return sentSums{}, written{}, fmt.Errorf("s3: put %s: read: %w", uri, err)
		}
		if err := readEnd(r, size); err != nil {
			return sentSums{}, written{}, fmt.Errorf("s3: put %s: read: %w", uri, err)
		}
		body = bytes.NewReader(buf)
	}
	var sent sentSums
	if trust {
		sent = sentSums(want)
	} else {
		sent = sentSums{sha256: sha.Sum(nil), crc32c: crcBytes(crc)}
		if err := want.check(uri, sent); err != nil {
			return sent, written{}, err
		}
	}
	in := &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &fk, Body: body, ContentLength: aws.Int64(size),
		// The server recomputes it and refuses the write on a mismatch.
		ChecksumSHA256: b64(sent.sha256),
		Metadata:       meta,
	}
	if s.kmsKeyID != "" {
		in.ServerSideEncryption, in.SSEKMSKeyId = types.ServerSideEncryptionAwsKms, &s.kmsKeyID
	}
	out, err := s.client.PutObject(ctx, in, unsignedPayload)
	if err != nil {
		return sent, written{}, fail("put", uri, err)
	}
	if ok {
		consumed(r, off+size)
	}
	etag := trimETag(out.ETag)
	return sent, written{etag: etag, version: aws.ToString(out.VersionId), rep: reported{
		etag: etag, sha256: aws.ToString(out.ChecksumSHA256), crc32c: aws.ToString(out.ChecksumCRC32C),
		ctype: out.ChecksumType, sse: out.ServerSideEncryption, ssec: aws.ToString(out.SSECustomerAlgorithm)}}, nil
}

// unsignedPayload sends a request body as UNSIGNED-PAYLOAD (see Put).
var unsignedPayload = s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)

// checksHeader reports whether the server is known to check x-amz-checksum-sha256
// on PutObject and refuse a mismatch (tests pin it for MinIO and versitygw).
func (s *Store) checksHeader() bool {
	return s.awsHosted || s.server == "minio" || s.server == "versitygw"
}

// getBuf returns a buffer of n bytes counted against the store's memory for
// buffers, and the function that gives it back. Buffers of a whole part are reused.
func (s *Store) getBuf(ctx context.Context, n int64) ([]byte, func(), error) {
	pooled := n > s.partSize/2 && n <= s.partSize
	charge := n
	if pooled {
		charge = s.partSize
	}
	// A part grown past the limit (an object of more than 10,000 parts) takes all
	// of it: one such part at a time.
	charge = min(charge, s.memLimit)
	if err := s.mem.Acquire(ctx, charge); err != nil {
		return nil, nil, err
	}
	if !pooled {
		return make([]byte, n), func() { s.mem.Release(charge) }, nil
	}
	p, _ := s.bufs.Get().(*[]byte)
	if p == nil || int64(cap(*p)) != s.partSize {
		b := make([]byte, s.partSize)
		p = &b
	}
	return (*p)[:n], func() { s.bufs.Put(p); s.mem.Release(charge) }, nil
}

// partPlan returns the part size to use for size bytes: the store's, grown when
// the object would need more than 10,000 parts.
func (s *Store) partPlan(size int64) (partSize int64, parts int) {
	partSize = s.partSize
	if n := (size + partSize - 1) / partSize; n > maxParts {
		partSize = (size + maxParts - 1) / maxParts
		partSize = (partSize + 1<<20 - 1) &^ (1<<20 - 1) // whole MiB
	}
	return partSize, int((size + partSize - 1) / partSize)
}

func (s *Store) putMultipart(ctx context.Context, fk string, r io.Reader, size int64, want wantSums, meta map[string]string) (sent sentSums, w written, err error) {
	uri := s.uriFull(fk)
	partSize, nparts := s.partPlan(size)
	if partSize > MaxPartSize {
		return sent, written{}, fmt.Errorf("s3: put %s: %d bytes is more than S3 takes in one object", uri, size)
	}
	ra, base, inplace, err := inPlace(r, size)
	if err != nil {
		return sent, written{}, fmt.Errorf("s3: put %s: %w", uri, err)
	}
	in := &s3.CreateMultipartUploadInput{
		Bucket: &s.bucket, Key: &fk, Metadata: meta,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		ChecksumType:      types.ChecksumTypeFullObject,
	}
	if s.kmsKeyID != "" {
		in.ServerSideEncryption, in.SSEKMSKeyId = types.ServerSideEncryptionAwsKms, &s.kmsKeyID
	}
	up, err := s.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return sent, written{}, fail("start multipart upload to", uri, err)
	}
	uploadID := up.UploadId
	completed := false
	defer func() {
		if !completed {
			// Abort even when ctx is cancelled: no orphan parts.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if _, aerr := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &fk, UploadId: uploadID}); aerr != nil {
				err = errors.Join(err, fail("abort multipart upload to", uri, aerr))
			}
		}
	}()

	// The whole object's SHA-256 is only needed to check opts.SHA256: the server
	// reports no SHA-256 for a multipart object.
	crc := crc32.New(castagnoli)
	var sha hash.Hash
	hw := io.Writer(crc)
	if want.sha256 != nil {
		sha = sha256.New()
		hw = io.MultiWriter(sha, crc)
	}
	parts := make([]types.CompletedPart, nparts)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(uploadParallelism)
	var readErr error
	for i := range nparts {
		off := int64(i) * partSize
		n := min(partSize, size-off)
		if gctx.Err() != nil {
			break
		}
		pcrc := crc32.New(castagnoli)
		var body io.ReadSeeker
		release := func() {}
		if inplace {
			if _, err := io.Copy(io.MultiWriter(hw, pcrc), io.NewSectionReader(ra, base+off, n)); err != nil {
				readErr = err
				break
			}
			body = io.NewSectionReader(ra, base+off, n)
		} else {
			buf, rel, err := s.getBuf(gctx, n)
			if err != nil {
				readErr = err
				break
			}
			release = rel
			if err := readExact(gctx, io.TeeReader(r, io.MultiWriter(hw, pcrc)), buf); err != nil {
				release()
				readErr = err
				break
			}
			body = bytes.NewReader(buf)
		}
		num, psum := int32(i+1), crcBytes(pcrc)
		g.Go(func() error {
			defer release()
			out, err := s.client.UploadPart(gctx, &s3.UploadPartInput{
				Bucket: &s.bucket, Key: &fk, UploadId: uploadID, PartNumber: &num,
				Body: body, ContentLength: aws.Int64(n), ChecksumCRC32C: b64(psum),
			}, unsignedPayload)
			if err != nil {
				return fail(fmt.Sprintf("upload part %d of %d to", num, nparts), uri, err)
			}
			parts[num-1] = types.CompletedPart{PartNumber: &num, ETag: out.ETag, ChecksumCRC32C: b64(psum)}
			return nil
		})
	}
	werr := g.Wait()
	if readErr != nil {
		return sent, written{}, errors.Join(fmt.Errorf("s3: put %s: read: %w", uri, readErr), werr)
	}
	if werr != nil {
		return sent, written{}, werr
	}
	if err := ctx.Err(); err != nil {
		return sent, written{}, err
	}
	if !inplace {
		if err := readEnd(r, size); err != nil {
			return sent, written{}, fmt.Errorf("s3: put %s: read: %w", uri, err)
		}
	}
	sent = sentSums{crc32c: crcBytes(crc)}
	if sha != nil {
		sent.sha256 = sha.Sum(nil)
	}
	if err := want.check(uri, sent); err != nil {
		return sent, written{}, err
	}
	out, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &fk, UploadId: uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		ChecksumType:    types.ChecksumTypeFullObject,
		// The server combines the parts' CRCs and refuses a mismatch.
		ChecksumCRC32C: b64(sent.crc32c),
	})
	if err != nil {
		return sent, written{}, fail("complete multipart upload to", uri, err)
	}
	completed = true
	if inplace {
		consumed(r, base+size)
	}
	etag := trimETag(out.ETag)
	return sent, written{etag: etag, version: aws.ToString(out.VersionId), rep: reported{
		etag: etag, crc32c: aws.ToString(out.ChecksumCRC32C), ctype: out.ChecksumType,
		sse: out.ServerSideEncryption}}, nil
}

// afterPut describes the new object as the server reports it and checks that
// report against what was sent. The write's own response carries the ETag, the
// version id and the checksum the server verified (x-amz-checksum-sha256 of a
// single PutObject, the whole-object CRC32C of a multipart upload); when it carries
// no checksum (a server without checksum support), a HEAD with checksum mode asks
// for what the server stored. If the key was overwritten before that HEAD, the
// object is described from the response alone.
func (s *Store) afterPut(ctx context.Context, key, fk string, size int64, sent sentSums, w written) (providers.Object, error) {
	uri := s.uriFull(fk)
	o := providers.Object{Key: key, Size: size, ETag: w.etag, Version: w.version, Checksums: s.checksums(w.rep)}
	if o.Checksums.SHA256 == "" && o.Checksums.CRC32C == "" {
		h, err := s.head(ctx, fk, w.version)
		switch {
		case err == nil && trimETag(h.ETag) == w.etag:
			o = s.fromHead(key, h)
		case err == nil || errors.Is(err, providers.ErrNotFound):
			// Replaced or deleted since the write: keep what the response said.
		default:
			return providers.Object{}, fmt.Errorf("s3: put %s: written, but the HEAD after it failed: %w", uri, err)
		}
	}
	if o.Size != size {
		return o, fmt.Errorf("s3: put %s: server reports %d bytes, %d were sent: %w", uri, o.Size, size, providers.ErrChecksum)
	}
	if c := o.Checksums.SHA256; c != "" && sent.sha256 != nil && c != hex.EncodeToString(sent.sha256) {
		return o, fmt.Errorf("s3: put %s: server reports sha256 %s, the bytes sent have %x: %w", uri, c, sent.sha256, providers.ErrChecksum)
	}
	if c := o.Checksums.CRC32C; c != "" && sent.crc32c != nil && c != hex.EncodeToString(sent.crc32c) {
		return o, fmt.Errorf("s3: put %s: server reports crc32c %s, the bytes sent have %x: %w", uri, c, sent.crc32c, providers.ErrChecksum)
	}
	return o, nil
}
