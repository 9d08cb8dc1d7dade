package ocitest

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sdkTime formats times as the SDK's JSON expects (RFC 3339, milliseconds).
type sdkTime time.Time

func (t sdkTime) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format("2006-01-02T15:04:05.000Z07:00") + `"`), nil
}

var bucketNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,256}$`)

func checkBucketName(name string) error {
	if !bucketNameRE.MatchString(name) {
		return fmt.Errorf("invalid bucket name %q", name)
	}
	return nil
}

func bucketNotFound(ns, name string) *apiError {
	return errorf(404, "BucketNotFound", "Either the bucket named '%s' does not exist in the namespace '%s' or you are not authorized to access it", name, ns)
}

func objectNotFound(b, name string) *apiError {
	return errorf(404, "ObjectNotFound", "The object '%s' was not found in the bucket '%s'", name, b)
}

// bucketLocked returns the bucket; callers hold s.mu.
func (s *Server) bucketLocked(name string) (*bucket, *apiError) {
	b := s.buckets[name]
	if b == nil {
		return nil, bucketNotFound(s.ns, name)
	}
	return b, nil
}

type bucketJSON struct {
	Namespace           string            `json:"namespace"`
	Name                string            `json:"name"`
	CompartmentID       string            `json:"compartmentId"`
	Metadata            map[string]string `json:"metadata"`
	CreatedBy           string            `json:"createdBy"`
	TimeCreated         sdkTime           `json:"timeCreated"`
	ETag                string            `json:"etag"`
	PublicAccessType    string            `json:"publicAccessType"`
	StorageTier         string            `json:"storageTier"`
	ObjectEventsEnabled bool              `json:"objectEventsEnabled"`
	KMSKeyID            *string           `json:"kmsKeyId,omitempty"`
	ApproximateCount    *int64            `json:"approximateCount,omitempty"`
	ApproximateSize     *int64            `json:"approximateSize,omitempty"`
	ReplicationEnabled  bool              `json:"replicationEnabled"`
	IsReadOnly          bool              `json:"isReadOnly"`
	ID                  string            `json:"id"`
	Versioning          string            `json:"versioning"`
	AutoTiering         string            `json:"autoTiering"`
}

func (s *Server) bucketJSON(b *bucket, counts bool) bucketJSON {
	md := b.Metadata
	if md == nil {
		md = map[string]string{}
	}
	j := bucketJSON{Namespace: s.ns, Name: b.Name, CompartmentID: b.Compartment, Metadata: md,
		CreatedBy: "ocid1.user.oc1..emulator", TimeCreated: sdkTime(b.Created), ETag: b.ETag,
		PublicAccessType: "NoPublicAccess", StorageTier: "Standard", ID: b.ID, Versioning: b.Versioning,
		AutoTiering: "Disabled"}
	if b.KMSKeyID != "" {
		k := b.KMSKeyID
		j.KMSKeyID = &k
	}
	if counts {
		var n, size int64
		for name := range b.objects {
			if v := b.current(name); v != nil {
				n++
				size += v.Size
			}
		}
		j.ApproximateCount, j.ApproximateSize = &n, &size
	}
	return j
}

func (s *Server) listBuckets(w http.ResponseWriter, r *http.Request) *apiError {
	comp := r.URL.Query().Get("compartmentId")
	if comp == "" {
		return errorf(400, "MissingParameter", "compartmentId is required")
	}
	s.mu.Lock()
	type summary struct {
		Namespace     string  `json:"namespace"`
		Name          string  `json:"name"`
		CompartmentID string  `json:"compartmentId"`
		CreatedBy     string  `json:"createdBy"`
		TimeCreated   sdkTime `json:"timeCreated"`
		ETag          string  `json:"etag"`
	}
	out := []summary{}
	for _, name := range sortedKeys(s.buckets) {
		b := s.buckets[name]
		out = append(out, summary{s.ns, b.Name, b.Compartment, "ocid1.user.oc1..emulator", sdkTime(b.Created), b.ETag})
	}
	s.mu.Unlock()
	writeJSON(w, 200, out)
	return nil
}

func (s *Server) createBucket(w http.ResponseWriter, r *http.Request) *apiError {
	var d struct {
		Name          string            `json:"name"`
		CompartmentID string            `json:"compartmentId"`
		Metadata      map[string]string `json:"metadata"`
		KMSKeyID      string            `json:"kmsKeyId"`
		Versioning    string            `json:"versioning"`
	}
	if err := json.NewDecoder(r.Body).Decode(&d); err != nil {
		return errorf(400, "InvalidParameter", "malformed CreateBucketDetails: %v", err)
	}
	if err := checkBucketName(d.Name); err != nil {
		return errorf(400, "InvalidBucketName", "%v", err)
	}
	if d.CompartmentID == "" {
		return errorf(400, "MissingParameter", "compartmentId is required")
	}
	switch d.Versioning {
	case "", "Disabled", "Enabled":
	default:
		return errorf(400, "InvalidParameter", "versioning must be Enabled or Disabled, not %q", d.Versioning)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.buckets[d.Name]; ok {
		return errorf(409, "BucketAlreadyExists", "Either the bucket '%s' in namespace '%s' already exists or you are not authorized to create it", d.Name, s.ns)
	}
	b := newBucket(d.Name, d.CompartmentID, d.Versioning == "Enabled")
	b.Metadata, b.KMSKeyID = d.Metadata, d.KMSKeyID
	s.buckets[d.Name] = b
	s.logBucket(b)
	w.Header().Set("ETag", b.ETag)
	w.Header().Set("Location", fmt.Sprintf("/n/%s/b/%s", s.ns, b.Name))
	writeJSON(w, 200, s.bucketJSON(b, false))
	return nil
}

func (s *Server) getBucket(w http.ResponseWriter, r *http.Request, name string) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.bucketLocked(name)
	if err != nil {
		return err
	}
	if m := r.Header.Get("If-Match"); m != "" && m != "*" && m != b.ETag {
		return errorf(412, "IfMatchFailed", "The If-Match header does not match the bucket's ETag")
	}
	if m := r.Header.Get("If-None-Match"); m != "" && (m == "*" || m == b.ETag) {
		return &apiError{status: 304, code: "NotModified"}
	}
	w.Header().Set("ETag", b.ETag)
	if r.Method == http.MethodHead {
		w.WriteHeader(200)
		return nil
	}
	counts := strings.Contains(r.URL.Query().Get("fields"), "approximate")
	writeJSON(w, 200, s.bucketJSON(b, counts))
	return nil
}

func (s *Server) updateBucket(w http.ResponseWriter, r *http.Request, name string) *apiError {
	var d struct {
		Versioning string            `json:"versioning"`
		Metadata   map[string]string `json:"metadata"`
		KMSKeyID   *string           `json:"kmsKeyId"`
	}
	if err := json.NewDecoder(r.Body).Decode(&d); err != nil {
		return errorf(400, "InvalidParameter", "malformed UpdateBucketDetails: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.bucketLocked(name)
	if err != nil {
		return err
	}
	switch d.Versioning {
	case "":
	case "Enabled", "Suspended":
		if d.Versioning == "Suspended" && b.Versioning == "Disabled" {
			return errorf(400, "InvalidParameter", "versioning can only be suspended once enabled")
		}
		b.Versioning = d.Versioning
	default:
		return errorf(400, "InvalidParameter", "versioning must be Enabled or Suspended, not %q", d.Versioning)
	}
	if d.Metadata != nil {
		b.Metadata = d.Metadata
	}
	if d.KMSKeyID != nil {
		b.KMSKeyID = *d.KMSKeyID
	}
	b.ETag = newID()
	s.logBucket(b)
	w.Header().Set("ETag", b.ETag)
	writeJSON(w, 200, s.bucketJSON(b, false))
	return nil
}

func (s *Server) deleteBucket(w http.ResponseWriter, r *http.Request, name string) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.bucketLocked(name)
	if err != nil {
		return err
	}
	if len(b.objects) > 0 {
		return errorf(409, "BucketNotEmpty", "Bucket named '%s' is not empty. Delete all objects (and object versions) first.", name)
	}
	for _, u := range s.uploads {
		if u.bucket == name {
			return errorf(409, "BucketNotEmpty", "Bucket named '%s' has multipart uploads in progress", name)
		}
	}
	delete(s.buckets, name)
	s.logBucketDeleted(name)
	w.WriteHeader(204)
	return nil
}

// checkObjectName applies OCI's object name rules.
func checkObjectName(name string) *apiError {
	switch {
	case name == "":
		return errorf(400, "InvalidParameter", "object name is empty")
	case len(name) > 1024:
		return errorf(400, "InvalidParameter", "object name is longer than 1024 bytes")
	case strings.ContainsRune(name, 0):
		return errorf(400, "InvalidParameter", "object name contains a NUL character")
	}
	if !utf8.ValidString(name) {
		return errorf(400, "InvalidParameter", "object name is not valid UTF-8")
	}
	return nil
}

// hashes computes what the server records of a body.
type hashes struct {
	md5    hash.Hash
	crc    hash.Hash32
	sha256 hash.Hash
	sha384 hash.Hash
	n      int64
}

func newHashes(sha256On, sha384On bool) *hashes {
	h := &hashes{md5: md5.New(), crc: crc32.New(castagnoli)}
	if sha256On {
		h.sha256 = sha256.New()
	}
	if sha384On {
		h.sha384 = sha512.New384()
	}
	return h
}

func (h *hashes) Write(p []byte) (int, error) {
	h.md5.Write(p)
	h.crc.Write(p)
	if h.sha256 != nil {
		h.sha256.Write(p)
	}
	if h.sha384 != nil {
		h.sha384.Write(p)
	}
	h.n += int64(len(p))
	return len(p), nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func crcB64(c uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], c)
	return b64(b[:])
}

func (h *hashes) md5B64() string { return b64(h.md5.Sum(nil)) }
func (h *hashes) crcB64() string { return crcB64(h.crc.Sum32()) }
func (h *hashes) sha256B64() string {
	if h.sha256 == nil {
		return ""
	}
	return b64(h.sha256.Sum(nil))
}
func (h *hashes) sha384B64() string {
	if h.sha384 == nil {
		return ""
	}
	return b64(h.sha384.Sum(nil))
}

// checksumAlgorithm reads opc-checksum-algorithm.
func checksumAlgorithm(r *http.Request) (string, *apiError) {
	a := r.Header.Get("opc-checksum-algorithm")
	switch strings.ToUpper(a) {
	case "":
		return "", nil
	case "CRC32C", "SHA256", "SHA384":
		return strings.ToUpper(a), nil
	}
	return "", errorf(400, "InvalidParameter", "unsupported opc-checksum-algorithm %q", a)
}

// receiveBody stores the request body as a blob, hashing it, and checks the
// checksum headers the client sent. On any failure nothing is kept.
func (s *Server) receiveBody(r *http.Request, algo string) (blobRef, *hashes, *apiError) {
	if r.ContentLength < 0 {
		return blobRef{}, nil, errorf(411, "MissingContentLength", "Content-Length is required")
	}
	for _, hn := range []string{"opc-content-sha256", "opc-content-crc32c", "opc-content-sha384"} {
		if r.Header.Get(hn) != "" && !strings.EqualFold(strings.TrimPrefix(hn, "opc-content-"), algo) {
			return blobRef{}, nil, errorf(400, "InvalidParameter", "%s is only accepted with opc-checksum-algorithm %s", hn, strings.ToUpper(strings.TrimPrefix(hn, "opc-content-")))
		}
	}
	bw, err := s.blobs.create()
	if err != nil {
		return blobRef{}, nil, errorf(500, "InternalServerError", "storing the body: %v", err)
	}
	h := newHashes(algo == "SHA256", algo == "SHA384")
	n, err := io.Copy(io.MultiWriter(bw, h), r.Body)
	if err == nil && n != r.ContentLength {
		err = fmt.Errorf("body has %d bytes, Content-Length says %d", n, r.ContentLength)
	}
	if err != nil {
		bw.abort()
		return blobRef{}, nil, errorf(400, "InvalidParameter", "reading the request body: %v", err)
	}
	fail := func(e *apiError) (blobRef, *hashes, *apiError) {
		bw.abort()
		return blobRef{}, nil, e
	}
	if want := r.Header.Get("Content-MD5"); want != "" && want != h.md5B64() {
		return fail(errorf(400, "UnmatchedContentMD5", "The computed MD5 of the request body (%s) does not match the Content-MD5 header (%s)", h.md5B64(), want))
	}
	if want := r.Header.Get("opc-content-sha256"); want != "" && want != h.sha256B64() {
		return fail(errorf(400, "UnmatchedContentSHA256", "The computed SHA256 of the request body (%s) does not match the opc-content-sha256 header (%s)", h.sha256B64(), want))
	}
	if want := r.Header.Get("opc-content-sha384"); want != "" && want != h.sha384B64() {
		return fail(errorf(400, "UnmatchedContentSHA384", "The computed SHA384 of the request body (%s) does not match the opc-content-sha384 header (%s)", h.sha384B64(), want))
	}
	if want := r.Header.Get("opc-content-crc32c"); want != "" && want != h.crcB64() {
		return fail(errorf(400, "UnmatchedContentCRC32C", "The computed CRC32C of the request body (%s) does not match the opc-content-crc32c header (%s)", h.crcB64(), want))
	}
	ref, err := bw.commit()
	if err != nil {
		return blobRef{}, nil, errorf(500, "InternalServerError", "storing the body: %v", err)
	}
	return ref, h, nil
}

func metaFromHeaders(h http.Header) map[string]string {
	var m map[string]string
	for k, vs := range h {
		lk := strings.ToLower(k)
		if name, ok := strings.CutPrefix(lk, "opc-meta-"); ok && len(vs) > 0 {
			if m == nil {
				m = map[string]string{}
			}
			m[name] = vs[0]
		}
	}
	return m
}

func etagMatches(cond, etag string) bool {
	for c := range strings.SplitSeq(cond, ",") {
		c = strings.Trim(strings.TrimSpace(c), `"`)
		if c == "*" || c == etag {
			return true
		}
	}
	return false
}

