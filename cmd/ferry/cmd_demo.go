package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ferrymigrate/ferry/migrate"
	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers"
)

// demoSpec is the embedded default: three local sites, a local target, SQLite state,
// a canary stage, then backups, then the primary.
const demoSpec = `# ferry demo: three local "sites" and a local "target", SQLite state.
migration: demo-us-users
state: ferry.db
sources:
  - {name: virginia, role: primary, url: file://./sites/virginia}
  - {name: singapore, role: backup, url: file://./sites/singapore}
  - {name: archive, role: backup, url: file://./sites/archive}
target:
  url: file://./target
records:
  user: '^(?P<user>[^/]+)/'
  conflicts: fail
copy:
  concurrency: 16
delete:
  mode: soft
  grace: 0s
  stages:
    - {name: canary, sites: [singapore], sample: 5%}
    - {name: backups, sites: [singapore, archive]}
    - {name: primary, sites: [virginia], mode: hard}
report:
  signing_key: keys/ferry.key
  signer: Demo Data Protection Office
`

func newDemoCmd(g *globals) *cobra.Command {
	var users int
	c := &cobra.Command{
		Use:   "demo [DIR]",
		Short: "Run a whole migration on generated local data: plan, copy, verify, every stage, report",
		Long: `demo builds a migration in DIR (default ./ferry-demo, which must not exist): a few
thousand synthetic user records across three local sites (virginia, the primary;
singapore and archive, backups holding part of the records) with one deliberate
conflict, then runs plan, copy, verify, every delete stage (confirming each scope
digest as an operator would), purges the soft-deleted stages and writes the signed
certificate. The conflicting record is kept at every site and reported, so the
certificate honestly says the migration is incomplete.`,
		Example: `  ferry demo
  ferry demo /tmp/ferry-demo --users 1000`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "ferry-demo"
			if len(args) == 1 {
				dir = args[0]
			}
			return g.runDemo(cmd.Context(), cmd.OutOrStdout(), dir, users)
		},
	}
	c.Flags().IntVar(&users, "users", 500, "number of synthetic users (about 6 records each)")
	return c
}

func (g *globals) runDemo(ctx context.Context, w io.Writer, dir string, users int) error {
	if _, err := os.Stat(dir); err == nil {
		return usagef("%s exists: the demo starts from an empty folder (remove it, or name another)", dir)
	}
	for _, d := range []string{"keys", "sites/virginia", "sites/singapore", "sites/archive", "target"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	specPath := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(specPath, []byte(demoSpec), 0o644); err != nil {
		return err
	}
	if _, _, _, err := certificate.GenerateKeyPair(filepath.Join(dir, "keys")); err != nil {
		return err
	}
	step := func(format string, a ...any) { fmt.Fprintf(w, "==> "+format+"\n", a...) }

	step("generating %d users' records into %s/sites", users, dir)
	recs := synth.Records(synth.Options{Users: users, RecordsPerUser: 6, Tricky: true, LargeEvery: 500, MaxLarge: 3 << 20, Seed: 42})
	sites := map[string][]synth.Record{"virginia": recs, "singapore": synth.Subset(recs, 0.8, 1), "archive": synth.Subset(recs, 0.3, 2)}
	for _, name := range []string{"virginia", "singapore", "archive"} {
		abs, _ := filepath.Abs(filepath.Join(dir, "sites", name))
		store, err := providers.Open(ctx, providers.Config{Name: name, URL: "file://" + abs})
		if err != nil {
			return err
		}
		err = synth.Populate(ctx, store, sites[name], 8)
		if err == nil && name == "singapore" {
			// The deliberate conflict: one backup copy differs from the primary.
			bad := sites[name][len(sites[name])/2]
			bad.Size, bad.Seed = bad.Size+7, bad.Seed+1
			err = synth.Populate(ctx, store, []synth.Record{bad}, 1)
			step("made %q differ at singapore (a deliberate conflict)", bad.Key)
		}
		store.Close()
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "    %-9s %d records\n", name, len(sites[name]))
	}

	o := g.options()
	o.SpecPath = specPath
	o.StateDSN = ""
	o.DryRun = false
	m, err := migrate.Open(ctx, o)
	if err != nil {
		return err
	}
	defer m.Close()
	step("ferry plan")
	plan, err := m.Plan(ctx)
	if err != nil && migrate.ExitCode(err) != migrate.ExitIncomplete {
		return err
	}
	printPlan(w, plan)
	step("ferry copy")
	cp, err := m.Copy(ctx)
	if err != nil && migrate.ExitCode(err) != migrate.ExitIncomplete {
		return err
	}
	printCopy(w, cp)
	step("ferry verify")
	vr, err := m.Verify(ctx, false)
	if err != nil && migrate.ExitCode(err) != migrate.ExitIncomplete {
		return err
	}
	printVerify(w, vr)
	for _, st := range m.Spec.Delete.Stages {
		step("ferry delete --stage %s --dry-run, then --confirm", st.Name)
		m.Opts.DryRun = true
		preview, err := m.Delete(ctx, st.Name, "")
		m.Opts.DryRun = false
		if err != nil {
			return err
		}
		d, err := m.Delete(ctx, st.Name, preview.Scope.Digest[:12])
		if err != nil {
			return err
		}
		printDelete(w, d)
		if d.Mode == "soft" {
			step("ferry delete --stage %s --purge (the demo's grace period is 0s)", st.Name)
			p, err := m.Purge(ctx, st.Name)
			if err != nil {
				return err
			}
			printStageOp(w, p)
		}
	}
	step("ferry report")
	out := filepath.Join(dir, "report")
	rep, err := m.Report(ctx, out)
	if err != nil && migrate.ExitCode(err) != migrate.ExitIncomplete {
		return err
	}
	fmt.Fprintf(w, "wrote %s, %s, %s, %s\n", rep.ManifestPath, rep.CertificatePath, rep.HTMLPath, rep.PDFPath)
	if !rep.Complete {
		fmt.Fprintln(w, "the certificate says INCOMPLETE, as it should: the deliberate conflict was neither copied nor deleted:")
		for _, r := range rep.IncompleteReasons {
			fmt.Fprintf(w, "  - %s\n", r)
		}
	}
	step("done. Look around (ferry is bin/ferry after `make build`):")
	fmt.Fprintf(w, "  cd %s\n  ferry status\n  ferry status --user %s\n  ferry report verify report/certificate.json --manifest report/manifest.jsonl --pubkey keys/ferry.pub\n  open report/certificate.pdf\n", dir, synth.User(0))
	return nil
}
