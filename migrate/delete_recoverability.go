package migrate

import (
	"context"
	"encoding/json"
	"time"

	"github.com/ferrymigrate/ferry/migrate/certificate"
)

// Provider recoverability (DESIGN.md "Providers", "Certificate"): some stores keep
// what ferry deletes for a while of their own accord (a GCS bucket's soft-delete
// policy, Azure blob soft delete). When a delete stage finishes, ferry asks each of
// its sites that can tell (providers.Recoverer, found through the store decorators)
// and records the answer with the time of the deletes, so the certificate can say for
// each site whether deleted objects stay recoverable by the provider, and until when.

// recoveryRecord is what the state keeps per site (meta "recoverability/<site>").
type recoveryRecord struct {
	Recoverable bool          `json:"recoverable"`
	Mechanism   string        `json:"mechanism,omitempty"`
	Retention   time.Duration `json:"retention_ns,omitempty"` // 0 with Recoverable: until removed by hand
	DeletedAt   time.Time     `json:"deleted_at"`             // when the site's replicas were deleted (stage finish)
}

func recoveryKey(site string) string { return "recoverability/" + site }

// recordRecoverability asks each site of stage that is a Recoverer and records its
// answer, with deletedAt. A site that cannot answer now is logged and left as it was.
func (m *Migration) recordRecoverability(ctx context.Context, stage string, deletedAt time.Time) {
	st, ok := m.stage(stage)
	if !ok {
		return
	}
	for _, site := range st.Sites {
		r := m.caps(site).Recoverer
		if r == nil {
			continue
		}
		rv, err := r.Recoverability(ctx)
		if err != nil {
			m.log.Warn("cannot tell whether deleted objects stay recoverable by the provider", "site", site, "err", err)
			continue
		}
		b, _ := json.Marshal(recoveryRecord{Recoverable: rv.Recoverable, Mechanism: rv.Mechanism, Retention: rv.Retention, DeletedAt: deletedAt.UTC()})
		if err := m.State.SetMeta(ctx, recoveryKey(site), string(b)); err != nil {
			m.log.Warn("recording the provider's recoverability", "site", site, "err", err)
		}
	}
}

// siteRecoverability is the certificate's statement for site, nil when none was
// recorded.
func (m *Migration) siteRecoverability(ctx context.Context, site string) *certificate.SiteRecoverability {
	v, ok, err := m.State.Meta(ctx, recoveryKey(site))
	if err != nil || !ok {
		return nil
	}
	var r recoveryRecord
	if json.Unmarshal([]byte(v), &r) != nil {
		return nil
	}
	out := &certificate.SiteRecoverability{Recoverable: r.Recoverable, Mechanism: r.Mechanism}
	if r.Recoverable && r.Retention > 0 {
		out.Until = certificate.FormatTime(r.DeletedAt.Add(r.Retention))
	}
	return out
}
