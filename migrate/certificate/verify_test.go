package certificate

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func verifyBytes(env *Envelope, manifest []byte, trusted ...ed25519.PublicKey) (*Report, error) {
	return VerifyCertificate(env, bytes.NewReader(manifest), trusted)
}

func TestVerifyCertificateOK(t *testing.T) {
	key := testKey(1)
	env, m := buildCert(t, exampleLines(25), examplePredicate(nil), key)
	rep, err := verifyBytes(env, m, pubOf(key))
	if err != nil {
		t.Fatalf("%v", err)
	}
	for _, name := range []string{CheckPayloadType, CheckStatement, CheckSignatures, CheckSigner, CheckTrust, CheckComplete, CheckManifest, CheckLines, CheckMerkle, CheckCounts} {
		if c := findCheck(rep, name); c.Status != Pass {
			t.Errorf("check %q: %+v", name, c)
		}
	}
	// Without the manifest: the manifest checks are skipped, not passed.
	rep, err = VerifyCertificate(env, nil, []ed25519.PublicKey{pubOf(key)})
	if err != nil || findCheck(rep, CheckManifest).Status != Skip {
		t.Errorf("no manifest: %v %+v", err, rep.Checks)
	}
	// A key that did not sign is not trusted.
	rep, err = verifyBytes(env, m, pubOf(testKey(8)))
	if !errors.Is(err, ErrVerification) || findCheck(rep, CheckTrust).Status != Fail {
		t.Errorf("untrusted signer accepted: %v", err)
	}
	var ve *VerificationError
	if !errors.As(err, &ve) || len(ve.Failed) == 0 || !strings.Contains(err.Error(), CheckTrust) {
		t.Errorf("error does not name the failed check: %v", err)
	}
}

// I7: changing any byte of the manifest is detected. Every position of a small
// manifest, and a spread of positions of a larger one, each to a couple of values.
func TestTamperManifestEveryByte(t *testing.T) {
	key := testKey(1)
	for _, n := range []int{2, 40} {
		env, m := buildCert(t, exampleLines(n), examplePredicate(nil), key)
		step := 1 // every byte of the small manifest
		if n > 2 {
			step = 97 // a spread of positions in every line of the larger one
		}
		tested := 0
		for i := 0; i < len(m); i += step {
			flips := []byte{0x01, 0x20}
			if step == 1 {
				flips = []byte{byte(1 << (i % 8))} // one bit per byte, cycling through all eight
			}
			for _, x := range flips {
				bad := append([]byte{}, m...)
				bad[i] ^= x
				rep, err := verifyBytes(env, bad, pubOf(key))
				if !errors.Is(err, ErrVerification) || rep.OK() {
					t.Fatalf("n=%d: flipping byte %d (%q) by %#x was not detected", n, i, m[i], x)
				}
				if findCheck(rep, CheckManifest).Status != Fail {
					t.Fatalf("n=%d byte %d: digest check did not fail", n, i)
				}
				tested++
			}
		}
		t.Logf("n=%d: %d single-byte changes, all detected", n, tested)
	}
}

func TestTamperManifestStructure(t *testing.T) {
	key := testKey(1)
	env, m := buildCert(t, exampleLines(8), examplePredicate(nil), key)
	lines := strings.SplitAfter(string(m), "\n")
	lines = lines[:len(lines)-1] // the empty string after the final newline
	join := func(ls []string) []byte { return []byte(strings.Join(ls, "")) }
	swap := func(i, j int) []byte {
		c := append([]string{}, lines...)
		c[i], c[j] = c[j], c[i]
		return join(c)
	}
	cases := map[string][]byte{
		"swap first two":    swap(0, 1),
		"swap last two":     swap(6, 7),
		"swap far":          swap(1, 6),
		"remove first line": join(lines[1:]),
		"remove a line":     join(append(append([]string{}, lines[:3]...), lines[4:]...)),
		"remove last line":  join(lines[:7]),
		"duplicate a line":  join(append(append([]string{}, lines[:4]...), lines[3:]...)),
		"append a line":     append(append([]byte{}, m...), lines[0]...),
		"no final newline":  m[:len(m)-1],
		"extra newline":     append(append([]byte{}, m...), '\n'),
		"crlf":              bytes.ReplaceAll(m, []byte("\n"), []byte("\r\n")),
		"empty":             nil,
	}
	for name, bad := range cases {
		rep, err := verifyBytes(env, bad, pubOf(key))
		if !errors.Is(err, ErrVerification) {
			t.Errorf("%s: not detected (%v)", name, err)
			continue
		}
		if findCheck(rep, CheckManifest).Status != Fail {
			t.Errorf("%s: digest %+v", name, findCheck(rep, CheckManifest))
		}
		// The tree covers the lines without their newlines, so only the newline changes
		// leave the root as it was; every other change moves it.
		if name != "no final newline" && findCheck(rep, CheckMerkle).Status != Fail {
			t.Errorf("%s: merkle %+v", name, findCheck(rep, CheckMerkle))
		}
	}
	// Reordering is also reported as a line problem (sorted keys), independently of the digest.
	rep, _ := verifyBytes(env, swap(2, 5), pubOf(key))
	if c := findCheck(rep, CheckLines); c.Status != Fail || !strings.Contains(c.Message, "not sorted") {
		t.Errorf("reorder: %+v", c)
	}
	rep, _ = verifyBytes(env, join(append(append([]string{}, lines[:4]...), lines[3:]...)), pubOf(key))
	if c := findCheck(rep, CheckLines); c.Status != Fail || !strings.Contains(c.Message, "duplicate key") {
		t.Errorf("duplicate: %+v", c)
	}
}

