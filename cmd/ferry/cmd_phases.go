package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ferrymigrate/ferry/migrate"
)

// withMigration opens the migration, runs fn and closes it.
func (g *globals) withMigration(cmd *cobra.Command, fn func(ctx context.Context, m *migrate.Migration) (any, error), text func(io.Writer, any)) error {
	return g.withMigrationOffline(cmd, false, fn, text)
}

// withMigrationOffline is withMigration for a phase that may need no access to the
// stores (offline): they are opened only if used, so no site's secrets are needed.
func (g *globals) withMigrationOffline(cmd *cobra.Command, offline bool, fn func(ctx context.Context, m *migrate.Migration) (any, error), text func(io.Writer, any)) error {
	ctx := cmd.Context()
	o := g.options()
	o.Offline = offline
	stop, err := g.serveMetrics(&o)
	if err != nil {
		return g.finish(cmd, nil, err, nil)
	}
	defer stop()
	m, err := migrate.Open(ctx, o)
	if err != nil {
		return g.finish(cmd, nil, err, nil)
	}
	res, err := fn(ctx, m)
	if cerr := m.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return g.finish(cmd, res, err, func(w io.Writer) { text(w, res) })
}

func newPlanCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "plan",
		Short: "List every site, reconcile replicas, store the inventory and print the plan digest",
		Long: `plan lists every site at once, groups the objects with the same relative key into
one record with several replicas, flags replicas that differ as conflicts, and
stores the inventory. Re-planning is incremental: finished work is kept.

It prints the plan digest (covering the spec and the sorted inventory) and, for
each deletion stage, the scope the stage will have once everything verifies,
with the scope digest that ` + "`ferry delete --confirm`" + ` takes.`,
		Example: `  ferry plan
  ferry plan --dry-run --json     # what CI runs on every spec change
  ferry plan --worker             # one of many processes listing huge sites together`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withMigration(cmd, func(ctx context.Context, m *migrate.Migration) (any, error) {
				return m.Plan(ctx)
			}, func(w io.Writer, r any) { printPlan(w, r.(*migrate.PlanResult)) })
		},
	}
	g.workerFlags(c)
	return c
}

func newCopyCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "copy",
		Short: "Copy planned records to the target, checking the target's checksum against what was read",
		Long: `copy reads each planned record from one replica (primary first), hashes it while
streaming (SHA-256, and CRC32C for multipart targets), writes it to the target and
compares the target's own reported checksum with what was read. A record whose
target copy already matches is not copied again; a source that changes during the
copy is retried. Records that fail after the configured retries are reported and
retried by the next run (exit 3).`,
		Example: `  ferry copy
  ferry copy --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withMigration(cmd, func(ctx context.Context, m *migrate.Migration) (any, error) {
				return m.Copy(ctx)
			}, func(w io.Writer, r any) { printCopy(w, r.(*migrate.CopyResult)) })
		},
	}
	g.workerFlags(c)
	return c
}

func newVerifyCmd(g *globals) *cobra.Command {
	var reread bool
	c := &cobra.Command{
		Use:   "verify",
		Short: "Prove every target copy and every replica due for deletion",
		Long: `verify is independent of copy: it checks each target copy's checksum (or, with
