package oci

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"maps"
	"mime"
	"strings"
	"time"

	"github.com/oracle/oci-go-sdk/v65/common"
	"github.com/oracle/oci-go-sdk/v65/objectstorage"

	"github.com/ferrymigrate/ferry/providers"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func sdkTime(t *common.SDKTime) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

// b64hex turns a base64 checksum header into lowercase hex, or "" when it is
// absent or not n bytes long (a multipart "xxx-N" value is not a content checksum).
func b64hex(p *string, n int) string {
	if p == nil || *p == "" {
		return ""
	}
	raw, err := base64.StdEncoding.DecodeString(*p)
	if err != nil || len(raw) != n {
		return ""
	}
	return hex.EncodeToString(raw)
}

// head is what Stat, Open and the delete paths read about one object version.
type head struct {
	etag, version            string
	size                     int64
	modified                 time.Time
	contentMD5, multipartMD5 *string
	crc32c, sha256           *string
	meta                     map[string]string
}

func (s *Store) objectOf(key string, h head) providers.Object {
	o := providers.Object{Key: key, Size: h.size, ETag: h.etag, ModTime: h.modified, Metadata: decodeMeta(h.meta)}
	if s.versioned {
		o.Version = h.version
	}
	o.Checksums.SHA256 = b64hex(h.sha256, sha256.Size)
	o.Checksums.CRC32C = b64hex(h.crc32c, 4)
	if h.multipartMD5 == nil || *h.multipartMD5 == "" {
		o.Checksums.MD5 = b64hex(h.contentMD5, md5.Size)
	}
	return o
}

// headObject reads one object (versionID "": the current version).
func (s *Store) headObject(ctx context.Context, name, versionID string) (head, error) {
	req := objectstorage.HeadObjectRequest{NamespaceName: &s.ns, BucketName: &s.bucket, ObjectName: &name}
	if versionID != "" {
		req.VersionId = &versionID
	}
	r, err := s.client.HeadObject(ctx, req)
	if err != nil {
		return head{}, err
	}
	return head{etag: deref(r.ETag), version: deref(r.VersionId), size: deref(r.ContentLength), modified: sdkTime(r.LastModified),
		contentMD5: r.ContentMd5, multipartMD5: r.OpcMultipartMd5, crc32c: r.OpcContentCrc32c, sha256: r.OpcContentSha256,
		meta: r.OpcMeta}, nil
}

// Stat describes key's current version (HeadObject).
func (s *Store) Stat(ctx context.Context, key string) (providers.Object, error) {
	name, err := s.object("stat", key)
	if err != nil {
		return providers.Object{}, err
	}
	h, err := s.headObject(ctx, name, "")
	if err != nil {
		return providers.Object{}, s.fail("stat", name, err)
	}
	return s.objectOf(key, h), nil
}

// Open streams key's current version. The reader fails with ErrChecksum when the
// bytes do not match the object's CRC32C (or SHA-256, or single-part MD5).
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	name, err := s.object("open", key)
	if err != nil {
		return nil, providers.Object{}, err
	}
	r, err := s.client.GetObject(ctx, objectstorage.GetObjectRequest{NamespaceName: &s.ns, BucketName: &s.bucket, ObjectName: &name})
	if err != nil {
		return nil, providers.Object{}, s.fail("open", name, err)
	}
	h := head{etag: deref(r.ETag), version: deref(r.VersionId), size: deref(r.ContentLength), modified: sdkTime(r.LastModified),
		contentMD5: r.ContentMd5, multipartMD5: r.OpcMultipartMd5, crc32c: r.OpcContentCrc32c, sha256: r.OpcContentSha256,
		meta: r.OpcMeta}
	o := s.objectOf(key, h)
	return newVerifier(r.Content, o, s.URI(key)), o, nil
}

// verifier checks the bytes of a GetObject against the object's checksums as they
// stream: the read that completes the object returns the mismatch.
type verifier struct {
	rc       io.ReadCloser
	uri      string
	size, n  int64
	h        hash.Hash
	want     []byte
	algo     string
	finished bool
}

