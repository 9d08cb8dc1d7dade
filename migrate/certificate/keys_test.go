package certificate

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestGenerateKeyPair(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	privPath, pubPath, keyID, err := GenerateKeyPair(dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(privPath) != PrivateKeyFile || filepath.Base(pubPath) != PublicKeyFile {
		t.Errorf("paths %s %s", privPath, pubPath)
	}
	if runtime.GOOS != "windows" {
		for p, want := range map[string]os.FileMode{privPath: 0o600, pubPath: 0o644} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != want&^umask() {
				t.Errorf("%s: mode %04o, want %04o", p, fi.Mode().Perm(), want)
			}
		}
	}
	priv, err := LoadPrivateKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(priv.Public()) {
		t.Error("the public key is not the private key's")
	}
	// keyid: hex SHA-256 of the PKIX DER, computed independently here.
	b, _ := os.ReadFile(pubPath)
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("public key PEM: %q", b)
	}
	sum := sha256.Sum256(block.Bytes)
	if keyID != hex.EncodeToString(sum[:]) || KeyID(pub) != keyID {
		t.Errorf("keyid %s, want %x", keyID, sum)
	}
	pb, _ := os.ReadFile(privPath)
	if pblock, _ := pem.Decode(pb); pblock == nil || pblock.Type != "PRIVATE KEY" {
		t.Errorf("private key PEM type")
	} else if k, err := x509.ParsePKCS8PrivateKey(pblock.Bytes); err != nil || !priv.Equal(k) {
		t.Errorf("not PKCS#8: %v", err)
	}

	// Never overwrite: the pair, or either half.
	if _, _, _, err := GenerateKeyPair(dir); !errors.Is(err, ErrKeyExists) {
		t.Errorf("second generate: %v", err)
	}
	if err := os.Remove(privPath); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := GenerateKeyPair(dir); !errors.Is(err, ErrKeyExists) {
		t.Errorf("generate over an existing public key: %v", err)
	}
	if _, err := os.Stat(privPath); err == nil {
		t.Error("a private key was written although the public key exists")
	}
	after, _ := os.ReadFile(pubPath)
	if string(after) != string(b) {
		t.Error("the public key was overwritten")
	}
}

func umask() os.FileMode {
	dir, _ := os.MkdirTemp("", "umask")
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "f")
	f, _ := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o777)
	f.Close()
	fi, _ := os.Stat(p)
	return 0o777 &^ fi.Mode().Perm()
}

func TestLoadPrivateKeyMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Log("file modes are not checked on windows")
		return
	}
	dir := t.TempDir()
	b, err := MarshalPrivateKeyPEM(testKey(9))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "k.key")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o602} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadPrivateKey(p)
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadPrivateKey(p); err != nil {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
}

