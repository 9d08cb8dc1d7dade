package gs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/storage"
	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"

	"github.com/ferrymigrate/ferry/providers"
)

// retryCounter counts retried attempts (providers.Retrier).
type retryCounter struct{ n atomic.Int64 }

func (r *retryCounter) add() { r.n.Add(1) }

// retryable decides which failed attempts the client repeats: throttling, server
// errors, cut connections and timeouts. Never a refused connection (nobody listens:
// an emulator that is not running, a wrong endpoint), never a 4xx but 408 and 429.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return false
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		switch ge.Code {
		case 408, 429, 500, 502, 503, 504:
			return true
		}
		return false
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return false
	}
	if ae := (*auth.Error)(nil); errors.As(err, &ae) {
		return ae.Response != nil && ae.Response.StatusCode >= 500
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	if storage.ShouldRetry(err) {
		return true
	}
	m := err.Error()
	return strings.Contains(m, "connection reset") || strings.Contains(m, "server closed idle connection") ||
		strings.Contains(m, "unexpected EOF") || strings.Contains(m, "broken pipe")
}

// retentionReason names why GCS refuses to delete an object, from its error, or "".
func retentionReason(ge *googleapi.Error) string {
	for _, e := range ge.Errors {
		switch e.Reason {
		case "retentionPolicyNotMet":
			return "the bucket's retention policy (or the object's retention) has not expired"
		case "objectUnderActiveHold", "eventBasedHold", "temporaryHold":
			return "the object is under a hold"
		}
	}
	m := strings.ToLower(ge.Message)
	switch {
	case strings.Contains(m, "retention"):
		return "retention: " + ge.Message
	case strings.Contains(m, "hold"):
		return "hold: " + ge.Message
	}
	return ""
}

// fail maps a client error to the portable errors, in one place. The message names
// the operation and the object, GCS's status and message, never a credential.
func (s *Store) fail(op, name string, err error) error {
	where := "gs://" + s.bucketName
	if name != "" {
		where += "/" + name
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("gs: %s %s: %w", op, where, err)
	}
	var portable error
	var ge *googleapi.Error
	var re *oauth2.RetrieveError
	var ae *auth.Error
	switch {
	case errors.Is(err, storage.ErrBucketNotExist):
		portable = providers.ErrNoBucket
		err = fmt.Errorf("bucket %s does not exist (or these credentials may not see it): create it or correct the url", s.bucketName)
	case errors.Is(err, storage.ErrObjectNotExist):
		portable = providers.ErrNotFound
	case errors.As(err, &re):
		portable = providers.ErrCredentials
		err = fmt.Errorf("the credentials could not get a token: %s", strings.TrimSpace(re.Error()))
	case errors.As(err, &ae) && (ae.Response == nil || ae.Response.StatusCode < 500):
		portable = providers.ErrCredentials
		err = fmt.Errorf("the credentials could not get a token: %s", strings.TrimSpace(ae.Error()))
	case errors.As(err, &ge):
		switch {
		case ge.Code == 401:
			portable = providers.ErrCredentials
		case ge.Code == 403:
			if why := retentionReason(ge); why != "" {
				portable = providers.ErrRetained
				err = fmt.Errorf("%s (%w)", why, err)
			} else {
				portable = providers.ErrAccessDenied
			}
		case ge.Code == 404 && strings.Contains(strings.ToLower(ge.Message), "bucket"):
			portable = providers.ErrNoBucket
		case ge.Code == 404:
			portable = providers.ErrNotFound
		case ge.Code == 412:
			portable = providers.ErrPrecondition
		case ge.Code == 409:
			portable = providers.ErrAlreadyExists
		case ge.Code == 400 && isChecksumMessage(ge.Message):
			portable = providers.ErrChecksum
		case ge.Code == 501:
			portable = providers.ErrNotSupported
		}
	case isChecksumMessage(err.Error()):
		portable = providers.ErrChecksum
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("gs: %s %s: nothing listens at the endpoint %s (is the emulator running?): %w", op, where, s.endpointName(), err)
	}
	if portable == nil {
		return fmt.Errorf("gs: %s %s: %w", op, where, err)
	}
	return fmt.Errorf("gs: %s %s: %w: %w", op, where, portable, err)
}

func (s *Store) endpointName() string {
	if s.endpoint == "" {
		return "storage.googleapis.com"
	}
	if u, err := url.Parse(s.endpoint); err == nil {
		return u.Host
	}
	return s.endpoint
}

func isChecksumMessage(m string) bool {
	l := strings.ToLower(m)
	return strings.Contains(l, "checksum") || strings.Contains(l, "crc32c") || strings.Contains(l, "md5") ||
		strings.Contains(l, "bad crc")
}
