package s3

import (
	"context"

	smithymiddleware "github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ferrymigrate/ferry/providers"
)

// requestIDMiddleware notes every response's x-amz-request-id (each attempt's, retries
// included) for ferry's journal of its own access (providers.NoteRequestID).
var requestIDMiddleware = smithymiddleware.DeserializeMiddlewareFunc("FerryRequestID",
	func(ctx context.Context, in smithymiddleware.DeserializeInput, next smithymiddleware.DeserializeHandler) (smithymiddleware.DeserializeOutput, smithymiddleware.Metadata, error) {
		out, md, err := next.HandleDeserialize(ctx, in)
		if resp, ok := out.RawResponse.(*smithyhttp.Response); ok && resp != nil {
			providers.NoteRequestID(ctx, resp.Header.Get("X-Amz-Request-Id"))
		}
		return out, md, err
	})

func addRequestIDMiddleware(st *smithymiddleware.Stack) error {
	return st.Deserialize.Add(requestIDMiddleware, smithymiddleware.After)
}

var _ providers.Principal = (*Store)(nil)

// Principal names the access key id the store signs with (providers.AccessKeyIdentity:
// never whole, never the secret), or "anonymous" when it signs nothing.
func (s *Store) Principal(ctx context.Context) (string, error) {
	creds := s.client.Options().Credentials
	if creds == nil {
		return "anonymous", nil
	}
	c, err := creds.Retrieve(ctx)
	if err != nil {
		return "", err
	}
	return providers.AccessKeyIdentity(c.AccessKeyID), nil
}
