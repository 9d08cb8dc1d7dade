// Package gstest starts fake-gcs-server (github.com/fsouza/fake-gcs-server, memory
// backend) on the loopback interface for tests, behind two proxies of ours:
//
//	client -> fault proxy (s3test.Proxy: 429/500/503, latency, cut bodies)
//	       -> precondition proxy (ifGenerationMatch on deletes, copies and patches)
//	       -> fake-gcs-server
//
// fake-gcs-server ignores ifGenerationMatch on a delete (up to v1.56.1 at least) and
// on a copy's destination; the precondition proxy answers 412 as GCS does when the
// live generation does not match, so a test can show that an object rewritten since
// it was verified is not deleted. It also refuses (501) a delete naming a noncurrent
// generation, which fake-gcs-server would turn into a delete of the live object.
//
// The binary comes from $FERRY_TOOLS, else the nearest .tools/bin (`make tools`
// installs the pinned version); a missing binary skips the test, or fails it when
// CI=true or FERRY_REQUIRE_SERVERS=1 (s3test.Required).
package gstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// Binary is the server's file name in the tools directory.
const Binary = "fake-gcs-server"

// Location is the location every test bucket reports.
const Location = "US-EAST1"

// Server is one running fake-gcs-server with its proxies.
type Server struct {
	// Endpoint is the client-facing URL (the fault proxy): http://127.0.0.1:PORT.
	Endpoint string
	// Direct is fake-gcs-server itself, for looking behind the provider's back.
	Direct string
	// Faults is the fault proxy every request of Endpoint goes through.
	Faults *s3test.Proxy
	// Preconditions is the precondition proxy between Faults and the server.
	Preconditions *PreconditionProxy

	cmd  *exec.Cmd
	done chan struct{}
	log  *s3test.TailBuffer
	stop sync.Once
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
	sharedSkip string
	serial     atomic.Int64
)

// Main runs the tests and then stops the shared server. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

// Shared returns the server shared by the whole test binary, starting it on first
// use.
func Shared(t testing.TB) *Server {
	t.Helper()
	sharedOnce.Do(func() {
		bin, why := s3test.Binary(Binary)
		if bin == "" {
			sharedSkip = why
			return
		}
		shared, sharedErr = Launch(bin)
	})
	if sharedSkip != "" {
		missing(t, sharedSkip)
	}
	if sharedErr != nil {
		t.Fatalf("gstest: %v", sharedErr)
	}
	return shared
}

// Start runs a private server for the duration of t.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, why := s3test.Binary(Binary)
	if bin == "" {
		missing(t, why)
	}
	srv, err := Launch(bin)
	if err != nil {
		t.Fatalf("gstest: %v", err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

func missing(t testing.TB, why string) {
	t.Helper()
	msg := why + "; `make tools` installs fake-gcs-server (or set FERRY_TOOLS to a directory holding it)"
	if s3test.Required() {
		t.Fatal("gstest: " + msg)
	}
	t.Skip("gstest: " + msg)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Launch starts fake-gcs-server from bin with its proxies, outside any test; the
// caller stops it with Stop. It retries with a new port if one was taken meanwhile.
func Launch(bin string) (*Server, error) {
	var err error
	for range 3 {
		var srv *Server
		if srv, err = launch(bin); err == nil {
			return srv, nil
		}
	}
	return nil, err
}

func launch(bin string) (*Server, error) {
	port, err := s3test.FreePort()
	if err != nil {
		return nil, err
	}
	srv := &Server{Direct: fmt.Sprintf("http://127.0.0.1:%d", port), done: make(chan struct{}), log: &s3test.TailBuffer{Max: 16 << 10}}
	// The proxies first: the server must know the client-facing URL, which it puts in
	// resumable uploads' Location.
	srv.Preconditions = newPreconditionProxy(srv.Direct)
	srv.Faults, err = s3test.NewProxy(srv.Preconditions.URL)
	if err != nil {
		srv.Preconditions.Close()
		return nil, err
	}
	srv.Endpoint = srv.Faults.URL
	public := srv.Endpoint[len("http://"):]
	cmd := exec.Command(bin, "-backend", "memory", "-scheme", "http", "-host", "127.0.0.1",
		"-port", strconv.Itoa(port), "-public-host", public, "-external-url", srv.Endpoint,
		"-location", Location, "-log-level", "error")
	cmd.Stdout, cmd.Stderr = srv.log, srv.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		srv.closeProxies()
		return nil, err
	}
	srv.cmd = cmd
	go func() {
		cmd.Wait()
		close(srv.done)
	}()
	if err := srv.waitReady(30 * time.Second); err != nil {
		srv.Stop()
		return nil, fmt.Errorf("fake-gcs-server did not become ready at %s: %w\n--- server output ---\n%s", srv.Direct, err, srv.log.String())
	}
	return srv, nil
}

func (s *Server) closeProxies() {
	s.Faults.Close()
	s.Preconditions.Close()
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
		resp, err := http.Get(s.Direct + "/storage/v1/b")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return last
}

// PID is the server process's id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop stops the server and its proxies.
func (s *Server) Stop() {
	s.stop.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(5 * time.Second):
				s.cmd.Process.Kill()
				<-s.done
			}
		}
		s.closeProxies()
	})
}

// Log returns the tail of the server's output.
func (s *Server) Log() string { return s.log.String() }

// Bucket creates a fresh, empty bucket with a unique name and returns its name.
func (s *Server) Bucket(t testing.TB, versioned bool) string {
	t.Helper()
	name, err := s.CreateBucket(versioned)
	if err != nil {
		t.Fatalf("gstest: %v", err)
	}
	return name
}

// CreateBucket creates a fresh bucket (outside a test).
func (s *Server) CreateBucket(versioned bool) (string, error) {
	name := fmt.Sprintf("ferry-%d-%s", serial.Add(1), randHex(3))
	body, _ := json.Marshal(map[string]any{"name": name, "versioning": map[string]bool{"enabled": versioned}})
	resp, err := http.Post(s.Direct+"/storage/v1/b?project=ferry-test", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("create bucket %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return "", fmt.Errorf("create bucket %s: %s: %s", name, resp.Status, b)
	}
	return name, nil
}

// Config returns a providers.Config for gs://bucket/prefix on this server (through
// the proxies), anonymous as an emulator wants.
func (s *Server) Config(bucket, prefix string) providers.Config {
	return providers.Config{
		Name:        "gcs/" + bucket,
		URL:         "gs://" + bucket + "/" + prefix,
		Endpoint:    s.Endpoint,
		Credentials: map[string]string{"auth": "none"},
		Migration:   "test",
	}
}

// ObjectGeneration returns the live generation of bucket/name as the server itself
// reports it (0 when absent), looking behind the proxies.
func (s *Server) ObjectGeneration(ctx context.Context, bucket, name string) (int64, error) {
	return s.Preconditions.generation(ctx, bucket, escapePath(name), "")
}

var _ = httptest.NewServer // the proxies (precondition.go) are httptest servers
