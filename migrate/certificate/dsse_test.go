package certificate

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// The DSSE spec's example (protocol.md): PAE("http://example.com/HelloWorld", "hello world").
func TestPAE(t *testing.T) {
	got := string(PAE("http://example.com/HelloWorld", []byte("hello world")))
	want := "DSSEv1 29 http://example.com/HelloWorld 11 hello world"
	if got != want {
		t.Errorf("PAE = %q, want %q", got, want)
	}
	if string(dsse.PAE("http://example.com/HelloWorld", []byte("hello world"))) != got {
		t.Error("differs from go-securesystemslib's PAE")
	}
	if string(PAE("", nil)) != "DSSEv1 0  0 " {
		t.Errorf("empty PAE = %q", PAE("", nil))
	}
}

// ed25519Verifier adapts a public key to go-securesystemslib's dsse.Verifier.
type ed25519Verifier struct{ pub ed25519.PublicKey }

func (v ed25519Verifier) Verify(_ context.Context, data, sig []byte) error {
	if !ed25519.Verify(v.pub, data, sig) {
		return errors.New("ed25519: invalid signature")
	}
	return nil
}
func (v ed25519Verifier) KeyID() (string, error)   { return KeyID(v.pub), nil }
func (v ed25519Verifier) Public() crypto.PublicKey { return v.pub }

func toDSSE(env *Envelope) *dsse.Envelope {
	out := &dsse.Envelope{PayloadType: env.PayloadType, Payload: env.Payload}
	for _, s := range env.Signatures {
		out.Signatures = append(out.Signatures, dsse.Signature{KeyID: s.KeyID, Sig: s.Sig})
	}
	return out
}

// Our envelope verifies with an independent DSSE implementation, with one and with two
// signers, and a tampered payload does not.
func TestEnvelopeVerifiesWithSecureSystemsLib(t *testing.T) {
	operator, approver := testKey(1), testKey(2)
	env, _ := buildCert(t, exampleLines(10), examplePredicate(pubOf(approver)), operator)

	ev, err := dsse.NewEnvelopeVerifier(ed25519Verifier{pubOf(operator)})
	if err != nil {
		t.Fatal(err)
	}
	accepted, err := ev.Verify(context.Background(), toDSSE(env))
	if err != nil {
		t.Fatalf("go-securesystemslib rejects our envelope: %v", err)
	}
	if len(accepted) != 1 || accepted[0].KeyID != KeyID(pubOf(operator)) {
		t.Errorf("accepted %+v", accepted)
	}

	if err := AddSignature(env, approver); err != nil {
		t.Fatal(err)
	}
	ev2, err := dsse.NewMultiEnvelopeVerifier(2, ed25519Verifier{pubOf(operator)}, ed25519Verifier{pubOf(approver)})
	if err != nil {
		t.Fatal(err)
	}
	accepted, err = ev2.Verify(context.Background(), toDSSE(env))
	if err != nil || len(accepted) != 2 {
		t.Fatalf("two signers: %v %+v", err, accepted)
	}

	// Tampered payload: the independent verifier rejects it too.
	payload, _ := base64.StdEncoding.DecodeString(env.Payload)
	payload[len(payload)/2] ^= 1
	bad := *env
	bad.Payload = base64.StdEncoding.EncodeToString(payload)
	if _, err := ev.Verify(context.Background(), toDSSE(&bad)); err == nil {
		t.Error("go-securesystemslib accepted a tampered payload")
	}

	// And an envelope signed by go-securesystemslib over our payload verifies with ours.
	signer := ed25519Signer{operator}
	es, err := dsse.NewEnvelopeSigner(signer)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ = base64.StdEncoding.DecodeString(env.Payload)
	theirs, err := es.SignPayload(context.Background(), PayloadType, payload)
	if err != nil {
		t.Fatal(err)
	}
	ours := &Envelope{PayloadType: theirs.PayloadType, Payload: theirs.Payload}
	for _, s := range theirs.Signatures {
		ours.Signatures = append(ours.Signatures, Signature{KeyID: s.KeyID, Sig: s.Sig})
	}
	rep, err := VerifyCertificate(ours, nil, []ed25519.PublicKey{pubOf(operator)})
	if err != nil {
		t.Fatalf("our verifier rejects go-securesystemslib's signature: %v", err)
	}
	if len(rep.Signatures) != 1 || !rep.Signatures[0].Trusted {
		t.Errorf("%+v", rep.Signatures)
	}
}

type ed25519Signer struct{ key ed25519.PrivateKey }

