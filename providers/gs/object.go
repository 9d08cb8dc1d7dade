package gs

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"maps"
	"strconv"
	"strings"

	"cloud.google.com/go/storage"

	"github.com/ferrymigrate/ferry/providers"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crcHex(c uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], c)
	return hex.EncodeToString(b[:])
}

func genString(g int64) string { return strconv.FormatInt(g, 10) }

// generationOf reads the generation an Object names (its ETag, else its Version).
func generationOf(o providers.Object) (int64, bool) {
	for _, v := range []string{o.ETag, o.Version} {
		if v == "" {
			continue
		}
		if g, err := strconv.ParseInt(v, 10, 64); err == nil && g > 0 {
			return g, true
		}
	}
	return 0, false
}

// objectOf describes attrs as key. MD5 is GCS's content MD5 (composite objects have
// none); CRC32C is always there.
func (s *Store) objectOf(key string, a *storage.ObjectAttrs) providers.Object {
	o := providers.Object{Key: key, Size: a.Size, ETag: genString(a.Generation), ModTime: a.Updated,
		Metadata: maps.Clone(a.Metadata)}
	if s.versioned() {
		o.Version = genString(a.Generation)
	}
	o.Checksums.CRC32C = crcHex(a.CRC32C)
	if len(a.MD5) == md5.Size && a.ComponentCount == 0 {
		o.Checksums.MD5 = hex.EncodeToString(a.MD5)
	}
	return o
}

// Stat describes key's live generation.
func (s *Store) Stat(ctx context.Context, key string) (providers.Object, error) {
	name, err := s.object("stat", key)
	if err != nil {
		return providers.Object{}, err
	}
	a, err := s.bucket.Object(name).Attrs(ctx)
	if err != nil {
		return providers.Object{}, s.fail("stat", name, err)
	}
	return s.objectOf(key, a), nil
}

// Open streams key's live generation; the client pins any re-open after a cut
// connection to that generation, and checks the bytes against the stored CRC32C at
// the end (a mismatch is ErrChecksum).
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	name, err := s.object("open", key)
	if err != nil {
		return nil, providers.Object{}, err
	}
	r, err := s.bucket.Object(name).NewReader(ctx)
	if err != nil {
		return nil, providers.Object{}, s.fail("open", name, err)
	}
	a := r.Attrs
	o := providers.Object{Key: key, Size: a.Size, ETag: genString(a.Generation), ModTime: a.LastModified}
	if s.versioned() {
		o.Version = o.ETag
	}
	if a.CRC32C != 0 || a.Size == 0 {
		o.Checksums.CRC32C = crcHex(a.CRC32C)
	}
	if md := r.Metadata(); len(md) > 0 {
		// The JSON media response carries metadata as X-Goog-Meta- headers, whose
		// names HTTP canonicalises; ferry's own keys are lowercase.
		o.Metadata = make(map[string]string, len(md))
		for k, v := range md {
			o.Metadata[strings.ToLower(k)] = v
		}
	}
	return &reader{r: r, s: s, name: name, size: a.Size}, o, nil
}

