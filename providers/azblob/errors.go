package azblob

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"syscall"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"

	"github.com/ferrymigrate/ferry/providers"
)

// This file is the one place where Azure error shapes become the portable errors.
// Azure names an error by its x-ms-error-code header (HEAD responses have no
// body, but they have the header), then by HTTP status.

// codeErrors maps Azure error codes to portable errors.
var codeErrors = map[bloberror.Code]error{
	bloberror.BlobNotFound:          providers.ErrNotFound,
	bloberror.ResourceNotFound:      providers.ErrNotFound,
	bloberror.ConditionNotMet:       providers.ErrPrecondition,
	bloberror.TargetConditionNotMet: providers.ErrPrecondition,
	bloberror.SourceConditionNotMet: providers.ErrPrecondition,
	bloberror.BlobAlreadyExists:     providers.ErrAlreadyExists,
	bloberror.MD5Mismatch:           providers.ErrChecksum,
	"Crc64Mismatch":                 providers.ErrChecksum,
	bloberror.InvalidBlockList:      providers.ErrChecksum, // a staged block went missing

	// A missing container is a misconfiguration, never evidence that a blob is
	// gone: ErrNoBucket, not ErrNotFound.
	bloberror.ContainerNotFound:     providers.ErrNoBucket,
	bloberror.ContainerBeingDeleted: providers.ErrNoBucket,
	bloberror.ContainerDisabled:     providers.ErrAccessDenied,
	bloberror.AccountIsDisabled:     providers.ErrAccessDenied,

	bloberror.AuthenticationFailed:            providers.ErrCredentials,
	bloberror.InvalidAuthenticationInfo:       providers.ErrCredentials,
	"NoAuthenticationInformation":             providers.ErrCredentials,
	"KeyBasedAuthenticationNotPermitted":      providers.ErrCredentials,
	bloberror.AuthorizationFailure:            providers.ErrAccessDenied,
	bloberror.AuthorizationPermissionMismatch: providers.ErrAccessDenied,
	"AuthorizationResourceTypeMismatch":       providers.ErrAccessDenied,
	"AuthorizationServiceMismatch":            providers.ErrAccessDenied,
	"AuthorizationSourceIPMismatch":           providers.ErrAccessDenied,
	"AuthorizationProtocolMismatch":           providers.ErrAccessDenied,
	bloberror.InsufficientAccountPermissions:  providers.ErrAccessDenied,

	bloberror.InvalidURI: providers.ErrInvalidKey,
}

// retainedCode reports whether code says an immutability policy or a legal hold
// protects the blob (BlobImmutableDueToPolicy, BlobImmutableDueToLegalHold, ...).
func retainedCode(code string) bool {
	return strings.Contains(code, "Immutable") || strings.Contains(code, "LegalHold")
}

// respError returns err's Azure error code and HTTP status, where it has them.
func respError(err error) (code string, status int, ok bool) {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode, re.StatusCode, true
	}
	return "", 0, false
}

func isStatus(err error, statuses ...int) bool {
	_, st, ok := respError(err)
	if !ok {
		return false
	}
	for _, s := range statuses {
		if st == s {
			return true
		}
	}
	return false
}

func isCode(err error, codes ...bloberror.Code) bool {
	c, _, ok := respError(err)
	if !ok {
		return false
	}
	for _, x := range codes {
		if c == string(x) {
			return true
		}
	}
	return false
}

// portable returns the portable error err maps to, or nil.
func portable(err error) error {
	code, status, ok := respError(err)
	if !ok {
		return nil
	}
	if status == 403 && strings.Contains(errorMessage(err), "failed to authenticate") {
		// A signature or token Azure (or Azurite, as AuthorizationFailure) rejects.
		return providers.ErrCredentials
	}
	if p, ok := codeErrors[bloberror.Code(code)]; ok {
		return p
	}
	switch {
	case retainedCode(code):
		return providers.ErrRetained
	case status == 400 && (strings.Contains(code, "Md5") || strings.Contains(code, "MD5") ||
		strings.Contains(strings.ToLower(errorMessage(err)), "md5")):
		// Azure says Md5Mismatch; Azurite says InvalidOperation "Provided contentMD5 doesn't match".
		return providers.ErrChecksum
	case status == 401:
		return providers.ErrCredentials
	case status == 403:
		return providers.ErrAccessDenied
	case status == 404:
		return providers.ErrNotFound
	case status == 412:
		return providers.ErrPrecondition
	case status == 501:
		return providers.ErrNotSupported
	}
	return nil
}

