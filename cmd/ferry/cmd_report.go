package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/ferrymigrate/ferry/migrate"
	"github.com/ferrymigrate/ferry/migrate/certificate"
)

func newReportCmd(g *globals) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "report",
		Short: "Write manifest.jsonl and the signed certificate (JSON, HTML, PDF)",
		Long: `report writes, into --out (default: report/ beside the spec):

  manifest.jsonl    one canonical JSON line per record, sorted by key
  journal.jsonl     every request ferry made that touched user data (site, key,
                    version, operation, request id, identity, host, worker, time,
                    outcome), hash-chained per process; its heads are in the certificate
  certificate.json  a DSSE envelope over an in-toto statement: the manifest's digest,
                    its RFC 6962 Merkle root, sites, target, residency, stages, counts
                    and the NIST SP 800-88 sanitization record, signed with Ed25519
  certificate.html  the same facts for people
  certificate.pdf   the summary page a compliance officer signs

A migration that is not complete (conflicts, failures, stages not run or not
purged) is certified as incomplete, with the reasons, and report exits 3.`,
		Example: `  ferry report --out ./certificate
  ferry report sign certificate/certificate.json --key approver.key
  ferry report verify certificate/certificate.json --manifest certificate/manifest.jsonl --pubkey keys/ferry.pub
  ferry report prove --user alice --out alice-proof.json
  ferry report verify-proof alice-proof.json --cert certificate/certificate.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The certificate comes from the state: no site's credentials needed.
			return g.withMigrationOffline(cmd, true, func(ctx context.Context, m *migrate.Migration) (any, error) {
				return m.Report(ctx, out)
			}, func(w io.Writer, r any) {
				res := r.(*migrate.ReportResult)
				for _, w2 := range res.Warnings {
					fmt.Fprintf(w, "warning: %s\n", w2)
				}
				if res.ReportResult == nil {
					return
				}
				if res.DryRun {
					fmt.Fprintf(w, "report would certify %d records, merkle root %s%s\n", res.Summary.TreeSize, res.Summary.Root, dry(true))
				} else {
					fmt.Fprintf(w, "wrote %s\n      %s\n      %s\n      %s\n", res.ManifestPath, res.CertificatePath, res.HTMLPath, res.PDFPath)
					if res.JournalPath != "" {
						fmt.Fprintf(w, "      %s\n", res.JournalPath)
					}
					fmt.Fprintf(w, "records %d, merkle root %s, signed by keyid %s\n", res.Summary.TreeSize, res.Summary.Root, res.KeyID)
				}
				if res.Complete {
					fmt.Fprintln(w, "status: COMPLETE")
				} else {
					fmt.Fprintln(w, "status: INCOMPLETE")
					for _, r := range res.IncompleteReasons {
						fmt.Fprintf(w, "  - %s\n", r)
					}
				}
			})
		},
	}
	c.Flags().StringVar(&out, "out", "", "folder for the report files (default: report/ beside the spec)")
	c.AddCommand(newReportSignCmd(g), newReportVerifyCmd(g), newReportProveCmd(g), newReportVerifyProofCmd(g))
	return c
}

func newReportSignCmd(g *globals) *cobra.Command {
	var key string
	c := &cobra.Command{
		Use:   "sign CERT --key FILE",
		Short: "Add a second signature (an approver's) to a certificate",
		Long: `sign adds the approver's Ed25519 signature to certificate.json (the DSSE envelope
keeps every signature) and renders certificate.html and certificate.pdf again beside
it so they list every signer.

