package ocitest

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// upload is a multipart upload in progress. Guarded by Server.mu.
type upload struct {
	id, bucket, object string
	created            time.Time
	algo               string
	meta               map[string]string
	contentType        string
	contentLang        string
	contentEnc         string
	contentDisp        string
	cacheControl       string
	kms                string
	parts              map[int]*part
}

type part struct {
	num    int
	etag   string
	size   int64
	md5    string // base64
	crc    uint32
	sha256 string // base64, when the upload uses SHA256
	blob   blobRef
	at     time.Time
}

type multipartUploadJSON struct {
	Namespace   string  `json:"namespace"`
	Bucket      string  `json:"bucket"`
	Object      string  `json:"object"`
	UploadID    string  `json:"uploadId"`
	TimeCreated sdkTime `json:"timeCreated"`
	StorageTier string  `json:"storageTier"`
}

func (s *Server) uploadJSON(u *upload) multipartUploadJSON {
	return multipartUploadJSON{s.ns, u.bucket, u.object, u.id, sdkTime(u.created), "Standard"}
}

func (s *Server) createMultipart(w http.ResponseWriter, r *http.Request, bucketName string) *apiError {
	var d struct {
		Object             string            `json:"object"`
		ContentType        string            `json:"contentType"`
		ContentLanguage    string            `json:"contentLanguage"`
		ContentEncoding    string            `json:"contentEncoding"`
		ContentDisposition string            `json:"contentDisposition"`
		CacheControl       string            `json:"cacheControl"`
		Metadata           map[string]string `json:"metadata"`
	}
	if err := json.NewDecoder(r.Body).Decode(&d); err != nil {
		return errorf(400, "InvalidParameter", "malformed CreateMultipartUploadDetails: %v", err)
	}
	if err := checkObjectName(d.Object); err != nil {
		return err
	}
	algo, aerr := checksumAlgorithm(r)
	if aerr != nil {
		return aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, aerr := s.bucketLocked(bucketName)
	if aerr != nil {
		return aerr
	}
	if aerr := checkWriteConditions(r, b.current(d.Object)); aerr != nil {
		return aerr
	}
	meta := map[string]string{}
	for k, v := range d.Metadata {
		name, ok := strings.CutPrefix(strings.ToLower(k), "opc-meta-")
		if !ok || name == "" {
			return errorf(400, "InvalidParameter", "metadata key %q is not in the opc-meta-* format", k)
		}
		meta[name] = v
	}
	u := &upload{id: newID(), bucket: bucketName, object: d.Object, created: time.Now().UTC(), algo: algo,
		meta: meta, contentType: d.ContentType, contentLang: d.ContentLanguage, contentEnc: d.ContentEncoding,
		contentDisp: d.ContentDisposition, cacheControl: d.CacheControl, kms: r.Header.Get("opc-sse-kms-key-id"),
		parts: map[int]*part{}}
	if u.kms == "" {
		u.kms = b.KMSKeyID
	}
	s.uploads[u.id] = u
	w.Header().Set("Location", fmt.Sprintf("/n/%s/b/%s/u/%s?uploadId=%s", s.ns, bucketName, d.Object, u.id))
	writeJSON(w, 200, s.uploadJSON(u))
	return nil
}

// uploadFor finds the upload named by the request's uploadId for bucket and object.
func (s *Server) uploadFor(r *http.Request, bucketName, object string) (*upload, *apiError) {
	id := r.URL.Query().Get("uploadId")
	if id == "" {
		return nil, errorf(400, "MissingParameter", "uploadId is required")
	}
	if _, aerr := s.bucketLocked(bucketName); aerr != nil {
		return nil, aerr
	}
	u := s.uploads[id]
	if u == nil || u.bucket != bucketName || u.object != object {
		return nil, errorf(404, "NoSuchUpload", "The upload with id '%s' does not exist for object '%s' in bucket '%s'", id, object, bucketName)
	}
	return u, nil
}

func (s *Server) uploadPart(w http.ResponseWriter, r *http.Request, bucketName, name string) *apiError {
	num, err := strconv.Atoi(r.URL.Query().Get("uploadPartNum"))
	if err != nil || num < 1 || num > 10000 {
		return errorf(400, "InvalidParameter", "uploadPartNum must be between 1 and 10000")
	}
	s.mu.Lock()
	u, aerr := s.uploadFor(r, bucketName, name)
	var algo string
	if u != nil {
		algo = u.algo
	}
	s.mu.Unlock()
	if aerr != nil {
		return aerr
	}
	if a, aerr := checksumAlgorithm(r); aerr != nil {
		return aerr
	} else if a != "" {
		algo = a
	}
	ref, h, aerr := s.receiveBody(r, algo)
	if aerr != nil {
		return aerr
	}
	p := &part{num: num, etag: newID(), size: h.n, md5: h.md5B64(), crc: h.crc.Sum32(), sha256: h.sha256B64(), blob: ref, at: time.Now().UTC()}
	s.mu.Lock()
	u, aerr = s.uploadFor(r, bucketName, name)
	if aerr != nil {
		s.mu.Unlock()
		s.blobs.remove(ref)
		return aerr
	}
	old := u.parts[num]
	u.parts[num] = p
	s.mu.Unlock()
	if old != nil {
		s.blobs.remove(old.blob)
	}
	hd := w.Header()
	hd.Set("ETag", p.etag)
	hd.Set("opc-content-md5", p.md5)
	switch algo {
	case "CRC32C":
		hd.Set("opc-content-crc32c", crcB64(p.crc))
	case "SHA256":
		hd.Set("opc-content-sha256", p.sha256)
	}
	w.WriteHeader(200)
	return nil
}

func (s *Server) commitMultipart(w http.ResponseWriter, r *http.Request, bucketName, name string) *apiError {
	var d struct {
		PartsToCommit []struct {
			PartNum int    `json:"partNum"`
			ETag    string `json:"etag"`
		} `json:"partsToCommit"`
		PartsToExclude []int `json:"partsToExclude"`
	}
	if err := json.NewDecoder(r.Body).Decode(&d); err != nil {
		return errorf(400, "InvalidParameter", "malformed CommitMultipartUploadDetails: %v", err)
	}
	if len(d.PartsToCommit) == 0 {
		return errorf(400, "InvalidParameter", "partsToCommit is empty")
	}
	s.mu.Lock()
	u, aerr := s.uploadFor(r, bucketName, name)
	if aerr != nil {
		s.mu.Unlock()
		return aerr
	}
	listed := map[int]bool{}
	var parts []*part
	for _, pc := range d.PartsToCommit {
		p := u.parts[pc.PartNum]
		if p == nil || p.etag != pc.ETag {
			s.mu.Unlock()
			return errorf(400, "InvalidUploadPart", "part %d with ETag '%s' was not uploaded in upload '%s'", pc.PartNum, pc.ETag, u.id)
		}
		if listed[pc.PartNum] {
			s.mu.Unlock()
			return errorf(400, "InvalidParameter", "part %d is listed twice", pc.PartNum)
		}
		listed[pc.PartNum] = true
		parts = append(parts, p)
	}
	excluded := map[int]bool{}
	for _, n := range d.PartsToExclude {
		excluded[n] = true
	}
	for n := range u.parts {
		if !listed[n] && !excluded[n] {
			s.mu.Unlock()
			return errorf(400, "InvalidParameter", "part %d was uploaded but is neither in partsToCommit nor in partsToExclude", n)
		}
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].num < parts[j].num })
	for i, p := range parts[:len(parts)-1] {
		if p.size < s.minPart {
			s.mu.Unlock()
			return errorf(400, "InvalidParameter", "part %d (#%d of %d) has %d bytes; every part but the last must have at least %d", p.num, i+1, len(parts), p.size, s.minPart)
		}
	}
	b := s.buckets[bucketName]
	if aerr := checkWriteConditions(r, b.current(name)); aerr != nil {
		s.mu.Unlock()
		return aerr
	}
	refs := make([]blobRef, len(parts))
	for i, p := range parts {
		refs[i] = p.blob
	}
	// Take the upload out while the bytes are assembled: a concurrent commit or
	// abort of the same upload finds nothing.
	delete(s.uploads, u.id)
	s.mu.Unlock()

	ref, err := s.blobs.concat(refs)
	if err != nil {
		s.mu.Lock()
		s.uploads[u.id] = u
		s.mu.Unlock()
		return errorf(500, "InternalServerError", "assembling the object: %v", err)
	}
	// The whole-object CRC32C is computed from the assembled bytes; the multipart
	// MD5 from the parts' MD5s, as OCI does.
	crc := crc32.New(castagnoli)
	var size int64
	if rc, err := s.blobs.open(ref); err == nil {
		size, err = io.Copy(crc, rc)
		rc.Close()
		if err != nil {
			s.blobs.remove(ref)
			return errorf(500, "InternalServerError", "reading the assembled object: %v", err)
		}
	} else {
		s.blobs.remove(ref)
		return errorf(500, "InternalServerError", "reading the assembled object: %v", err)
	}
	mm, ms := md5.New(), sha256.New()
	for _, p := range parts {
		raw, _ := base64.StdEncoding.DecodeString(p.md5)
		mm.Write(raw)
		if p.sha256 != "" {
			raw, _ := base64.StdEncoding.DecodeString(p.sha256)
			ms.Write(raw)
		}
	}
	now := time.Now().UTC()
	v := &version{ID: newID(), ETag: newID(), Size: size,
		MultipartMD5: fmt.Sprintf("%s-%d", b64(mm.Sum(nil)), len(parts)), CRC32C: crcB64(crc.Sum32()),
		Meta: u.meta, ContentType: u.contentType, ContentLang: u.contentLang, ContentEnc: u.contentEnc,
		ContentDisp: u.contentDisp, CacheControl: u.cacheControl, KMSKeyID: u.kms, Created: now, Modified: now, Blob: ref}
	if len(v.Meta) == 0 {
		v.Meta = nil
	}
	if u.algo == "SHA256" {
		v.MultiSHA256 = fmt.Sprintf("%s-%d", b64(ms.Sum(nil)), len(parts))
	}
	if v.ContentType == "" {
		v.ContentType = "application/octet-stream"
	}

	s.mu.Lock()
	b, aerr = s.bucketLocked(bucketName)
	if aerr == nil {
		aerr = checkWriteConditions(r, b.current(name))
	}
	if aerr != nil {
		s.uploads[u.id] = u
		s.mu.Unlock()
		s.blobs.remove(ref)
		return aerr
	}
	drop := s.install(b, name, v)
	s.mu.Unlock()
	s.dropBlobs(drop)
	for _, p := range u.parts {
		s.blobs.remove(p.blob)
	}

	hd := w.Header()
	hd.Set("ETag", v.ETag)
	hd.Set("Last-Modified", v.Modified.Format(http.TimeFormat))
	hd.Set("opc-multipart-md5", v.MultipartMD5)
	hd.Set("opc-content-crc32c", v.CRC32C)
	if v.MultiSHA256 != "" {
		hd.Set("opc-multipart-sha256", v.MultiSHA256)
	}
	hd.Set("version-id", v.ID)
	w.WriteHeader(200)
	return nil
}

