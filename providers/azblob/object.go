package azblob

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"mime"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"

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

// etagOf returns an ETag in the quoted form headers carry: listings give it bare.
func etagOf(e *azcore.ETag) string {
	if e == nil || *e == "" {
		return ""
	}
	s := string(*e)
	if !strings.HasPrefix(s, `"`) && !strings.HasPrefix(s, `W/"`) {
		s = `"` + s + `"`
	}
	return s
}

// md5hex turns a Content-MD5 property into lowercase hex, or "" when it is absent
// or not 16 bytes.
func md5hex(b []byte) string {
	if len(b) != md5.Size {
		return ""
	}
	return hex.EncodeToString(b)
}

// props is what Stat, Open and the delete paths read about one blob.
type props struct {
	etag, version string
	current       bool // the current version (always, on an unversioned account)
	size          int64
	modified      time.Time
	md5           []byte
	meta          map[string]*string
	legalHold     bool
	immutableTill time.Time
	immutableMode string
}

func (s *Store) objectOf(key string, p props) providers.Object {
	o := providers.Object{Key: key, Size: p.size, ETag: p.etag, Version: p.version, ModTime: p.modified,
		Metadata: decodeMeta(p.meta)}
	o.Checksums.MD5 = md5hex(p.md5)
	return o
}

// getProps reads one blob's properties (versionID "": the base blob).
func (s *Store) getProps(ctx context.Context, name, versionID string) (props, error) {
	c := s.blob(name)
	if versionID != "" {
		var err error
		if c, err = c.WithVersionID(versionID); err != nil {
			return props{}, err
		}
	}
	r, err := c.GetProperties(ctx, nil)
	if err != nil {
		return props{}, err
	}
	p := props{etag: etagOf(r.ETag), version: deref(r.VersionID), current: r.IsCurrentVersion == nil || *r.IsCurrentVersion,
		size: deref(r.ContentLength), modified: deref(r.LastModified), md5: r.ContentMD5, meta: r.Metadata,
		legalHold: deref(r.LegalHold), immutableTill: deref(r.ImmutabilityPolicyExpiresOn)}
	if r.ImmutabilityPolicyMode != nil {
		p.immutableMode = string(*r.ImmutabilityPolicyMode)
	}
	if p.version != "" {
		s.versioned.Store(true)
	}
	return p, nil
}

// Stat describes key's current version.
func (s *Store) Stat(ctx context.Context, key string) (providers.Object, error) {
	name, err := s.blobName("stat", key)
	if err != nil {
		return providers.Object{}, err
	}
	p, err := s.getProps(ctx, name, "")
	if err != nil {
		return providers.Object{}, s.fail("stat", name, err)
	}
	return s.objectOf(key, p), nil
}

// Open streams key's current version. The reader fails with ErrChecksum when the
// bytes do not match the blob's Content-MD5.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	name, err := s.blobName("open", key)
	if err != nil {
		return nil, providers.Object{}, err
	}
	r, err := s.blob(name).DownloadStream(ctx, nil)
	if err != nil {
		return nil, providers.Object{}, s.fail("open", name, err)
	}
	p := props{etag: etagOf(r.ETag), version: deref(r.VersionID), size: deref(r.ContentLength), modified: deref(r.LastModified),
		md5: r.ContentMD5, meta: r.Metadata}
	if p.version != "" {
		s.versioned.Store(true)
	}
	o := s.objectOf(key, p)
	return newVerifier(r.Body, o, s.URI(key)), o, nil
}

// verifier checks the bytes of a download against the blob's MD5 as they stream:
// the read that completes the blob returns the mismatch.
type verifier struct {
	rc       io.ReadCloser
	uri      string
	size, n  int64
	h        hash.Hash
	want     []byte
	finished bool
}

