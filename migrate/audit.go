package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/audit"
	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/providers"
)

// AuditOptions are `ferry audit`'s inputs.
type AuditOptions struct {
	Logs   []string // access log files (gzip or not)
	Format string   // auto (or ""), s3, minio, oci, gcs, azure
	// FerryIdentities are identities to take as ferry's own besides those its journal
	// names (the name a log gives the principal ferry ran as, when it is not the
	// access key id the journal holds).
	FerryIdentities []string
}

// auditMetaKey holds the last audit's summary (JSON) in the state, for the report.
const auditMetaKey = "audit"

// auditStore is one store whose objects a log may name.
type auditStore struct {
	name      string // site name or "target"
	container string // bucket or container, as logs name it
	prefix    string
}

// Audit reads the stores' own access logs and finds every access to a planned record,
// at a site or at the target, by an identity other than ferry's: within the
// migration's window (from the first journal entry to now), and at any time after
// ferry deleted the replica. The summary is kept in the state (replacing an earlier
// audit's findings from the same logs) for the next report; it exits 3 when there are
// findings.
func (m *Migration) Audit(ctx context.Context, o AuditOptions) (*certificate.AuditSummary, error) {
	if len(o.Logs) == 0 {
		return nil, Errorf(ExitUsage, "ferry audit: name at least one access log with --logs")
	}
	if err := m.needPlan(ctx); err != nil {
		return nil, err
	}
	// This process's own requests so far belong in the journal the logs are read against.
	if m.journal != nil {
		if err := m.journal.flush(ctx); err != nil {
			return nil, Errorf(ExitRuntime, "%w", err)
		}
	}
	own, from, err := m.ferryAccess(ctx, o.FerryIdentities)
	if err != nil {
		return nil, err
	}
	now := m.now().UTC()
	if from.IsZero() {
		from = now
	}
	stores := m.auditStores()
	sum := &certificate.AuditSummary{
		CheckedAt: certificate.FormatTime(now), WindowFrom: certificate.FormatTime(from), WindowTo: certificate.FormatTime(now),
		FerryIdentities: own.names(),
	}
	var findings []certificate.AuditFinding
	err = m.eachLog(ctx, o.Logs, func(path string, r io.Reader) error {
		accesses, format, err := audit.Read(r, path, o.Format)
		if err != nil {
			return Errorf(ExitUsage, "ferry audit: %w", err)
		}
		src := certificate.AuditSource{Location: path, Format: format, Entries: int64(len(accesses))}
		for _, a := range accesses {
			if own.is(a) {
				src.Ferry++
				continue
			}
			src.Other++
			st, key, ok := matchStore(stores, a)
			if !ok {
				continue
			}
			if src.Store == "" {
				src.Store = st.name
			} else if src.Store != st.name {
				src.Store = "several"
			}
			fd, ok, err := m.auditFinding(ctx, st, key, a, from, now)
			if err != nil {
				return err
			}
			if ok {
				fd.Log = path + ":" + strconv.Itoa(a.Line)
				findings = append(findings, fd)
			}
		}
		if src.Store == "several" {
			src.Store = ""
		}
		sum.Sources = append(sum.Sources, src)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := m.mergeAudit(ctx, sum, findings); err != nil {
		return nil, err
	}
	if sum.FindingsTotal > 0 {
		return sum, Errorf(ExitIncomplete, "%d accesses to migrated records by identities other than ferry's (first: %s %s of %s/%s by %s at %s)",
			sum.FindingsTotal, sum.Findings[0].Kind, sum.Findings[0].Operation, sum.Findings[0].Store, sum.Findings[0].Key, sum.Findings[0].Identity, sum.Findings[0].Time)
	}
	return sum, nil
}

// eachLog calls fn with each access log: a file, or every object under a store URL
// (s3://bucket/prefix/, gs://, azblob://, oci://: the bucket logs are delivered to),
// opened with the endpoint and credentials of the spec's first store of that scheme.
func (m *Migration) eachLog(ctx context.Context, locs []string, fn func(location string, r io.Reader) error) error {
	for _, loc := range locs {
		scheme, _, isURL := strings.Cut(loc, "://")
		if !isURL || scheme == "file" {
			path := strings.TrimPrefix(loc, "file://")
			f, err := os.Open(path)
			if err != nil {
				return Errorf(ExitUsage, "ferry audit: %w", err)
			}
			err = fn(path, f)
			f.Close()
			if err != nil {
				return err
			}
			continue
		}
		cfg, ok := m.logStoreConfig(scheme)
		if !ok {
			return Errorf(ExitUsage, "ferry audit: --logs %s: no site or target of the spec is a %s:// store to take the endpoint and credentials from", loc, scheme)
		}
		cfg.Name, cfg.URL = "audit log "+loc, loc
		st, err := providers.Open(ctx, cfg)
		if err != nil {
			return Errorf(ExitRuntime, "ferry audit: --logs %s: %w", loc, err)
		}
		var keys []string
		err = st.List(ctx, func(o providers.Object) error {
			keys = append(keys, o.Key)
			return nil
		})
		if err == nil && len(keys) == 0 {
			err = fmt.Errorf("no log objects under it")
		}
		for _, k := range keys {
			if err != nil {
				break
			}
			var rc io.ReadCloser
			if rc, _, err = st.Open(ctx, k); err != nil {
				break
			}
			err = fn(strings.TrimSuffix(loc, "/")+"/"+k, rc)
			rc.Close()
		}
		st.Close()
		if err != nil {
			var ee *Error
			if errors.As(err, &ee) {
				return err
			}
			return Errorf(ExitRuntime, "ferry audit: --logs %s: %w", loc, err)
		}
	}
	return nil
}

// logStoreConfig is the config of the spec's first store (sites, then the target)
// whose URL has scheme.
func (m *Migration) logStoreConfig(scheme string) (providers.Config, bool) {
	for i := range m.Spec.Sources {
		if s := &m.Spec.Sources[i]; strings.HasPrefix(s.URL, scheme+"://") {
			return s.ProviderConfig(m.Spec.Migration), true
		}
	}
	if strings.HasPrefix(m.Spec.Target.URL, scheme+"://") {
		return m.Spec.Target.ProviderConfig(m.Spec.Migration), true
	}
	return providers.Config{}, false
}

// auditFinding decides whether another identity's access a to key at st is a finding.
func (m *Migration) auditFinding(ctx context.Context, st auditStore, key string, a audit.Access, from, to time.Time) (certificate.AuditFinding, bool, error) {
	rec, found, err := m.State.Get(ctx, key)
	if err != nil {
		return certificate.AuditFinding{}, false, Errorf(ExitRuntime, "%w", err)
	}
	if !found && st.name == "target" {
		rec, found, err = m.targetRecord(ctx, key)
		if err != nil {
			return certificate.AuditFinding{}, false, err
		}
	}
	if !found {
		return certificate.AuditFinding{}, false, nil // not a record of this migration
	}
	fd := certificate.AuditFinding{
		Store: st.name, Key: rec.Key, Object: a.Object, Operation: a.Operation, Action: a.Action, Identity: a.Identity,
		Time: certificate.FormatTime(a.Time), Status: a.Status, SourceIP: a.SourceIP, RequestID: a.RequestID,
	}
	if r := rec.Replica(st.name); r != nil && !r.DeletedAt.IsZero() && !a.Time.Before(r.DeletedAt) {
		fd.Kind = "after-deletion"
		return fd, true, nil
	}
	if a.Time.Before(from) || a.Time.After(to) {
		return fd, false, nil
	}
	fd.Kind = "foreign-access"
	return fd, true, nil
}

// targetRecord finds the record whose target key is key (a conflict variant's key
// differs from its record key).
func (m *Migration) targetRecord(ctx context.Context, key string) (checkpoints.Record, bool, error) {
	var rec checkpoints.Record
	found := false
	err := m.State.Records(ctx, checkpoints.Query{}, func(r checkpoints.Record) error {
		if r.TargetKey == key {
			rec, found = r, true
			return errStopIter
		}
		return nil
	})
	if err != nil && err != errStopIter {
		return rec, false, Errorf(ExitRuntime, "%w", err)
	}
	return rec, found, nil
}

// auditStores names each site's and the target's bucket and prefix as logs name them
// (from the spec: ferry audit needs no access to the stores).
func (m *Migration) auditStores() []auditStore {
	var out []auditStore
	for _, s := range m.Spec.Sources {
		if b, p := s.Container(); b != "" {
			out = append(out, auditStore{name: s.Name, container: b, prefix: p})
		}
	}
	if b, p := m.Spec.Target.Container(); b != "" {
		out = append(out, auditStore{name: "target", container: b, prefix: p})
	}
	return out
}

// matchStore finds the store a logged object belongs to and the key within it.
func matchStore(stores []auditStore, a audit.Access) (auditStore, string, bool) {
	if a.Object == "" {
		return auditStore{}, "", false
	}
	for _, st := range stores {
		if st.container != a.Bucket || !strings.HasPrefix(a.Object, st.prefix) {
			continue
		}
		key := strings.TrimPrefix(a.Object[len(st.prefix):], "/")
		if key != "" {
			return st, key, true
		}
	}
	return auditStore{}, "", false
}

// ferryIdentities is what marks a logged request as ferry's own: an identity the
// journal or the operator names, the SHA-256 of an access key id the journal names,
// or a request id the journal holds.
type ferryIdentities struct {
	exact    map[string]bool
	keyHash  map[string]bool
	requests map[string]bool
}

func (f ferryIdentities) names() []string {
	out := make([]string, 0, len(f.exact))
	for n := range f.exact {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (f ferryIdentities) is(a audit.Access) bool {
	if a.RequestID != "" && f.requests[a.RequestID] {
		return true
	}
	for _, id := range []string{a.Identity, a.AccessKey} {
		if id == "" {
			continue
		}
		if f.exact[id] {
			return true
		}
		sum := sha256.Sum256([]byte(id))
		if f.keyHash[hex.EncodeToString(sum[:])] {
			return true
		}
	}
	return false
}

// ferryAccess reads the journal: the identities ferry acted as, the request ids its
// stores answered, and the time of its first request.
func (m *Migration) ferryAccess(ctx context.Context, declared []string) (ferryIdentities, time.Time, error) {
	f := ferryIdentities{exact: map[string]bool{}, keyHash: map[string]bool{}, requests: map[string]bool{}}
	for _, d := range declared {
		if d = strings.TrimSpace(d); d != "" {
			f.exact[d] = true
		}
	}
	var first time.Time
	err := m.State.Journal(ctx, func(je checkpoints.JournalEntry) error {
		var e certificate.JournalEntry
		if err := json.Unmarshal([]byte(je.Line), &e); err != nil {
			return fmt.Errorf("journal stream %s entry %d: %w", je.Stream, je.Seq, err)
		}
		if t, err := time.Parse(time.RFC3339Nano, e.Time); err == nil && (first.IsZero() || t.Before(first)) {
			first = t
		}
		if e.Identity != "" {
			f.exact[e.Identity] = true
			if _, h, ok := strings.Cut(e.Identity, "sha256:"); ok {
				f.keyHash[h] = true
			}
		}
		for _, id := range strings.Fields(e.RequestID) {
			f.requests[id] = true
		}
		return nil
	})
	if err != nil {
		return f, first, Errorf(ExitRuntime, "ferry audit: reading the journal: %w", err)
	}
	return f, first, nil
}

// mergeAudit stores sum, with findings, in the state: findings and sources from logs
// this run read replace an earlier run's; those from other logs are kept.
func (m *Migration) mergeAudit(ctx context.Context, sum *certificate.AuditSummary, findings []certificate.AuditFinding) error {
	read := map[string]bool{}
	for _, s := range sum.Sources {
		read[s.Location] = true
	}
	if prev, ok, err := m.auditSummary(ctx); err != nil {
		return err
	} else if ok {
		for _, s := range prev.Sources {
			if !read[s.Location] {
				sum.Sources = append(sum.Sources, s)
			}
		}
		for _, fd := range prev.Findings {
			if loc := fd.Log[:max(0, strings.LastIndexByte(fd.Log, ':'))]; !read[loc] {
				findings = append(findings, fd)
			}
		}
		if prev.WindowFrom < sum.WindowFrom {
			sum.WindowFrom = prev.WindowFrom
		}
	}
	slices.SortFunc(findings, func(a, b certificate.AuditFinding) int {
		return strings.Compare(a.Time+"\x00"+a.Store+"\x00"+a.Key+"\x00"+a.Log, b.Time+"\x00"+b.Store+"\x00"+b.Key+"\x00"+b.Log)
	})
	slices.SortFunc(sum.Sources, func(a, b certificate.AuditSource) int { return strings.Compare(a.Location, b.Location) })
	sum.FindingsTotal = int64(len(findings))
	sum.Findings = findings[:min(len(findings), certificate.MaxAuditFindings)]
	if sum.Findings == nil {
		sum.Findings = []certificate.AuditFinding{}
	}
	b, err := json.Marshal(sum)
	if err != nil {
		return Errorf(ExitRuntime, "%w", err)
	}
	if m.Opts.DryRun {
		return nil
	}
	if err := m.State.SetMeta(ctx, auditMetaKey, string(b)); err != nil {
		return Errorf(ExitRuntime, "%w", err)
	}
	return nil
}

// auditSummary is the last audit's summary, if any.
func (m *Migration) auditSummary(ctx context.Context) (*certificate.AuditSummary, bool, error) {
	v, ok, err := m.State.Meta(ctx, auditMetaKey)
	if err != nil {
		return nil, false, Errorf(ExitRuntime, "%w", err)
	}
	if !ok || v == "" {
		return nil, false, nil
	}
	var s certificate.AuditSummary
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return nil, false, Errorf(ExitRuntime, "the state's audit summary: %w", err)
	}
	return &s, true, nil
}