func TestKeyParsersErrors(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(randReader{}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), randReader{})
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	rsaPubDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	ecPubDER, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	edPriv, _ := MarshalPrivateKeyPEM(testKey(3))
	edPub, _ := MarshalPublicKeyPEM(pubOf(testKey(3)))
	enc := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	withHeader := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: rsaDER})

	privCases := map[string]struct {
		in   []byte
		want string
	}{
		"empty":            {nil, "no PEM block"},
		"garbage":          {[]byte("hello"), "no PEM block"},
		"rsa":              {enc("PRIVATE KEY", rsaDER), "RSA, not Ed25519"},
		"ecdsa":            {enc("PRIVATE KEY", ecDER), "ECDSA, not Ed25519"},
		"public as priv":   {edPub, "public key"},
		"encrypted":        {enc("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), "encrypted"},
		"openssh":          {enc("OPENSSH PRIVATE KEY", []byte{1, 2, 3}), "OpenSSH"},
		"pkcs1":            {enc("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), `"RSA PRIVATE KEY"`},
		"bad der":          {enc("PRIVATE KEY", []byte{0x30, 0x03, 1, 2, 3}), "not a valid PKCS#8"},
		"two blocks":       {append(append([]byte{}, edPriv...), edPriv...), "exactly one"},
		"headers":          {withHeader, "headers"},
		"truncated base64": {edPriv[:len(edPriv)-30], "no PEM block"},
	}
	for name, c := range privCases {
		_, err := ParsePrivateKeyPEM(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("private %s: %v, want an error containing %q", name, err, c.want)
			continue
		}
		assertNoKeyMaterial(t, err, c.in)
	}
	pubCases := map[string]struct {
		in   []byte
		want string
	}{
		"empty":        {nil, "no PEM block"},
		"rsa":          {enc("PUBLIC KEY", rsaPubDER), "RSA, not Ed25519"},
		"ecdsa":        {enc("PUBLIC KEY", ecPubDER), "ECDSA, not Ed25519"},
		"private":      {edPriv, "private key, not a public key"},
		"certificate":  {enc("CERTIFICATE", []byte{1}), `"CERTIFICATE"`},
		"bad der":      {enc("PUBLIC KEY", []byte{1, 2, 3}), "not a valid PKIX"},
		"trailing pem": {append(append([]byte{}, edPub...), edPub...), "exactly one"},
	}
	for name, c := range pubCases {
		_, err := ParsePublicKeyPEM(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("public %s: %v, want an error containing %q", name, err, c.want)
		}
	}
	// Good keys, with surrounding whitespace.
	if k, err := ParsePrivateKeyPEM(append([]byte("\n\n"), edPriv...)); err != nil || !k.Equal(testKey(3)) {
		t.Errorf("good private key: %v", err)
	}
	if k, err := ParsePublicKeyPEM(append(edPub, "  \n"...)); err != nil || !k.Equal(pubOf(testKey(3))) {
		t.Errorf("good public key: %v", err)
	}
	// Loading an Ed25519 private key file through LoadPublicKey, and vice versa, names the mix-up.
	dir := t.TempDir()
	p := filepath.Join(dir, "ferry.key")
	os.WriteFile(p, edPriv, 0o600)
	if _, err := LoadPublicKey(p); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Errorf("LoadPublicKey(private): %v", err)
	} else {
		assertNoKeyMaterial(t, err, edPriv)
	}
	if _, err := LoadPrivateKey(filepath.Join(dir, "missing.key")); err == nil {
		t.Error("missing file loaded")
	}
}

// assertNoKeyMaterial fails if err's text contains any 12-character run of the PEM body
// or any 8 bytes of the DER in hex.
func assertNoKeyMaterial(t *testing.T, err error, pemBytes []byte) {
	t.Helper()
	msg := err.Error()
	for _, line := range strings.Split(string(pemBytes), "\n") {
		if strings.HasPrefix(line, "-----") || len(line) < 12 {
			continue
		}
		for i := 0; i+12 <= len(line); i += 6 {
			if strings.Contains(msg, line[i:i+12]) {
				t.Fatalf("error %q contains key material", msg)
			}
		}
	}
	if b, _ := pem.Decode(pemBytes); b != nil {
		h := hex.EncodeToString(b.Bytes)
		for i := 0; i+16 <= len(h); i += 8 {
			if strings.Contains(msg, h[i:i+16]) {
				t.Fatalf("error %q contains key material (hex)", msg)
			}
		}
	}
}

// randReader is a deterministic byte source for test keys (never for real keys).
type randReader struct{}

var randState uint64 = 0x9e3779b97f4a7c15

func (randReader) Read(p []byte) (int, error) {
	for i := range p {
		randState ^= randState << 13
		randState ^= randState >> 7
		randState ^= randState << 17
		p[i] = byte(randState)
	}
	return len(p), nil
}

func FuzzParsePrivateKeyPEM(f *testing.F) {
	b, _ := MarshalPrivateKeyPEM(testKey(4))
	f.Add(b)
	pb, _ := MarshalPublicKeyPEM(pubOf(testKey(4)))
	f.Add(pb)
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\n-----END ENCRYPTED PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		k, err := ParsePrivateKeyPEM(in)
		if err != nil {
			return
		}
		if len(k) != ed25519.PrivateKeySize {
			t.Fatalf("key of %d bytes", len(k))
		}
		out, err := MarshalPrivateKeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		k2, err := ParsePrivateKeyPEM(out)
		if err != nil || !k2.Equal(k) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzParsePublicKeyPEM(f *testing.F) {
	pb, _ := MarshalPublicKeyPEM(pubOf(testKey(5)))
	f.Add(pb)
	b, _ := MarshalPrivateKeyPEM(testKey(5))
	f.Add(b)
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		k, err := ParsePublicKeyPEM(in)
		if err != nil {
			return
		}
		out, err := MarshalPublicKeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		k2, err := ParsePublicKeyPEM(out)
		if err != nil || !k2.Equal(k) || KeyID(k2) != KeyID(k) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
