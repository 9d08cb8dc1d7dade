// Package certificate produces and checks ferry's signed deletion certificate
// (DESIGN.md "Certificate"): the manifest, its RFC 6962 Merkle tree, the DSSE envelope
// around an in-toto Statement, per-user inclusion proofs, the signing keys, and the
// HTML and PDF renderings. It depends on nothing else in ferry; the pipeline feeds it
// records and the CLI maps its results to exit codes.
//
// # What the CLI calls
//
//	ferry keys generate      GenerateKeyPair
//	ferry report             WriteReport (exit 3 when !ReportResult.Complete)
//	ferry report sign        ApproveFile, then RenderFiles
//	ferry report verify      ReadEnvelope, LoadPublicKey, VerifyCertificate
//	ferry report prove       ReadEnvelope, ProveUser, MarshalProofs
//	ferry report verify-proof  ParseProofs, VerifyProof
//
// VerifyCertificate and VerifyProof always return a Report (print it, or encode it as
// JSON); their error is nil when everything verified, wraps ErrVerification when a
// check failed (exit 4), and is anything else when an input could not be read (exit 1).
//
// # Formats
//
// manifest.jsonl: one line per record in strictly increasing key order (byte order),
// each the RFC 8785 canonical JSON of a ManifestLine with every field present, each
// ending in "\n" (the last one too). Timestamps are RFC 3339 UTC with whole seconds
// (TimeLayout), "" when unset. Each replica carries its own size and sha256 (a divergent
// replica's differ from the record's), and per-site byte counts add those up. A key
// that is not valid UTF-8 (file names are bytes; JSON cannot carry them) is written as
// "key": EscapeKey(key) (invalid bytes as %HH, '%' as %25) plus "key_hex": the exact
// bytes, the only field not present in every line; its URIs and user id are escaped
// the same way. ParseLine gives back the exact bytes.
//
// Merkle tree: RFC 6962 over the lines without their newlines, in file order; the empty
// tree's root is SHA-256(""). Builder computes the root in O(log n) memory.
//
// certificate.json: a DSSE envelope, payloadType application/vnd.in-toto+json, payload
// the canonical JSON of an in-toto Statement v1 with one subject (manifest.jsonl, by
// sha256) and predicateType PredicateType. Signatures are Ed25519 over the DSSE PAE; a
// signature holds only keyid and sig, as DSSE defines. Names belong in the signed
// predicate: Predicate.Signer and Predicate.Approvers carry name, title, keyid and the
// public key (PKIX DER, base64), so a verifier without --pubkey still checks every
// declared signature (integrity) and says that the key was not pinned (a warning), and
// a verifier with --pubkey checks that one signature is by a pinned key (trust). A
// signature by a key that is neither declared nor pinned fails verification.
// AddSignature (`report sign`) accepts only a key the predicate declares as an approver.
// Report.Verdict is the one-line verdict: a plain "VERIFIED" only when every check
// passed; what is unproven (no pinned key, no manifest, approvals pending, a statement
// of INCOMPLETE) is named after it.
//
// Proof: JSON {version, migration, manifest_sha256, tree_size, root, leaf_index, leaf,
// audit_path}; the leaf is the manifest line itself, so a proof shows one record's
// whole history (target copy, each replica's deletion) without the rest of the manifest.
//
// Keys: ferry.key is PKCS#8 PEM "PRIVATE KEY" (mode 0600; a group- or world-accessible
// key file is refused on unix), ferry.pub PKIX PEM "PUBLIC KEY"; keyid = hex SHA-256 of
// the PKIX DER.
//
// # Completeness
//
// Finalize computes the counts from the manifest itself and Assess decides, from the
// predicate alone, whether the migration is complete; a verifier recomputes both.
// Incomplete means any of: an empty manifest; records in conflict, failed, not
// verified, or with a delete in flight; replicas not deleted, soft-deleted and not
// purged, deleted but not confirmed absent, or vanished without ferry deleting them;
// stages not run, not finished, not purged (soft), restored, or with failed deletes; a
// target region outside the residency policy.
//
// # Sanitization record
//
// Sanitization holds the fields NIST SP 800-88 asks a certificate of sanitization to
// record, applied to logical deletion through storage APIs: method (Clear, by default:
// deletion through the store's interface of user-addressable data; Purge would need
// e.g. cryptographic erase of the encryption keys, which ferry does not do), technique,
// media type and source, tool and version, verification method and scope, who
// performed and who verified it, when, where the data went (the target: the "data
// backup" field), post-sanitization destination, optional confidentiality
// categorizations, and the limits of what logical deletion certifies.
package certificate