// reader maps read errors to the portable ones.
type reader struct {
	r    *storage.Reader
	s    *Store
	name string
	size int64
	n    int64
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if err != nil && err != io.EOF {
		return n, r.s.fail("read", r.name, err)
	}
	if err == io.EOF && r.n < r.size {
		return n, fmt.Errorf("gs: read %s: body ended after %d of %d bytes: %w", r.s.uriOf(r.name), r.n, r.size, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (r *reader) Close() error { return r.r.Close() }

// sums parses the checksums PutOptions asks the store to check.
func sums(opts providers.PutOptions) (sha []byte, crc []byte, err error) {
	if opts.SHA256 != "" {
		if sha, err = hex.DecodeString(opts.SHA256); err != nil || len(sha) != sha256.Size {
			return nil, nil, fmt.Errorf("gs: malformed sha256 %q", opts.SHA256)
		}
	}
	if opts.CRC32C != "" {
		if crc, err = hex.DecodeString(opts.CRC32C); err != nil || len(crc) != 4 {
			return nil, nil, fmt.Errorf("gs: malformed crc32c %q", opts.CRC32C)
		}
	}
	return sha, crc, nil
}

// checkMeta refuses metadata GCS would not keep as given.
func checkMeta(m map[string]string) error {
	for k, v := range m {
		if k == "" || !isASCIIPrintable(k) || strings.ContainsAny(k, " :") {
			return fmt.Errorf("gs: metadata key %q: printable ASCII without spaces or colons only", k)
		}
		if strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("gs: metadata %q: a value cannot hold a line break", k)
		}
	}
	return nil
}

func isASCIIPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Put writes size bytes of r under key. The caller's CRC32C goes with the upload
// for GCS to check (the client computes one when there is none); the caller's
// SHA-256 is checked here as the bytes stream, and on a mismatch, a short or long
// reader or a failed read the upload is abandoned before GCS finalises it. The
// stored CRC32C and MD5 are compared with the bytes sent afterwards.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
	name, err := s.object("put", key)
	if err != nil {
		return providers.Object{}, err
	}
	return s.put(ctx, key, name, r, size, opts)
}

func (s *Store) put(ctx context.Context, key, name string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
	if size < 0 {
		return providers.Object{}, fmt.Errorf("gs: put %s: negative size %d", s.uriOf(name), size)
	}
	sha, crc, err := sums(opts)
	if err != nil {
		return providers.Object{}, err
	}
	if err := checkMeta(opts.Metadata); err != nil {
		return providers.Object{}, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := s.bucket.Object(name).NewWriter(wctx)
	w.ContentType = "application/octet-stream"
	w.Metadata = maps.Clone(opts.Metadata)
	if s.kms != "" {
		w.KMSKeyName = s.kms
	}
	// Objects up to the chunk size go up in one request, from a buffer the client
	// can resend; larger ones resumably, chunk by chunk.
	w.ChunkSize = s.chunkSize
	if size < int64(s.chunkSize) {
		w.ChunkSize = int((size + 1 + chunkUnit - 1) / chunkUnit * chunkUnit)
	}
	if crc != nil {
		w.CRC32C = binary.BigEndian.Uint32(crc)
		w.SendCRC32C = true
	}
	hSHA, hCRC, hMD5 := sha256.New(), crc32.New(castagnoli), md5.New()
	abandon := func(err error) (providers.Object, error) {
		cancel() // abandons the upload: GCS never finalises it
		w.Close()
		return providers.Object{}, err
	}
	src := sourceReader{io.TeeReader(io.LimitReader(r, size+1), io.MultiWriter(hSHA, hCRC, hMD5))}
	n, err := io.Copy(w, src)
	var se *sourceErr
	switch {
	case err != nil && ctx.Err() != nil:
		return abandon(fmt.Errorf("gs: put %s: %w", s.uriOf(name), ctx.Err()))
	case errors.As(err, &se):
		return abandon(fmt.Errorf("gs: put %s: reading the source: %w", s.uriOf(name), se.err))
	case err != nil:
		return abandon(s.fail("put", name, err))
	case n < size:
		return abandon(fmt.Errorf("gs: put %s: source ended after %d of %d bytes: %w", s.uriOf(name), n, size, io.ErrUnexpectedEOF))
	case n > size:
		return abandon(fmt.Errorf("gs: put %s: source has more than the %d bytes declared", s.uriOf(name), size))
	}
	if sha != nil && !equalSum(hSHA, sha) {
		return abandon(fmt.Errorf("gs: put %s: the bytes hash to sha256 %x, the caller's is %x: %w",
			s.uriOf(name), hSHA.Sum(nil), sha, providers.ErrChecksum))
	}
	if crc != nil && !equalSum(hCRC, crc) {
		return abandon(fmt.Errorf("gs: put %s: the bytes have crc32c %x, the caller's is %x: %w",
			s.uriOf(name), hCRC.Sum(nil), crc, providers.ErrChecksum))
	}
	if err := w.Close(); err != nil {
		return providers.Object{}, s.fail("put", name, err)
	}
	a := w.Attrs()
	o := s.objectOf(key, a)
	if len(opts.Metadata) > 0 {
		o.Metadata = maps.Clone(opts.Metadata)
	}
	gotCRC, gotMD5 := hex.EncodeToString(hCRC.Sum(nil)), hex.EncodeToString(hMD5.Sum(nil))
	bad := ""
	switch {
	case a.Size != size:
		bad = fmt.Sprintf("GCS stored %d bytes, %d were sent", a.Size, size)
	case o.Checksums.CRC32C != gotCRC:
		bad = fmt.Sprintf("GCS stored crc32c %s, the bytes sent have %s", o.Checksums.CRC32C, gotCRC)
	case o.Checksums.MD5 != "" && o.Checksums.MD5 != gotMD5:
		bad = fmt.Sprintf("GCS stored md5 %s, the bytes sent have %s", o.Checksums.MD5, gotMD5)
	}
	if bad != "" {
		// Not the bytes that were sent: remove exactly that generation.
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		s.bucket.Object(name).If(storage.Conditions{GenerationMatch: a.Generation}).Delete(cctx)
		ccancel()
		return providers.Object{}, fmt.Errorf("gs: put %s: %s: %w", s.uriOf(name), bad, providers.ErrChecksum)
	}
	return o, nil
}

func equalSum(h hash.Hash, want []byte) bool {
	return hex.EncodeToString(h.Sum(nil)) == hex.EncodeToString(want)
}

// sourceErr marks an error of the caller's reader, to tell it from the upload's.
type sourceErr struct{ err error }

func (e *sourceErr) Error() string { return e.err.Error() }
func (e *sourceErr) Unwrap() error { return e.err }

type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &sourceErr{err}
	}
	return n, err
}
