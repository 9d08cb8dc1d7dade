package ocitest

import (
	"bytes"
	"crypto"
	"crypto/md5"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// maxSignedBody bounds the JSON bodies whose hash the emulator checks.
const maxSignedBody = 8 << 20

type publicKey struct {
	key         *rsa.PublicKey
	fingerprint string
}

// Fingerprint returns the OCI fingerprint of an RSA public key: the MD5 of its PKIX
// DER encoding, as colon-separated lowercase hex pairs (what the OCI config file's
// fingerprint line holds and what the console shows).
func Fingerprint(pub *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	sum := md5.Sum(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02x", b)
	}
	return strings.Join(parts, ":")
}

// ParsePublicKeyPEM reads an RSA public key from PEM: PKIX "PUBLIC KEY", PKCS#1
// "RSA PUBLIC KEY", or the public half of a PKCS#1 or PKCS#8 private key.
func ParsePublicKeyPEM(data []byte) (*rsa.PublicKey, error) {
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			return nil, errors.New("no RSA key found in PEM data")
		}
		switch blk.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				return nil, err
			}
			rk, ok := k.(*rsa.PublicKey)
			if !ok {
				return nil, fmt.Errorf("public key is %T, not RSA", k)
			}
			return rk, nil
		case "RSA PUBLIC KEY":
			return x509.ParsePKCS1PublicKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
			if err != nil {
				return nil, err
			}
			return &k.PublicKey, nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, err
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("private key is %T, not RSA", k)
			}
			return &rk.PublicKey, nil
		}
	}
}

// AddPublicKey accepts signatures made with the key in pemBytes for keyID ("*": any
// keyId whose fingerprint part matches the key).
func (s *Server) AddPublicKey(keyID string, pemBytes []byte) error {
	k, err := ParsePublicKeyPEM(pemBytes)
	if err != nil {
		return fmt.Errorf("ocitest: public key for %q: %w", keyID, err)
	}
	pk := &publicKey{key: k, fingerprint: Fingerprint(k)}
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if keyID == "*" || keyID == "" {
		s.anyKeys[pk.fingerprint] = pk
	} else {
		s.keys[keyID] = pk
	}
	return nil
}

// RemovePublicKey stops accepting keyID ("*" entries are removed by fingerprint).
func (s *Server) RemovePublicKey(keyID string) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	delete(s.keys, keyID)
	delete(s.anyKeys, keyID)
}

func (s *Server) lookupKey(keyID string) *publicKey {
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	if k, ok := s.keys[keyID]; ok {
		return k
	}
	if i := strings.LastIndexByte(keyID, '/'); i >= 0 {
		if k, ok := s.anyKeys[keyID[i+1:]]; ok {
			return k
		}
	}
	return nil
}

// unsignedBodyOps may leave the body out of the signature (the SDK signs PutObject
// and UploadPart without content-length, content-type and x-content-sha256).
var unsignedBodyOps = map[string]bool{"PutObject": true, "UploadPart": true}

func notAuthenticated(format string, args ...any) *apiError {
	return &apiError{status: 401, code: "NotAuthenticated",
		message: "The required information to complete authentication was not provided or was incorrect: " + fmt.Sprintf(format, args...)}
}

// parseAuthorization splits `Signature k="v",k="v"` into its parameters.
func parseAuthorization(h string) (map[string]string, error) {
	rest, ok := strings.CutPrefix(h, "Signature ")
	if !ok {
		return nil, errors.New(`authorization scheme is not "Signature"`)
	}
	params := map[string]string{}
	rest = strings.TrimSpace(rest)
	for rest != "" {
		name, after, ok := strings.Cut(rest, "=")
		if !ok {
			return nil, errors.New("malformed signature parameters")
		}
		name = strings.TrimSpace(name)
		if !strings.HasPrefix(after, `"`) {
			return nil, fmt.Errorf("signature parameter %s is not quoted", name)
		}
		end := strings.IndexByte(after[1:], '"')
		if end < 0 {
			return nil, fmt.Errorf("signature parameter %s is not terminated", name)
		}
		params[name] = after[1 : 1+end]
		rest = strings.TrimSpace(after[2+end:])
		rest = strings.TrimPrefix(rest, ",")
		rest = strings.TrimSpace(rest)
	}
	return params, nil
}

