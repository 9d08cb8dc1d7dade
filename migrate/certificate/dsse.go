package certificate

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PayloadType is the DSSE payload type of an in-toto Statement.
const PayloadType = "application/vnd.in-toto+json"

// maxEnvelopeBytes bounds certificate.json when reading.
const maxEnvelopeBytes = 64 << 20

// ErrDuplicateSigner is returned by AddSignature when the key has already signed.
var ErrDuplicateSigner = errors.New("this key has already signed the certificate")

// ErrNotApprover is returned by AddSignature for a key the certificate does not declare
// as an approver: its signature would make the certificate fail verification.
var ErrNotApprover = errors.New("the key is not a declared approver of this certificate")

// Envelope is a DSSE envelope (https://github.com/secure-systems-lab/dsse, envelope.md).
// Payload and each Sig are standard base64 with padding.
type Envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     string      `json:"payload"`
	Signatures  []Signature `json:"signatures"`
}

// Signature is one DSSE signature: only the two fields DSSE defines. Who the keyid
// belongs to is stated inside the signed payload (Predicate.Signer and Approvers), never
// next to the signature, where anyone could edit it.
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// PAE is the DSSE v1 pre-authentication encoding that is signed:
// "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in ASCII decimal.
func PAE(payloadType string, payload []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(payloadType) + len(payload) + 32)
	b.WriteString("DSSEv1 ")
	b.WriteString(strconv.Itoa(len(payloadType)))
	b.WriteByte(' ')
	b.WriteString(payloadType)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(payload)))
	b.WriteByte(' ')
	b.Write(payload)
	return b.Bytes()
}

// Sign encodes stmt canonically (RFC 8785) as the payload and signs it with key. It fills
// Predicate.Signer's KeyID and PublicKey from key when they are empty, and refuses a key
// that does not match them. The statement must be complete (see NewStatement, Finalize).
func Sign(stmt Statement, key ed25519.PrivateKey) (*Envelope, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("sign: not an Ed25519 private key")
	}
	pub := key.Public().(ed25519.PublicKey)
	me, err := PartyForKey(stmt.Predicate.Signer.Name, pub)
	if err != nil {
		return nil, err
	}
	s := &stmt.Predicate.Signer
	if s.KeyID == "" && s.PublicKey == "" {
		s.KeyID, s.PublicKey = me.KeyID, me.PublicKey
	} else if s.KeyID != me.KeyID || s.PublicKey != me.PublicKey {
		return nil, fmt.Errorf("sign: the key (keyid %s) is not the signer's declared in the predicate (keyid %s)", me.KeyID, truncate(s.KeyID, 64))
	}
	if err := stmt.validate(); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if _, _, err := stmt.Predicate.declaredKeys(); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	payload, err := Canonicalize(stmt)
	if err != nil {
		return nil, fmt.Errorf("sign: encoding the statement: %w", err)
	}
	sig := ed25519.Sign(key, PAE(PayloadType, payload))
	return &Envelope{
		PayloadType: PayloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  []Signature{{KeyID: me.KeyID, Sig: base64.StdEncoding.EncodeToString(sig)}},
	}, nil
}

// AddSignature adds key's signature (an approver's countersignature) to env. Only a key
// the signed predicate declares as an approver may sign (ErrNotApprover otherwise: the
// approvers come from the spec's report.approvers, and a signature by any other key
// would leave a certificate that no longer verifies). It refuses a key that has already
// signed (ErrDuplicateSigner), a payload that is not a valid certificate, and an envelope
// with a signature that is not by a declared key or does not verify: an approver never
// countersigns a tampered certificate.
func AddSignature(env *Envelope, key ed25519.PrivateKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return errors.New("add signature: not an Ed25519 private key")
	}
	payload, stmt, err := env.Statement()
	if err != nil {
		return fmt.Errorf("add signature: %w", err)
	}
	keyID := KeyID(key.Public().(ed25519.PublicKey))
	for _, s := range env.Signatures {
		if s.KeyID == keyID {
			return fmt.Errorf("add signature: %w (keyid %s)", ErrDuplicateSigner, keyID)
		}
	}
	declared, _, err := stmt.Predicate.declaredKeys()
	if err != nil {
		return fmt.Errorf("add signature: %w", err)
	}
	approver := false
	var names []string
	for _, a := range stmt.Predicate.Approvers {
		approver = approver || a.KeyID == keyID
		names = append(names, fmt.Sprintf("%s (keyid %s)", a.Name, a.KeyID))
	}
	if !approver {
		if keyID == stmt.Predicate.Signer.KeyID {
			return fmt.Errorf("add signature: %w (keyid %s)", ErrDuplicateSigner, keyID)
		}
		if len(names) == 0 {
			return fmt.Errorf("add signature: %w: keyid %s; the certificate declares no approvers (name them in the spec's report.approvers and run ferry report again)", ErrNotApprover, keyID)
		}
		return fmt.Errorf("add signature: %w: keyid %s; declared approvers: %s", ErrNotApprover, keyID, strings.Join(names, ", "))
	}
	pae := PAE(env.PayloadType, payload)
	for _, s := range env.Signatures {
		pub, ok := declared[s.KeyID]
		if !ok {
			return fmt.Errorf("add signature: the certificate already carries a signature by keyid %s, which it does not declare: it does not verify; refusing to countersign", s.KeyID)
		}
		sig, err := base64.StdEncoding.Strict().DecodeString(s.Sig)
		if err != nil || !ed25519.Verify(pub, pae, sig) {
			return fmt.Errorf("add signature: the existing signature by keyid %s does not verify: refusing to countersign", s.KeyID)
		}
	}
	sig := ed25519.Sign(key, pae)
	env.Signatures = append(env.Signatures, Signature{KeyID: keyID, Sig: base64.StdEncoding.EncodeToString(sig)})
	return nil
}

