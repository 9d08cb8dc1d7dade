// Package s3test starts real S3 servers (MinIO, versitygw) on the loopback interface
// for tests, creates buckets on them and stops them afterwards.
//
// Binaries come from $FERRY_TOOLS (a directory), or else from the nearest
// .tools/bin found walking up from the working directory (where `make tools`
// installs the pinned versions). A missing binary skips the test, or fails it when
// CI=true or FERRY_REQUIRE_SERVERS=1.
//
// The shared servers (MinIO, VersityGW) start once per test binary on first use;
// call Main from TestMain so they are stopped and their data removed at the end.
// Their data lives in $FERRY_S3TEST_DIR, else /dev/shm when writable, else the
// temp dir. Start runs a private server that lives as long as one test (data in
// t.TempDir()). Every server listens on 127.0.0.1 only, and every request a
// Server makes goes there.
//
// Each server's root credentials are put in this process's environment under the
// names Server.AccessKeyEnv and Server.SecretKeyEnv, so a providers.Config can name
// them the way a spec does (see Server.Config).
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrymigrate/ferry/providers"
)

// Kind names a server implementation.
type Kind string

const (
	MinIO     Kind = "minio"
	VersityGW Kind = "versitygw"
)

// Region is the region every test server runs in.
const Region = "us-east-1"

// Server is one running S3 server.
type Server struct {
	Kind      Kind
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	// AccessKeyEnv and SecretKeyEnv name the environment variables holding the
	// credentials.
	AccessKeyEnv, SecretKeyEnv string

	dataDir string
	cmd     *exec.Cmd
	log     *TailBuffer
	done    chan struct{}
	client  *s3.Client
	stop    sync.Once
}

var (
	sharedMu sync.Mutex
	shared   = map[Kind]*sharedServer{}
	serial   atomic.Int64
)

type sharedServer struct {
	once sync.Once
	dir  string // removed by StopShared
	srv  *Server
	err  error
	skip string
}

// Main runs the tests and then stops the shared servers. Call it from TestMain:
//
//	func TestMain(m *testing.M) { s3test.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// StopShared stops the shared servers and removes their data.
func StopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for k, s := range shared {
		if s.srv != nil {
			s.srv.Stop()
		}
		if s.dir != "" {
			os.RemoveAll(s.dir)
		}
		delete(shared, k)
	}
}

// Shared returns the server of kind shared by the whole test binary, starting it on
// first use.
func Shared(t testing.TB, kind Kind) *Server {
	t.Helper()
	sharedMu.Lock()
	s := shared[kind]
	if s == nil {
		s = &sharedServer{}
		shared[kind] = s
	}
	sharedMu.Unlock()
	s.once.Do(func() {
		bin, why := Binary(string(kind))
		if bin == "" {
			s.skip = why
			return
		}
		dir, err := os.MkdirTemp(scratchDir(), "ferry-s3test-"+string(kind)+"-")
		if err != nil {
			s.err = err
			return
		}
		s.dir = dir
		s.srv, s.err = start(kind, bin, dir)
	})
	if s.skip != "" {
		missing(t, s.skip)
	}
	if s.err != nil {
		t.Fatalf("s3test: shared %s: %v", kind, s.err)
	}
	return s.srv
}

// scratchDir is where shared servers keep their data: $FERRY_S3TEST_DIR, else
// /dev/shm when it is a writable directory (servers fsync every object; on a
// real disk that makes the suites several times slower), else the temp dir.
func scratchDir() string {
	if d := os.Getenv("FERRY_S3TEST_DIR"); d != "" {
		return d
	}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if f, err := os.CreateTemp("/dev/shm", ".ferry-probe-"); err == nil {
			f.Close()
			os.Remove(f.Name())
			return "/dev/shm"
		}
	}
	return ""
}

// Start runs a private server of kind for the duration of t.
func Start(t testing.TB, kind Kind) *Server {
	t.Helper()
	return StartWith(t, kind)
}

