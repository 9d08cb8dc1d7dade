package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"
)

// The bare loop is the limit on this machine: the least work that copies every object
// with aws-sdk-go-v2. It runs as a child of ferrybench (`ferrybench bare-child`, an
// undocumented argument) so that its CPU time and peak RSS are measured like the
// other tools'; the job comes through the environment (it holds credentials).
const (
	bareChildArg = "bare-child"
	bareJobEnv   = "FERRYBENCH_BARE_JOB"
)

// bareJob says what the bare loop copies.
type bareJob struct {
	Src, Dst    endpoint
	Concurrency int
}

type endpoint struct {
	URL, AccessKey, SecretKey, Bucket string
}

// bareResult is what the child prints on stdout.
type bareResult struct {
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

// bareChildMain runs the bare loop the environment describes and prints its result.
func bareChildMain() int {
	var job bareJob
	if err := json.Unmarshal([]byte(os.Getenv(bareJobEnv)), &job); err != nil {
		fmt.Fprintf(os.Stderr, "ferrybench %s: bad %s: %v\n", bareChildArg, bareJobEnv, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bareCopy(ctx, job)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferrybench %s: %v\n", bareChildArg, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// bareCopy lists the source bucket and, with job.Concurrency workers, GETs each
// object and streams its body straight into a PutObject on the destination. Nothing
// is buffered, hashed or checked: no response checksum validation, no request
// checksum, and the body is sent as UNSIGNED-PAYLOAD (so the signer does not hash it
// either). No state, no retries of a failed object: it is the floor, not a tool.
func bareCopy(ctx context.Context, job bareJob) (bareResult, error) {
	src := newClient(job.Src.URL, job.Src.AccessKey, job.Src.SecretKey, job.Concurrency, func(o *s3.Options) {
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	dst := newClient(job.Dst.URL, job.Dst.AccessKey, job.Dst.SecretKey, job.Concurrency, func(o *s3.Options) {
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
	g, ctx := errgroup.WithContext(ctx)
	keys := make(chan string, 1000)
	g.Go(func() error {
		defer close(keys)
		p := s3.NewListObjectsV2Paginator(src, &s3.ListObjectsV2Input{Bucket: aws.String(job.Src.Bucket)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("list: %w", err)
			}
			for _, o := range page.Contents {
				select {
				case keys <- aws.ToString(o.Key):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		return nil
	})
	var objects, bytes atomic.Int64
	for range max(1, job.Concurrency) {
		g.Go(func() error {
			for key := range keys {
				n, err := bareCopyOne(ctx, src, dst, job, key)
				if err != nil {
					return fmt.Errorf("%s: %w", key, err)
				}
				objects.Add(1)
				bytes.Add(n)
			}
			return nil
		})
	}
	err := g.Wait()
	return bareResult{Objects: objects.Load(), Bytes: bytes.Load()}, err
}

func bareCopyOne(ctx context.Context, src, dst *s3.Client, job bareJob, key string) (int64, error) {
	get, err := src.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(job.Src.Bucket), Key: aws.String(key)})
	if err != nil {
		return 0, fmt.Errorf("get: %w", err)
	}
	defer get.Body.Close()
	size := aws.ToInt64(get.ContentLength)
	if get.ContentLength == nil {
		return 0, errors.New("get: no content length")
	}
	_, err = dst.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(job.Dst.Bucket),
		Key:           aws.String(key),
		Body:          struct{ io.Reader }{get.Body}, // a plain reader: streamed, not rewound
		ContentLength: aws.Int64(size),
	}, s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
	if err != nil {
		return 0, fmt.Errorf("put: %w", err)
	}
	return size, nil
}