// authenticate verifies the request's signature. For signed bodies it reads the
// body, checks x-content-sha256 and puts the bytes back.
func (s *Server) authenticate(r *http.Request, op string) *apiError {
	h := r.Header.Get("Authorization")
	if h == "" {
		return notAuthenticated("the request is not signed (no Authorization header)")
	}
	p, err := parseAuthorization(h)
	if err != nil {
		return notAuthenticated("%v", err)
	}
	if v := p["version"]; v != "1" {
		return notAuthenticated("unsupported signature version %q", v)
	}
	if a := p["algorithm"]; a != "rsa-sha256" {
		return notAuthenticated("unsupported signature algorithm %q", a)
	}
	keyID := p["keyId"]
	if keyID == "" {
		return notAuthenticated("no keyId")
	}
	headers := strings.Fields(strings.ToLower(p["headers"]))
	if len(headers) == 0 {
		headers = []string{"date"}
	}
	need := []string{"(request-target)", "host"}
	dateHeader := "date"
	if slices.Contains(headers, "x-date") {
		dateHeader = "x-date"
	}
	need = append(need, dateHeader)
	bodySigned := false
	if (r.Method == http.MethodPut || r.Method == http.MethodPost || r.Method == http.MethodPatch) && !unsignedBodyOps[op] {
		need = append(need, "content-length", "content-type", "x-content-sha256")
		bodySigned = true
	}
	for _, n := range need {
		if !slices.Contains(headers, n) {
			return notAuthenticated("the signature does not cover the required header %q", n)
		}
	}
	if s.skew > 0 {
		d, err := http.ParseTime(r.Header.Get(dateHeader))
		if err != nil {
			return notAuthenticated("bad %s header %q", dateHeader, r.Header.Get(dateHeader))
		}
		if diff := time.Since(d); diff > s.skew || diff < -s.skew {
			return notAuthenticated("the %s header is %s away from the server's clock", dateHeader, diff.Round(time.Second))
		}
	}
	sig, err := base64.StdEncoding.DecodeString(p["signature"])
	if err != nil || len(sig) == 0 {
		return notAuthenticated("malformed signature")
	}
	key := s.lookupKey(keyID)
	if key == nil {
		return notAuthenticated("unknown keyId %q", keyID)
	}
	lines := make([]string, len(headers))
	for i, name := range headers {
		var v string
		switch name {
		case "(request-target)":
			v = strings.ToLower(r.Method) + " " + r.RequestURI
		case "host":
			v = r.Host
		case "content-length":
			v = r.Header.Get("Content-Length")
			if v == "" && r.ContentLength >= 0 {
				v = fmt.Sprint(r.ContentLength)
			}
		default:
			v = r.Header.Get(name)
		}
		lines[i] = name + ": " + v
	}
	digest := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	if err := rsa.VerifyPKCS1v15(key.key, crypto.SHA256, digest[:], sig); err != nil {
		if rsa.VerifyPSS(key.key, crypto.SHA256, digest[:], sig, nil) != nil {
			return notAuthenticated("the signature does not verify with the key for %q", keyID)
		}
	}
	if bodySigned {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxSignedBody+1))
		if err != nil {
			return errorf(400, "InvalidParameter", "reading the request body: %v", err)
		}
		if len(body) > maxSignedBody {
			return errorf(400, "InvalidParameter", "request body too large")
		}
		sum := sha256.Sum256(body)
		if got := base64.StdEncoding.EncodeToString(sum[:]); got != r.Header.Get("x-content-sha256") {
			return notAuthenticated("x-content-sha256 does not match the body")
		}
		if cl := r.Header.Get("Content-Length"); cl != "" && cl != fmt.Sprint(len(body)) {
			return notAuthenticated("content-length does not match the body")
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	return nil
}
