package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ferrymigrate/ferry/migrate"
	"github.com/ferrymigrate/ferry/migrate/spec"
)

func newLimitsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "limits",
		Short: "Show or change the limits on a running migration (requests/s, bytes/s per store)",
		Long: `limits shows the requests per second and bytes per second each store is capped
at now (the spec's limits, its schedule, or an override) and the time spent
waiting on them.

limits set records an override in the checkpoint state: every ferry process of
the migration (workers on other machines included) applies it within a few
seconds, without a restart. limits clear removes it, and the spec applies again.`,
		Example: `  ferry limits
  ferry limits set --site virginia --rps 200 --bps 50MiB
  ferry limits set --target --bps unlimited
  ferry limits clear --site virginia`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withLimits(cmd, func(ctx context.Context, m *migrate.Migration) (*migrate.LimitsResult, error) {
				ls, err := m.Limits(ctx)
				if err != nil {
					return nil, err
				}
				return &migrate.LimitsResult{Limits: ls}, nil
			})
		},
	}
	var site, rps, bps string
	var target, all bool
	store := func() (string, error) {
		switch {
		case target && site != "":
			return "", usagef("name one store: --site NAME or --target")
		case target:
			return spec.TargetName, nil
		case site != "":
			return site, nil
		}
		return "", nil
	}
	set := &cobra.Command{
		Use:   "set (--site NAME | --target) [--rps N] [--bps SIZE]",
		Short: "Override a store's limits on a running migration",
		Long: `set overrides one store's requests per second (--rps) and bytes per second
(--bps, a size like 50MiB) for the whole migration: every process working it
takes its share. "unlimited" lifts a cap. A flag left out keeps what the spec
says for that dimension, schedule included. The override holds until limits
clear.`,
		Example: `  ferry limits set --site virginia --rps 200 --bps 50MiB
  ferry limits set --site virginia --rps unlimited`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := store()
			if err != nil {
				return err
			}
			if name == "" {
				return usagef("say which store: --site NAME or --target")
			}
			var r *float64
			var b *int64
			if rps != "" {
				v, err := spec.ParseRequestRate(rps)
				if err != nil {
					return usagef("--rps %s", err)
				}
				r = &v
			}
			if bps != "" {
				v, err := spec.ParseByteRate(bps)
				if err != nil {
					return usagef("--bps %s", err)
				}
				b = &v
			}
			if r == nil && b == nil {
				return usagef("say which limit to set: --rps, --bps or both (unlimited lifts one)")
			}
			return g.withLimits(cmd, func(ctx context.Context, m *migrate.Migration) (*migrate.LimitsResult, error) {
				return m.SetLimit(ctx, name, r, b)
			})
		},
	}
	set.Flags().StringVar(&site, "site", "", "the site whose limits to change")
	set.Flags().BoolVar(&target, "target", false, "change the target's limits")
	set.Flags().StringVar(&rps, "rps", "", "requests per second for the whole migration, or unlimited")
	set.Flags().StringVar(&bps, "bps", "", "bytes per second for the whole migration (50MiB, 1048576), or unlimited")
	clear := &cobra.Command{
		Use:     "clear (--site NAME | --target | --all)",
		Short:   "Remove an override: the spec's limits apply again",
		Example: `  ferry limits clear --site virginia`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := store()
			if err != nil {
				return err
			}
			if (name == "") == !all {
				return usagef("say which override to clear: --site NAME, --target or --all")
			}
			return g.withLimits(cmd, func(ctx context.Context, m *migrate.Migration) (*migrate.LimitsResult, error) {
				return m.ClearLimit(ctx, name)
			})
		},
	}
	clear.Flags().StringVar(&site, "site", "", "the site whose override to remove")
	clear.Flags().BoolVar(&target, "target", false, "remove the target's override")
	clear.Flags().BoolVar(&all, "all", false, "remove every override")
	c.AddCommand(set, clear)
	return c
}

// withLimits opens the migration's state (no store: no site's secrets needed) and
// runs fn.
func (g *globals) withLimits(cmd *cobra.Command, fn func(ctx context.Context, m *migrate.Migration) (*migrate.LimitsResult, error)) error {
	ctx := cmd.Context()
	o := g.options()
	o.Offline = true
	m, err := migrate.Open(ctx, o)
	if err != nil {
		return g.finish(cmd, nil, err, nil)
	}
	res, err := fn(ctx, m)
	if cerr := m.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return g.finish(cmd, res, err, func(w io.Writer) {
		if res.Changed != "" {
			fmt.Fprintf(w, "%s; running processes apply it within a few seconds\n", res.Changed)
		}
		printLimits(w, res.Limits)
	})
}

// printLimits writes the limits table that status and limits share.
func printLimits(w io.Writer, ls []migrate.StoreLimit) {
	if len(ls) == 0 {
		fmt.Fprintln(w, "limits: none")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  store\tlimit in force\tfrom\twaited\tprocesses (waiting now)")
	for _, l := range ls {
		from := l.Source
		switch {
		case l.Window != "" && l.Source == "override":
			from += ", schedule " + l.Window
		case l.Window != "":
			from += " " + l.Window
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d (%d)\n", l.Store, l.Limit(), from, seconds(l.WaitedSeconds), l.Processes, l.Waiting)
	}
	tw.Flush()
}

func seconds(s float64) string {
	switch {
	case s == 0:
		return "0s"
	case s < 10:
		return fmt.Sprintf("%.1fs", s)
	}
	return fmt.Sprintf("%.0fs", s)
}