Only a key the certificate declares as an approver (the spec's report.approvers, when
the report was written) may sign; any other key is refused with exit 5 and the
certificate is left unchanged. The signed certificate is verified before it replaces
the file, so sign never leaves a certificate that does not verify.`,
		Example: `  ferry report sign report/certificate.json --key approver/ferry.key`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				return usagef("--key is required")
			}
			env, id, err := certificate.ApproveFile(args[0], key)
			if err != nil {
				return g.finish(cmd, nil, fileErr(err, migrate.ExitRefused), nil)
			}
			html, pdf, err := certificate.RenderFiles(dirOf(args[0]), env)
			res := map[string]any{"certificate": args[0], "keyid": id, "signatures": len(env.Signatures), "html": html, "pdf": pdf}
			return g.finish(cmd, res, err, func(w io.Writer) {
				fmt.Fprintf(w, "added signature by keyid %s to %s (%d signatures)\n", id, args[0], len(env.Signatures))
			})
		},
	}
	c.Flags().StringVar(&key, "key", "", "the approver's private key (PKCS#8 PEM)")
	return c
}

func loadPubkeys(paths []string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, p := range paths {
		k, err := certificate.LoadPublicKey(p)
		if err != nil {
			return nil, usagef("--pubkey %s: %v", p, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// printCheckReport prints every check and the verdict line, which is a plain
// "VERIFIED" only when every check passed (see certificate.Report.Verdict).
func printCheckReport(w io.Writer, rep *certificate.Report) {
	for _, c := range rep.Checks {
		fmt.Fprintf(w, "  %-5s %s: %s\n", c.Status, c.Name, c.Message)
	}
	fmt.Fprintln(w, rep.Verdict())
}

func newReportVerifyCmd(g *globals) *cobra.Command {
	var manifest, journal string
	var pubkeys []string
	var live, requireApprovals bool
	var sample float64
	c := &cobra.Command{
		Use:   "verify CERT [--manifest FILE] [--journal FILE] [--pubkey FILE]... [--live] [--require-approvals]",
		Short: "Check a certificate's signatures, its manifest digest and Merkle root (offline), or the stores (--live)",
		Long: `verify checks every signature of the certificate (at least one must be by a key given
with --pubkey, when any is given), and with --manifest the manifest's SHA-256 against
the certificate and its RFC 6962 Merkle root, tree size and counts recomputed from the
lines. It needs no access to any store. Exit 0 when everything verifies, 4 otherwise.

With --journal journal.jsonl it checks the journal's hash chain (every entry names the
SHA-256 of its stream's previous line; streams in order), that each stream's count
and head equal the certificate's, and, with --manifest, that every copy and every
deletion in the manifest has its journal entries. A changed, dropped or reordered
entry fails (exit 4).

The last line is the verdict. It is a plain "VERIFIED" only when every check passed;
what was not proven is named after it and still exits 0: "VERIFIED (signature not
pinned: pass --pubkey)" without --pubkey, "manifest not checked" without --manifest,
"1 of 2 approvals pending" when declared approvers have not signed (exit 4 with
--require-approvals), and a certificate that states the migration is INCOMPLETE.
A failed check, or a problem found with --live, gives "NOT VERIFIED: ..." and exit 4.

