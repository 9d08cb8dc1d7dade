package spec

import (
	"strconv"
	"strings"
)

// DefaultMigrationID is the id Template uses when given none.
const DefaultMigrationID = "my-migration"

// Template returns the annotated ferry.yaml that `ferry init` writes. Its sites are
// local folders beside the spec (./data/virginia, ./data/singapore, ./data/archive)
// and its target is ./data/target, so it runs out of the box; the comments show the
// s3:// and oci:// forms. It parses with Load; an invalid migration id (see
// ValidateMigrationID) makes it fail there with a clear message.
func Template(migration string) []byte {
	if migration == "" {
		migration = DefaultMigrationID
	}
	return []byte(strings.Replace(templateText, "@MIGRATION@", strconv.Quote(migration), 1))
}

const templateText = `# ferry.yaml: what to migrate, where to, and how the originals are deleted.
#
#   ferry validate      check this file and reach every site (read-only)
#   ferry plan          list every site and print the plan digest
#   ferry copy          copy every record to the target, checksums verified
#   ferry verify        prove every copy (and every replica due for deletion)
#   ferry delete --stage NAME --dry-run, then --confirm DIGEST
#   ferry report        the signed deletion certificate
#
# Unknown keys are errors. Relative paths, and file://./ URLs, resolve against the
# folder of this file. Secrets never live here: credentials name a profile or the
# environment variables that hold the secrets, never the secrets themselves.

# The migration id: letters, digits, '.', '_' and '-'. It names quarantines and
# appears in the certificate.
migration: @MIGRATION@

# Where ferry keeps its checkpoints. Default: ferry.db beside this file.
# For many workers on many machines use PostgreSQL: postgres://ferry@db.example/ferry
# (the password comes from PGPASSWORD or ~/.pgpass, never from here).
state: ferry.db

# The sites that hold replicas of user records. A record is a key relative to its
# site's URL; the same key at several sites is one record with several replicas.
sources:
  - name: virginia          # a short name used in stages, status and the certificate
    role: primary           # primary | backup; copies are read from a primary first
    # s3://bucket/prefix/, oci://namespace/bucket/prefix/, file:///absolute/dir,
    # or file://./dir for a folder relative to this file.
    url: file://./data/virginia
    # endpoint: https://s3.va.example.internal   # S3-compatible stores, OCI private endpoints
    # region: us-east-1
    # path_style: true                # s3 only: MinIO, Ceph and other S3-compatible stores
    # checksum_when_required: true    # s3 only: third-party servers that reject checksum headers
    # credentials: {profile: va-migrator}
    #   or {access_key_env: VA_ACCESS_KEY_ID, secret_key_env: VA_SECRET_ACCESS_KEY}
    # quarantine: .ferry-quarantine   # soft deletes go here when the store keeps no versions
    # part_size: 16MiB                # multipart part size for this site (default copy.part_size)
    # limits:                         # cap what ferry takes from a site still in use (README "Limits")
    #   requests_per_second: 200      # for the whole migration, shared by every worker
    #   bytes_per_second: 50MiB
    #   schedule:                     # first matching window wins; outside: the values above
    #     - {days: mon-fri, hours: "08:00-20:00", zone: America/New_York, bytes_per_second: 10MiB}
    # inventory:                      # plan reads this instead of listing the site (README "Inventories")
    #   format: s3-csv                # s3-csv (an S3 Inventory manifest.json) | keys (one key per line)
    #   manifest: inventory/legacy-users/all-objects/2026-06-01T01-00Z/manifest.json
    # prices: {list_per_1000: 0.005, get_per_1000: 0.0004, egress_per_gib: 0.09}   # for plan's estimate (README "Cost and time estimate")
    # crypto_erase:                   # the site's data is encrypted under a key that is (to be) destroyed
    #   key_id: arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab
    #   deletion_date: 2026-12-31     # a date, or an RFC 3339 time; the certificate says "scheduled" until then
    #   note: KMS key deletion scheduled under CHG-4711   # ferry records this; it does not call the KMS
  - name: singapore
    role: backup
    url: file://./data/singapore
  - name: archive
    role: backup
    url: file://./data/archive

# Where records go. It must not overlap any source.
target:
  url: file://./data/target
  # url: oci://mynamespace/us-users/users/
  # region: us-ashburn-1
  # credentials: {oci_profile: DEFAULT}        # or {auth: instance_principal}
  # residency: [us-ashburn-1, us-phoenix-1]    # refuse any other target region (needs region)
  # kms_key_id: ocid1.key.oc1..example         # server-side encryption key

records:
  # Who owns a key: a regular expression with a named group "user".
  user: '^(?P<user>[^/]+)/'
  # Which keys are records: doublestar globs over the relative key. "*" stays in one
  # folder, "**" crosses folders. A key is a record if it matches an include and no
  # exclude.
  include: ['**']
  exclude: []                 # e.g. ['**/.DS_Store', 'tmp/**']
  # Replicas of one record that differ: fail (report; copy and delete nothing),
  # prefer-primary (copy the primary's replica) or keep-both (copy every version).
  conflicts: fail

copy:
  concurrency: 16             # parallel transfers, 1..1024
  part_size: 16MiB            # multipart part size, 5MiB..5GiB
  retries: 5                  # attempts per record after the first, 0..100

verify:
  reread: false               # true: read every target copy back and re-hash it
  # concurrency: 16           # default: copy.concurrency

delete:
  mode: soft                  # soft (recoverable until --purge) | hard
  grace: 72h                  # soft deletes may be purged after this (72h, 3d, ...)
  max_delete: 100%            # refuse a stage deleting more: a count (5000) or a share (10%)
  # Stages run in this order, each confirmed separately:
  #   ferry delete --stage canary --dry-run          prints the scope digest
  #   ferry delete --stage canary --confirm DIGEST
  # A stage may set its own mode and max_delete. No stages: nothing is deleted.
  stages:
    - {name: canary, sites: [singapore], sample: 1%}
    - {name: backups, sites: [singapore, archive]}
    - {name: primary, sites: [virginia]}

report:
  signing_key: keys/ferry.key   # PKCS#8 PEM private key written by ferry init (mode 0600)
  # signer: Data Protection Office
  # approvers:                       # countersign with: ferry report sign CERT --key FILE
  #   - {name: Legal, public_key: keys/legal.pub}
`
