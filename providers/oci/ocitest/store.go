package ocitest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// bucket is one bucket and its objects. Guarded by Server.mu.
type bucket struct {
	Name        string            `json:"name"`
	Compartment string            `json:"compartmentId"`
	ETag        string            `json:"etag"`
	ID          string            `json:"id"`
	Versioning  string            `json:"versioning"` // Enabled, Suspended, Disabled
	KMSKeyID    string            `json:"kmsKeyId,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Created     time.Time         `json:"timeCreated"`

	objects map[string][]*version // newest last
	names   []string              // sorted keys of objects, when !dirty
	dirty   bool
}

func (b *bucket) versioned() bool { return b.Versioning == "Enabled" }

func (b *bucket) sortedNames() []string {
	if b.dirty || b.names == nil {
		b.names = sortedKeys(b.objects)
		b.dirty = false
	}
	return b.names
}

// current returns the newest version of name if it is an object (not a marker).
func (b *bucket) current(name string) *version {
	vs := b.objects[name]
	if len(vs) == 0 || vs[len(vs)-1].DeleteMarker {
		return nil
	}
	return vs[len(vs)-1]
}

func (b *bucket) findVersion(name, id string) *version {
	for _, v := range b.objects[name] {
		if v.ID == id {
			return v
		}
	}
	return nil
}

func (b *bucket) setVersions(name string, vs []*version) {
	_, had := b.objects[name]
	if len(vs) == 0 {
		delete(b.objects, name)
	} else {
		b.objects[name] = vs
	}
	if had != (len(vs) > 0) {
		b.dirty = true
	}
}

// version is one stored version of an object, or a delete marker.
type version struct {
	ID           string            `json:"versionId"`
	ETag         string            `json:"etag,omitempty"`
	DeleteMarker bool              `json:"deleteMarker,omitempty"`
	Size         int64             `json:"size"`
	MD5          string            `json:"md5,omitempty"`          // base64 content MD5 (single puts)
	MultipartMD5 string            `json:"multipartMd5,omitempty"` // "base64-N"
	CRC32C       string            `json:"crc32c,omitempty"`       // base64, big-endian, whole object
	SHA256       string            `json:"sha256,omitempty"`       // base64 (single puts with SHA256)
	MultiSHA256  string            `json:"multipartSha256,omitempty"`
	SHA384       string            `json:"sha384,omitempty"`
	Meta         map[string]string `json:"meta,omitempty"`
	ContentType  string            `json:"contentType,omitempty"`
	ContentLang  string            `json:"contentLanguage,omitempty"`
	ContentEnc   string            `json:"contentEncoding,omitempty"`
	ContentDisp  string            `json:"contentDisposition,omitempty"`
	CacheControl string            `json:"cacheControl,omitempty"`
	KMSKeyID     string            `json:"kmsKeyId,omitempty"`
	Created      time.Time         `json:"timeCreated"`
	Modified     time.Time         `json:"timeModified"`
	Blob         blobRef           `json:"blob"`
}

// blobRef names stored bytes: in memory, or a file of a data directory.
type blobRef struct {
	data []byte
	File string `json:"file,omitempty"`
}

// blobStore keeps object and part bytes.
type blobStore interface {
	create() (blobWriter, error)
	open(b blobRef) (io.ReadSeekCloser, error)
	remove(b blobRef)
	// concat makes one blob of several, in order.
	concat(parts []blobRef) (blobRef, error)
}

type blobWriter interface {
	io.Writer
	commit() (blobRef, error)
	abort()
}

// memBlobs keeps bytes in memory.
type memBlobs struct{}

type memWriter struct{ bytes.Buffer }

func (memBlobs) create() (blobWriter, error) { return &memWriter{}, nil }
func (w *memWriter) commit() (blobRef, error) {
	b := w.Bytes()
	if b == nil {
		b = []byte{}
	}
	return blobRef{data: b}, nil
}
func (w *memWriter) abort() {}

type nopSeekCloser struct{ *bytes.Reader }

func (nopSeekCloser) Close() error { return nil }

func (memBlobs) open(b blobRef) (io.ReadSeekCloser, error) {
	return nopSeekCloser{bytes.NewReader(b.data)}, nil
}
func (memBlobs) remove(blobRef) {}
func (memBlobs) concat(parts []blobRef) (blobRef, error) {
	n := 0
	for _, p := range parts {
		n += len(p.data)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p.data...)
	}
	return blobRef{data: out}, nil
}

// dirBlobs keeps bytes in files under dir/blobs.
type dirBlobs struct{ dir string }

func newDirBlobs(dir string) (*dirBlobs, error) {
	d := filepath.Join(dir, "blobs")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, err
	}
	return &dirBlobs{dir: d}, nil
}

type fileWriter struct {
	*os.File
	name string
}

func (d *dirBlobs) create() (blobWriter, error) {
	f, err := os.CreateTemp(d.dir, "b-*")
	if err != nil {
		return nil, err
	}
	return &fileWriter{File: f, name: filepath.Base(f.Name())}, nil
}

func (w *fileWriter) commit() (blobRef, error) {
	if err := w.File.Close(); err != nil {
		os.Remove(w.File.Name())
		return blobRef{}, err
	}
	return blobRef{File: w.name}, nil
}

func (w *fileWriter) abort() {
	w.File.Close()
	os.Remove(w.File.Name())
}

func (d *dirBlobs) open(b blobRef) (io.ReadSeekCloser, error) {
	return os.Open(filepath.Join(d.dir, b.File))
}

func (d *dirBlobs) remove(b blobRef) {
	if b.File != "" {
		os.Remove(filepath.Join(d.dir, b.File))
	}
}

func (d *dirBlobs) concat(parts []blobRef) (blobRef, error) {
	w, err := d.create()
	if err != nil {
		return blobRef{}, err
	}
	for _, p := range parts {
		f, err := d.open(p)
		if err != nil {
			w.abort()
			return blobRef{}, err
		}
		_, err = io.Copy(w, f)
		f.Close()
		if err != nil {
			w.abort()
			return blobRef{}, err
		}
	}
	return w.commit()
}

// journal is the append-only log of a data directory: one JSON record per line,
// each the new state of one bucket or one object name. Replayed and compacted at
// start.
type journal struct {
	f *os.File
	w *bufio.Writer
}

type record struct {
	Bucket  *bucket    `json:"bucket,omitempty"`
	Deleted string     `json:"deletedBucket,omitempty"`
	In      string     `json:"in,omitempty"`
	Name    string     `json:"name,omitempty"`
	Objects []*version `json:"versions,omitempty"`
}

func (j *journal) append(rec record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := j.w.Write(b); err != nil {
		return err
	}
	return j.w.Flush()
}

func (j *journal) close() error {
	if err := j.w.Flush(); err != nil {
		j.f.Close()
		return err
	}
	return j.f.Close()
}

// logBucket and logObject record state changes; callers hold s.mu.
func (s *Server) logBucket(b *bucket) {
	if s.journal != nil {
		s.must(s.journal.append(record{Bucket: b}))
	}
}

func (s *Server) logBucketDeleted(name string) {
	if s.journal != nil {
		s.must(s.journal.append(record{Deleted: name}))
	}
}

func (s *Server) logObject(b *bucket, name string) {
	if s.journal != nil {
		vs := b.objects[name]
		if vs == nil {
			vs = []*version{}
		}
		s.must(s.journal.append(record{In: b.Name, Name: name, Objects: vs}))
	}
}

func (s *Server) must(err error) {
	if err != nil {
		// The emulator cannot go on with a journal it cannot write.
		panic(fmt.Sprintf("ocitest: journal: %v", err))
	}
}

// load replays dir/journal.jsonl, compacts it and removes orphaned blobs.
func (s *Server) load(dir string) error {
	path := filepath.Join(dir, "journal.jsonl")
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		line := 0
		for sc.Scan() {
			line++
			var rec record
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				f.Close()
				return fmt.Errorf("ocitest: %s line %d: %w", path, line, err)
			}
			switch {
			case rec.Bucket != nil:
				b := rec.Bucket
				if old, ok := s.buckets[b.Name]; ok {
					b.objects = old.objects
				} else {
					b.objects = map[string][]*version{}
				}
				b.dirty = true
				s.buckets[b.Name] = b
			case rec.Deleted != "":
				delete(s.buckets, rec.Deleted)
			case rec.In != "":
				b, ok := s.buckets[rec.In]
				if !ok {
					f.Close()
					return fmt.Errorf("ocitest: %s line %d: object in unknown bucket %q", path, line, rec.In)
				}
				b.setVersions(rec.Name, rec.Objects)
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return fmt.Errorf("ocitest: %s: %w", path, err)
		}
	}
	// Compact: write the current state to a new journal and swap it in.
	tmp := path + ".tmp"
	nf, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	j := &journal{f: nf, w: bufio.NewWriter(nf)}
	live := map[string]bool{}
	for _, bn := range sortedKeys(s.buckets) {
		b := s.buckets[bn]
		if err := j.append(record{Bucket: b}); err != nil {
			nf.Close()
			return err
		}
		for _, name := range b.sortedNames() {
			for _, v := range b.objects[name] {
				live[v.Blob.File] = true
			}
			if err := j.append(record{In: bn, Name: name, Objects: b.objects[name]}); err != nil {
				nf.Close()
				return err
			}
		}
	}
	if err := nf.Sync(); err != nil {
		nf.Close()
		return err
	}
	nf.Close()
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	jf, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	s.journal = &journal{f: jf, w: bufio.NewWriter(jf)}
	// Blobs no version names: parts of uploads lost with the last process, or puts
	// that crashed before their journal record.
	if db, ok := s.blobs.(*dirBlobs); ok {
		ents, err := os.ReadDir(db.dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if !live[e.Name()] {
				os.Remove(filepath.Join(db.dir, e.Name()))
			}
		}
	}
	return nil
}

// VersionInfo describes one stored version, for tests that look inside.
type VersionInfo struct {
	VersionID    string
	ETag         string
	DeleteMarker bool
	Size         int64
	Metadata     map[string]string
	KMSKeyID     string
	Multipart    bool
}

func (v *version) info() VersionInfo {
	return VersionInfo{VersionID: v.ID, ETag: v.ETag, DeleteMarker: v.DeleteMarker, Size: v.Size,
		Metadata: v.Meta, KMSKeyID: v.KMSKeyID, Multipart: v.MultipartMD5 != ""}
}

// CreateBucket makes a bucket directly (no request, no signature): a test fixture.
func (s *Server) CreateBucket(name string, versioned bool) error {
	if err := checkBucketName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.buckets[name]; ok {
		return fmt.Errorf("ocitest: bucket %q already exists", name)
	}
	b := newBucket(name, "ocid1.compartment.oc1..emulator", versioned)
	s.buckets[name] = b
	s.logBucket(b)
	return nil
}

func newBucket(name, compartment string, versioned bool) *bucket {
	v := "Disabled"
	if versioned {
		v = "Enabled"
	}
	return &bucket{Name: name, Compartment: compartment, ETag: newID(), ID: "ocid1.bucket.oc1..emu" + strings.ReplaceAll(newID(), "-", ""),
		Versioning: v, Created: time.Now().UTC(), objects: map[string][]*version{}}
}

// Versions lists the versions of one object, oldest first (nil if none).
func (s *Server) Versions(bucketName, object string) []VersionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[bucketName]
	if b == nil {
		return nil
	}
	var out []VersionInfo
	for _, v := range b.objects[object] {
		out = append(out, v.info())
	}
	return out
}

// ObjectNames lists the names in a bucket that have a current object, sorted.
func (s *Server) ObjectNames(bucketName string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[bucketName]
	if b == nil {
		return nil
	}
	var out []string
	for _, n := range b.sortedNames() {
		if b.current(n) != nil {
			out = append(out, n)
		}
	}
	return out
}

// ReadObject returns the current bytes of an object, directly.
func (s *Server) ReadObject(bucketName, object string) ([]byte, VersionInfo, bool) {
	s.mu.Lock()
	b := s.buckets[bucketName]
	var v *version
	if b != nil {
		v = b.current(object)
	}
	s.mu.Unlock()
	if v == nil {
		return nil, VersionInfo{}, false
	}
	rc, err := s.blobs.open(v.Blob)
	if err != nil {
		return nil, VersionInfo{}, false
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, VersionInfo{}, false
	}
	return data, v.info(), true
}

// Uploads returns the ids of the multipart uploads in progress in a bucket.
func (s *Server) Uploads(bucketName string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, u := range s.uploads {
		if u.bucket == bucketName {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