--reread, reads it back and hashes it) against the SHA-256 read from the source,
and proves every replica that a deletion stage will delete identical to the record
(by the site's trustworthy checksum, or by reading it). Divergent replicas are
never deleted.`,
		Example: `  ferry verify
  ferry verify --reread`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withMigration(cmd, func(ctx context.Context, m *migrate.Migration) (any, error) {
				return m.Verify(ctx, reread)
			}, func(w io.Writer, r any) { printVerify(w, r.(*migrate.VerifyResult)) })
		},
	}
	c.Flags().BoolVar(&reread, "reread", false, "read every target copy back and re-hash it")
	g.workerFlags(c)
	return c
}

func newDeleteCmd(g *globals) *cobra.Command {
	var stage, confirm string
	var restore, purge bool
	c := &cobra.Command{
		Use:   "delete --stage S (--confirm DIGEST | --restore | --purge)",
		Short: "Delete one stage's verified replicas (soft or hard), or restore / purge a soft-deleted stage",
		Long: `delete removes the replicas of one stage: verified records' replicas at the stage's
sites, proven identical to the target copy. Stages run in spec order.

The scope digest must be confirmed with --confirm (at least 8 hex characters):
` + "`ferry delete --stage S --dry-run`" + ` prints the scope and its digest, and so does
` + "`ferry plan`" + `. Just before each delete ferry checks the target copy again, then
deletes exactly the version that was verified, then confirms it is gone.

In soft mode replicas stay recoverable at their site until --purge (after the grace
period in force when the stage soft-deleted, or the spec's if longer); --restore puts
a soft-deleted stage back, and its replicas must be verified again before deletion.

The plan records the sites, target, stages and records rules it was made against; while
the spec says otherwise, delete, --purge and --restore are refused (exit 5): run
` + "`ferry plan`" + ` again and review the new scope.`,
		Example: `  ferry delete --stage canary --dry-run
  ferry delete --stage canary --confirm 3f9a1c2e
  ferry delete --stage canary --restore
  ferry delete --stage canary --purge`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if stage == "" {
				return usagef("--stage is required")
			}
			if restore && purge {
				return usagef("--restore and --purge exclude each other")
			}
			if (restore || purge) && confirm != "" {
				return usagef("--confirm goes with a delete, not with --restore or --purge")
			}
			// A dry run reads only the state: it needs no site's credentials.
			return g.withMigrationOffline(cmd, g.dryRun, func(ctx context.Context, m *migrate.Migration) (any, error) {
				switch {
				case restore:
					return m.Restore(ctx, stage)
				case purge:
					return m.Purge(ctx, stage)
				}
				return m.Delete(ctx, stage, confirm)
			}, func(w io.Writer, r any) {
				switch r := r.(type) {
				case *migrate.DeleteResult:
					printDelete(w, r)
				case *migrate.StageOpResult:
					printStageOp(w, r)
				}
			})
		},
	}
	c.Flags().StringVar(&stage, "stage", "", "the stage to run (a name from delete.stages)")
	c.Flags().StringVar(&confirm, "confirm", "", "the stage's scope digest (at least 8 hex characters)")
	c.Flags().BoolVar(&restore, "restore", false, "undo a soft-deleted stage")
	c.Flags().BoolVar(&purge, "purge", false, "remove a soft-deleted stage's kept bytes for good (after the grace period)")
	g.workerFlags(c)
	return c
}

func newStatusCmd(g *globals) *cobra.Command {
	var user string
	var watch bool
	var interval = 2
	c := &cobra.Command{
		Use:   "status",
		Short: "Counts by state, site and stage, bytes, rate; --user shows one user's records",
		Long: `status reads the checkpoint state without taking the migration lock, so it works
while another ferry process runs. --watch redraws every few seconds.`,
		Example: `  ferry status
  ferry status --user alice
  ferry status --watch`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			o := g.options()
			o.ReadOnlyState = true
			o.Offline = true // the state alone: no site's credentials needed
			m, err := migrate.Open(ctx, o)
			if err != nil {
				return g.finish(cmd, nil, err, nil)
			}
			defer func() { m.Close() }() // the one open when it returns
			for {
				res, err := m.Status(ctx, user)
				if !watch || err != nil || g.json {
					return g.finish(cmd, res, err, func(w io.Writer) { printStatus(w, res) })
				}
				if g.stdoutTTY {
					fmt.Fprint(g.stdout, "\033[H\033[2J")
				}
				printStatus(g.stdout, res)
				select {
				case <-ctx.Done():
					return nil
				case <-tick(interval):
				}
				if s, ok := m.State.(interface{ Reopen() bool }); ok && s.Reopen() {
					// A state in an older layout is read from a copy taken at open
					// (SQLite) or through a view of its old tables (PostgreSQL): open
					// it again (reading the state itself once it was upgraded).
					again, err := migrate.Open(ctx, o)
					if err != nil {
						return g.finish(cmd, nil, err, nil)
					}
					m.Close()
					m = again
				}
			}
		},
	}
	c.Flags().StringVar(&user, "user", "", "list where this user's records are and in what state")
	c.Flags().BoolVar(&watch, "watch", false, "redraw until interrupted")
	c.Flags().IntVar(&interval, "interval", 2, "seconds between redraws with --watch")
	return c
}

func newRunCmd(g *globals) *cobra.Command {
	var through, confirm string
	var reread bool
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the phases in order: plan, copy, verify and (with --through delete) every stage",
		Long: `run runs plan, copy and verify, and with --through delete every deletion stage in
spec order. Deleting needs --confirm with the plan digest that ` + "`ferry plan`" + ` printed,
and each stage's scope must be exactly what the plan predicted; otherwise run stops
before deleting anything.`,
		Example: `  ferry run --through verify
  ferry plan                                   # prints the plan digest
  ferry run --through delete --confirm 9c1e44d0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch through {
			case "copy", "verify", "delete":
			default:
				return usagef("--through must be copy, verify or delete, not %q", through)
			}
			return g.withMigration(cmd, func(ctx context.Context, m *migrate.Migration) (any, error) {
				return m.Run(ctx, through, confirm, reread)
			}, func(w io.Writer, r any) { printRun(w, r.(*migrate.RunResult)) })
		},
	}
	c.Flags().StringVar(&through, "through", "verify", "last phase to run: copy, verify or delete")
	c.Flags().StringVar(&confirm, "confirm", "", "the plan digest (at least 8 hex characters), needed with --through delete")
	c.Flags().BoolVar(&reread, "reread", false, "verify by reading every target copy back")
	return c
}