// checkWriteConditions applies If-Match / If-None-Match of a write to cur (nil:
// no current object).
func checkWriteConditions(r *http.Request, cur *version) *apiError {
	if m := r.Header.Get("If-Match"); m != "" {
		if cur == nil || !etagMatches(m, cur.ETag) {
			return errorf(412, "IfMatchFailed", "The If-Match header value '%s' does not match the ETag of the object", m)
		}
	}
	if m := r.Header.Get("If-None-Match"); m != "" {
		if m != "*" {
			return errorf(400, "InvalidParameter", "If-None-Match on a write accepts only '*'")
		}
		if cur != nil {
			return errorf(412, "IfNoneMatchFailed", "The If-None-Match header is '*' but there is an existing object with that name")
		}
	}
	return nil
}

// install makes v the current version of name and returns the blobs to remove
// (callers hold s.mu and remove them after unlocking).
func (s *Server) install(b *bucket, name string, v *version) []blobRef {
	var drop []blobRef
	if b.versioned() {
		b.setVersions(name, append(b.objects[name], v))
	} else {
		// Unversioned (or suspended): the new object replaces the current one. With
		// versioning suspended, older versions are kept.
		vs := b.objects[name]
		keep := vs[:0:0]
		for i, old := range vs {
			if i == len(vs)-1 || b.Versioning == "Disabled" {
				drop = append(drop, old.Blob)
				continue
			}
			keep = append(keep, old)
		}
		b.setVersions(name, append(keep, v))
	}
	s.logObject(b, name)
	return drop
}