func newVerifier(rc io.ReadCloser, o providers.Object, uri string) *verifier {
	v := &verifier{rc: rc, uri: uri, size: o.Size}
	if o.Checksums.MD5 != "" {
		v.h = md5.New()
		v.want, _ = hex.DecodeString(o.Checksums.MD5)
	}
	return v
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	if n > 0 {
		if v.n+int64(n) > v.size {
			return n, fmt.Errorf("azblob: read %s: more bytes than its %d: %w", v.uri, v.size, providers.ErrChecksum)
		}
		if v.h != nil {
			v.h.Write(p[:n])
		}
		v.n += int64(n)
	}
	if v.n == v.size && !v.finished {
		v.finished = true
		if v.h != nil && !bytes.Equal(v.h.Sum(nil), v.want) {
			return n, fmt.Errorf("azblob: read %s: md5 of the bytes received is %x, the blob's Content-MD5 is %x: %w",
				v.uri, v.h.Sum(nil), v.want, providers.ErrChecksum)
		}
	}
	if err == io.EOF && v.n < v.size {
		return n, fmt.Errorf("azblob: read %s: body ended after %d of %d bytes: %w", v.uri, v.n, v.size, io.ErrUnexpectedEOF)
	}
	if err != nil && err != io.EOF {
		err = redact(err)
	}
	return n, err
}

func (v *verifier) Close() error { return v.rc.Close() }

// Metadata. Azure metadata names are C# identifiers (letters, digits, '_'), so
// ferry's names ("ferry-sha256") are escaped: '_' as "__", '-' as "_d", '.' as
// "_p", and a leading digit behind "_n". Names are lowercased (Azure keeps their
// case but compares them without it). Values that HTTP headers would not carry
// verbatim are stored as RFC 2047 "=?UTF-8?B?...?=" words.

func encodeMetaName(k string) (string, error) {
	var b strings.Builder
	for i, r := range strings.ToLower(k) {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r)
		case r >= '0' && r <= '9':
			if i == 0 {
				b.WriteString("_n")
			}
			b.WriteRune(r)
		case r == '_':
			b.WriteString("__")
		case r == '-':
			b.WriteString("_d")
		case r == '.':
			b.WriteString("_p")
		default:
			return "", fmt.Errorf("azblob: metadata key %q: only letters, digits, '-', '_' and '.' are allowed", k)
		}
	}
	if b.Len() == 0 {
		return "", errors.New("azblob: empty metadata key")
	}
	return b.String(), nil
}

func decodeMetaName(k string) string {
	k = strings.ToLower(k)
	if !strings.Contains(k, "_") {
		return k
	}
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		if k[i] != '_' || i+1 >= len(k) {
			b.WriteByte(k[i])
			continue
		}
		switch k[i+1] {
		case '_':
			b.WriteByte('_')
		case 'd':
			b.WriteByte('-')
		case 'p':
			b.WriteByte('.')
		case 'n':
			if i != 0 {
				b.WriteString("_n")
			}
		default:
			b.WriteByte('_')
			continue
		}
		i++
	}
	return b.String()
}

func encodeMeta(m map[string]string) (map[string]*string, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]*string, len(m))
	for k, v := range m {
		ek, err := encodeMetaName(k)
		if err != nil {
			return nil, err
		}
		if _, dup := out[ek]; dup {
			return nil, fmt.Errorf("azblob: metadata key %q given twice (keys are case-insensitive)", k)
		}
		ev := encodeMetaValue(v)
		out[ek] = &ev
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

func decodeMeta(m map[string]*string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, p := range m {
		v := deref(p)
		if strings.HasPrefix(v, "=?") {
			if d, err := wordDecoder.Decode(v); err == nil {
				v = d
			}
		}
		out[decodeMetaName(k)] = v
	}
	return out
}

// Put writes size bytes of r under key: one Put Blob up to the part size, a block
// list above it.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
	name, err := s.blobName("put", key)
	if err != nil {
		return providers.Object{}, err
	}
	return s.put(ctx, key, name, r, size, opts)
}

