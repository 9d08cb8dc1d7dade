package ocitest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferrymigrate/ferry/providers"
)

// TestRegion is the region Identity's config file names.
const TestRegion = "us-ashburn-1"

// Identity is an API signing key with the OCI config file that names it, as a
// user would have under ~/.oci: tests use it to sign requests to the emulator.
type Identity struct {
	Tenancy     string
	User        string
	Fingerprint string
	Region      string
	Key         *rsa.PrivateKey
	KeyFile     string // PEM (PKCS#8) private key, mode 0600
	ConfigFile  string // OCI config file with Profile pointing at KeyFile
	Profile     string
}

var identitySeq atomic.Int64

// NewIdentity generates a 2048-bit RSA key and writes it and a config file (profile
// DEFAULT) into a fresh directory of t.TempDir().
func NewIdentity(t testing.TB) *Identity {
	t.Helper()
	id, err := GenerateIdentity(t.TempDir(), "DEFAULT")
	if err != nil {
		t.Fatalf("ocitest: %v", err)
	}
	return id
}

// GenerateIdentity makes an Identity whose files live in dir.
func GenerateIdentity(dir, profile string) (*Identity, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	n := identitySeq.Add(1)
	id := &Identity{
		Tenancy:     fmt.Sprintf("ocid1.tenancy.oc1..emulatortenancy%d", n),
		User:        fmt.Sprintf("ocid1.user.oc1..emulatoruser%d", n),
		Fingerprint: Fingerprint(&key.PublicKey),
		Region:      TestRegion,
		Key:         key,
		Profile:     profile,
		KeyFile:     filepath.Join(dir, fmt.Sprintf("oci_api_key_%d.pem", n)),
		ConfigFile:  filepath.Join(dir, fmt.Sprintf("oci_config_%d", n)),
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(id.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(id.ConfigFile, []byte(id.ConfigText()), 0o600); err != nil {
		return nil, err
	}
	return id, nil
}

// ConfigText is the OCI config file section for the identity.
func (id *Identity) ConfigText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]\n", id.Profile)
	fmt.Fprintf(&b, "user=%s\n", id.User)
	fmt.Fprintf(&b, "fingerprint=%s\n", id.Fingerprint)
	fmt.Fprintf(&b, "tenancy=%s\n", id.Tenancy)
	fmt.Fprintf(&b, "region=%s\n", id.Region)
	fmt.Fprintf(&b, "key_file=%s\n", id.KeyFile)
	return b.String()
}

// KeyID is the keyId the SDK signs with: tenancy/user/fingerprint.
func (id *Identity) KeyID() string { return id.Tenancy + "/" + id.User + "/" + id.Fingerprint }

// PublicKeyPEM is the PKIX PEM public key, what a user uploads to OCI.
func (id *Identity) PublicKeyPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(&id.Key.PublicKey)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Trust makes the emulator accept the identity's signatures.
func (s *Server) Trust(id *Identity) {
	if err := s.AddPublicKey(id.KeyID(), id.PublicKeyPEM()); err != nil {
		panic(err)
	}
}

// StoreConfig returns a providers.Config that opens oci://namespace/bucket/prefix
// on this emulator, signing as id.
func (s *Server) StoreConfig(id *Identity, bucket, prefix string) providers.Config {
	return providers.Config{
		Name:     "ociemu",
		URL:      fmt.Sprintf("oci://%s/%s/%s", s.ns, bucket, prefix),
		Endpoint: s.URL,
		Region:   id.Region,
		Credentials: map[string]string{
			"oci_config_file": id.ConfigFile,
			"oci_profile":     id.Profile,
		},
	}
}