func (s *Server) dropBlobs(refs []blobRef) {
	for _, r := range refs {
		s.blobs.remove(r)
	}
}

func (s *Server) putObject(w http.ResponseWriter, r *http.Request, bucketName, name string) *apiError {
	if err := checkObjectName(name); err != nil {
		return err
	}
	algo, aerr := checksumAlgorithm(r)
	if aerr != nil {
		return aerr
	}
	s.mu.Lock()
	_, aerr = s.bucketLocked(bucketName)
	s.mu.Unlock()
	if aerr != nil {
		return aerr
	}
	ref, h, aerr := s.receiveBody(r, algo)
	if aerr != nil {
		return aerr
	}
	now := time.Now().UTC()
	v := &version{ID: newID(), ETag: newID(), Size: h.n, MD5: h.md5B64(), CRC32C: h.crcB64(),
		SHA256: h.sha256B64(), SHA384: h.sha384B64(), Meta: metaFromHeaders(r.Header),
		ContentType: r.Header.Get("Content-Type"), ContentLang: r.Header.Get("Content-Language"),
		ContentEnc: r.Header.Get("Content-Encoding"), ContentDisp: r.Header.Get("Content-Disposition"),
		CacheControl: r.Header.Get("Cache-Control"), KMSKeyID: r.Header.Get("opc-sse-kms-key-id"),
		Created: now, Modified: now, Blob: ref}
	if v.ContentType == "" {
		v.ContentType = "application/octet-stream"
	}
	s.mu.Lock()
	b, aerr := s.bucketLocked(bucketName)
	if aerr == nil {
		aerr = checkWriteConditions(r, b.current(name))
	}
	if aerr != nil {
		s.mu.Unlock()
		s.blobs.remove(ref)
		return aerr
	}
	if v.KMSKeyID == "" {
		v.KMSKeyID = b.KMSKeyID
	}
	drop := s.install(b, name, v)
	s.mu.Unlock()
	s.dropBlobs(drop)

	hd := w.Header()
	hd.Set("ETag", v.ETag)
	hd.Set("Last-Modified", v.Modified.Format(http.TimeFormat))
	hd.Set("opc-content-md5", v.MD5)
	hd.Set("version-id", v.ID)
	switch algo {
	case "SHA256":
		hd.Set("opc-content-sha256", v.SHA256)
	case "SHA384":
		hd.Set("opc-content-sha384", v.SHA384)
	case "CRC32C":
		hd.Set("opc-content-crc32c", v.CRC32C)
	}
	w.WriteHeader(200)
	return nil
}