With --live -c ferry.yaml it also checks, with read-only access, that every target
copy is present with its recorded checksum and every deleted replica is absent
(--sample P checks a share of the records).`,
		Example: `  ferry report verify report/certificate.json --manifest report/manifest.jsonl --pubkey keys/ferry.pub
  ferry report verify report/certificate.json --manifest report/manifest.jsonl --live -c ferry.yaml --sample 0.01`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := loadPubkeys(pubkeys)
			if err != nil {
				return err
			}
			env, err := certificate.ReadEnvelope(args[0])
			if err != nil {
				return g.finish(cmd, nil, fileErr(err, migrate.ExitVerify), nil)
			}
			var mf io.Reader
			if manifest != "" {
				f, err := os.Open(manifest)
				if err != nil {
					return g.finish(cmd, nil, migrate.Errorf(migrate.ExitUsage, "%w", err), nil)
				}
				defer f.Close()
				mf = f
			}
			if live && manifest == "" {
				return usagef("--live needs --manifest")
			}
			rep, err := certificate.VerifyCertificate(env, mf, keys)
			if journal != "" && (err == nil || errors.Is(err, certificate.ErrVerification)) {
				// A journal that cannot be read wins over a failed check (exit 1 or 2, not 4).
				if jerr := g.verifyJournal(rep, journal, manifest); jerr != nil && (err == nil || !errors.Is(jerr, certificate.ErrVerification)) {
					err = jerr
				}
			}
			if requireApprovals {
				rep.Require(certificate.CheckApprovals)
			}
			if err == nil {
				err = rep.Err()
			}
			err = verifyErr(err)
			res := map[string]any{"report": rep}
			if live && err != nil && rep.Statement != nil {
				rep.AddCheck(checkLive, certificate.Skip, "not run: the certificate did not verify offline")
			}
			if err == nil && live {
				lr, lerr := g.liveCheck(cmd.Context(), manifest, sample)
				res["live"] = lr
				switch {
				case lr != nil && len(lr.Problems) > 0:
					rep.AddCheck(checkLive, certificate.Fail, fmt.Sprintf("%d problems in %d records checked (first: %s: %s)", len(lr.Problems), lr.Checked, lr.Problems[0].Key, lr.Problems[0].Reason))
				case lerr != nil:
					rep.AddCheck(checkLive, certificate.Fail, "could not check the stores: "+lerr.Error())
				default:
					rep.AddCheck(checkLive, certificate.Pass, fmt.Sprintf("%d records checked: %d target copies present with their checksums, %d deleted replicas absent", lr.Checked, lr.TargetOK, lr.Absent))
				}
				err = lerr
			}
			res["verdict"] = rep.Verdict()
			return g.finish(cmd, res, err, func(w io.Writer) {
				if l, ok := res["live"].(*migrate.LiveResult); ok && l != nil {
					fmt.Fprintf(w, "live: %d records checked, %d target copies ok, %d replicas confirmed absent, %d problems\n", l.Checked, l.TargetOK, l.Absent, len(l.Problems))
					printProblems(w, "live", l.Problems)
				}
				printCheckReport(w, rep)
			})
		},
	}
	c.Flags().StringVar(&manifest, "manifest", "", "manifest.jsonl to check against the certificate")
	c.Flags().StringVar(&journal, "journal", "", "journal.jsonl to check against the certificate (and the manifest)")
	c.Flags().StringSliceVar(&pubkeys, "pubkey", nil, "trusted public key (PKIX PEM); repeatable")
	c.Flags().BoolVar(&live, "live", false, "also check the stores named by the spec (-c), read-only")
	c.Flags().BoolVar(&requireApprovals, "require-approvals", false, "fail (exit 4) while a declared approver has not signed")
	c.Flags().Float64Var(&sample, "sample", 1, "with --live: share of records to check (0 < P <= 1)")
	return c
}

// verifyJournal runs the journal checks of `report verify --journal`.
func (g *globals) verifyJournal(rep *certificate.Report, journal, manifest string) error {
	jf, err := os.Open(journal)
	if err != nil {
		return migrate.Errorf(migrate.ExitUsage, "%w", err)
	}
	defer jf.Close()
	var mf io.Reader
	if manifest != "" {
		f, err := os.Open(manifest)
		if err != nil {
			return migrate.Errorf(migrate.ExitUsage, "%w", err)
		}
		defer f.Close()
		mf = f
	}
	return certificate.VerifyJournal(rep, jf, mf)
}

// checkLive names the --live check in the report.
const checkLive = "live stores"

func (g *globals) liveCheck(ctx context.Context, manifest string, sample float64) (*migrate.LiveResult, error) {
	o := g.options()
	o.NoState, o.DryRun = true, true // read-only: no state, no writes to any store
	m, err := migrate.Open(ctx, o)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	f, err := os.Open(manifest)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return m.LiveCheck(ctx, f, sample)
}

func newReportProveCmd(g *globals) *cobra.Command {
	var user, out, cert, manifest string
	c := &cobra.Command{
		Use:   "prove --user ID [--out FILE]",
		Short: "Write inclusion proofs for one user's records (checkable without the manifest)",
		Long: `prove writes one RFC 6962 inclusion proof per record of the user: the manifest line,
