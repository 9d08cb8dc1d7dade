package s3

import (
	"context"
	"errors"
	"fmt"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/ferrymigrate/ferry/providers"
)

// This file is the one place where S3 error shapes become the portable errors.
//
// S3 reports an error by an API error code (in the XML body) and an HTTP status.
// HEAD responses have no body, so their code is derived from the status alone
// ("NotFound", "PreconditionFailed", "Forbidden", ...). Codes are checked first,
// then statuses.

var codeErrors = map[string]error{
	// Absent objects and versions.
	"NoSuchKey":     providers.ErrNotFound,
	"NotFound":      providers.ErrNotFound,
	"NoSuchVersion": providers.ErrNotFound,

	"PreconditionFailed":         providers.ErrPrecondition,
	"ConditionalRequestConflict": providers.ErrPrecondition,

	"AccessDenied":          providers.ErrAccessDenied,
	"Forbidden":             providers.ErrAccessDenied,
	"AllAccessDisabled":     providers.ErrAccessDenied,
	"AccountProblem":        providers.ErrAccessDenied,
	"InvalidAccessKeyId":    providers.ErrCredentials,
	"SignatureDoesNotMatch": providers.ErrCredentials,
	"InvalidToken":          providers.ErrCredentials,
	"ExpiredToken":          providers.ErrCredentials,
	"TokenRefreshRequired":  providers.ErrCredentials,

	// A missing bucket is a misconfiguration, never evidence that an object is
	// gone: ErrNoBucket, not ErrNotFound.
	"NoSuchBucket": providers.ErrNoBucket,

	"BadDigest":                   providers.ErrChecksum,
	"InvalidDigest":               providers.ErrChecksum,
	"XAmzContentChecksumMismatch": providers.ErrChecksum, // MinIO, x-amz-checksum-*
	"XAmzContentSHA256Mismatch":   providers.ErrChecksum, // MinIO, payload hash

	"KeyTooLongError":           providers.ErrInvalidKey,
	"XMinioInvalidObjectName":   providers.ErrInvalidKey, // "a//b"
	"XMinioInvalidResourceName": providers.ErrInvalidKey, // "a/./b"
	"InvalidObjectName":         providers.ErrInvalidKey,

	// versitygw's posix backend maps keys onto files: "a" and "a/b" cannot both exist.
	"ObjectParentIsFile":          providers.ErrAlreadyExists,
	"ExistingObjectIsDirectory":   providers.ErrAlreadyExists,
	"DirectoryObjectContainsData": providers.ErrInvalidKey, // "a/" with bytes

	"NotImplemented":  providers.ErrNotSupported,
	"XNotImplemented": providers.ErrNotSupported,
}

var statusErrors = map[int]error{
	403: providers.ErrAccessDenied, // a HEAD's 403 has no code: denied, or a bad signature
	507: providers.ErrNoSpace,      // MinIO: XMinioStorageFull is 507 too
	404: providers.ErrNotFound,
	412: providers.ErrPrecondition,
	501: providers.ErrNotSupported,
}

// errorCode returns err's S3 error code and HTTP status, where it has them.
func errorCode(err error) (code string, status int) {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return code, status
}

// portable returns the portable error err maps to, or nil.
func portable(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	code, status := errorCode(err)
	if p, ok := codeErrors[code]; ok {
		return p
	}
	return statusErrors[status]
}

// fail wraps an SDK error for op on uri with the portable error it maps to. The
// SDK's messages carry the operation, status, code and request ids; they never
// carry credentials (requests are signed, and signatures are not echoed).
func fail(op, uri string, err error) error {
	if p := portable(err); p != nil && !errors.Is(err, p) {
		return fmt.Errorf("s3: %s %s: %w: %w", op, uri, p, err)
	}
	return fmt.Errorf("s3: %s %s: %w", op, uri, err)
}

// isStatus reports whether err is an HTTP response with one of the statuses.
func isStatus(err error, statuses ...int) bool {
	_, st := errorCode(err)
	for _, s := range statuses {
		if st == s {
			return true
		}
	}
	return false
}

// noBucket turns a HEAD's bare 404 into ErrNoBucket when the bucket itself is gone:
// a HEAD response has no body, so S3 cannot say NoSuchBucket there, and a missing
// bucket must never pass for a missing object (a target copy "gone" would send its
// record back to be copied, or into conflict). It costs one HeadBucket per bare 404,
// which the pipeline meets rarely (a target copy gone, a replica gone, copy's check
// of a target that a source with a known checksum may already hold).
func (s *Store) noBucket(ctx context.Context, err error) error {
	if !errors.Is(err, providers.ErrNotFound) {
		return err
	}
	if code, _ := errorCode(err); code != "" && code != "NotFound" {
		return err // NoSuchKey, NoSuchVersion: the bucket answered
	}
	_, herr := s.client.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: &s.bucket})
	if isStatus(herr, 404) {
		return fmt.Errorf("s3: bucket %s does not exist: %w: %w", s.bucket, providers.ErrNoBucket, herr)
	}
	return err // the bucket is there, or could not be checked: the object's 404 stands
}