// A manifest that is internally consistent but not canonical, or unsorted, fails even
// when the certificate was (mistakenly or maliciously) signed over it.
func TestVerifyRejectsBadManifestEvenIfSigned(t *testing.T) {
	key := testKey(1)
	lines := exampleLines(4)
	var raw []string
	for _, l := range lines {
		b, _ := MarshalLine(l)
		raw = append(raw, string(b))
	}
	raw[1], raw[2] = raw[2], raw[1]                          // unsorted
	raw[3] = strings.Replace(raw[3], `"key":`, `"key": `, 1) // not canonical
	m := []byte(strings.Join(raw, "\n") + "\n")
	sum, _, _, err := ReadManifest(bytes.NewReader(m), 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := examplePredicate(nil)
	good, _ := buildCert(t, lines, p, key)
	_, st, _ := good.Statement()
	p = st.Predicate
	p.Merkle.Root, p.Merkle.TreeSize = sum.Root, sum.TreeSize
	forged := NewStatement(sum, p)
	env, err := Sign(forged, key)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verifyBytes(env, m, pubOf(key))
	if !errors.Is(err, ErrVerification) {
		t.Fatal("accepted")
	}
	if findCheck(rep, CheckManifest).Status != Pass || findCheck(rep, CheckMerkle).Status != Pass {
		t.Errorf("digest and root should match here: %+v", rep.Checks)
	}
	c := findCheck(rep, CheckLines)
	if c.Status != Fail || !strings.Contains(c.Message, "not sorted") || !strings.Contains(c.Message, "canonical") {
		t.Errorf("lines: %+v", c)
	}
}

// Any single-byte change of the payload, any change of a signature: verification fails.
func TestTamperPayloadAndSignature(t *testing.T) {
	key := testKey(1)
	env, m := buildCert(t, exampleLines(5), examplePredicate(nil), key)
	payload, _ := base64.StdEncoding.DecodeString(env.Payload)
	// Every other byte of the payload, alternating the bit flipped; with the pinned key
	// and manifest at a spread of positions, and with only the key the certificate
	// names (no pinned key, no manifest) at all of them.
	for i := 0; i < len(payload); i += 2 {
		x := byte(1 << (i / 2 % 8))
		p := append([]byte{}, payload...)
		p[i] ^= x
		bad := &Envelope{PayloadType: env.PayloadType, Payload: base64.StdEncoding.EncodeToString(p), Signatures: env.Signatures}
		if rep, err := VerifyCertificate(bad, nil, nil); err == nil || rep.OK() {
			t.Fatalf("payload byte %d ^ %#x: not detected without a pinned key", i, x)
		}
		if i%50 == 0 {
			rep, err := verifyBytes(bad, m, pubOf(key))
			if !errors.Is(err, ErrVerification) || rep.OK() {
				t.Fatalf("payload byte %d ^ %#x: not detected", i, x)
			}
		}
	}
	sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	for i := 0; i < len(sig); i++ {
		s := append([]byte{}, sig...)
		s[i] ^= 0x01
		bad := &Envelope{PayloadType: env.PayloadType, Payload: env.Payload, Signatures: []Signature{{KeyID: env.Signatures[0].KeyID, Sig: base64.StdEncoding.EncodeToString(s)}}}
		rep, err := verifyBytes(bad, m, pubOf(key))
		if !errors.Is(err, ErrVerification) || findCheck(rep, CheckSignatures).Status != Fail {
			t.Fatalf("signature byte %d: not detected", i)
		}
	}
	// The keyid changed to another key's, the payload type changed, the signature removed.
	other := &Envelope{PayloadType: env.PayloadType, Payload: env.Payload, Signatures: []Signature{{KeyID: KeyID(pubOf(testKey(2))), Sig: env.Signatures[0].Sig}}}
	if _, err := verifyBytes(other, m, pubOf(key), pubOf(testKey(2))); !errors.Is(err, ErrVerification) {
		t.Error("signature relabelled with another keyid accepted")
	}
	typ := &Envelope{PayloadType: "application/json", Payload: env.Payload, Signatures: env.Signatures}
	if rep, err := verifyBytes(typ, m, pubOf(key)); !errors.Is(err, ErrVerification) || findCheck(rep, CheckPayloadType).Status != Fail {
		t.Error("payload type change accepted")
	}
	none := &Envelope{PayloadType: env.PayloadType, Payload: env.Payload}
	if _, err := verifyBytes(none, m, pubOf(key)); !errors.Is(err, ErrVerification) {
		t.Error("unsigned envelope accepted")
	}
	if _, err := VerifyCertificate(nil, nil, nil); !errors.Is(err, ErrVerification) {
		t.Error("nil envelope accepted")
	}
}

// A certificate signed by the right key but claiming more than its figures show is
// rejected: a "complete" claim with conflicts, counts that are not the manifest's.
func TestVerifyRejectsFalseClaims(t *testing.T) {
	key := testKey(1)
	lines, p := incompleteExample()
	good, m := buildCert(t, lines, p, key)
	_, st, _ := good.Statement()

	lie := st
	lie.Predicate.Complete = true
	lie.Predicate.IncompleteReasons = []string{}
	env, err := Sign(lie, key)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verifyBytes(env, m, pubOf(key))
	if !errors.Is(err, ErrVerification) || findCheck(rep, CheckComplete).Status != Fail {
		t.Errorf("false completeness claim accepted: %+v", findCheck(rep, CheckComplete))
	}

	fudged := st
	fudged.Predicate.Counts.ByStatus = map[string]Tally{StatusVerified: {Records: 90, Bytes: st.Predicate.Counts.Bytes}}
	env, err = Sign(fudged, key)
	if err != nil {
		t.Fatal(err)
	}
	rep, err = verifyBytes(env, m, pubOf(key))
	if !errors.Is(err, ErrVerification) || findCheck(rep, CheckCounts).Status != Fail {
		t.Errorf("fudged counts accepted: %+v", findCheck(rep, CheckCounts))
	}

	// Stripping the operator's signature and leaving only an approver's fails too.
	approver := testKey(2)
	env2 := *good
	if err := AddSignature(&env2, approver); err != nil {
		t.Fatal(err)
	}
	env2.Signatures = env2.Signatures[1:]
	rep, err = verifyBytes(&env2, m, pubOf(approver))
	if !errors.Is(err, ErrVerification) || findCheck(rep, CheckSigner).Status != Fail {
		t.Errorf("certificate without the operator's signature accepted: %+v", rep.Checks)
	}
}

func TestAssessReasons(t *testing.T) {
	lines, p := incompleteExample()
	env, _ := buildCert(t, lines, p, testKey(1))
	_, st, _ := env.Statement()
	got := strings.Join(st.Predicate.IncompleteReasons, "\n")
	for _, want := range []string{
		"2 records (2.5 KiB) are in conflict",
		"1 record (1.7 KiB) failed",
		"90 replicas (234.6 KiB) at site virginia were not deleted.", // the two divergent ones with their own (larger) sizes
		"87 replicas at site singapore were soft-deleted and remain recoverable until they are purged.",
		`Deletion stage "backups" (soft delete) was not purged.`,
		`Deletion stage "primary" was not run.`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("reasons lack %q:\n%s", want, got)
		}
	}
	if st.Predicate.Complete {
		t.Error("complete")
	}
	// Residency: a target outside the policy.
	p2 := examplePredicate(nil)
	p2.Target.Region = "eu-frankfurt-1"
	env, _ = buildCert(t, exampleLines(3), p2, testKey(1))
	_, st, _ = env.Statement()
	if st.Predicate.Residency.Satisfied || st.Predicate.Complete || !strings.Contains(strings.Join(st.Predicate.IncompleteReasons, " "), "outside the residency policy") {
		t.Errorf("residency: %+v %q", st.Predicate.Residency, st.Predicate.IncompleteReasons)
	}
	// An empty manifest certifies nothing.
	env, _ = buildCert(t, nil, examplePredicate(nil), testKey(1))
	_, st, _ = env.Statement()
	if st.Predicate.Complete {
		t.Error("an empty migration is called complete")
	}
	// A replica that vanished without ferry deleting it is not certified as deleted.
	l := exampleLines(1)
	l[0].Replicas[0] = ReplicaRef{Site: "virginia", URI: l[0].Replicas[0].URI, State: ReplicaMissing}
	env, _ = buildCert(t, l, examplePredicate(nil), testKey(1))
	_, st, _ = env.Statement()
	if st.Predicate.Complete || st.Predicate.Counts.BySite["virginia"].Missing != 1 {
		t.Errorf("missing replica: %q", st.Predicate.IncompleteReasons)
	}
}
