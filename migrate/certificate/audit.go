package certificate

// AuditSummary is what the certificate states of `ferry audit`: which access logs were
// read, over which window, and every access to a migrated record by an identity other
// than the ones ferry acted as (its findings). It is stored in the state by `ferry
// audit` and carried into the next report as the predicate's "audit" section.
type AuditSummary struct {
	// CheckedAt is when the last `ferry audit` run finished (TimeLayout).
	CheckedAt string `json:"checked_at"`
	// WindowFrom and WindowTo bound the migration's window the logs were checked
	// against (TimeLayout): from the first journal entry to the run. Accesses to a
	// record ferry deleted are findings after WindowTo too.
	WindowFrom string `json:"window_from"`
	WindowTo   string `json:"window_to"`
	// Sources are the logs read, one per file or bucket prefix.
	Sources []AuditSource `json:"sources"`
	// FerryIdentities are the identities taken as ferry's own (as the journal names
	// them, plus any the operator declared with --ferry-identity).
	FerryIdentities []string `json:"ferry_identities"`
	// Findings are sorted by time, then store, then key. At most MaxAuditFindings are
	// listed; FindingsTotal counts them all.
	Findings      []AuditFinding `json:"findings"`
	FindingsTotal int64          `json:"findings_total"`
}

// MaxAuditFindings caps the findings a certificate lists; the rest are counted.
const MaxAuditFindings = 1000

// AuditSource is one log read by `ferry audit`.
type AuditSource struct {
	Location string `json:"location"` // file path or store URL (no secrets)
	Format   string `json:"format"`   // s3 | minio | oci | gcs | azure
	Store    string `json:"store"`    // the site name or "target" the log is about; "" if several
	Entries  int64  `json:"entries"`  // log entries read
	// Ferry counts entries recognised as ferry's own traffic; Other those by other
	// identities (findings or not: an access to a key ferry never planned is not one).
	Ferry int64 `json:"ferry"`
	Other int64 `json:"other"`
}

// AuditFinding is one access to a migrated record by an identity other than ferry's.
type AuditFinding struct {
	// Kind is "foreign-access" (within the migration's window) or "after-deletion" (any
	// access to a replica after ferry deleted it: a copy ferry did not know about, or
	// someone looking for one).
	Kind      string `json:"kind"`
	Store     string `json:"store"`            // site name or "target"
	Key       string `json:"key"`              // the record key (relative to the store's prefix)
	Object    string `json:"object"`           // the object key (or path) as the log names it
	Operation string `json:"operation"`        // read | write | delete | list | other, as ferry classifies it
	Action    string `json:"action"`           // the log's own name for it (REST.GET.OBJECT, s3.GetObject, ...)
	Identity  string `json:"identity"`         // who, as the log names them
	Time      string `json:"time"`             // TimeLayout
	Status    int    `json:"status,omitempty"` // HTTP status, when logged
	SourceIP  string `json:"source_ip,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Log       string `json:"log"` // where it was found: location and line or entry number
}
