// Package azbtest starts Azurite's blob service on the loopback interface for
// tests, creates containers on it and stops it afterwards.
//
// The binary azurite-blob comes from $FERRY_TOOLS, or else from the nearest
// .tools/bin found walking up from the working directory (where `make tools`
// installs the pinned Azurite), found the way s3test finds MinIO. A missing binary
// skips the test, or fails it when CI=true or FERRY_REQUIRE_SERVERS=1.
//
// Azurite runs with --inMemoryPersistence, in a temporary working directory of its
// own (it writes its debug log and metadata files to its working directory), on a
// free port of 127.0.0.1, with the well-known development account
// devstoreaccount1. The account key is put in this process's environment under
// Server.KeyEnv, so a providers.Config names it as a spec does (Server.Config).
//
// Fault injection reuses s3test's proxy (s3test.NewProxy): Server.Proxy puts one
// in front of Azurite, and Match and the Op constants select Azure requests for
// its rules.
package azbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// Account and Key are Azurite's well-known development account (public, in
// Azure's documentation; not a secret).
const (
	Account = "devstoreaccount1"
	Key     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Server is one running Azurite blob service.
type Server struct {
	// Base is http://127.0.0.1:PORT; Endpoint is Base + "/" + Account (path style).
	Base, Endpoint string
	// KeyEnv names the environment variable holding Key.
	KeyEnv string

	dir    string
	cmd    *exec.Cmd
	log    *s3test.TailBuffer
	done   chan struct{}
	client *service.Client
	stop   sync.Once
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
	StopShared()
	os.Exit(code)
}

// StopShared stops the shared server.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
}

// Shared returns the Azurite shared by the whole test binary, starting it on first
// use.
func Shared(t testing.TB) *Server {
	t.Helper()
	sharedOnce.Do(func() {
		bin, why := s3test.Binary("azurite-blob")
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
		t.Fatalf("azbtest: %v", sharedErr)
	}
	return shared
}

// Start runs a private Azurite for the duration of t.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, why := s3test.Binary("azurite-blob")
	if bin == "" {
		missing(t, why)
	}
	srv, err := Launch(bin)
	if err != nil {
		t.Fatalf("azbtest: %v", err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

func missing(t testing.TB, why string) {
	t.Helper()
	msg := why + "; `make tools` installs Azurite (or set FERRY_TOOLS to a directory holding azurite-blob)"
	if s3test.Required() {
		t.Fatal("azbtest: " + msg)
	}
	t.Skip("azbtest: " + msg)
}

// Launch starts Azurite's blob service from bin outside any test, retrying with
// new ports if one was taken meanwhile. The caller stops it with Stop.
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
	dir, err := os.MkdirTemp("", "ferry-azurite-")
	if err != nil {
		return nil, err
	}
	srv := &Server{
		Base:   fmt.Sprintf("http://127.0.0.1:%d", port),
		dir:    dir,
		log:    &s3test.TailBuffer{Max: 16 << 10},
		done:   make(chan struct{}),
		KeyEnv: fmt.Sprintf("FERRY_AZBTEST_KEY_%d_%d", os.Getpid(), serial.Add(1)),
	}
	srv.Endpoint = srv.Base + "/" + Account
	cmd := exec.Command(bin, "--blobHost", "127.0.0.1", "--blobPort", fmt.Sprint(port),
		"--skipApiVersionCheck", "--disableTelemetry", "--inMemoryPersistence", "--silent")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.Stdout, cmd.Stderr = srv.log, srv.log
	// Azurite dies with the test binary even if Main never runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	srv.cmd = cmd
	go func() {
		cmd.Wait()
		close(srv.done)
	}()
	os.Setenv(srv.KeyEnv, Key)
	cred, err := service.NewSharedKeyCredential(Account, Key)
	if err != nil {
		srv.Stop()
		return nil, err
	}
	if srv.client, err = service.NewClientWithSharedKeyCredential(srv.Endpoint+"/", cred, nil); err != nil {
		srv.Stop()
		return nil, err
	}
	if err := srv.waitReady(60 * time.Second); err != nil {
		srv.Stop()
		return nil, fmt.Errorf("azurite did not become ready at %s: %w\n--- azurite output ---\n%s", srv.Endpoint, err, srv.log.String())
	}
	return srv, nil
}

func (s *Server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return errors.New("azurite exited")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := s.client.GetProperties(ctx, nil)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// Stop stops Azurite (SIGTERM, then SIGKILL), waits for it and removes its folder.
func (s *Server) Stop() {
	s.stop.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(5 * time.Second):
				syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
				<-s.done
			}
		}
		os.Unsetenv(s.KeyEnv)
		os.RemoveAll(s.dir)
	})
}

