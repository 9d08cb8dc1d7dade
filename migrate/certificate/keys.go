package certificate

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// Key file names written by GenerateKeyPair.
const (
	PrivateKeyFile = "ferry.key"
	PublicKeyFile  = "ferry.pub"
)

// maxKeyFileBytes bounds what the key loaders read.
const maxKeyFileBytes = 64 << 10

// ErrKeyExists is returned by GenerateKeyPair when a key file is already there.
var ErrKeyExists = errors.New("key file already exists")

// KeyID is the DSSE keyid of a public key: lowercase hex SHA-256 of its PKIX
// (SubjectPublicKeyInfo) DER encoding.
func KeyID(pub ed25519.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		// Only a malformed key (wrong length) gets here; give it an id no real key has.
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// MarshalPrivateKeyPEM encodes key as a PKCS#8 PEM block of type "PRIVATE KEY".
func MarshalPrivateKeyPEM(key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("not an Ed25519 private key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, errors.New("cannot encode the private key as PKCS#8")
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKeyPEM encodes pub as a PKIX PEM block of type "PUBLIC KEY".
func MarshalPublicKeyPEM(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("not an Ed25519 public key")
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("cannot encode the public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// GenerateKeyPair creates dir if needed and writes a new Ed25519 key pair there:
// ferry.key (PKCS#8 PEM, mode 0600) and ferry.pub (PKIX PEM, mode 0644). It refuses, with
// an error wrapping ErrKeyExists, if either file exists, and never overwrites anything.
func GenerateKeyPair(dir string) (privPath, pubPath, keyID string, err error) {
	privPath = filepath.Join(dir, PrivateKeyFile)
	pubPath = filepath.Join(dir, PublicKeyFile)
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", "", fmt.Errorf("%w: %s (remove it first, or choose another --out)", ErrKeyExists, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", "", "", err
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", "", fmt.Errorf("generating the key: %w", err)
	}
	privPEM, err := MarshalPrivateKeyPEM(priv)
	if err != nil {
		return "", "", "", err
	}
	pubPEM, err := MarshalPublicKeyPEM(pub)
	if err != nil {
		return "", "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", "", err
	}
	if err := writeNew(privPath, privPEM, 0o600); err != nil {
		return "", "", "", err
	}
	if err := writeNew(pubPath, pubPEM, 0o644); err != nil {
		os.Remove(privPath) // leave no half pair behind
		return "", "", "", err
	}
	return privPath, pubPath, KeyID(pub), nil
}

// writeNew creates path exclusively (O_EXCL: never follows or replaces an existing file)
// with mode perm, writes b and syncs it.
func writeNew(path string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrKeyExists, path)
		}
		return err
	}
	if err := f.Chmod(perm); err != nil { // the umask may have narrowed it; never widened
		f.Close()
		os.Remove(path)
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

func readKeyFile(path string) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	if fi.Size() > maxKeyFileBytes {
		return nil, nil, fmt.Errorf("key file %s is too large (%d bytes) to be a key", path, fi.Size())
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), fi, nil
}

// LoadPrivateKey reads a PKCS#8 PEM Ed25519 private key. On unix a file that the group or
// others may read or write is refused (chmod 600 it). Errors never contain key material.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, fi, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	if runtime.GOOS != "windows" && runtime.GOOS != "plan9" {
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return nil, fmt.Errorf("private key %s has mode %04o: group or others can access it; run chmod 600 %s", path, perm, path)
		}
	}
	key, err := ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// LoadPublicKey reads a PKIX PEM Ed25519 public key.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, _, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	key, err := ParsePublicKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// onePEMBlock decodes exactly one PEM block with no PEM headers and nothing but
// whitespace around it.
func onePEMBlock(b []byte, what string) (*pem.Block, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("no PEM block found: not a PEM %s", what)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("unexpected data after the PEM block: expected exactly one %s", what)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("PEM block has headers (legacy encrypted PEM?): not a plain PKCS#8/PKIX %s", what)
	}
	return block, nil
}

func keyTypeName(k any) string {
	switch k.(type) {
	case *rsa.PrivateKey, *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PrivateKey, *ecdsa.PublicKey:
		return "ECDSA"
	case *ecdh.PrivateKey, *ecdh.PublicKey:
		return "X25519 (ECDH, not a signing key)"
	default:
		return fmt.Sprintf("%T", k)
	}
}

// ParsePrivateKeyPEM parses one PEM block of type "PRIVATE KEY" holding a PKCS#8 Ed25519
// key. Errors name the problem (encrypted, wrong PEM type, RSA instead of Ed25519, ...)
// but never echo key bytes.
func ParsePrivateKeyPEM(b []byte) (ed25519.PrivateKey, error) {
	block, err := onePEMBlock(b, "private key")
	if err != nil {
		return nil, err
	}
	switch block.Type {
	case "PRIVATE KEY":
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("the private key is encrypted (PKCS#8 ENCRYPTED PRIVATE KEY); ferry needs an unencrypted PKCS#8 Ed25519 key with file mode 0600")
	case "OPENSSH PRIVATE KEY":
		return nil, errors.New(`this is an OpenSSH private key; ferry needs PKCS#8 PEM ("PRIVATE KEY"): use ferry keys generate`)
	case "PUBLIC KEY":
		return nil, errors.New("this is a public key (PEM type PUBLIC KEY), not a private key")
	default:
		return nil, fmt.Errorf("PEM type %q is not \"PRIVATE KEY\" (PKCS#8)", truncate(block.Type, 40))
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		// The parser's message is not echoed: it is about the key's bytes.
		return nil, errors.New("the PEM block is not a valid PKCS#8 private key")
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the private key is %s, not Ed25519", keyTypeName(k))
	}
	return key, nil
}

// ParsePublicKeyPEM parses one PEM block of type "PUBLIC KEY" holding a PKIX Ed25519 key.
func ParsePublicKeyPEM(b []byte) (ed25519.PublicKey, error) {
	block, err := onePEMBlock(b, "public key")
	if err != nil {
		return nil, err
	}
	switch block.Type {
	case "PUBLIC KEY":
	case "PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "OPENSSH PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
		return nil, errors.New("this is a private key, not a public key: pass the .pub file (and keep the private key secret)")
	default:
		return nil, fmt.Errorf("PEM type %q is not \"PUBLIC KEY\" (PKIX)", truncate(block.Type, 40))
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the PEM block is not a valid PKIX public key: %v", err)
	}
	key, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("the public key is %s, not Ed25519", keyTypeName(k))
	}
	return key, nil
}

// publicKeyFromDER decodes a PKIX DER Ed25519 public key (a Party's public_key).
func publicKeyFromDER(der []byte) (ed25519.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a valid PKIX public key: %v", err)
	}
	key, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("the public key is %s, not Ed25519", keyTypeName(k))
	}
	return key, nil
}
