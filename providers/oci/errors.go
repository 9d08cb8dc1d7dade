package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/oracle/oci-go-sdk/v65/common"

	"github.com/ferrymigrate/ferry/providers"
)

// ServiceError is the part of an OCI error response a caller may look at. Errors
// from a Store wrap one when the service answered.
type ServiceError struct {
	Status    int
	Code      string
	Message   string
	RequestID string
}

func (e *ServiceError) Error() string {
	msg := fmt.Sprintf("%d %s", e.Status, e.Code)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.RequestID != "" {
		msg += " (opc-request-id " + e.RequestID + ")"
	}
	return msg
}

// serviceError extracts the status and code of an SDK error.
func serviceError(err error) (*ServiceError, bool) {
	if se, ok := common.IsServiceError(err); ok {
		msg := se.GetMessage()
		if strings.HasPrefix(msg, "Failed to parse json from response body") || se.GetCode() == "BadErrorResponse" {
			// A HEAD error, or a body that was not OCI's: the status is what counts.
			msg = ""
		}
		return &ServiceError{Status: se.GetHTTPStatusCode(), Code: se.GetCode(), Message: msg, RequestID: se.GetOpcRequestID()}, true
	}
	var ours *ServiceError
	if errors.As(err, &ours) {
		return ours, true
	}
	return nil, false
}

// fail maps an SDK error to the portable errors, in one place. The message names
// the operation and the object, the service's status, code, message and request id,
// never a header or a key.
func (s *Store) fail(op, name string, err error) error {
	where := "oci://" + s.ns + "/" + s.bucket
	if name != "" {
		where += "/" + name
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("oci: %s %s: %w", op, where, err)
	}
	se, ok := serviceError(err)
	if !ok {
		if isCircuitOpen(err) {
			return fmt.Errorf("oci: %s %s: the circuit breaker is open after repeated failures of this store; not sent", op, where)
		}
		return fmt.Errorf("oci: %s %s: %w", op, where, err)
	}
	var portable error
	switch {
	case se.Status == 401:
		portable = providers.ErrCredentials
		hint := "the request signature was not accepted: check the key file, fingerprint, user and tenancy of the profile"
		if se.Message != "" {
			hint += " (" + se.Message + ")"
		}
		se.Message = hint
	case se.Status == 403:
		portable = providers.ErrAccessDenied
	case se.Status == 404 && (se.Code == "BucketNotFound" || se.Code == "NamespaceNotFound"):
		// OCI says the same for a missing bucket and one the user may not see. Either
		// way it is not an absent object: never ErrNotFound.
		portable = errors.Join(providers.ErrNoBucket, providers.ErrAccessDenied)
	case se.Status == 507 || se.Code == "InsufficientStorage":
		portable = providers.ErrNoSpace
	case se.Status == 404:
		portable = providers.ErrNotFound
	case se.Status == 412 && se.Code == "IfNoneMatchFailed":
		portable = providers.ErrAlreadyExists
	case se.Status == 412:
		portable = providers.ErrPrecondition
	case se.Status == 409 && strings.Contains(se.Code, "AlreadyExists"):
		portable = providers.ErrAlreadyExists
	case se.Status == 400 && isChecksumCode(se.Code, se.Message):
		portable = providers.ErrChecksum
	}
	if portable == nil {
		return fmt.Errorf("oci: %s %s: %w", op, where, se)
	}
	return fmt.Errorf("oci: %s %s: %w: %w", op, where, portable, se)
}

func isChecksumCode(code, msg string) bool {
	c := strings.ToLower(code)
	return strings.Contains(c, "unmatched") || strings.Contains(c, "checksum") || strings.Contains(c, "digest") ||
		strings.Contains(c, "md5") || strings.Contains(c, "sha256") || strings.Contains(c, "crc32c") ||
		strings.Contains(msg, "does not match the Content-MD5") || strings.Contains(msg, "does not match the opc-content-")
}

func isStatus(err error, status int) bool {
	se, ok := serviceError(err)
	return ok && se.Status == status
}

func isCircuitOpen(err error) bool {
	if err == nil {
		return false
	}
	if common.IsCircuitBreakerError(err) {
		return true
	}
	m := err.Error()
	return strings.HasPrefix(m, "circuit breaker is open") || strings.HasPrefix(m, "too many requests,") ||
		strings.Contains(m, "The circuit breaker was opened")
}

// retryable decides which failed attempts the SDK repeats.
func retryable(r common.OCIOperationResponse) bool {
	err := r.Error
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if se, ok := common.IsServiceError(err); ok {
		switch code := se.GetHTTPStatusCode(); {
		case code == 429, code == 500, code == 502, code == 503, code == 504:
			return true
		case code == 409:
			return se.GetCode() == "IncorrectState" || se.GetCode() == "LockConflict"
		}
		return false
	}
	if isCircuitOpen(err) {
		return true
	}
	var ne net.Error
	return common.IsNetworkError(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.As(err, &ne) && ne.Timeout() ||
		strings.Contains(err.Error(), "server closed idle connection") ||
		strings.Contains(err.Error(), "connection reset by peer")
}

// retryPolicy is the bounded exponential backoff with full jitter every call uses.
func retryPolicy(o Options) common.RetryPolicy {
	attempts := o.MaxAttempts
	if attempts <= 0 {
		attempts = 8
	}
	base, most := o.RetryBaseDelay, o.RetryMaxDelay
	if base <= 0 {
		base = 500 * time.Millisecond
	}
	if most <= 0 {
		most = 20 * time.Second
	}
	next := func(r common.OCIOperationResponse) time.Duration {
		d := base << min(r.AttemptNumber-1, 30)
		if d > most || d <= 0 {
			d = most
		}
		if isCircuitOpen(r.Error) {
			d = most // the store is failing: wait long, so the breaker can probe
		}
		return d/2 + rand.N(d/2+1)
	}
	return common.NewRetryPolicyWithOptions(
		common.ReplaceWithValuesFromRetryPolicy(common.DefaultRetryPolicyWithoutEventualConsistency()),
		common.WithMaximumNumberAttempts(uint(attempts)),
		common.WithShouldRetryOperation(retryable),
		common.WithNextDuration(next),
	)
}

// defaultCircuitBreaker is the per-store breaker: it opens when 80% of at least 20
// requests in a minute failed with 429 or 5xx, and probes again after 15 seconds.
func defaultCircuitBreaker() *common.CircuitBreakerSetting {
	return common.NewCircuitBreakerSettingWithOptions(
		common.WithName("ferry-oci"),
		common.WithServiceName("ObjectStorage"),
		common.WithCloseStateWindow(time.Minute),
		common.WithOpenStateWindow(15*time.Second),
		common.WithFailureRateThreshold(0.8),
		common.WithMinimumRequests(20),
	)
}