// fail wraps an SDK error for op on a blob name ("" for the container) with the
// portable error it maps to. The message never carries a key or a SAS token: an
// azcore.ResponseError prints the request's path only, and transport errors have
// their URL's query removed (redact).
func (s *Store) fail(op, name string, err error) error {
	where := "azblob://" + s.account + "/" + s.container
	if name != "" {
		where += "/" + name
	}
	err = redact(err)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("azblob: %s %s: %w", op, where, err)
	}
	if p := portable(err); p != nil {
		return fmt.Errorf("azblob: %s %s: %w: %w", op, where, p, shortError{err})
	}
	if _, _, ok := respError(err); ok {
		return fmt.Errorf("azblob: %s %s: %w", op, where, shortError{err})
	}
	if unreachable(err) {
		return fmt.Errorf("azblob: %s %s: the endpoint %s does not answer (is Azurite or the network path to Azure up?): %w", op, where, s.endpoint, err)
	}
	return fmt.Errorf("azblob: %s %s: %w", op, where, err)
}

// openFail classifies the error of the container read at open, where every
// failure concerns the whole store.
func (s *Store) openFail(err error) error {
	e := s.fail("open container", "", err)
	code, status, _ := respError(err)
	switch {
	case errors.Is(e, providers.ErrNoBucket):
		return fmt.Errorf("%w (create the container %q in account %q, or fix the url)", e, s.container, s.account)
	case errors.Is(e, providers.ErrCredentials):
		return fmt.Errorf("%w (the account key, SAS token or Entra ID token was not accepted for account %q: check the environment variable the credentials name)", e, s.account)
	case errors.Is(e, providers.ErrAccessDenied):
		return fmt.Errorf("%w (the identity may not list container %q: it needs Storage Blob Data Reader or more, or a SAS with list permission, see docs/azure.md)", e, s.container)
	case status == 404 && code == "":
		// No error code at all: not an Azure blob endpoint for this account.
		return fmt.Errorf("%w: %w (no such container, or the endpoint is not the blob service of account %q)", e, providers.ErrNoBucket, s.account)
	}
	return e
}

// shortError prints an azcore.ResponseError on one line: its status and code, and
// the request line, without the multi-line dump of the body.
type shortError struct{ err error }

func (e shortError) Error() string {
	var re *azcore.ResponseError
	if errors.As(e.err, &re) {
		msg := fmt.Sprintf("%d %s", re.StatusCode, re.ErrorCode)
		if m := errorMessage(e.err); m != "" {
			msg += ": " + m
		}
		if re.RawResponse != nil && re.RawResponse.Request != nil {
			r := re.RawResponse.Request
			msg += " (" + r.Method + " " + r.URL.EscapedPath()
			if id := re.RawResponse.Header.Get("x-ms-request-id"); id != "" {
				msg += ", request id " + id
			}
			msg += ")"
		}
		return msg
	}
	return e.err.Error()
}

func (e shortError) Unwrap() error { return e.err }

var messageRE = regexp.MustCompile(`<Message>([^<\n]*)`)

// errorMessage returns the first line of the service's error message, if any.
func errorMessage(err error) string {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return ""
	}
	if m := messageRE.FindStringSubmatch(re.Error()); m != nil {
		return redactString(strings.TrimSpace(m[1]))
	}
	return ""
}

func unreachable(err error) bool {
	var ne *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &ne) && ne.Op == "dial")
}

// sasParams are the query parameters of a SAS token (sig= above all).
const sasParams = `(?:sig|se|st|sp|sv|sr|ss|srt|spr|sip|skoid|sktid|skt|ske|sks|skv|saoid|suoid|scid|sdd|ses)=`

var sigRE = regexp.MustCompile(`(?i)((?:^|[?&])` + sasParams + `)[^&#\s"']*`)

// redactString removes the values of SAS query parameters from s (sig= above all).
func redactString(s string) string {
	if !strings.Contains(strings.ToLower(s), "sig=") {
		return s
	}
	return sigRE.ReplaceAllString(s, "${1}REDACTED")
}

// redactedError keeps err's chain for errors.Is and errors.As but prints msg.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact takes the query out of a transport error's URL (it holds the SAS token)
// and removes SAS values from any other message.
func redact(err error) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		u := ue.URL
		if p, perr := url.Parse(u); perr == nil {
			p.RawQuery = ""
			u = p.String()
		}
		if u != ue.URL {
			inner := &url.Error{Op: ue.Op, URL: u, Err: ue.Err}
			return &redactedError{msg: redactString(strings.ReplaceAll(err.Error(), ue.Error(), inner.Error())), err: inner}
		}
	}
	if m := err.Error(); redactString(m) != m {
		return &redactedError{msg: redactString(m), err: errors.Unwrap(err)}
	}
	return err
}