// Statement decodes and checks the payload: the payload type, canonical JSON, the
// Statement's shape and the predicate. It returns the raw payload too.
func (e *Envelope) Statement() ([]byte, Statement, error) {
	if e.PayloadType != PayloadType {
		return nil, Statement{}, fmt.Errorf("payloadType is %q, not %q", truncate(e.PayloadType, 80), PayloadType)
	}
	payload, err := base64.StdEncoding.Strict().DecodeString(e.Payload)
	if err != nil {
		return nil, Statement{}, fmt.Errorf("payload is not standard base64: %v", err)
	}
	st, err := ParseStatement(payload)
	if err != nil {
		return nil, Statement{}, err
	}
	return payload, st, nil
}

// ParseStatement decodes a Statement strictly: canonical JSON (so no duplicate names, no
// alternative spellings that two parsers might read differently), no unknown fields,
// and a valid shape.
func ParseStatement(payload []byte) (Statement, error) {
	canon, err := CanonicalizeJSON(payload)
	if err != nil {
		return Statement{}, fmt.Errorf("statement: %w", err)
	}
	if !bytes.Equal(canon, payload) {
		return Statement{}, fmt.Errorf("statement: %w", ErrNotCanonical)
	}
	var st Statement
	if err := decodeStrict(payload, &st); err != nil {
		return Statement{}, fmt.Errorf("statement: %w", err)
	}
	if err := st.validate(); err != nil {
		return Statement{}, fmt.Errorf("statement: %w", err)
	}
	return st, nil
}

// decodeStrict decodes exactly one JSON value with unknown fields rejected.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// ParseEnvelope decodes certificate.json strictly: one JSON object with exactly the DSSE
// fields, standard base64, at least one signature, each with a keyid and a 64-byte sig.
// It does not verify anything; see VerifyCertificate.
func ParseEnvelope(b []byte) (*Envelope, error) {
	if _, err := CanonicalizeJSON(b); err != nil { // strict syntax, no duplicate names
		return nil, fmt.Errorf("certificate: %w", err)
	}
	var env Envelope
	if err := decodeStrict(b, &env); err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	if env.PayloadType == "" {
		return nil, errors.New("certificate: payloadType is missing")
	}
	if _, err := base64.StdEncoding.Strict().DecodeString(env.Payload); err != nil || env.Payload == "" {
		return nil, errors.New("certificate: payload is missing or not standard base64")
	}
	if len(env.Signatures) == 0 {
		return nil, errors.New("certificate: no signatures")
	}
	for i, s := range env.Signatures {
		if !isLowerHex(s.KeyID, 64) {
			return nil, fmt.Errorf("certificate: signatures[%d].keyid is not 64 lowercase hex digits", i)
		}
		sig, err := base64.StdEncoding.Strict().DecodeString(s.Sig)
		if err != nil || len(sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("certificate: signatures[%d].sig is not a base64 Ed25519 signature", i)
		}
	}
	return &env, nil
}

// ReadEnvelope reads and parses a certificate.json file.
func ReadEnvelope(path string) (*Envelope, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEnvelopeBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxEnvelopeBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes: not a certificate", path, maxEnvelopeBytes)
	}
	env, err := ParseEnvelope(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return env, nil
}

// MarshalEnvelope encodes env as indented JSON with a final newline (the signatures cover
// the payload bytes, not the envelope's formatting).
func MarshalEnvelope(env *Envelope) ([]byte, error) {
	b, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteEnvelope writes env to path atomically (a temporary file, synced, then renamed).
func WriteEnvelope(path string, env *Envelope) error {
	b, err := MarshalEnvelope(env)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b, 0o644)
}

// writeFileAtomic writes b to a temporary file beside path, syncs it and renames it over
// path, so readers see the old file or the whole new one.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	return writeAtomic(path, perm, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

func writeAtomic(path string, perm os.FileMode, fill func(io.Writer) error) error {
	tmp, err := writeTemp(path, perm, fill)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// writeTemp writes a synced temporary file beside path and returns its name; the
// caller renames it into place (or removes it).
func writeTemp(path string, perm os.FileMode, fill func(io.Writer) error) (tmp string, err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(name)
		}
	}()
	if err = fill(f); err != nil {
		return "", err
	}
	if err = f.Chmod(perm); err != nil {
		return "", err
	}
	if err = f.Sync(); err != nil {
		return "", err
	}
	if err = f.Close(); err != nil {
		return "", err
	}
	return name, nil
}
