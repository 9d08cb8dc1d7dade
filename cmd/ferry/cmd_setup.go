package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferrymigrate/ferry/migrate"
	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers"
)

type initResult struct {
	Spec       string   `json:"spec"`
	PrivateKey string   `json:"private_key"`
	PublicKey  string   `json:"public_key"`
	KeyID      string   `json:"keyid"`
	DataDirs   []string `json:"data_dirs"`
	Signer     string   `json:"signer"` // report.signer written into the spec, "" if left unset
}

// signerLine is the template's placeholder for report.signer; init replaces it with
// the --signer it is given.
const signerLine = "  # signer: Data Protection Office"

func newInitCmd(g *globals) *cobra.Command {
	var migration, signer string
	c := &cobra.Command{
		Use:   "init [DIR]",
		Short: "Write an annotated ferry.yaml and a signing key pair",
		Long: `init writes DIR/ferry.yaml (DIR defaults to the current folder), an annotated spec
whose local file:// sites run out of the box, creates their folders, and generates
the Ed25519 key pair that signs the certificate (keys/ferry.key, mode 0600, and
keys/ferry.pub). It never overwrites an existing file.

--signer names the person or office that signs the certificate (report.signer).
Without it the spec keeps a commented placeholder, init says so, and every report
warns until it is set: the certificate then says "signer: (not set)".`,
		Example: `  ferry init ./us-users-2022 --migration us-users-2022 --signer "Data Protection Office"`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			res, err := initDir(dir, migration, signer)
			return g.finish(cmd, res, err, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %s\nsigning key %s (keyid %s), public key %s\nsites: %v\n",
					res.Spec, res.PrivateKey, res.KeyID, res.PublicKey, res.DataDirs)
				if res.Signer == "" {
					fmt.Fprintf(w, "signer: not set: name the person or office that signs the certificate in report.signer (or init --signer); until then the certificate says \"signer: (not set)\"\n")
				} else {
					fmt.Fprintf(w, "signer: %s\n", res.Signer)
				}
				fmt.Fprintf(w, "next: edit the spec, then `ferry validate -c %s`\n", res.Spec)
			})
		},
	}
	c.Flags().StringVar(&migration, "migration", "example-migration", "the migration id written into the spec")
	c.Flags().StringVar(&signer, "signer", "", "the person or office that signs the certificate (report.signer)")
	return c
}

func initDir(dir, migration, signer string) (*initResult, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "ferry.yaml")
	if _, err := os.Stat(path); err == nil {
		return nil, usagef("%s exists: init never overwrites a spec", path)
	}
	data := spec.Template(migration)
	if signer = strings.TrimSpace(signer); signer != "" {
		if !bytes.Contains(data, []byte(signerLine+"\n")) {
			return nil, errors.New("the built-in template has no report.signer placeholder (a bug)")
		}
		q, err := json.Marshal(signer) // a JSON string is a YAML double-quoted scalar
		if err != nil {
			return nil, usagef("--signer: %v", err)
		}
		data = bytes.Replace(data, []byte(signerLine+"\n"), []byte("  signer: "+string(q)+"\n"), 1)
	}
	sp, err := spec.Parse(data, path)
	if err != nil {
		if signer != "" {
			return nil, usagef("--signer %q: %v", signer, err)
		}
		return nil, fmt.Errorf("the built-in template does not parse (a bug): %w", err)
	}
	res := &initResult{Spec: path, Signer: sp.Report.Signer}
	// Keys first: an existing key refuses the init before anything is created.
	keyDir := filepath.Join(dir, "keys")
	if sp.Report.SigningKey != "" {
		keyDir = filepath.Dir(sp.Report.SigningKey)
	}
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return nil, err
	}
	res.PrivateKey, res.PublicKey, res.KeyID, err = certificate.GenerateKeyPair(keyDir)
	if err != nil {
		return nil, err
	}
	for _, s := range append(append([]spec.Site(nil), sp.Sources...), spec.Site{URL: sp.Target.URL}) {
		if p, ok := filePath(s.URL); ok {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return nil, err
			}
			res.DataDirs = append(res.DataDirs, p)
		}
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

func filePath(u string) (string, bool) {
	const p = "file://"
	if len(u) > len(p) && u[:len(p)] == p {
		return u[len(p):], true
	}
	return "", false
}

func newValidateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate",
		Short: "Parse the spec and reach every site and the target with read-only probes",
		Long: `validate parses the spec strictly (unknown keys, missing fields, bad URLs, inline
secrets and a target region outside the residency policy are errors naming the file,
line and key: exit 2), then reaches every site and the target with read-only probes
(exit 1 if one cannot be reached, 5 if the target's region breaks residency).`,
		Example: `  ferry validate
  ferry validate -c specs/us-users.yaml --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			o := g.options()
			// Without --dry-run validate writes ferry's marker object to the target and
			// records its key in the state (the marker proves no site is the target).
			o.NoState = g.dryRun
			m, err := migrate.Open(ctx, o)
			if err != nil {
				return g.finish(cmd, nil, err, nil)
			}
			defer m.Close()
			res, err := m.Validate(ctx)
			return g.finish(cmd, res, err, func(w io.Writer) {
				fmt.Fprintf(w, "spec %s: migration %s, spec digest %.16s\n", g.config, res.Migration, res.SpecDigest)
				for _, p := range append(res.Sites, res.Target) {
					status := "ok"
					if !p.OK {
						status = "FAILED: " + p.Error
					} else if p.Empty {
						status = "ok (empty)"
					}
					if p.Region != "" {
						status += ", region " + p.Region
					}
					if p.Versioning != "" {
						status += ", versioning " + p.Versioning + " (every version is user data: a replica is deleted only when no other version remains)"
					}
					if p.Inventory != "" {
						status += ", planned from the " + p.Inventory
					}
					fmt.Fprintf(w, "  %-10s %s: %s\n", p.Name, p.URL, status)
				}
			})
		},
	}
}

func newKeysCmd(g *globals) *cobra.Command {
	keys := &cobra.Command{
		Use:     "keys",
		Short:   "Manage certificate signing keys",
		Example: `  ferry keys generate --out keys/`,
	}
	var out string
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Generate an Ed25519 key pair: ferry.key (PKCS#8 PEM, mode 0600) and ferry.pub (PKIX PEM)",
		Long: `generate writes OUT/ferry.key (PKCS#8 PEM private key, mode 0600) and OUT/ferry.pub
(PKIX PEM public key) and prints the keyid (hex SHA-256 of the public key's DER),
which certificates name. It never overwrites a key.`,
		Example: `  ferry keys generate --out keys/
  ferry keys generate --out approver-keys/ --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(out, 0o700); err != nil {
				return g.finish(cmd, nil, err, nil)
			}
			priv, pub, id, err := certificate.GenerateKeyPair(out)
			res := map[string]string{"private_key": priv, "public_key": pub, "keyid": id}
			if err != nil {
				return g.finish(cmd, nil, err, nil)
			}
			return g.finish(cmd, res, nil, func(w io.Writer) {
				fmt.Fprintf(w, "private key %s\npublic key  %s\nkeyid       %s\n", priv, pub, id)
			})
		},
	}
	gen.Flags().StringVar(&out, "out", ".", "folder to write the key pair into")
	keys.AddCommand(gen)
	return keys
}

func newGenerateCmd(g *globals) *cobra.Command {
	var o synth.Options
	var url string
	var share float64
	c := &cobra.Command{
		Use:    "generate --site URL",
		Short:  "Write synthetic user records into a store (tests, demos, benchmarks)",
		Hidden: true,
		Example: `  ferry generate --site file:///tmp/sites/virginia --users 1000 --per-user 5
  ferry generate --site file:///tmp/sites/singapore --users 1000 --per-user 5 --share 0.8`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" {
				return usagef("--site is required")
			}
			store, err := providers.Open(cmd.Context(), providers.Config{Name: "generate", URL: url})
			if err != nil {
				return g.finish(cmd, nil, err, nil)
			}
			defer store.Close()
			recs := synth.Records(o)
			if share < 1 {
				recs = synth.Subset(recs, share, 1)
			}
			err = synth.Populate(cmd.Context(), store, recs, 8)
			var total int64
			for _, r := range recs {
				total += r.Size
			}
			res := map[string]int64{"records": int64(len(recs)), "bytes": total}
			return g.finish(cmd, res, err, func(w io.Writer) { fmt.Fprintf(w, "wrote %d records (%s) to %s\n", len(recs), ib(total), url) })
		},
	}
	c.Flags().StringVar(&url, "site", "", "store URL to write into")
	c.Flags().IntVar(&o.Users, "users", 100, "users")
	c.Flags().IntVar(&o.RecordsPerUser, "per-user", 5, "average records per user")
	c.Flags().Int64Var(&o.MinSize, "min-size", 512, "smallest record in bytes")
	c.Flags().Int64Var(&o.MaxSize, "max-size", 16<<10, "largest ordinary record in bytes")
	c.Flags().IntVar(&o.LargeEvery, "large-every", 0, "make every Nth record large")
	c.Flags().Int64Var(&o.MaxLarge, "max-large", 4<<20, "largest large record in bytes")
	c.Flags().BoolVar(&o.Tricky, "tricky", true, "add awkward keys (spaces, NFC/NFD, a- beside a/)")
	c.Flags().Uint64Var(&o.Seed, "seed", 1, "seed")
	c.Flags().Float64Var(&share, "share", 1, "write only this share of the records (a backup site)")
	return c
}