// objectHeaders sets the headers GetObject and HeadObject return for v; with
// checksums false (a range), the whole-object checksums are left out.
func objectHeaders(h http.Header, v *version, checksums bool) {
	h.Set("ETag", v.ETag)
	h.Set("Last-Modified", v.Modified.Format(http.TimeFormat))
	h.Set("version-id", v.ID)
	h.Set("Accept-Ranges", "bytes")
	h.Set("storage-tier", "Standard")
	h.Set("Content-Type", v.ContentType)
	for k, val := range map[string]string{"Content-Language": v.ContentLang, "Content-Encoding": v.ContentEnc,
		"Content-Disposition": v.ContentDisp, "Cache-Control": v.CacheControl} {
		if val != "" {
			h.Set(k, val)
		}
	}
	if v.KMSKeyID != "" {
		h.Set("opc-sse-kms-key-id", v.KMSKeyID)
	}
	for k, val := range v.Meta {
		h.Set("opc-meta-"+k, val)
	}
	if !checksums {
		return
	}
	if v.MultipartMD5 != "" {
		h.Set("opc-multipart-md5", v.MultipartMD5)
	} else {
		h.Set("Content-MD5", v.MD5)
	}
	h.Set("opc-content-crc32c", v.CRC32C)
	if v.SHA256 != "" {
		h.Set("opc-content-sha256", v.SHA256)
	}
	if v.MultiSHA256 != "" {
		h.Set("opc-multipart-sha256", v.MultiSHA256)
	}
	if v.SHA384 != "" {
		h.Set("opc-content-sha384", v.SHA384)
	}
}

