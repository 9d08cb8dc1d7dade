package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The contenders, in table order. Each copies a data set's source bucket into a fresh
// destination bucket on the other server, as a child process at the same concurrency.
const (
	toolFerry  = "ferry"
	toolRclone = "rclone"
	toolBare   = "bare"
	// toolSplit is ferry as an operator runs it: plan, copy and verify as three
	// commands, each opening the state afresh (-split).
	toolSplit = "ferry-split"
)

var tools = []string{toolFerry, toolRclone, toolBare}

var toolTitle = map[string]string{
	toolFerry:  "ferry run --through verify",
	toolRclone: "rclone copy --checksum",
	toolBare:   "bare GET-then-PUT loop (limit)",
	toolSplit:  "ferry plan; ferry copy; ferry verify",
}

// sample is one measured run of one tool on one data set.
type sample struct {
	set, tool string
	run       int
	wall      time.Duration
	records   int
	bytes     int64
	cpu       time.Duration // the child's user+sys
	maxRSS    int64         // the child's peak RSS, bytes
	serverCPU time.Duration // both MinIO servers' user+sys during the run
	// requests counts the S3 requests the servers answered during the run, by
	// "src API" or "dst API".
	requests map[string]int64
}

func (s sample) recordsPerSec() float64 { return float64(s.records) / s.wall.Seconds() }
func (s sample) mbPerSec() float64      { return float64(s.bytes) / 1e6 / s.wall.Seconds() }

// child is a contender's command and the check of what it printed.
type child struct {
	cmd   *exec.Cmd
	check func(stdout []byte) error
}

// measure runs one tool on one data set into a fresh destination bucket, checks the
// destination holds every object with its size, removes the bucket and returns the
// figures.
func (b *bench) measure(ctx context.Context, set *dataset, tool string, run int) (sample, error) {
	s := sample{set: set.name, tool: tool, run: run, records: len(set.recs), bytes: set.bytes}
	bucket := fmt.Sprintf("dst-%s-%s-%d", set.name, tool, run)
	if err := b.dst.createBucket(ctx, bucket); err != nil {
		return s, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.timeout)
	defer cancel()
	var c child
	var err error
	switch tool {
	case toolFerry:
		c, err = b.ferryChild(ctx, set, bucket)
	case toolSplit:
		c, err = b.ferrySplitChild(ctx, set, bucket)
	case toolRclone:
		c = b.rcloneChild(ctx, set, bucket)
	case toolBare:
		c, err = b.bareChild(ctx, set, bucket)
	default:
		err = fmt.Errorf("unknown tool %q", tool)
	}
	if err != nil {
		return s, err
	}
	var stdout, stderr bytes.Buffer
	c.cmd.Stdout = &stdout
	c.cmd.Stderr = &capped{max: 16 << 10, b: &stderr}
	c.cmd.WaitDelay = 5 * time.Second
	req0, err := b.requests(ctx)
	if err != nil {
		return s, err
	}
	srv0, err := b.serverCPU()
	if err != nil {
		return s, err
	}
	u, err := runMeasured(c.cmd)
	srv1, serr := b.serverCPU()
	req1, rerr := b.requests(ctx)
	serr = errors.Join(serr, rerr)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("%w (-timeout %v)", err, b.cfg.timeout)
		}
		return s, fmt.Errorf("%s on %s, run %d: %w\n--- stderr ---\n%s", tool, set.name, run, err, stderr.String())
	}
	if serr != nil {
		return s, serr
	}
	s.wall, s.cpu, s.maxRSS = u.Wall, u.User+u.Sys, u.MaxRSS
	s.serverCPU = srv1 - srv0
	s.requests = map[string]int64{}
	for k, n := range req1 {
		if d := n - req0[k]; d > 0 {
			s.requests[k] = d
		}
	}
	if err := c.check(stdout.Bytes()); err != nil {
		return s, fmt.Errorf("%s on %s, run %d: %w\n--- stderr ---\n%s", tool, set.name, run, err, stderr.String())
	}
	got, err := b.dst.list(ctx, bucket)
	if err != nil {
		return s, err
	}
	if err := sameObjects(set.want, got); err != nil {
		return s, fmt.Errorf("%s on %s, run %d: the destination is not a copy of the source: %w", tool, set.name, run, err)
	}
	// The figures stand; free the memory the copy takes (the servers' data is on tmpfs).
	return s, b.dst.removeBucket(context.WithoutCancel(ctx), bucket)
}

