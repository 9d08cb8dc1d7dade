package certificate

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestProveUser(t *testing.T) {
	key := testKey(1)
	lines := exampleLines(70) // users u0000..u0023, three records each (u0023 has one)
	env, m := buildCert(t, lines, examplePredicate(nil), key)
	trusted := []ed25519.PublicKey{pubOf(key)}

	proofs, err := ProveUser(bytes.NewReader(m), "u0007", env)
	if err != nil {
		t.Fatal(err)
	}
	if len(proofs) != 3 {
		t.Fatalf("%d proofs, want 3", len(proofs))
	}
	for i, p := range proofs {
		if p.LeafIndex != uint64(21+i) || p.TreeSize != 70 || p.Migration != "us-users-2022" {
			t.Errorf("proof %d: %+v", i, p)
		}
		rep, err := VerifyProof(p, env, trusted)
		if err != nil {
			t.Fatalf("proof %d: %v\n%+v", i, err, rep.Checks)
		}
		if rep.Record == nil || rep.Record.User != "u0007" || rep.Record.Key != lines[21+i].Key {
			t.Errorf("record %+v", rep.Record)
		}
	}
	// The file format round-trips, as an array and as a single object.
	b, err := MarshalProofs(proofs)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseProofs(b)
	if err != nil || len(back) != 3 {
		t.Fatalf("ParseProofs: %v", err)
	}
	one, _ := json.Marshal(proofs[0])
	if ps, err := ParseProofs(one); err != nil || len(ps) != 1 || ps[0].Leaf != proofs[0].Leaf {
		t.Errorf("single proof: %v", err)
	}

	// Without a certificate, ProveUser still proves against the manifest's own root.
	bare, err := ProveUser(bytes.NewReader(m), "u0023", nil)
	if err != nil || len(bare) != 1 || bare[0].LeafIndex != 69 || bare[0].Migration != "" {
		t.Errorf("bare: %+v %v", bare, err)
	}
	if _, err := ProveUser(bytes.NewReader(m), "nobody", env); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("unknown user: %v", err)
	}
	if _, err := ProveUser(bytes.NewReader(m), "", env); err == nil {
		t.Error("empty user accepted")
	}
	// A manifest that is not the certificate's is refused.
	other, _ := buildCert(t, exampleLines(71), examplePredicate(nil), key)
	if _, err := ProveUser(bytes.NewReader(m), "u0007", other); !errors.Is(err, ErrVerification) {
		t.Errorf("mismatched manifest: %v", err)
	}
	bad := bytes.Replace(m, []byte(`"size":1000`), []byte(`"size": 1000`), 1)
	if _, err := ProveUser(bytes.NewReader(bad), "u0007", nil); err == nil {
		t.Error("manifest with a bad line accepted")
	}
}

func TestVerifyProofRejects(t *testing.T) {
	key := testKey(1)
	lines := exampleLines(40)
	env, m := buildCert(t, lines, examplePredicate(nil), key)
	trusted := []ed25519.PublicKey{pubOf(key)}
	proofs, err := ProveUser(bytes.NewReader(m), "u0005", env)
	if err != nil {
		t.Fatal(err)
	}
	p := proofs[0]
	others, _ := ProveUser(bytes.NewReader(m), "u0006", env)

	mutate := map[string]func(*Proof){
		"another leaf": func(q *Proof) { q.Leaf = others[0].Leaf },
		"leaf edited": func(q *Proof) {
			q.Leaf = strings.Replace(q.Leaf, `"status":"purged"`, `"status":"deleted"`, 1)
		},
		"another index":     func(q *Proof) { q.LeafIndex = others[0].LeafIndex },
		"another path":      func(q *Proof) { q.AuditPath = others[0].AuditPath },
		"path hash flipped": func(q *Proof) { q.AuditPath = flipHex(q.AuditPath, len(q.AuditPath)-1) },
		"path truncated":    func(q *Proof) { q.AuditPath = q.AuditPath[:len(q.AuditPath)-1] },
		"path extended":     func(q *Proof) { q.AuditPath = append(append([]string{}, q.AuditPath...), q.Root) },
		"tree size":         func(q *Proof) { q.TreeSize++ },
		"root":              func(q *Proof) { q.Root = flipHex([]string{q.Root}, 0)[0] },
		"migration":         func(q *Proof) { q.Migration = "other" },
		"manifest digest":   func(q *Proof) { q.ManifestSHA256 = flipHex([]string{q.ManifestSHA256}, 0)[0] },
	}
	for name, f := range mutate {
		q := p
		q.AuditPath = append([]string{}, p.AuditPath...)
		f(&q)
		rep, err := VerifyProof(q, env, trusted)
		if !errors.Is(err, ErrVerification) || rep.OK() {
			t.Errorf("%s: accepted", name)
		}
	}

	// Against another certificate (another root): fails, even one signed by the same key.
	env2, _ := buildCert(t, exampleLines(41), examplePredicate(nil), key)
	if _, err := VerifyProof(p, env2, trusted); !errors.Is(err, ErrVerification) {
		t.Error("proof accepted against another certificate")
	}
	// A consistent proof re-rooted to another certificate still fails inclusion.
	q := p
	_, st2, _ := env2.Statement()
	q.Root, q.TreeSize, q.ManifestSHA256 = st2.Predicate.Merkle.Root, st2.Predicate.Merkle.TreeSize, st2.ManifestDigest()
	rep, err := VerifyProof(q, env2, trusted)
	if !errors.Is(err, ErrVerification) || findCheck(rep, CheckInclusion).Status != Fail {
		t.Errorf("re-rooted proof: %v", err)
	}
	// A tampered certificate fails before the proof is even looked at.
	tampered := *env
	tampered.Signatures = []Signature{{KeyID: env.Signatures[0].KeyID, Sig: flipB64(env.Signatures[0].Sig)}}
	if _, err := VerifyProof(p, &tampered, trusted); !errors.Is(err, ErrVerification) {
		t.Error("proof accepted with a tampered certificate")
	}
	// The untampered proof still verifies (the mutations above worked on copies).
	if _, err := VerifyProof(p, env, trusted); err != nil {
		t.Fatal(err)
	}
}