// put writes name unconditionally (restores use server-side copies with
// If-None-Match instead).
func (s *Store) put(ctx context.Context, key, name string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
	if size < 0 {
		return providers.Object{}, fmt.Errorf("azblob: put %s: negative size %d", s.uriOf(name), size)
	}
	var want []byte
	if opts.SHA256 != "" {
		var err error
		if want, err = hex.DecodeString(opts.SHA256); err != nil || len(want) != sha256.Size {
			return providers.Object{}, fmt.Errorf("azblob: put %s: malformed sha256 %q", s.uriOf(name), opts.SHA256)
		}
	}
	var wantCRC string
	if opts.CRC32C != "" {
		if b, err := hex.DecodeString(opts.CRC32C); err != nil || len(b) != 4 {
			return providers.Object{}, fmt.Errorf("azblob: put %s: malformed crc32c %q", s.uriOf(name), opts.CRC32C)
		}
		wantCRC = strings.ToLower(opts.CRC32C)
	}
	meta, err := encodeMeta(opts.Metadata)
	if err != nil {
		return providers.Object{}, err
	}
	// The caller's checksums are checked locally before anything is committed.
	check := func(sha hash.Hash, crc hash.Hash32) error {
		if want != nil && !bytes.Equal(sha.Sum(nil), want) {
			return fmt.Errorf("azblob: put %s: the bytes hash to sha256 %x, the caller's is %x: %w", s.uriOf(name), sha.Sum(nil), want, providers.ErrChecksum)
		}
		if wantCRC != "" {
			if got := fmt.Sprintf("%08x", crc.Sum32()); got != wantCRC {
				return fmt.Errorf("azblob: put %s: the bytes have crc32c %s, the caller's is %s: %w", s.uriOf(name), got, wantCRC, providers.ErrChecksum)
			}
		}
		return nil
	}
	var o providers.Object
	if size > s.partSize {
		o, err = s.putBlocks(ctx, name, r, size, meta, check)
	} else {
		o, err = s.putSingle(ctx, name, r, size, meta, check)
	}
	if err != nil {
		return providers.Object{}, err
	}
	o.Key = key
	if len(opts.Metadata) > 0 {
		o.Metadata = make(map[string]string, len(opts.Metadata))
		for k, v := range opts.Metadata {
			o.Metadata[strings.ToLower(k)] = v
		}
	}
	return o, nil
}

func (s *Store) cpkScope() *blob.CPKScopeInfo {
	if s.scope == "" {
		return nil
	}
	return &blob.CPKScopeInfo{EncryptionScope: &s.scope}
}