func newVerifier(rc io.ReadCloser, o providers.Object, uri string) *verifier {
	v := &verifier{rc: rc, uri: uri, size: o.Size}
	switch {
	case o.Checksums.CRC32C != "":
		v.h, v.algo = crc32.New(castagnoli), "crc32c"
		v.want, _ = hex.DecodeString(o.Checksums.CRC32C)
	case o.Checksums.SHA256 != "":
		v.h, v.algo = sha256.New(), "sha256"
		v.want, _ = hex.DecodeString(o.Checksums.SHA256)
	case o.Checksums.MD5 != "":
		v.h, v.algo = md5.New(), "md5"
		v.want, _ = hex.DecodeString(o.Checksums.MD5)
	}
	return v
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	if n > 0 {
		if v.n+int64(n) > v.size {
			return n, fmt.Errorf("oci: read %s: more bytes than its %d: %w", v.uri, v.size, providers.ErrChecksum)
		}
		if v.h != nil {
			v.h.Write(p[:n])
		}
		v.n += int64(n)
	}
	if v.n == v.size && !v.finished {
		v.finished = true
		if v.h != nil && !bytes.Equal(v.h.Sum(nil), v.want) {
			return n, fmt.Errorf("oci: read %s: %s of the bytes received is %x, the object's is %x: %w",
				v.uri, v.algo, v.h.Sum(nil), v.want, providers.ErrChecksum)
		}
	}
	if err == io.EOF && v.n < v.size {
		return n, fmt.Errorf("oci: read %s: body ended after %d of %d bytes: %w", v.uri, v.n, v.size, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (v *verifier) Close() error { return v.rc.Close() }

// Metadata: keys are lowercase header tokens; values that HTTP headers would not
// carry verbatim (non-ASCII, control characters, edge spaces, or anything that
// looks like an encoded word) are stored as RFC 2047 "=?UTF-8?B?...?=" words.

func encodeMeta(m map[string]string) (map[string]string, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		lk := strings.ToLower(k)
		if lk == "" || strings.IndexFunc(lk, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
		}) >= 0 {
			return nil, fmt.Errorf("oci: metadata key %q: only letters, digits, '-', '_' and '.' are allowed", k)
		}
		if _, dup := out[lk]; dup {
			return nil, fmt.Errorf("oci: metadata key %q given twice (keys are case-insensitive)", k)
		}
		out[lk] = encodeMetaValue(v)
	}
	return out, nil
}

func encodeMetaValue(v string) string {
	plain := v == strings.TrimSpace(v) && !strings.HasPrefix(v, "=?")
	for i := 0; plain && i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			plain = false
		}
	}
	if plain {
		return v
	}
	return "=?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte(v)) + "?="
}

var wordDecoder = mime.WordDecoder{}

func decodeMeta(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if strings.HasPrefix(v, "=?") {
			if d, err := wordDecoder.Decode(v); err == nil {
				v = d
			}
		}
		out[k] = v
	}
	return out
}

// sums parses the checksums PutOptions asks the store to check.
func sums(opts providers.PutOptions) (sha, crc []byte, err error) {
	if opts.SHA256 != "" {
		if sha, err = hex.DecodeString(opts.SHA256); err != nil || len(sha) != sha256.Size {
			return nil, nil, fmt.Errorf("oci: malformed sha256 %q", opts.SHA256)
		}
	}
	if opts.CRC32C != "" {
		if crc, err = hex.DecodeString(opts.CRC32C); err != nil || len(crc) != 4 {
			return nil, nil, fmt.Errorf("oci: malformed crc32c %q", opts.CRC32C)
		}
	}
	return sha, crc, nil
}

// Put writes size bytes of r under key: one PutObject up to the part size, a
// parallel multipart upload above it.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
	name, err := s.object("put", key)
	if err != nil {
		return providers.Object{}, err
	}
	return s.put(ctx, key, name, r, size, opts, false)
}

