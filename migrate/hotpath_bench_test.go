package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"io"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
)

// onlyReader hides io.WriterTo, as a network body does.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// BenchmarkHashWhileStreaming is copy's hashing of a record on its way to the
// target: SHA-256 and CRC32C in one pass, for a small record read whole into the
// pooled buffer (as copyAttempt does up to 4 MiB) and for a large one streamed
// through a tee (the target's Put reads it).
func BenchmarkHashWhileStreaming(b *testing.B) {
	for _, size := range []int{8 << 10, 1 << 20, 64 << 20} {
		data := bytes.Repeat([]byte("ferry migrates "), size/15+1)[:size]
		b.Run(fmt.Sprintf("buffered-%dKiB", size>>10), func(b *testing.B) {
			if size > bufferMax {
				b.Skip("streamed above bufferMax")
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				sha, crc := sha256.New(), crc32.New(crcTable)
				buf := bufPool.Get().(*bytes.Buffer)
				buf.Reset()
				buf.Grow(size + bytes.MinRead)
				if _, err := buf.ReadFrom(io.LimitReader(onlyReader{bytes.NewReader(data)}, int64(size)+1)); err != nil {
					b.Fatal(err)
				}
				sha.Write(buf.Bytes())
				crc.Write(buf.Bytes())
				sha.Sum(nil)
				crcHex(crc)
				bufPool.Put(buf)
			}
		})
		b.Run(fmt.Sprintf("streamed-%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				sha, crc := sha256.New(), crc32.New(crcTable)
				cr := &countingReader{r: io.TeeReader(io.LimitReader(onlyReader{bytes.NewReader(data)}, int64(size)+1), io.MultiWriter(sha, crc))}
				if _, err := io.Copy(io.Discard, cr); err != nil {
					b.Fatal(err)
				}
				sha.Sum(nil)
				crcHex(crc)
			}
		})
	}
}

// BenchmarkReconcile is plan's reconciliation of one record listed at two sites
// with what the state holds: new records, and records already verified whose
// replicas did not change (a re-plan keeps finished work).
func BenchmarkReconcile(b *testing.B) {
	e := newBenchEnv(b, 0)
	m, err := Open(context.Background(), e.options())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	mt := time.Unix(1700000000, 0)
	const n = 1000
	listed := make([][]checkpoints.Listed, n)
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprintf("user-%05d/rec-%06d", i%100, i)
		for _, site := range []string{"singapore", "virginia"} {
			listed[i] = append(listed[i], checkpoints.Listed{Site: site, Key: keys[i], SiteKey: keys[i],
				Size: int64(512 + i), ETag: fmt.Sprintf("%032x", i), ModTime: mt})
		}
	}
	none := func(string) (*checkpoints.Record, error) { return nil, nil }
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := m.reconcile(keys[i%n], listed[i%n], none); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("unchanged-verified", func(b *testing.B) {
		old := make([]checkpoints.Record, n)
		for i := range n {
			rs, err := m.reconcile(keys[i], listed[i], none)
			if err != nil || len(rs) != 1 {
				b.Fatal(rs, err)
			}
			old[i] = rs[0]
			old[i].State, old[i].SHA256 = checkpoints.Verified, fmt.Sprintf("%064x", i)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			r := &old[i%n]
			out, err := m.reconcile(keys[i%n], listed[i%n], func(string) (*checkpoints.Record, error) { return r, nil })
			if err != nil || out[0].State != checkpoints.Verified {
				b.Fatalf("reconcile of an unchanged verified record: %v, %v", out, err)
			}
			i++
		}
	})
}
