package s3test

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Restricted are temporary credentials limited by a policy: what a least-privilege
// phase runs with. They come from STS AssumeRole, called with the server's root
// credentials and an inline session policy (MinIO accepts this; the session can do
// only what both the root user and the policy allow).
type Restricted struct {
	AccessKey, SecretKey, SessionToken string
	// The names of the environment variables holding them, set for the test's
	// duration, for specs and providers.Config.
	AccessKeyEnv, SecretKeyEnv, SessionTokenEnv string
}

// Restricted returns temporary credentials limited to policy (an IAM policy
// document), valid for at least 15 minutes, named env prefix_ACCESS_KEY etc.
func (s *Server) Restricted(t testing.TB, prefix, policy string) *Restricted {
	t.Helper()
	c := sts.New(sts.Options{
		Region: Region, BaseEndpoint: aws.String(s.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		HTTPClient:  awshttp.NewBuildableClient(),
	})
	out, err := c.AssumeRole(context.Background(), &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:minio:iam:::role/ferry-test"), RoleSessionName: aws.String(prefix),
		Policy: aws.String(policy), DurationSeconds: aws.Int32(3600),
	})
	if err != nil {
		t.Fatalf("s3test: AssumeRole on %s: %v", s.Kind, err)
	}
	r := &Restricted{
		AccessKey: aws.ToString(out.Credentials.AccessKeyId), SecretKey: aws.ToString(out.Credentials.SecretAccessKey),
		SessionToken:    aws.ToString(out.Credentials.SessionToken),
		AccessKeyEnv:    prefix + "_ACCESS_KEY",
		SecretKeyEnv:    prefix + "_SECRET_KEY",
		SessionTokenEnv: prefix + "_SESSION_TOKEN",
	}
	if r.SessionToken == "" {
		t.Fatalf("s3test: AssumeRole on %s returned no session token", s.Kind)
	}
	for k, v := range map[string]string{r.AccessKeyEnv: r.AccessKey, r.SecretKeyEnv: r.SecretKey, r.SessionTokenEnv: r.SessionToken} {
		t.Setenv(k, v)
	}
	return r
}

// Env returns the credentials as NAME=value pairs, for a child process's environment.
func (r *Restricted) Env() []string {
	return []string{r.AccessKeyEnv + "=" + r.AccessKey, r.SecretKeyEnv + "=" + r.SecretKey, r.SessionTokenEnv + "=" + r.SessionToken}
}

// Credentials returns a spec's credentials setting naming r's variables.
func (r *Restricted) Credentials() map[string]string {
	return map[string]string{"access_key_env": r.AccessKeyEnv, "secret_key_env": r.SecretKeyEnv, "session_token_env": r.SessionTokenEnv}
}

// YAML returns r's credentials as a spec's flow mapping.
func (r *Restricted) YAML() string {
	return fmt.Sprintf("{access_key_env: %s, secret_key_env: %s, session_token_env: %s}", r.AccessKeyEnv, r.SecretKeyEnv, r.SessionTokenEnv)
}