// parseRange parses a single "bytes=" range against size.
func parseRange(spec string, size int64) (start, end int64, err *apiError) {
	bad := errorf(416, "InvalidRange", "The requested range '%s' is not satisfiable for an object of %d bytes", spec, size)
	rs, ok := strings.CutPrefix(strings.TrimSpace(spec), "bytes=")
	if !ok || strings.Contains(rs, ",") {
		return 0, 0, errorf(400, "InvalidParameter", "unsupported Range header %q", spec)
	}
	a, z, ok := strings.Cut(rs, "-")
	if !ok {
		return 0, 0, errorf(400, "InvalidParameter", "malformed Range header %q", spec)
	}
	switch {
	case a == "":
		n, e := strconv.ParseInt(z, 10, 64)
		if e != nil || n <= 0 {
			return 0, 0, bad
		}
		if n > size {
			n = size
		}
		if size == 0 {
			return 0, 0, bad
		}
		return size - n, size - 1, nil
	default:
		s, e := strconv.ParseInt(a, 10, 64)
		if e != nil || s < 0 || s >= size {
			return 0, 0, bad
		}
		end := size - 1
		if z != "" {
			en, e := strconv.ParseInt(z, 10, 64)
			if e != nil || en < s {
				return 0, 0, bad
			}
			if en < end {
				end = en
			}
		}
		return s, end, nil
	}
}

