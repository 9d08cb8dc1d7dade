package certificate

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"iter"
	"testing"
	"time"
)

// testKey returns a deterministic key: tests must not depend on randomness.
func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed
	}
	return ed25519.NewKeyFromSeed(s)
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

var fixtureTime = time.Date(2024, 6, 3, 14, 5, 9, 0, time.UTC)

func ts(d time.Duration) string { return FormatTime(fixtureTime.Add(d)) }

func hexSum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// exampleLines returns n records in key order spread over users and three sites, all
// copied, verified and deleted for good (hard at virginia, soft+purged elsewhere).
func exampleLines(n int) []ManifestLine {
	out := make([]ManifestLine, 0, n)
	for i := 0; i < n; i++ {
		user := fmt.Sprintf("u%04d", i/3)
		key := fmt.Sprintf("%s/file-%06d.json", user, i)
		l := ManifestLine{
			Key:    key,
			User:   user,
			Size:   int64(1000 + i*37),
			SHA256: hexSum(key),
			Target: TargetRef{
				URI:        "oci://mynamespace/us-users/users/" + key,
				Version:    fmt.Sprintf("v%d", i+1),
				ETag:       hexSum("etag" + key)[:32],
				VerifiedAt: ts(time.Duration(i) * time.Second),
			},
			Replicas: []ReplicaRef{
				{Site: "virginia", URI: "s3://legacy-users/users/" + key, Size: int64(1000 + i*37), SHA256: hexSum(key), DeletedAt: ts(50 * time.Hour), Mode: ModeHard, ConfirmedAbsent: true, State: StatusDeleted},
				{Site: "singapore", URI: "s3://backup-users/2022-06/users/" + key, Size: int64(1000 + i*37), SHA256: hexSum(key), DeletedAt: ts(26 * time.Hour), Mode: ModeSoft, ConfirmedAbsent: true, State: StatusPurged},
			},
			Status: StatusPurged,
		}
		if i%2 == 0 {
			l.Replicas = append(l.Replicas, ReplicaRef{Site: "archive", URI: "file:///mnt/archive/users/" + key, Size: int64(1000 + i*37), SHA256: hexSum(key), DeletedAt: ts(27 * time.Hour), Mode: ModeSoft, ConfirmedAbsent: true, State: StatusPurged})
		}
		out = append(out, l)
	}
	return out
}

func examplePredicate(approver ed25519.PublicKey) Predicate {
	p := Predicate{
		Migration:  "us-users-2022",
		SpecDigest: "sha256:" + hexSum("spec"),
		PlanDigest: "sha256:" + hexSum("plan"),
		Tool:       Tool{Name: "ferry", Version: "v0.9.0"},
		Signer:     Party{Name: "Data Protection Office", Title: "Migration operator", Organization: "Example Corp"},
		Sites: []Site{
			{Name: "virginia", Role: "primary", URI: "s3://legacy-users/users/", Region: "us-east-1"},
			{Name: "singapore", Role: "backup", URI: "s3://backup-users/2022-06/users/", Region: "ap-southeast-1"},
			{Name: "archive", Role: "backup", URI: "file:///mnt/archive/users", Region: "on-premises (Ashburn DC2)"},
		},
		Target:    Target{URI: "oci://mynamespace/us-users/users/", Region: "us-ashburn-1", KMSKeyID: "ocid1.key.oc1..example"},
		Residency: Residency{AllowedRegions: []string{"us-ashburn-1", "us-phoenix-1"}},
		Stages: []Stage{
			{Name: "canary", Sites: []string{"singapore"}, Mode: ModeSoft, Sample: "1%", ScopeDigest: hexSum("canary")[:16], StartedAt: ts(24 * time.Hour), FinishedAt: ts(24*time.Hour + 10*time.Minute), PurgedAt: ts(100 * time.Hour), Counts: StageCounts{Scope: 2, Deleted: 2, Purged: 2, Bytes: 2100}},
			{Name: "backups", Sites: []string{"singapore", "archive"}, Mode: ModeSoft, ScopeDigest: hexSum("backups")[:16], StartedAt: ts(26 * time.Hour), FinishedAt: ts(27 * time.Hour), PurgedAt: ts(101 * time.Hour), Counts: StageCounts{Scope: 88, Deleted: 88, Purged: 88, Bytes: 120000}},
			{Name: "primary", Sites: []string{"virginia"}, Mode: ModeHard, ScopeDigest: hexSum("primary")[:16], StartedAt: ts(50 * time.Hour), FinishedAt: ts(51 * time.Hour), Counts: StageCounts{Scope: 60, Deleted: 60, Bytes: 90000}},
		},
	}
	if approver != nil {
		a, err := PartyForKey("Jane Auditor", approver)
		if err != nil {
			panic(err)
		}
		a.Title = "Chief Privacy Officer"
		p.Approvers = []Party{a}
	}
	return p
}

func seqOf(lines []ManifestLine) iter.Seq2[ManifestLine, error] {
	return func(yield func(ManifestLine, error) bool) {
		for _, l := range lines {
			if !yield(l, nil) {
				return
			}
		}
	}
}

// buildCert writes a manifest and signs a certificate for it in memory.
func buildCert(t testing.TB, lines []ManifestLine, p Predicate, key ed25519.PrivateKey) (*Envelope, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := NewManifestWriter(&buf)
	for _, l := range lines {
		if err := mw.Add(l); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := mw.Close()
	if err != nil {
		t.Fatal(err)
	}
	Finalize(&p, sum, fixtureTime.Add(120*time.Hour))
	env, err := Sign(NewStatement(sum, p), key)
	if err != nil {
		t.Fatal(err)
	}
	return env, buf.Bytes()
}
