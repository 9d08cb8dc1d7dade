package spec

import (
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// CryptoErase is a source site's declared cryptographic erase (sources[i].crypto_erase):
// the site's data was encrypted under KeyID, and the operator states that the key was, or
// will be, destroyed on DeletionDate. NIST SP 800-88 Rev. 2 counts destroying the key as
// a sanitization method ("cryptographic erase") for media whose data is encrypted under it,
// which covers the copies ferry cannot reach (backup tapes, snapshots, replicas outside the
// store's API).
//
// ferry does not call the KMS and cannot check any of it: the certificate records the
// declaration as the operator made it, with a status computed at report time ("scheduled"
// while the date is in the future, "past" after).
//
// It is not part of the spec digest (Spec.Digest): it is evidence about the site, not
// part of what is moved or deleted, so declaring or correcting it after the plan does not
// force a re-plan or change the confirm digests.
type CryptoErase struct {
	// KeyID names the key (an ARN, an OCID, a Key Vault key URI, a key alias): never key
	// material.
	KeyID string `json:"key_id"`
	// DeletionDate is when the key is or was destroyed (UTC); DeletionDateRaw is the value
	// as written ("2026-12-31" or an RFC 3339 time).
	DeletionDate    time.Time `json:"deletion_date"`
	DeletionDateRaw string    `json:"-"`
	// Note is free text for the auditor (ticket, KMS schedule, who destroyed the key).
	Note string `json:"note,omitempty"`
}

var cryptoEraseKeys = []string{"key_id", "deletion_date", "note"}

// cryptoErase parses sources[i].crypto_erase; it returns nil when absent or invalid
// (the problems are recorded).
func (p *parser) cryptoErase(n *yaml.Node, path string) *CryptoErase {
	if isNull(n) {
		return nil
	}
	m, ok := p.fields(n, path, cryptoEraseKeys...)
	if !ok {
		return nil
	}
	ce := &CryptoErase{}
	good := true
	if p.required(m, resolveAlias(n), path, "key_id") {
		kp := joinKey(path, "key_id")
		if v, ok := p.nonEmpty(m["key_id"].val, kp); ok {
			switch {
			case strings.ContainsAny(v, "\x00\n\r\t"):
				p.add(m["key_id"].val, kp, "must not contain control characters")
				good = false
			case len(v) > 1024:
				p.add(m["key_id"].val, kp, "is longer than 1024 characters: name the key, do not paste key material")
				good = false
			default:
				ce.KeyID = v
			}
		} else {
			good = false
		}
	} else {
		good = false
	}
	if p.required(m, resolveAlias(n), path, "deletion_date") {
		kp := joinKey(path, "deletion_date")
		if v, ok := p.nonEmpty(m["deletion_date"].val, kp); ok {
			t, err := parseDeletionDate(v)
			if err != nil {
				p.add(m["deletion_date"].val, kp, "must be a date (2026-12-31) or an RFC 3339 time (2026-12-31T18:00:00Z)")
				good = false
			} else {
				ce.DeletionDate, ce.DeletionDateRaw = t, v
			}
		} else {
			good = false
		}
	} else {
		good = false
	}
	if e, ok := m["note"]; ok && !isNull(e.val) {
		kp := joinKey(path, "note")
		if v, ok := p.str(e.val, kp); ok {
			if strings.ContainsRune(v, 0) {
				p.add(e.val, kp, "must not contain NUL characters")
				good = false
			} else {
				ce.Note = strings.TrimSpace(v)
			}
		} else {
			good = false
		}
	}
	if !good {
		return nil
	}
	return ce
}

// parseDeletionDate accepts a calendar date (taken as 00:00 UTC) or an RFC 3339 time.
func parseDeletionDate(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}