func (s *Server) abortMultipart(w http.ResponseWriter, r *http.Request, bucketName, name string) *apiError {
	s.mu.Lock()
	u, aerr := s.uploadFor(r, bucketName, name)
	if aerr != nil {
		s.mu.Unlock()
		return aerr
	}
	delete(s.uploads, u.id)
	s.mu.Unlock()
	for _, p := range u.parts {
		s.blobs.remove(p.blob)
	}
	w.WriteHeader(204)
	return nil
}

// pageParams reads limit and an integer page token.
func pageParams(r *http.Request) (limit, from int, aerr *apiError) {
	limit = 1000
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return 0, 0, errorf(400, "InvalidParameter", "limit must be between 1 and 1000")
		}
		limit = n
	}
	if p := r.URL.Query().Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return 0, 0, errorf(400, "InvalidParameter", "malformed page token")
		}
		from = n
	}
	return limit, from, nil
}

func (s *Server) listParts(w http.ResponseWriter, r *http.Request, bucketName, name string) *apiError {
	limit, from, aerr := pageParams(r)
	if aerr != nil {
		return aerr
	}
	s.mu.Lock()
	u, aerr := s.uploadFor(r, bucketName, name)
	if aerr != nil {
		s.mu.Unlock()
		return aerr
	}
	type partJSON struct {
		ETag       string `json:"etag"`
		MD5        string `json:"md5"`
		Size       int64  `json:"size"`
		PartNumber int    `json:"partNumber"`
	}
	nums := make([]int, 0, len(u.parts))
	for n := range u.parts {
		if n >= from {
			nums = append(nums, n)
		}
	}
	sort.Ints(nums)
	out := []partJSON{}
	for i, n := range nums {
		if i == limit {
			w.Header().Set("opc-next-page", strconv.Itoa(n))
			break
		}
		p := u.parts[n]
		out = append(out, partJSON{p.etag, p.md5, p.size, p.num})
	}
	s.mu.Unlock()
	writeJSON(w, 200, out)
	return nil
}

func (s *Server) listMultipartUploads(w http.ResponseWriter, r *http.Request, bucketName string) *apiError {
	limit, from, aerr := pageParams(r)
	if aerr != nil {
		return aerr
	}
	s.mu.Lock()
	if _, aerr := s.bucketLocked(bucketName); aerr != nil {
		s.mu.Unlock()
		return aerr
	}
	var all []*upload
	for _, u := range s.uploads {
		if u.bucket == bucketName {
			all = append(all, u)
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].object != all[j].object {
			return all[i].object < all[j].object
		}
		return all[i].id < all[j].id
	})
	out := []multipartUploadJSON{}
	for i := from; i < len(all); i++ {
		if len(out) == limit {
			w.Header().Set("opc-next-page", strconv.Itoa(i))
			break
		}
		out = append(out, s.uploadJSON(all[i]))
	}
	s.mu.Unlock()
	writeJSON(w, 200, out)
	return nil
}