func flipHex(s []string, i int) []string {
	out := append([]string{}, s...)
	b := []byte(out[i])
	if b[0] == 'a' {
		b[0] = 'b'
	} else {
		b[0] = 'a'
	}
	out[i] = string(b)
	return out
}

func flipB64(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func TestParseProofStrict(t *testing.T) {
	env, m := buildCert(t, exampleLines(5), examplePredicate(nil), testKey(1))
	proofs, err := ProveUser(bytes.NewReader(m), "u0001", env)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := json.Marshal(proofs[0])
	s := string(good)
	if _, err := ParseProof(good); err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]string{
		"unknown field":   strings.Replace(s, `"version":1`, `"version":1,"x":0`, 1),
		"duplicate field": strings.Replace(s, `"version":1`, `"version":1,"version":1`, 1),
		"version 2":       strings.Replace(s, `"version":1`, `"version":2`, 1),
		"upper hex root":  strings.Replace(s, proofs[0].Root, strings.ToUpper(proofs[0].Root), 1),
		"short path hash": strings.Replace(s, proofs[0].AuditPath[0], proofs[0].AuditPath[0][:10], 1),
		"null path":       strings.Replace(s, `"audit_path":[`, `"audit_path":null,"y":[`, 1),
		"index too big":   strings.Replace(s, `"tree_size":5`, `"tree_size":1`, 1),
		"bad leaf":        strings.Replace(s, `\"size\":`, `\"size\": `, 1),
		"string index":    strings.Replace(s, `"leaf_index":`, `"leaf_index":"`, 1),
		"trailing":        s + "x",
		"array":           "[" + s + "]",
		"empty":           "",
	} {
		if _, err := ParseProof([]byte(in)); err == nil {
			t.Errorf("%s: accepted %s", name, in)
		}
	}
	if _, err := ParseProofs([]byte("[]")); err == nil {
		t.Error("empty proof list accepted")
	}
}

func FuzzParseProof(f *testing.F) {
	env, m := buildCert(f, exampleLines(5), examplePredicate(nil), testKey(1))
	proofs, _ := ProveUser(bytes.NewReader(m), "u0001", env)
	for _, p := range proofs {
		b, _ := json.Marshal(p)
		f.Add(b)
	}
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`[]`))
	root, _ := parseHash32(proofs[0].Root)
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := ParseProofs(b)
		if err != nil {
			return
		}
		for _, p := range ps {
			out, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ParseProof(out); err != nil {
				t.Fatalf("re-parse: %v", err)
			}
			// Whatever parsed must not lead to the signed root unless it is one of the
			// real proofs (checked cheaply here; VerifyProof adds the envelope checks).
			path := make([][32]byte, len(p.AuditPath))
			for i, h := range p.AuditPath {
				path[i], _ = parseHash32(h)
			}
			if VerifyInclusion(LeafHash([]byte(p.Leaf)), p.LeafIndex, p.TreeSize, path, root) == nil {
				real := false
				for _, q := range proofs {
					real = real || (q.Leaf == p.Leaf && q.LeafIndex == p.LeafIndex && q.TreeSize == p.TreeSize)
				}
				if !real {
					t.Fatalf("a made-up proof verified: %+v", p)
				}
			}
		}
	})
}