// requests counts the requests both servers have answered so far, by "src API" and
// "dst API".
func (b *bench) requests(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	for _, srv := range []*server{b.src, b.dst} {
		m, err := srv.requests(ctx)
		if err != nil {
			return nil, err
		}
		for api, n := range m {
			out[srv.name+" "+api] = n
		}
	}
	return out, nil
}

// serverCPU is the CPU time both servers have used so far.
func (b *bench) serverCPU() (time.Duration, error) {
	a, err := b.src.cpu()
	if err != nil {
		return 0, err
	}
	c, err := b.dst.cpu()
	return a + c, err
}

// ferrySpec is the migration ferry runs: the source bucket as its only site, the
// destination bucket as the target, no deletion stages, SQLite state beside it.
const ferrySpec = `# written by ferrybench
migration: ferrybench
state: ferry.db
sources:
  - name: src
    role: primary
    url: s3://%s/
    endpoint: %s
    region: %s
    path_style: true
    credentials: {access_key_env: %s, secret_key_env: %s}
target:
  url: s3://%s/
  endpoint: %s
  region: %s
  path_style: true
  credentials: {access_key_env: %s, secret_key_env: %s}
records:
  user: '^(?P<user>[^/]+)/'
copy:
  concurrency: %d
`

// writeFerrySpec writes a fresh migration folder (spec, and the state ferry creates
// there) for copying set into bucket, and returns the spec's path.
func (b *bench) writeFerrySpec(set *dataset, bucket string) (string, error) {
	dir, err := os.MkdirTemp(b.work, "ferry-"+set.name+"-")
	if err != nil {
		return "", err
	}
	spec := fmt.Sprintf(ferrySpec,
		set.bucket, b.src.Endpoint, region, b.src.AccessKeyEnv, b.src.SecretKeyEnv,
		bucket, b.dst.Endpoint, region, b.dst.AccessKeyEnv, b.dst.SecretKeyEnv,
		b.cfg.concurrency)
	path := filepath.Join(dir, "ferry.yaml")
	return path, os.WriteFile(path, []byte(spec), 0o644)
}

// ferryChild runs `ferry run --through verify` (plan, copy, verify) and checks from
// its JSON result that every record was copied and verified.
func (b *bench) ferryChild(ctx context.Context, set *dataset, bucket string) (child, error) {
	spec, err := b.writeFerrySpec(set, bucket)
	if err != nil {
		return child{}, err
	}
	cmd := exec.CommandContext(ctx, b.ferryBin, "run", "--through", "verify", "-c", spec, "--json", "--no-progress")
	cmd.Dir = filepath.Dir(spec)
	check := func(stdout []byte) error {
		var out struct {
			OK     bool `json:"ok"`
			Result struct {
				Copy struct {
					Copied, Failed int64
				} `json:"copy"`
				Verify struct {
					Verified int64 `json:"verified"`
				} `json:"verify"`
			} `json:"result"`
		}
		if err := json.Unmarshal(stdout, &out); err != nil {
			return fmt.Errorf("ferry's JSON result: %w", err)
		}
		r := out.Result
		if !out.OK || r.Copy.Copied != int64(len(set.recs)) || r.Verify.Verified != int64(len(set.recs)) {
			return fmt.Errorf("ferry copied %d, failed %d, verified %d of %d records (ok %v)",
				r.Copy.Copied, r.Copy.Failed, r.Verify.Verified, len(set.recs), out.OK)
		}
		return nil
	}
	return child{cmd, check}, nil
}

