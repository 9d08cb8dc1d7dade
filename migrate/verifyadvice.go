package migrate

import "fmt"

// mismatchAdvice says what happens to target copies that failed verification. A copy
// whose record still has all its replicas is copied again by the next `ferry copy`;
// one whose replicas ferry already deleted (some or all) is never copied over (the
// version deleted may be the only one left): it is in conflict, and the way back is
// the kept soft-deleted replicas or the target's own recovery.
func mismatchAdvice(res *VerifyResult) string {
	again := res.Mismatched - res.MismatchedAfterDelete
	msg := fmt.Sprintf("%d target copies missing or different", res.Mismatched)
	if again > 0 {
		msg += fmt.Sprintf("; %d of them are copied again by the next `ferry copy`", again)
	}
	if res.MismatchedAfterDelete > 0 {
		msg += fmt.Sprintf("; %d of them belong to records whose replicas ferry already deleted: they are NOT copied again and are now in conflict; "+
			"put the soft-deleted replicas back (`ferry delete --stage S --restore`) or recover the target copy from the target's own versions or backups, "+
			"then run ferry verify (see `ferry status` for the records)", res.MismatchedAfterDelete)
	}
	return msg
}