// readAll reads exactly size bytes of r into memory and makes sure r has no more.
func readAll(r io.Reader, size int64) ([]byte, error) {
	buf := make([]byte, size)
	n, err := io.ReadFull(r, buf)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) && size > 0 {
			return nil, fmt.Errorf("source ended after %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
		}
		return nil, fmt.Errorf("reading the source: %w", err)
	}
	var one [1]byte
	for {
		n, err := r.Read(one[:])
		if n > 0 {
			return nil, fmt.Errorf("source has more than the %d bytes declared", size)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the source: %w", err)
		}
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// sectionCloser is a rewindable request body over a window of the caller's bytes.
type sectionCloser struct{ *io.SectionReader }

func (sectionCloser) Close() error { return nil }

// body returns size bytes of r as a body the SDK can rewind: a window of r itself
// when it can be read at offsets (bytes.Reader, a file: no copy), else a buffer in
// memory (at most one part), charged to the store's memory bound until release.
func (s *Store) body(ctx context.Context, r io.Reader, size int64) (sec *io.SectionReader, release func(), err error) {
	if ra, ok := r.(interface {
		io.ReaderAt
		io.Seeker
	}); ok {
		if cur, err := ra.Seek(0, io.SeekCurrent); err == nil {
			end, err := ra.Seek(0, io.SeekEnd)
			if err != nil {
				return nil, nil, fmt.Errorf("source: %w", err)
			}
			if _, err := ra.Seek(cur, io.SeekStart); err != nil {
				return nil, nil, fmt.Errorf("source: %w", err)
			}
			switch rest := end - cur; {
			case rest < size:
				return nil, nil, fmt.Errorf("source ended after %d of %d bytes: %w", rest, size, io.ErrUnexpectedEOF)
			case rest > size:
				return nil, nil, fmt.Errorf("source has more than the %d bytes declared", size)
			}
			return io.NewSectionReader(ra, cur, size), func() {}, nil
		}
	}
	charge := min(size, s.memLimit)
	if err := s.mem.Acquire(ctx, charge); err != nil {
		return nil, nil, err
	}
	release = func() { s.mem.Release(charge) }
	buf, err := readAll(r, size)
	if err != nil {
		release()
		return nil, nil, err
	}
	return io.NewSectionReader(bytes.NewReader(buf), 0, size), release, nil
}

// putSingle checks the caller's sums over the bytes and sends them in one Put Blob
// with their MD5: Azure refuses bytes that do not match it.
func (s *Store) putSingle(ctx context.Context, name string, r io.Reader, size int64, meta map[string]*string,
	check func(hash.Hash, hash.Hash32) error) (providers.Object, error) {
	sec, release, err := s.body(ctx, r, size)
	if err != nil {
		return providers.Object{}, fmt.Errorf("azblob: put %s: %w", s.uriOf(name), err)
	}
	defer release()
	sha, crc, m := sha256.New(), crc32.New(castagnoli), md5.New()
	if n, err := io.Copy(io.MultiWriter(sha, crc, m), io.NewSectionReader(sec, 0, size)); err != nil || n != size {
		return providers.Object{}, fmt.Errorf("azblob: put %s: reading the source: %d of %d bytes: %v", s.uriOf(name), n, size, err)
	}
	if err := check(sha, crc); err != nil {
		return providers.Object{}, err
	}
	sum := m.Sum(nil)
	resp, err := s.cont.NewBlockBlobClient(name).Upload(ctx, sectionCloser{sec}, &blockblob.UploadOptions{
		Metadata:                meta,
		TransactionalValidation: blob.TransferValidationTypeMD5(sum),
		HTTPHeaders:             &blob.HTTPHeaders{BlobContentMD5: sum},
		CPKScopeInfo:            s.cpkScope(),
	})
	if err != nil {
		return providers.Object{}, s.fail("put", name, err)
	}
	if resp.VersionID != nil {
		s.versioned.Store(true)
	}
	o := providers.Object{Size: size, ETag: etagOf(resp.ETag), Version: deref(resp.VersionID), ModTime: deref(resp.LastModified)}
	if got := md5hex(resp.ContentMD5); got != "" && got != hex.EncodeToString(sum) {
		return providers.Object{}, fmt.Errorf("azblob: put %s: the service reports md5 %s, the bytes sent have %x: %w", s.uriOf(name), got, sum, providers.ErrChecksum)
	}
	o.Checksums.MD5 = hex.EncodeToString(sum)
	return o, nil
}

// blockSize is the block size for a blob of size bytes: the part size, grown to
// stay within MaxBlocks.
func (s *Store) blockSize(size int64) int64 {
	bs := s.partSize
	if n := (size + bs - 1) / bs; n > MaxBlocks {
		bs = (size + MaxBlocks - 1) / MaxBlocks
	}
	return bs
}

// putBlocks stages the blob block by block, each with its transactional MD5,
// several blocks in flight (Options.BlockConcurrency), each block's buffer charged
// to the store's memory bound; then it commits the block list with the whole-blob
// MD5 computed while reading. Nothing is committed unless every byte was read and
// the caller's sums match; staged blocks that are never committed are discarded by
// Azure (within a week).
func (s *Store) putBlocks(ctx context.Context, name string, r io.Reader, size int64, meta map[string]*string,
	check func(hash.Hash, hash.Hash32) error) (providers.Object, error) {
	bb := s.cont.NewBlockBlobClient(name)
	bs := s.blockSize(size)
	charge := min(bs, s.memLimit)
	var tag [12]byte
	rand.Read(tag[:])
	whole, sha, crc := md5.New(), sha256.New(), crc32.New(castagnoli)
	var ids []string

	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		stageErr error
		slots    = make(chan struct{}, s.blockConc)
	)
	fail := func(err error) {
		errOnce.Do(func() { stageErr = err; cancel() })
	}
	wait := func() error {
		wg.Wait()
		return stageErr
	}
	for off := int64(0); off < size; off += bs {
		n := min(bs, size-off)
		stop := func(err error) (providers.Object, error) {
			if werr := wait(); werr != nil {
				return providers.Object{}, werr
			}
			return providers.Object{}, fmt.Errorf("azblob: put %s: %w", s.uriOf(name), err)
		}
		select {
		case slots <- struct{}{}:
		case <-gctx.Done():
			return stop(gctx.Err())
		}
		if err := gctx.Err(); err != nil {
			<-slots
			return stop(err)
		}
		if err := s.mem.Acquire(gctx, charge); err != nil {
			<-slots
			return stop(err)
		}
		b := make([]byte, n)
		if got, err := io.ReadFull(r, b); err != nil {
			s.mem.Release(charge)
			<-slots
			cancel()
			wait()
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return providers.Object{}, fmt.Errorf("azblob: put %s: source ended after %d of %d bytes: %w", s.uriOf(name), off+int64(got), size, io.ErrUnexpectedEOF)
			}
			return providers.Object{}, fmt.Errorf("azblob: put %s: reading the source: %w", s.uriOf(name), err)
		}
		whole.Write(b)
		sha.Write(b)
		crc.Write(b)
		idx := len(ids)
		id := base64.StdEncoding.EncodeToString(fmt.Appendf(tag[:len(tag):len(tag)], "%08d", idx))
		ids = append(ids, id)
		wg.Add(1)
		go func() {
			defer func() { s.mem.Release(charge); <-slots; wg.Done() }()
			sum := md5.Sum(b)
			_, err := bb.StageBlock(gctx, id, nopCloser{bytes.NewReader(b)}, &blockblob.StageBlockOptions{
				TransactionalValidation: blob.TransferValidationTypeMD5(sum[:]),
				CPKScopeInfo:            s.cpkScope(),
			})
			if err != nil {
				fail(s.fail(fmt.Sprintf("put (block %d)", idx), name, err))
			}
		}()
	}
	if err := wait(); err != nil {
		return providers.Object{}, err
	}
	if err := ctx.Err(); err != nil {
		return providers.Object{}, fmt.Errorf("azblob: put %s: %w", s.uriOf(name), err)
	}
	if _, err := readAll(r, 0); err != nil {
		return providers.Object{}, fmt.Errorf("azblob: put %s: %w", s.uriOf(name), err)
	}
	if err := check(sha, crc); err != nil {
		return providers.Object{}, err
	}
	sum := whole.Sum(nil)
	resp, err := bb.CommitBlockList(ctx, ids, &blockblob.CommitBlockListOptions{
		Metadata:     meta,
		HTTPHeaders:  &blob.HTTPHeaders{BlobContentMD5: sum},
		CPKScopeInfo: s.cpkScope(),
	})
	if err != nil {
		return providers.Object{}, s.fail("put (commit block list)", name, err)
	}
	if resp.VersionID != nil {
		s.versioned.Store(true)
	}
	o := providers.Object{Size: size, ETag: etagOf(resp.ETag), Version: deref(resp.VersionID), ModTime: deref(resp.LastModified)}
	o.Checksums.MD5 = hex.EncodeToString(sum)
	return o, nil
}
