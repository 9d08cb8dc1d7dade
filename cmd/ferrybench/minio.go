package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// region is the region both servers run in.
const region = "us-east-1"

// server is one MinIO server on 127.0.0.1, started by providers/s3/s3test (random
// free ports, made-up root credentials named by environment variables that ferry's
// spec uses and children inherit), with a client that keeps enough connections for
// the benchmark's concurrency.
type server struct {
	*s3test.Server
	name   string // "src" or "dst"
	client *s3.Client
}

// startMinIO starts a MinIO server with its data under dir.
func startMinIO(bin, name, dir string) (*server, error) {
	// Request counts (see requests) without a token; loopback only.
	srv, err := s3test.Launch(s3test.MinIO, bin, dir, "MINIO_PROMETHEUS_AUTH_TYPE=public")
	if err != nil {
		return nil, fmt.Errorf("minio (%s): %w", name, err)
	}
	return &server{Server: srv, name: name, client: newClient(srv.Endpoint, srv.AccessKey, srv.SecretKey, 64)}, nil
}

func (s *server) stop() { s.Stop() }

// cpu returns the CPU time (user+sys, all threads) the server has used so far.
func (s *server) cpu() (time.Duration, error) {
	return procCPU(s.PID())
}

// procCPU reads utime and stime of a live process from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: the fields
	// after it start at field 3 (state); utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const clockTicks = 100 // USER_HZ: 100 on every Linux platform Go supports
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// requests returns how many S3 requests of each API (GetObject, HeadObject, ...) the
// server has answered so far, from its metrics.
func (s *server) requests(ctx context.Context) (map[string]int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint+"/minio/metrics/v3/api/requests", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", s.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s metrics: %s", s.name, resp.Status)
	}
	// Lines like: minio_api_requests_total{name="GetObject",server="...",type="s3"} 5000
	const metric = "minio_api_requests_total{"
	out := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), metric)
		if !ok {
			continue
		}
		_, rest, ok1 := strings.Cut(line, `name="`)
		name, _, ok2 := strings.Cut(rest, `"`)
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if !ok1 || !ok2 || i < 0 || err != nil {
			return nil, fmt.Errorf("%s metrics: cannot read %q", s.name, sc.Text())
		}
		out[name] = int64(v)
	}
	return out, sc.Err()
}

// createBucket creates an empty bucket.
func (s *server) createBucket(ctx context.Context, name string) error {
	_, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	if err != nil {
		return fmt.Errorf("create bucket %s on %s: %w", name, s.name, err)
	}
	return nil
}

// list returns every object of a bucket: key to size.
func (s *server) list(ctx context.Context, bucket string) (map[string]int64, error) {
	out := map[string]int64{}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %s on %s: %w", bucket, s.name, err)
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = aws.ToInt64(o.Size)
		}
	}
	return out, nil
}

// removeBucket deletes every object of a bucket, then the bucket.
func (s *server) removeBucket(ctx context.Context, bucket string) error {
	objs, err := s.list(ctx, bucket)
	if err != nil {
		return err
	}
	var batch []types.ObjectIdentifier
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(bucket),
			Delete: &types.Delete{Objects: batch, Quiet: aws.Bool(true)},
		})
		if err == nil && len(out.Errors) > 0 {
			err = fmt.Errorf("%s: %s", aws.ToString(out.Errors[0].Key), aws.ToString(out.Errors[0].Message))
		}
		batch = batch[:0]
		return err
	}
	for k := range objs {
		batch = append(batch, types.ObjectIdentifier{Key: aws.String(k)})
		if len(batch) == 1000 {
			if err := flush(); err != nil {
				return fmt.Errorf("empty %s on %s: %w", bucket, s.name, err)
			}
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("empty %s on %s: %w", bucket, s.name, err)
	}
	if _, err := s.client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return fmt.Errorf("delete bucket %s on %s: %w", bucket, s.name, err)
	}
	return s.emptyTrash()
}

// emptyTrash frees the space of deleted objects now. MinIO moves what is deleted into
// a trash folder and removes it later, at its own pace: with the data on tmpfs, a few
// large runs would otherwise fill the memory.
func (s *server) emptyTrash() error {
	trash := filepath.Join(s.DataDir(), ".minio.sys", "tmp", ".trash")
	entries, err := os.ReadDir(trash)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(trash, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// newClient returns an S3 client for a MinIO on loopback that keeps up to conns idle
// connections (the SDK's default keeps 10 per host, too few for 32 workers).
func newClient(endpoint, accessKey, secretKey string, conns int, optFns ...func(*s3.Options)) *s3.Client {
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConns = 2 * conns
		tr.MaxIdleConnsPerHost = 2 * conns
	})
	return s3.New(s3.Options{
		Region:       region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
		HTTPClient:   hc,
	}, optFns...)
}