// Log returns the tail of Azurite's output.
func (s *Server) Log() string { return s.log.String() }

// Client returns a service client with the account key, for tests that look
// behind a provider's back.
func (s *Server) Client() *service.Client { return s.client }

// Container creates a fresh, empty container with a unique name and returns it.
func (s *Server) Container(t testing.TB) string {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	name := fmt.Sprintf("ferry-%d-%s", serial.Add(1), hex.EncodeToString(b))
	if _, err := s.client.CreateContainer(context.Background(), name, nil); err != nil {
		t.Fatalf("azbtest: create container %s: %v", name, err)
	}
	return name
}

// Config returns a providers.Config for azblob://devstoreaccount1/container/prefix
// on this server, with the account key named by environment variable.
func (s *Server) Config(container, prefix string) providers.Config {
	return providers.Config{
		Name:        "azurite/" + container,
		URL:         "azblob://" + Account + "/" + container + "/" + prefix,
		Endpoint:    s.Endpoint,
		Credentials: map[string]string{"account_key_env": s.KeyEnv},
		Migration:   "test",
	}
}

// Proxy starts s3test's fault-injecting proxy in front of s for the duration of t.
// Its Endpoint is the path-style endpoint to give a Config.
type Proxy struct {
	*s3test.Proxy
	Endpoint string
}

// Proxy starts a fault-injecting proxy in front of s for the duration of t.
func (s *Server) Proxy(t testing.TB) *Proxy {
	t.Helper()
	p, err := s3test.NewProxy(s.Base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return &Proxy{Proxy: p, Endpoint: p.URL + "/" + Account}
}

// Op names the kind of an Azure Blob request, for proxy rules.
type Op string

const (
	OpGet    Op = "get"    // Get Blob
	OpHead   Op = "head"   // Get Blob Properties, Get Container Properties
	OpPut    Op = "put"    // Put Blob, Put Block, Put Block List, Copy Blob
	OpList   Op = "list"   // List Blobs
	OpDelete Op = "delete" // Delete Blob
	OpOther  Op = "other"
)

// Classify returns the Op of an Azure Blob request (path style:
// /account/container[/blob]).
func Classify(r *http.Request) Op {
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 3)
	blob := len(parts) == 3 && parts[2] != ""
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodHead:
		return OpHead
	case r.Method == http.MethodGet && !blob && q.Get("comp") == "list":
		return OpList
	case r.Method == http.MethodGet && blob && q.Get("comp") == "":
		return OpGet
	case r.Method == http.MethodGet && !blob && q.Get("restype") == "container" && q.Get("comp") == "":
		return OpHead
	case r.Method == http.MethodPut && blob:
		return OpPut
	case r.Method == http.MethodDelete && blob:
		return OpDelete
	}
	return OpOther
}

// Match returns a rule matcher for requests of the given ops (none: every
// request).
func Match(ops ...Op) func(*http.Request) bool {
	return func(r *http.Request) bool {
		if len(ops) == 0 {
			return true
		}
		op := Classify(r)
		for _, o := range ops {
			if o == op {
				return true
			}
		}
		return false
	}
}
