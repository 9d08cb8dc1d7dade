package certificate

import "time"

// Retention lists the replicas ferry could not delete because their site holds them
// under a retention policy, an object lock, a legal hold or an immutability policy (state
// ReplicaUndeletable in the manifest), each with the site's reason. At most MaxRetained
// are listed, in manifest order; Total counts them all.
type Retention struct {
	Total    int64             `json:"total"`
	Replicas []RetainedReplica `json:"replicas"`
}

// MaxRetained caps the retained replicas a certificate lists; the rest are counted.
const MaxRetained = 1000

// RetainedReplica is one replica a site refused to delete.
type RetainedReplica struct {
	Site    string `json:"site"`
	Key     string `json:"key"`               // the record key (EscapeKey'd when not UTF-8)
	URI     string `json:"uri"`               // the replica's URI, as the manifest spells it
	Version string `json:"version,omitempty"` // the version ferry tried to delete, if the site keeps versions
	State   string `json:"state"`             // ReplicaUndeletable
	Reason  string `json:"reason"`            // as the site gave it
}

// Add counts one more retained replica and lists it while there is room.
func (r *Retention) Add(x RetainedReplica) {
	r.Total++
	if len(r.Replicas) < MaxRetained {
		r.Replicas = append(r.Replicas, x)
	}
}

// AddLine adds line's undeletable replicas to r.
func (r *Retention) AddLine(l ManifestLine) {
	for _, p := range l.Replicas {
		if p.State == ReplicaUndeletable {
			r.Add(RetainedReplica{Site: p.Site, Key: EscapeKey(l.Key), URI: p.URI, State: p.State, Reason: p.Reason})
		}
	}
}

// Crypto-erase statuses, computed at report time from the declared date.
const (
	CryptoEraseScheduled = "scheduled" // the declared deletion date is after the report
	CryptoErasePast      = "past"      // the declared deletion date has passed
)

// CryptoErase is an operator's declaration, from the spec, that a site's data was
// encrypted under a key that is (or will be) destroyed: NIST SP 800-88 Rev. 2's
// "cryptographic erase". ferry does not call the KMS: the certificate states only what
// the operator declared, and whether the declared date had passed when it was generated.
type CryptoErase struct {
	Site         string `json:"site"`
	KeyID        string `json:"key_id"`
	DeletionDate string `json:"deletion_date"` // TimeLayout
	Note         string `json:"note"`
	Status       string `json:"status"` // CryptoEraseScheduled or CryptoErasePast, at generated_at
}

// CryptoEraseStatus is the status of a key destroyed (or to be) at deletion as seen at now.
func CryptoEraseStatus(deletion, now time.Time) string {
	if deletion.After(now) {
		return CryptoEraseScheduled
	}
	return CryptoErasePast
}