// put writes name; ifAbsent makes the write conditional on no current object
// (If-None-Match: *), failing with ErrAlreadyExists.
func (s *Store) put(ctx context.Context, key, name string, r io.Reader, size int64, opts providers.PutOptions, ifAbsent bool) (providers.Object, error) {
	if size < 0 {
		return providers.Object{}, fmt.Errorf("oci: put %s: negative size %d", s.URI(key), size)
	}
	sha, crc, err := sums(opts)
	if err != nil {
		return providers.Object{}, err
	}
	meta, err := encodeMeta(opts.Metadata)
	if err != nil {
		return providers.Object{}, err
	}
	var o providers.Object
	if size > s.partSize {
		o, err = s.putMultipart(ctx, name, r, size, sha, crc, meta, ifAbsent)
	} else {
		o, err = s.putSingle(ctx, name, r, size, sha, crc, meta, ifAbsent)
	}
	if err != nil {
		return providers.Object{}, err
	}
	o.Key = key
	if len(opts.Metadata) > 0 {
		o.Metadata = maps.Clone(opts.Metadata)
		for k, v := range opts.Metadata {
			if lk := strings.ToLower(k); lk != k {
				delete(o.Metadata, k)
				o.Metadata[lk] = v
			}
		}
	}
	return o, nil
}

func (s *Store) putSingle(ctx context.Context, name string, r io.Reader, size int64, sha, crc []byte, meta map[string]string, ifAbsent bool) (providers.Object, error) {
	b, release, err := s.retryableBody(ctx, r, size)
	if err != nil {
		return providers.Object{}, fmt.Errorf("oci: put %s: %w", s.uriOf(name), err)
	}
	defer release()
	req := objectstorage.PutObjectRequest{NamespaceName: &s.ns, BucketName: &s.bucket, ObjectName: &name,
		ContentLength: &size, PutObjectBody: b, OpcMeta: meta}
	// One checksum algorithm per request: the caller's SHA-256 (checked by OCI and
	// reported back), else its CRC32C, else SHA-256 computed and reported by OCI.
	switch {
	case sha != nil:
		req.OpcChecksumAlgorithm = objectstorage.PutObjectOpcChecksumAlgorithmSha256
		req.OpcContentSha256 = common.String(base64.StdEncoding.EncodeToString(sha))
	case crc != nil:
		req.OpcChecksumAlgorithm = objectstorage.PutObjectOpcChecksumAlgorithmCrc32c
		req.OpcContentCrc32c = common.String(base64.StdEncoding.EncodeToString(crc))
	default:
		req.OpcChecksumAlgorithm = objectstorage.PutObjectOpcChecksumAlgorithmSha256
	}
	if s.kms != "" {
		req.OpcSseKmsKeyId = &s.kms
	}
	if ifAbsent {
		req.IfNoneMatch = common.String("*")
	}
	resp, err := s.client.PutObject(ctx, req)
	if err != nil {
		return providers.Object{}, s.fail("put", name, err)
	}
	o := providers.Object{Size: size, ETag: deref(resp.ETag), ModTime: sdkTime(resp.LastModified)}
	if s.versioned {
		o.Version = deref(resp.VersionId)
	}
	o.Checksums.MD5 = b64hex(resp.OpcContentMd5, md5.Size)
	o.Checksums.SHA256 = b64hex(resp.OpcContentSha256, sha256.Size)
	o.Checksums.CRC32C = b64hex(resp.OpcContentCrc32c, 4)
	if sha != nil && o.Checksums.SHA256 != "" && o.Checksums.SHA256 != hex.EncodeToString(sha) {
		return providers.Object{}, fmt.Errorf("oci: put %s: the service reports sha256 %s, the caller's is %x: %w",
			s.uriOf(name), o.Checksums.SHA256, sha, providers.ErrChecksum)
	}
	if crc != nil && o.Checksums.CRC32C != "" && o.Checksums.CRC32C != hex.EncodeToString(crc) {
		return providers.Object{}, fmt.Errorf("oci: put %s: the service reports crc32c %s, the caller's is %x: %w",
			s.uriOf(name), o.Checksums.CRC32C, crc, providers.ErrChecksum)
	}
	return o, nil
}

func (s *Store) uriOf(name string) string { return "oci://" + s.ns + "/" + s.bucket + "/" + name }

// multipartMD5 is what OCI reports as opc-multipart-md5 for parts with these MD5s.
func multipartMD5(partMD5s [][]byte) string {
	h := md5.New()
	for _, m := range partMD5s {
		h.Write(m)
	}
	return fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(h.Sum(nil)), len(partMD5s))
}

func crc32cB64(c uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], c)
	return base64.StdEncoding.EncodeToString(b[:])
}