its leaf index, the tree size and root, and the audit path. Anyone can check it
against the certificate with verify-proof, without the rest of the manifest.`,
		Example: `  ferry report prove --user alice --out alice-proof.json
  ferry report prove --user alice --cert report/certificate.json --manifest report/manifest.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if user == "" {
				return usagef("--user is required")
			}
			if cert == "" || manifest == "" {
				dir := "report"
				if sp, err := specDir(g.config); err == nil {
					dir = sp + "/report"
				}
				if cert == "" {
					cert = dir + "/" + certificate.CertificateFile
				}
				if manifest == "" {
					manifest = dir + "/" + certificate.ManifestName
				}
			}
			env, err := certificate.ReadEnvelope(cert)
			if err != nil {
				return g.finish(cmd, nil, migrate.Errorf(migrate.ExitUsage, "%w", err), nil)
			}
			f, err := os.Open(manifest)
			if err != nil {
				return g.finish(cmd, nil, migrate.Errorf(migrate.ExitUsage, "%w", err), nil)
			}
			defer f.Close()
			proofs, err := certificate.ProveUser(f, user, env)
			if errors.Is(err, certificate.ErrUserNotFound) {
				return g.finish(cmd, nil, migrate.Errorf(migrate.ExitUsage, "%w", err), nil)
			}
			if err != nil {
				return g.finish(cmd, nil, verifyErr(err), nil)
			}
			data, err := certificate.MarshalProofs(proofs)
			if err != nil {
				return g.finish(cmd, nil, err, nil)
			}
			if out != "" {
				if err := os.WriteFile(out, data, 0o644); err != nil {
					return g.finish(cmd, nil, err, nil)
				}
			}
			return g.finish(cmd, proofs, nil, func(w io.Writer) {
				if out == "" {
					w.Write(data)
					return
				}
				fmt.Fprintf(w, "wrote %d proofs for user %s to %s\n", len(proofs), user, out)
			})
		},
	}
	c.Flags().StringVar(&user, "user", "", "the user whose records to prove")
	c.Flags().StringVar(&out, "out", "", "file to write the proofs to (default: stdout)")
	c.Flags().StringVar(&cert, "cert", "", "certificate.json (default: report/ beside the spec)")
	c.Flags().StringVar(&manifest, "manifest", "", "manifest.jsonl (default: report/ beside the spec)")
	return c
}

func newReportVerifyProofCmd(g *globals) *cobra.Command {
	var cert string
	var pubkeys []string
	c := &cobra.Command{
		Use:     "verify-proof PROOF --cert CERT",
		Short:   "Check inclusion proofs against a certificate, without the manifest",
		Example: `  ferry report verify-proof alice-proof.json --cert report/certificate.json --pubkey keys/ferry.pub`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cert == "" {
				return usagef("--cert is required")
			}
			keys, err := loadPubkeys(pubkeys)
			if err != nil {
				return err
			}
			env, err := certificate.ReadEnvelope(cert)
			if err != nil {
				return g.finish(cmd, nil, fileErr(err, migrate.ExitVerify), nil)
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return g.finish(cmd, nil, migrate.Errorf(migrate.ExitUsage, "%w", err), nil)
			}
			proofs, err := certificate.ParseProofs(data)
			if err != nil {
				return g.finish(cmd, nil, migrate.Errorf(migrate.ExitVerify, "%w", err), nil)
			}
			var reps []*certificate.Report
			var firstErr error
			for _, p := range proofs {
				rep, err := certificate.VerifyProof(p, env, keys)
				if err == nil {
					err = rep.Err()
				}
				if err != nil && firstErr == nil {
					firstErr = verifyErr(fmt.Errorf("proof %d (leaf %d): %w", len(reps)+1, p.LeafIndex, err))
				}
				reps = append(reps, rep)
			}
			return g.finish(cmd, reps, firstErr, func(w io.Writer) {
				for i, rep := range reps {
					fmt.Fprintf(w, "proof %d:\n", i+1)
					if rep != nil {
						printCheckReport(w, rep)
					}
				}
			})
		},
	}
	c.Flags().StringVar(&cert, "cert", "", "the certificate.json the proof claims inclusion in")
	c.Flags().StringSliceVar(&pubkeys, "pubkey", nil, "trusted public key (PKIX PEM); repeatable")
	return c
}

// fileErr is exit 2 for a file that is not there (a mistyped path), else code.
func fileErr(err error, code int) error {
	if errors.Is(err, fs.ErrNotExist) {
		return migrate.Errorf(migrate.ExitUsage, "%w", err)
	}
	return migrate.Errorf(code, "%w", err)
}

// verifyErr is exit 4 for "does not verify" and exit 1 for anything else (I/O).
func verifyErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, certificate.ErrVerification) {
		return migrate.Errorf(migrate.ExitVerify, "%w", err)
	}
	return migrate.Errorf(migrate.ExitRuntime, "%w", err)
}
