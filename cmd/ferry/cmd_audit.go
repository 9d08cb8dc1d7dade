package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ferrymigrate/ferry/migrate"
	"github.com/ferrymigrate/ferry/migrate/certificate"
)

func newAuditCmd(g *globals) *cobra.Command {
	var o migrate.AuditOptions
	c := &cobra.Command{
		Use:   "audit --logs PATH...",
		Short: "Check the stores' own access logs for accesses to migrated records by anyone but ferry",
		Long: `audit reads the stores' own access logs and reports every access to a record of
this migration, at a site or at the target, by an identity other than the ones ferry
acted as:

  foreign-access   within the migration's window (from ferry's first journalled
                   request to now)
  after-deletion   at any time after ferry deleted that replica: a read of a key
                   ferry deleted means a copy ferry did not know about

Formats (--format, or auto): s3 (S3 server access logs), minio (MinIO audit log JSON),
oci (OCI Audit events), gcs (Cloud Audit Logs, Data Access), azure (StorageBlobLogs).
Gzip-compressed files are read as they are. A --logs value may be the bucket the logs
are delivered to (s3://logs/access/, gs://, azblob://, oci://): every object under it
is read, with the endpoint and credentials of the spec's first store of that scheme. ferry's own requests are known from its
journal: the access key ids it signed with (matched by SHA-256), the identities it
acted as and the request ids the stores answered; add others with --ferry-identity
(e.g. the ARN a log names for ferry's role).

The findings are kept in the state and go into the next report's certificate
(predicate.audit). audit exits 3 when there are findings, 0 when there are none.
It reads only the state and the logs: no credentials for the migrated stores are needed
unless the logs are in a bucket.`,
		Example: `  ferry audit --logs logs/virginia-access.log --logs logs/target-audit.json.gz
  ferry audit --logs logs/*.log --format s3 --ferry-identity arn:aws:iam::123456789012:role/ferry --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withMigrationOffline(cmd, true, func(ctx context.Context, m *migrate.Migration) (any, error) {
				return m.Audit(ctx, o)
			}, func(w io.Writer, r any) {
				printAudit(w, r.(*certificate.AuditSummary))
			})
		},
	}
	c.Flags().StringSliceVar(&o.Logs, "logs", nil, "access log files, or bucket URLs they are delivered to (repeat or comma-separate)")
	c.Flags().StringVar(&o.Format, "format", "auto", "log format: auto, s3, minio, oci, gcs or azure")
	c.Flags().StringSliceVar(&o.FerryIdentities, "ferry-identity", nil, "an identity to take as ferry's own, as the logs name it (repeatable)")
	return c
}

func printAudit(w io.Writer, s *certificate.AuditSummary) {
	if s == nil {
		return
	}
	fmt.Fprintf(w, "window %s to %s\n", s.WindowFrom, s.WindowTo)
	for _, src := range s.Sources {
		store := src.Store
		if store == "" {
			store = "-"
		}
		fmt.Fprintf(w, "  %s (%s, %s): %d entries, %d ferry's own, %d by others\n", src.Location, src.Format, store, src.Entries, src.Ferry, src.Other)
	}
	if s.FindingsTotal == 0 {
		fmt.Fprintln(w, "findings: none")
		return
	}
	fmt.Fprintf(w, "findings: %d\n", s.FindingsTotal)
	for _, f := range s.Findings {
		fmt.Fprintf(w, "  %s  %-14s %-6s %s/%s by %s (%s, status %d, from %s) [%s]\n",
			f.Time, f.Kind, f.Operation, f.Store, f.Key, f.Identity, f.Action, f.Status, f.SourceIP, f.Log)
	}
	if n := s.FindingsTotal - int64(len(s.Findings)); n > 0 {
		fmt.Fprintf(w, "  ... and %d more\n", n)
	}
}