// ferrySplitChild runs `ferry plan`, `ferry copy` and `ferry verify` one after the
// other through sh (the child's rusage holds all three), and checks from verify's
// JSON result that every record was verified.
func (b *bench) ferrySplitChild(ctx context.Context, set *dataset, bucket string) (child, error) {
	spec, err := b.writeFerrySpec(set, bucket)
	if err != nil {
		return child{}, err
	}
	ferry := func(args string) string {
		return shellQuote(b.ferryBin) + " " + args + " -c " + shellQuote(spec) + " --no-progress"
	}
	script := ferry("plan") + " >/dev/null && " + ferry("copy") + " >/dev/null && " + ferry("verify --json")
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Dir = filepath.Dir(spec)
	check := func(stdout []byte) error {
		var out struct {
			OK     bool `json:"ok"`
			Result struct {
				Verified int64 `json:"verified"`
			} `json:"result"`
		}
		if err := json.Unmarshal(stdout, &out); err != nil {
			return fmt.Errorf("ferry verify's JSON result: %w", err)
		}
		if !out.OK || out.Result.Verified != int64(len(set.recs)) {
			return fmt.Errorf("ferry verify verified %d of %d records (ok %v)", out.Result.Verified, len(set.recs), out.OK)
		}
		return nil
	}
	return child{cmd, check}, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// rcloneChild runs `rclone copy --checksum --transfers C` with both remotes
// configured through the environment (no config file).
func (b *bench) rcloneChild(ctx context.Context, set *dataset, bucket string) child {
	cmd := exec.CommandContext(ctx, b.rcloneBin, "copy", "--checksum",
		"--transfers", fmt.Sprint(b.cfg.concurrency), "-q",
		"src:"+set.bucket, "dst:"+bucket)
	cmd.Dir = b.work
	cmd.Env = append(os.Environ(), "RCLONE_CONFIG="+filepath.Join(b.work, "rclone.conf"))
	for _, r := range []struct {
		name string
		srv  *server
	}{{"SRC", b.src}, {"DST", b.dst}} {
		p := "RCLONE_CONFIG_" + r.name + "_"
		cmd.Env = append(cmd.Env,
			p+"TYPE=s3", p+"PROVIDER=Minio", p+"ENDPOINT="+r.srv.Endpoint, p+"REGION="+region,
			p+"ACCESS_KEY_ID="+r.srv.AccessKey, p+"SECRET_ACCESS_KEY="+r.srv.SecretKey)
	}
	return child{cmd, func([]byte) error { return nil }}
}

// bareChild runs the bare loop in a child ferrybench.
func (b *bench) bareChild(ctx context.Context, set *dataset, bucket string) (child, error) {
	self, err := os.Executable()
	if err != nil {
		return child{}, err
	}
	job, err := json.Marshal(b.bareJob(set, bucket))
	if err != nil {
		return child{}, err
	}
	cmd := exec.CommandContext(ctx, self, bareChildArg)
	cmd.Env = append(os.Environ(), bareJobEnv+"="+string(job))
	check := func(stdout []byte) error {
		var res bareResult
		if err := json.Unmarshal(stdout, &res); err != nil {
			return fmt.Errorf("the bare loop's result: %w", err)
		}
		if res.Objects != int64(len(set.recs)) || res.Bytes != set.bytes {
			return fmt.Errorf("the bare loop copied %d objects (%d bytes), want %d (%d bytes)", res.Objects, res.Bytes, len(set.recs), set.bytes)
		}
		return nil
	}
	return child{cmd, check}, nil
}

func (b *bench) bareJob(set *dataset, bucket string) bareJob {
	return bareJob{
		Src:         endpoint{b.src.Endpoint, b.src.AccessKey, b.src.SecretKey, set.bucket},
		Dst:         endpoint{b.dst.Endpoint, b.dst.AccessKey, b.dst.SecretKey, bucket},
		Concurrency: b.cfg.concurrency,
	}
}

// capped keeps the first max bytes written to b (a child's stderr, for error messages).
type capped struct {
	max int
	b   *bytes.Buffer
}

func (t *capped) Write(p []byte) (int, error) {
	if room := t.max - t.b.Len(); room > 0 {
		t.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