func (s *Server) getObject(w http.ResponseWriter, r *http.Request, bucketName, name string) *apiError {
	vid := r.URL.Query().Get("versionId")
	s.mu.Lock()
	b, aerr := s.bucketLocked(bucketName)
	if aerr != nil {
		s.mu.Unlock()
		return aerr
	}
	var v *version
	if vid != "" {
		v = b.findVersion(name, vid)
		if v != nil && v.DeleteMarker {
			v = nil
		}
	} else {
		v = b.current(name)
	}
	if v == nil {
		s.mu.Unlock()
		if vid != "" {
			return errorf(404, "ObjectNotFound", "The object '%s' with version '%s' was not found in the bucket '%s'", name, vid, bucketName)
		}
		return objectNotFound(bucketName, name)
	}
	if m := r.Header.Get("If-Match"); m != "" && !etagMatches(m, v.ETag) {
		s.mu.Unlock()
		return errorf(412, "IfMatchFailed", "The If-Match header value '%s' does not match the ETag of the object", m)
	}
	if m := r.Header.Get("If-None-Match"); m != "" && etagMatches(m, v.ETag) {
		s.mu.Unlock()
		w.Header().Set("ETag", v.ETag)
		return &apiError{status: 304, code: "NotModified"}
	}
	var rc io.ReadSeekCloser
	if r.Method == http.MethodGet {
		var err error
		if rc, err = s.blobs.open(v.Blob); err != nil {
			s.mu.Unlock()
			return errorf(500, "InternalServerError", "reading the object: %v", err)
		}
	}
	s.mu.Unlock()
	if rc != nil {
		defer rc.Close()
	}

	start, end, status := int64(0), v.Size-1, 200
	if rg := r.Header.Get("Range"); rg != "" {
		var aerr *apiError
		if start, end, aerr = parseRange(rg, v.Size); aerr != nil {
			return aerr
		}
		status = 206
	}
	objectHeaders(w.Header(), v, status == 200)
	n := end - start + 1
	if status == 206 {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, v.Size))
	}
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodHead || n <= 0 {
		return nil
	}
	if _, err := rc.Seek(start, io.SeekStart); err != nil {
		panic(http.ErrAbortHandler)
	}
	if _, err := io.CopyN(w, rc, n); err != nil {
		panic(http.ErrAbortHandler)
	}
	return nil
}

func (s *Server) deleteObject(w http.ResponseWriter, r *http.Request, bucketName, name string) *apiError {
	vid := r.URL.Query().Get("versionId")
	ifMatch := r.Header.Get("If-Match")
	s.mu.Lock()
	b, aerr := s.bucketLocked(bucketName)
	if aerr != nil {
		s.mu.Unlock()
		return aerr
	}
	vs := b.objects[name]
	var drop []blobRef
	var gone *version
	marker := false
	switch {
	case vid != "":
		i := -1
		for j, v := range vs {
			if v.ID == vid {
				i = j
			}
		}
		if i < 0 {
			s.mu.Unlock()
			return errorf(404, "ObjectNotFound", "The object '%s' with version '%s' was not found in the bucket '%s'", name, vid, bucketName)
		}
		if ifMatch != "" && (vs[i].DeleteMarker || !etagMatches(ifMatch, vs[i].ETag)) {
			s.mu.Unlock()
			return errorf(412, "IfMatchFailed", "The If-Match header value '%s' does not match the ETag of the object version", ifMatch)
		}
		gone = vs[i]
		drop = append(drop, gone.Blob)
		nv := append(append([]*version{}, vs[:i]...), vs[i+1:]...)
		b.setVersions(name, nv)
		marker = gone.DeleteMarker
	default:
		cur := b.current(name)
		if cur == nil {
			s.mu.Unlock()
			return objectNotFound(bucketName, name)
		}
		if ifMatch != "" && !etagMatches(ifMatch, cur.ETag) {
			s.mu.Unlock()
			return errorf(412, "IfMatchFailed", "The If-Match header value '%s' does not match the ETag of the object", ifMatch)
		}
		if b.versioned() || b.Versioning == "Suspended" {
			now := time.Now().UTC()
			gone = &version{ID: newID(), DeleteMarker: true, Created: now, Modified: now}
			b.setVersions(name, append(vs, gone))
			marker = true
		} else {
			gone = cur
			for _, v := range vs {
				drop = append(drop, v.Blob)
			}
			b.setVersions(name, nil)
		}
	}
	s.logObject(b, name)
	s.mu.Unlock()
	s.dropBlobs(drop)
	w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
	w.Header().Set("version-id", gone.ID)
	w.Header().Set("is-delete-marker", strconv.FormatBool(marker))
	w.WriteHeader(204)
	return nil
}

