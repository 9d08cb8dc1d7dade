package migrate

import (
	"context"
	"errors"
	"io"
	"unicode/utf8"

	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
)

// LiveResult is what `ferry report verify --live` found at the stores.
type LiveResult struct {
	Checked  int64          `json:"checked"`
	TargetOK int64          `json:"target_ok"`
	Absent   int64          `json:"replicas_absent"`
	Problems []ConflictInfo `json:"problems,omitempty"`
}

// LiveCheck reads a manifest and checks, read-only, that every verified record's
// target copy is present and holds the manifest's bytes (a SHA-256 the store computes,
// else a re-read and re-hash: metadata never proves bytes, I12), and that
// every replica the manifest calls deleted is absent at its site. sample (0, 1]
// checks a deterministic share of the records.
func (m *Migration) LiveCheck(ctx context.Context, manifest io.Reader, sample float64) (*LiveResult, error) {
	res := &LiveResult{}
	problem := func(key, msg string) {
		if len(res.Problems) < 1000 {
			res.Problems = append(res.Problems, ConflictInfo{Key: key, Reason: msg})
		}
	}
	targetRoot := m.Target.URI("")
	_, bad, nbad, err := certificate.ReadManifest(manifest, 10, func(_ uint64, _ []byte, l *certificate.ManifestLine) error {
		if l == nil {
			return nil // a bad line: counted and reported below
		}
		if sample < 1 && !spec.InSample(l.Key, sample) {
			return nil
		}
		res.Checked++
		if l.Target.VerifiedAt != "" {
			key, ok := uriKey(l.Target.URI, targetRoot, !utf8.ValidString(l.Key))
			if !ok {
				problem(l.Key, "target uri "+l.Target.URI+" is not under "+targetRoot)
			} else if obj, bad, err := m.proveTarget(ctx, key, l.Size, l.SHA256, ""); err != nil {
				problem(l.Key, "target copy: "+err.Error())
			} else if bad != "" {
				problem(l.Key, bad)
			} else if obj.Checksums.SHA256 == "" && !obj.SameVersion(providers.Object{Size: l.Size, ETag: l.Target.ETag, Version: l.Target.Version, ModTime: obj.ModTime}) {
				problem(l.Key, "target copy is not the version the manifest names")
			} else {
				res.TargetOK++
			}
		}
		for _, r := range l.Replicas {
			if r.DeletedAt == "" || r.State == certificate.StatusRestored {
				continue
			}
			site, ok := m.Sites[r.Site]
			if !ok {
				problem(l.Key, "the spec has no site "+r.Site)
				continue
			}
			key, ok := uriKey(r.URI, site.URI(""), !utf8.ValidString(l.Key))
			if !ok {
				problem(l.Key, "replica uri "+r.URI+" is not under site "+r.Site)
				continue
			}
			if _, err := site.Stat(ctx, key); errors.Is(err, providers.ErrNotFound) {
				res.Absent++
			} else if err != nil {
				problem(l.Key, "replica at "+r.Site+": "+err.Error())
			} else {
				problem(l.Key, "replica at "+r.Site+" is present, but the manifest says it was deleted")
			}
		}
		return nil
	})
	if err != nil {
		return res, Errorf(ExitRuntime, "%w", err)
	}
	if nbad > 0 {
		return res, Errorf(ExitVerify, "manifest has %d bad lines, first: %v", nbad, bad[0])
	}
	if len(res.Problems) > 0 {
		return res, Errorf(ExitVerify, "live check: %d problems", len(res.Problems))
	}
	return res, nil
}