func (s ed25519Signer) Sign(_ context.Context, data []byte) ([]byte, error) {
	return ed25519.Sign(s.key, data), nil
}
func (s ed25519Signer) KeyID() (string, error) { return KeyID(pubOf(s.key)), nil }

func TestEnvelopeRoundTrip(t *testing.T) {
	env, m := buildCert(t, exampleLines(10), examplePredicate(nil), testKey(1))
	dir := t.TempDir()
	p := filepath.Join(dir, CertificateFile)
	if err := WriteEnvelope(p, env); err != nil {
		t.Fatal(err)
	}
	got, err := ReadEnvelope(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Payload != env.Payload || got.PayloadType != env.PayloadType || len(got.Signatures) != 1 || got.Signatures[0] != env.Signatures[0] {
		t.Fatal("round trip changed the envelope")
	}
	rep, err := VerifyCertificate(got, strings.NewReader(string(m)), []ed25519.PublicKey{pubOf(testKey(1))})
	if err != nil {
		t.Fatalf("%v\n%+v", err, rep.Checks)
	}
	if !rep.OK() || rep.Migration != "us-users-2022" || !rep.Complete || rep.TreeSize != 10 {
		t.Errorf("%+v", rep)
	}
	payload, st, err := got.Statement()
	if err != nil {
		t.Fatal(err)
	}
	if canon, _ := CanonicalizeJSON(payload); string(canon) != string(payload) {
		t.Error("payload is not canonical JSON")
	}
	if st.Type != StatementType || st.PredicateType != PredicateType || st.Subject[0].Name != ManifestName {
		t.Errorf("statement %+v", st)
	}
	if st.Predicate.Signer.KeyID != KeyID(pubOf(testKey(1))) {
		t.Error("Sign did not fill in the signer's keyid")
	}
}

func TestSignRefusesWrongSigner(t *testing.T) {
	p := examplePredicate(nil)
	party, _ := PartyForKey("Someone else", pubOf(testKey(7)))
	p.Signer = party
	var sum ManifestSummary
	sum.SHA256 = hexSum("x")
	sum.Root = hexSum("y")
	Finalize(&p, sum, fixtureTime)
	if _, err := Sign(NewStatement(sum, p), testKey(1)); err == nil {
		t.Error("signed with a key that is not the declared signer's")
	}
	// An invalid statement is refused.
	p2 := examplePredicate(nil)
	Finalize(&p2, sum, fixtureTime)
	p2.Merkle.Algorithm = "SHA1"
	if _, err := Sign(NewStatement(sum, p2), testKey(1)); err == nil {
		t.Error("signed a statement with a bad merkle algorithm")
	}
}

func TestAddSignature(t *testing.T) {
	operator, approver, stranger := testKey(1), testKey(2), testKey(3)
	env, m := buildCert(t, exampleLines(6), examplePredicate(pubOf(approver)), operator)

	rep, err := VerifyCertificate(env, strings.NewReader(string(m)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := findCheck(rep, CheckApprovals); c.Status != Warn || !strings.Contains(c.Message, "Jane Auditor") {
		t.Errorf("pending approval not reported: %+v", c)
	}
	if c := findCheck(rep, CheckTrust); c.Status != Warn {
		t.Errorf("no pinned key should warn: %+v", c)
	}

	if err := AddSignature(env, approver); err != nil {
		t.Fatal(err)
	}
	if err := AddSignature(env, approver); !errors.Is(err, ErrDuplicateSigner) {
		t.Errorf("second signature by the same key: %v", err)
	}
	if err := AddSignature(env, operator); !errors.Is(err, ErrDuplicateSigner) {
		t.Errorf("operator signing twice: %v", err)
	}
	rep, err = VerifyCertificate(env, strings.NewReader(string(m)), []ed25519.PublicKey{pubOf(operator)})
	if err != nil {
		t.Fatalf("%v", err)
	}
	if len(rep.Signatures) != 2 {
		t.Fatalf("%+v", rep.Signatures)
	}
	want := map[string]string{KeyID(pubOf(operator)): "operator", KeyID(pubOf(approver)): "approver"}
	for _, s := range rep.Signatures {
		if !s.Valid || want[s.KeyID] != s.Role {
			t.Errorf("signature %+v", s)
		}
	}
	if rep.Signatures[1].Name != "Jane Auditor" || rep.Signatures[1].KeySource != "certificate" || rep.Signatures[1].Trusted {
		t.Errorf("approver: %+v", rep.Signatures[1])
	}
	if c := findCheck(rep, CheckApprovals); c.Status != Pass {
		t.Errorf("approvals: %+v", c)
	}

	// An undeclared co-signer is refused (issue 13 class 11): its signature would leave a
	// certificate that does not verify. One added by hand (an edited file) fails
	// verification unless its key is given.
	before := len(env.Signatures)
	if err := AddSignature(env, stranger); !errors.Is(err, ErrNotApprover) || len(env.Signatures) != before {
		t.Fatalf("undeclared key: %v, %d signatures; want ErrNotApprover and none added", err, len(env.Signatures))
	}
	payloadBytes, _ := base64.StdEncoding.DecodeString(env.Payload)
	env.Signatures = append(env.Signatures, Signature{KeyID: KeyID(pubOf(stranger)),
		Sig: base64.StdEncoding.EncodeToString(ed25519.Sign(stranger, PAE(env.PayloadType, payloadBytes)))})
	rep, err = VerifyCertificate(env, nil, []ed25519.PublicKey{pubOf(operator)})
	if !errors.Is(err, ErrVerification) || findCheck(rep, CheckSignatures).Status != Fail {
		t.Errorf("unknown keyid should fail: %v", err)
	}
	rep, err = VerifyCertificate(env, nil, []ed25519.PublicKey{pubOf(operator), pubOf(stranger)})
	if err != nil {
		t.Errorf("with the co-signer's key: %v", err)
	}
	if s := rep.Signatures[2]; s.Role != "undeclared" || !s.Valid || !s.Trusted {
		t.Errorf("co-signer %+v", s)
	}

	// A tampered certificate is not countersigned.
	bad := *env
	bad.Signatures = append([]Signature{}, env.Signatures[:1]...)
	payload, _ := base64.StdEncoding.DecodeString(bad.Payload)
	bad.Payload = base64.StdEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"us-users-2022"`, `"us-users-2023"`, 1)))
	if err := AddSignature(&bad, approver); err == nil {
		t.Error("countersigned a tampered certificate")
	}
}

func findCheck(r *Report, name string) Check {
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	return Check{}
}

func TestParseEnvelopeStrict(t *testing.T) {
	env, _ := buildCert(t, exampleLines(2), examplePredicate(nil), testKey(1))
	good, _ := MarshalEnvelope(env)
	if _, err := ParseEnvelope(good); err != nil {
		t.Fatal(err)
	}
	s := string(good)
	for name, in := range map[string]string{
		"unknown field":     strings.Replace(s, `"payloadType"`, `"extra": 1, "payloadType"`, 1),
		"signer field":      strings.Replace(s, `"keyid"`, `"signer": "x", "keyid"`, 1),
		"duplicate field":   strings.Replace(s, `"payloadType"`, `"payload": "AA==", "payloadType"`, 1),
		"no signatures":     `{"payloadType":"x","payload":"AA==","signatures":[]}`,
		"url base64":        strings.Replace(s, env.Payload, strings.NewReplacer("+", "-", "/", "_").Replace(env.Payload)+"-_", 1),
		"short sig":         strings.Replace(s, env.Signatures[0].Sig, "AAAA", 1),
		"bad keyid":         strings.Replace(s, env.Signatures[0].KeyID, "ABC", 1),
		"trailing":          s + "{}",
		"not json":          "certificate",
		"missing type":      strings.Replace(s, `"payloadType": "application/vnd.in-toto+json",`, ``, 1),
		"empty payload":     strings.Replace(s, env.Payload, "", 1),
		"signatures object": `{"payloadType":"x","payload":"AA==","signatures":{}}`,
	} {
		if _, err := ParseEnvelope([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseEnvelope(f *testing.F) {
	env, _ := buildCert(f, exampleLines(2), examplePredicate(nil), testKey(1))
	good, _ := MarshalEnvelope(env)
	f.Add(good)
	f.Add([]byte(`{"payloadType":"x","payload":"AA==","signatures":[{"keyid":"00","sig":"AA=="}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := ParseEnvelope(b)
		if err != nil {
			return
		}
		// Whatever parses must survive encoding and parsing again, and verification
		// must not panic (it will almost always fail).
		out, err := MarshalEnvelope(env)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseEnvelope(out); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		rep, _ := VerifyCertificate(env, strings.NewReader(""), nil)
		if rep == nil {
			t.Fatal("nil report")
		}
		_, _ = buildViewSafe(env)
	})
}

// buildViewSafe renders what the fuzzer found, which must not panic either.
func buildViewSafe(env *Envelope) (*view, error) { return buildView(env) }