// listParams are ListObjects' and ListObjectVersions' common query parameters.
type listParams struct {
	prefix, start, end, startAfter, delimiter string
	limit                                     int
	fields                                    map[string]bool
}

func parseListParams(r *http.Request) (listParams, *apiError) {
	q := r.URL.Query()
	p := listParams{prefix: q.Get("prefix"), start: q.Get("start"), end: q.Get("end"),
		startAfter: q.Get("startAfter"), delimiter: q.Get("delimiter"), limit: 1000, fields: map[string]bool{"name": true}}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return p, errorf(400, "InvalidParameter", "limit must be between 1 and 1000, not %q", l)
		}
		p.limit = n
	}
	if p.delimiter != "" && p.delimiter != "/" {
		return p, errorf(400, "InvalidParameter", "only '/' is a supported delimiter")
	}
	for f := range strings.SplitSeq(q.Get("fields"), ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		switch strings.ToLower(f) {
		case "name", "size", "etag", "md5", "timecreated", "timemodified", "storagetier", "archivalstate":
			p.fields[strings.ToLower(f)] = true
		default:
			return p, errorf(400, "InvalidParameter", "unknown field %q", f)
		}
	}
	return p, nil
}

// inRange reports whether name is selected by prefix, start, startAfter and end.
func (p listParams) inRange(name string) bool {
	return strings.HasPrefix(name, p.prefix) && name >= p.start && (p.startAfter == "" || name > p.startAfter) &&
		(p.end == "" || name < p.end)
}

type objectSummary struct {
	Name         string   `json:"name"`
	Size         *int64   `json:"size,omitempty"`
	MD5          string   `json:"md5,omitempty"`
	TimeCreated  *sdkTime `json:"timeCreated,omitempty"`
	ETag         string   `json:"etag,omitempty"`
	StorageTier  string   `json:"storageTier,omitempty"`
	TimeModified *sdkTime `json:"timeModified,omitempty"`
}

func summary(name string, v *version, f map[string]bool) objectSummary {
	o := objectSummary{Name: name}
	if f["size"] {
		n := v.Size
		o.Size = &n
	}
	if f["md5"] {
		o.MD5 = v.MD5
		if v.MultipartMD5 != "" {
			o.MD5 = v.MultipartMD5
		}
	}
	if f["etag"] {
		o.ETag = v.ETag
	}
	if f["timecreated"] {
		t := sdkTime(v.Created)
		o.TimeCreated = &t
	}
	if f["timemodified"] {
		t := sdkTime(v.Modified)
		o.TimeModified = &t
	}
	if f["storagetier"] {
		o.StorageTier = "Standard"
	}
	return o
}

func (s *Server) listObjects(w http.ResponseWriter, r *http.Request, bucketName string) *apiError {
	p, aerr := parseListParams(r)
	if aerr != nil {
		return aerr
	}
	s.mu.Lock()
	b, aerr := s.bucketLocked(bucketName)
	if aerr != nil {
		s.mu.Unlock()
		return aerr
	}
	names := b.sortedNames()
	type listing struct {
		Objects       []objectSummary `json:"objects"`
		Prefixes      []string        `json:"prefixes,omitempty"`
		NextStartWith string          `json:"nextStartWith,omitempty"`
	}
	out := listing{Objects: []objectSummary{}}
	seenPrefix := map[string]bool{}
	count := 0
	i := lowerBound(names, max(p.start, p.prefix))
	for ; i < len(names); i++ {
		name := names[i]
		if !strings.HasPrefix(name, p.prefix) && name > p.prefix {
			break
		}
		if !p.inRange(name) {
			if p.end != "" && name >= p.end {
				break
			}
			continue
		}
		v := b.current(name)
		if v == nil {
			continue
		}
		if p.delimiter != "" {
			if j := strings.Index(name[len(p.prefix):], p.delimiter); j >= 0 {
				pre := name[:len(p.prefix)+j+1]
				if !seenPrefix[pre] {
					if count == p.limit {
						out.NextStartWith = name
						break
					}
					seenPrefix[pre] = true
					out.Prefixes = append(out.Prefixes, pre)
					count++
				}
				continue
			}
		}
		if count == p.limit {
			out.NextStartWith = name
			break
		}
		out.Objects = append(out.Objects, summary(name, v, p.fields))
		count++
	}
	s.mu.Unlock()
	writeJSON(w, 200, out)
	return nil
}