// StartWith is Start with extraEnv added to the server's environment (MinIO's
// MINIO_AUDIT_WEBHOOK_* settings, say).
func StartWith(t testing.TB, kind Kind, extraEnv ...string) *Server {
	t.Helper()
	bin, why := Binary(string(kind))
	if bin == "" {
		missing(t, why)
	}
	srv, err := Launch(kind, bin, t.TempDir(), extraEnv...)
	if err != nil {
		t.Fatalf("s3test: %s: %v", kind, err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// Required reports whether a missing server fails the test instead of skipping it.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("FERRY_REQUIRE_SERVERS") == "1"
}

func missing(t testing.TB, why string) {
	t.Helper()
	msg := why + "; `make tools` installs it (or set FERRY_TOOLS to a directory holding it)"
	if Required() {
		t.Fatal("s3test: " + msg)
	}
	t.Skip("s3test: " + msg)
}

// Binary finds the named server binary. On failure it returns "" and why.
func Binary(name string) (path, why string) {
	if dir := os.Getenv("FERRY_TOOLS"); dir != "" {
		p := filepath.Join(dir, name)
		if isExec(p) {
			return p, ""
		}
		return "", fmt.Sprintf("%s not found in FERRY_TOOLS=%s", name, dir)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err.Error()
	}
	for d := wd; ; d = filepath.Dir(d) {
		p := filepath.Join(d, ".tools", "bin", name)
		if isExec(p) {
			return p, ""
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	return "", fmt.Sprintf("%s not found in .tools/bin in %s or any parent", name, wd)
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// FreePort returns a port of 127.0.0.1 that nothing listens on now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// start launches the server, retrying with new ports if one was taken meanwhile.
func start(kind Kind, bin, dir string) (*Server, error) { return Launch(kind, bin, dir) }

// Launch starts a server outside any test (benchmark harnesses): binary bin, data
// under dir, extraEnv added to its environment. The caller stops it with Stop. It
// retries with new ports if one was taken meanwhile.
func Launch(kind Kind, bin, dir string, extraEnv ...string) (*Server, error) {
	var err error
	for attempt := range 3 {
		var srv *Server
		srv, err = launch(kind, bin, filepath.Join(dir, fmt.Sprintf("run%d", attempt)), extraEnv)
		if err == nil {
			return srv, nil
		}
	}
	return nil, err
}

func launch(kind Kind, bin, dir string, extraEnv []string) (*Server, error) {
	n := serial.Add(1)
	srv := &Server{
		Kind:      kind,
		AccessKey: "ferrytest" + randHex(4),
		SecretKey: "secret-" + randHex(16),
		log:       &TailBuffer{Max: 16 << 10},
		done:      make(chan struct{}),
	}
	tag := fmt.Sprintf("FERRY_S3TEST_%s_%d_%d", strings.ToUpper(string(kind)), os.Getpid(), n)
	srv.AccessKeyEnv, srv.SecretKeyEnv = tag+"_ACCESS_KEY", tag+"_SECRET_KEY"
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	srv.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", port)
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	srv.dataDir = data
	env := append(append(os.Environ(), "HOME="+dir), extraEnv...)
	var args []string
	switch kind {
	case MinIO:
		cport, err := FreePort()
		if err != nil {
			return nil, err
		}
		args = []string{"server", data, "--quiet",
			"--address", fmt.Sprintf("127.0.0.1:%d", port),
			"--console-address", fmt.Sprintf("127.0.0.1:%d", cport),
			"--certs-dir", filepath.Join(dir, "certs")}
		env = append(env,
			"MINIO_ROOT_USER="+srv.AccessKey, "MINIO_ROOT_PASSWORD="+srv.SecretKey,
			"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_REGION="+Region,
			"MINIO_CI_CD=1")
	case VersityGW:
		vdir := filepath.Join(dir, "versions")
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			return nil, err
		}
		args = []string{"--port", fmt.Sprintf("127.0.0.1:%d", port), "--region", Region, "--quiet",
			"posix", "--versioning-dir", vdir, data}
		// Credentials through the environment, not argv (ps shows argv).
		env = append(env, "ROOT_ACCESS_KEY="+srv.AccessKey, "ROOT_SECRET_KEY="+srv.SecretKey)
	default:
		return nil, fmt.Errorf("unknown server kind %q", kind)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = srv.log, srv.log
	// The server dies with the test binary even if Main never runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	srv.cmd = cmd
	go func() {
		cmd.Wait()
		close(srv.done)
	}()
	os.Setenv(srv.AccessKeyEnv, srv.AccessKey)
	os.Setenv(srv.SecretKeyEnv, srv.SecretKey)
	srv.client = srv.newClient()
	if err := srv.waitReady(30 * time.Second); err != nil {
		srv.Stop()
		return nil, fmt.Errorf("%s did not become ready at %s: %w\n--- server output ---\n%s", kind, srv.Endpoint, err, srv.log.String())
	}
	return srv, nil
}

func (s *Server) newClient() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		HTTPClient:   awshttp.NewBuildableClient(),
	})
}

func (s *Server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return errors.New("server exited")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := s.client.ListBuckets(ctx, &s3.ListBucketsInput{})
		cancel()
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// PID is the server process's id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// DataDir is the folder the server keeps its objects in.
func (s *Server) DataDir() string { return s.dataDir }

// Stop stops the server (SIGTERM, then SIGKILL) and waits for it to exit.
func (s *Server) Stop() {
	s.stop.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil {
			return
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
		os.Unsetenv(s.AccessKeyEnv)
		os.Unsetenv(s.SecretKeyEnv)
	})
}

// Log returns the tail of the server's output.
func (s *Server) Log() string { return s.log.String() }

// Client returns an S3 client with the server's root credentials, for tests that
// look behind a provider's back.
func (s *Server) Client() *s3.Client { return s.client }

// Bucket creates a fresh, empty bucket with a unique name and returns its name.
func (s *Server) Bucket(t testing.TB, versioned bool) string {
	t.Helper()
	name := fmt.Sprintf("ferry-%d-%s", serial.Add(1), randHex(3))
	ctx := context.Background()
	if _, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("s3test: create bucket %s on %s: %v", name, s.Kind, err)
	}
	if versioned {
		_, err := s.client.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
			Bucket:                  aws.String(name),
			VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled},
		})
		if err != nil {
			t.Fatalf("s3test: enable versioning on %s (%s): %v", name, s.Kind, err)
		}
	}
	return name
}

// Config returns a providers.Config for s3://bucket/prefix on this server, with
// credentials named by environment variable.
func (s *Server) Config(bucket, prefix string) providers.Config {
	return providers.Config{
		Name:      string(s.Kind) + "/" + bucket,
		URL:       "s3://" + bucket + "/" + prefix,
		Endpoint:  s.Endpoint,
		Region:    Region,
		PathStyle: true,
		Credentials: map[string]string{
			"access_key_env": s.AccessKeyEnv,
			"secret_key_env": s.SecretKeyEnv,
		},
		Migration: "test",
	}
}

// TailBuffer keeps the last Max bytes written to it: a test server's output, for
// failure messages (gstest and azbtest use it too).
type TailBuffer struct {
	Max int
	mu  sync.Mutex
	b   bytes.Buffer
}

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if over := t.b.Len() - t.Max; over > 0 {
		t.b.Next(over)
	}
	return len(p), nil
}

func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
