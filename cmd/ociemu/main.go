// Command ociemu serves the OCI Object Storage emulator (providers/oci/ocitest), to
// rehearse a ferry migration into OCI locally.
//
//	ociemu -pubkey ~/.oci/oci_api_key_public.pem -bucket us-users -data ./emu
//
// Every request must be signed with a key given by -pubkey. A bare FILE accepts its
// key for any keyId whose fingerprint part (tenancy/user/fingerprint, as the SDK
// builds it from the config file) is the key's fingerprint; KEYID=FILE accepts it for
// exactly that keyId. Point ferry at it with the site's `endpoint:
// http://127.0.0.1:9700` and an oci://NAMESPACE/BUCKET/prefix URL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ferrymigrate/ferry/providers/oci/ocitest"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "ociemu:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

// run serves until ctx is done; ready, when set, gets the address listened on.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(addr string)) error {
	fs := flag.NewFlagSet("ociemu", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9700", "address to listen on")
	data := fs.String("data", "", "data directory (empty: keep everything in memory)")
	namespace := fs.String("namespace", ocitest.DefaultNamespace, "Object Storage namespace to serve")
	minPart := fs.Int64("min-part-size", ocitest.DefaultMinPartSize, "smallest multipart part (but the last) accepted, bytes")
	verbose := fs.Bool("v", false, "log every request")
	var pubkeys, buckets multiFlag
	fs.Var(&pubkeys, "pubkey", "public key PEM file whose signatures are accepted: FILE (any keyId with its fingerprint) or KEYID=FILE; repeatable")
	fs.Var(&buckets, "bucket", "bucket to create if missing: NAME or NAME:versioned; repeatable")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if len(pubkeys) == 0 {
		return usageError{errors.New("at least one -pubkey is required: every request must be signed")}
	}
	type key struct {
		id  string
		pem []byte
	}
	var keys []key
	for _, p := range pubkeys {
		id, file := "*", p
		if k, f, ok := strings.Cut(p, "="); ok {
			id, file = k, f
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		pub, err := ocitest.ParsePublicKeyPEM(b)
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if id == "*" {
			fmt.Fprintf(stdout, "accepting key %s (fingerprint %s) for any tenancy and user\n", file, ocitest.Fingerprint(pub))
		} else {
			fmt.Fprintf(stdout, "accepting key %s for keyId %s\n", file, id)
		}
		keys = append(keys, key{id, b})
	}
	opts := ocitest.Options{Namespace: *namespace, Dir: *data, MinPartSize: *minPart}
	if *verbose {
		logger := log.New(stderr, "", log.LstdFlags|log.Lmicroseconds)
		opts.Logf = logger.Printf
	}
	srv, err := ocitest.New(opts)
	if err != nil {
		return err
	}
	defer srv.Close()
	for _, k := range keys {
		if err := srv.AddPublicKey(k.id, k.pem); err != nil {
			return err
		}
	}
	for _, b := range buckets {
		name, mode, _ := strings.Cut(b, ":")
		if mode != "" && mode != "versioned" {
			return usageError{fmt.Errorf("-bucket %q: want NAME or NAME:versioned", b)}
		}
		if err := srv.CreateBucket(name, mode == "versioned"); err != nil && !strings.Contains(err.Error(), "already exists") {
			return err
		}
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	where := *data
	if where == "" {
		where = "memory"
	}
	fmt.Fprintf(stdout, "ociemu: serving namespace %s on http://%s (data: %s)\n", *namespace, ln.Addr(), where)

	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "ociemu: stopped")
	return nil
}