func lowerBound(names []string, s string) int {
	lo, hi := 0, len(names)
	for lo < hi {
		m := (lo + hi) / 2
		if names[m] < s {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

type versionSummary struct {
	Name           string   `json:"name"`
	Size           *int64   `json:"size,omitempty"`
	MD5            string   `json:"md5,omitempty"`
	TimeCreated    *sdkTime `json:"timeCreated,omitempty"`
	TimeModified   sdkTime  `json:"timeModified"`
	ETag           string   `json:"etag,omitempty"`
	StorageTier    string   `json:"storageTier,omitempty"`
	VersionID      string   `json:"versionId"`
	IsDeleteMarker bool     `json:"isDeleteMarker"`
}

// encodePage and decodePage make ListObjectVersions' opaque page token: the name
// and version id of the next item.
func encodePage(name, vid string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(name + "\x00" + vid))
}

func decodePage(tok string) (string, string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", "", false
	}
	name, vid, ok := strings.Cut(string(b), "\x00")
	return name, vid, ok
}

func (s *Server) listObjectVersions(w http.ResponseWriter, r *http.Request, bucketName string) *apiError {
	p, aerr := parseListParams(r)
	if aerr != nil {
		return aerr
	}
	var pageName, pageVID string
	if tok := r.URL.Query().Get("page"); tok != "" {
		var ok bool
		if pageName, pageVID, ok = decodePage(tok); !ok {
			return errorf(400, "InvalidParameter", "malformed page token")
		}
	}
	s.mu.Lock()
	b, aerr := s.bucketLocked(bucketName)
	if aerr != nil {
		s.mu.Unlock()
		return aerr
	}
	names := b.sortedNames()
	type collection struct {
		Items    []versionSummary `json:"items"`
		Prefixes []string         `json:"prefixes,omitempty"`
	}
	out := collection{Items: []versionSummary{}}
	next := ""
	from := max(p.start, p.prefix, pageName)
	seenPrefix := map[string]bool{}
scan:
	for i := lowerBound(names, from); i < len(names); i++ {
		name := names[i]
		if !strings.HasPrefix(name, p.prefix) && name > p.prefix {
			break
		}
		if !p.inRange(name) {
			if p.end != "" && name >= p.end {
				break
			}
			continue
		}
		if p.delimiter != "" {
			if j := strings.Index(name[len(p.prefix):], p.delimiter); j >= 0 {
				pre := name[:len(p.prefix)+j+1]
				if !seenPrefix[pre] {
					seenPrefix[pre] = true
					out.Prefixes = append(out.Prefixes, pre)
				}
				continue
			}
		}
		vs := b.objects[name]
		skipping := name == pageName && pageVID != ""
		for k := len(vs) - 1; k >= 0; k-- {
			v := vs[k]
			if skipping {
				if v.ID != pageVID {
					continue
				}
				skipping = false
			}
			if len(out.Items) == p.limit {
				next = encodePage(name, v.ID)
				break scan
			}
			it := versionSummary{Name: name, TimeModified: sdkTime(v.Modified), VersionID: v.ID, IsDeleteMarker: v.DeleteMarker}
			if !v.DeleteMarker {
				so := summary(name, v, p.fields)
				it.Size, it.MD5, it.TimeCreated, it.ETag, it.StorageTier = so.Size, so.MD5, so.TimeCreated, so.ETag, so.StorageTier
			}
			out.Items = append(out.Items, it)
		}
	}
	s.mu.Unlock()
	if next != "" {
		w.Header().Set("opc-next-page", next)
	}
	writeJSON(w, 200, out)
	return nil
}
