package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// weighted is a semaphore counting bytes: it bounds the memory a store holds to
// make bodies retryable.
type weighted struct {
	mu   sync.Mutex
	cap  int64
	used int64
	wake chan struct{}
}

func newWeighted(capacity int64) *weighted {
	return &weighted{cap: capacity, wake: make(chan struct{})}
}

// acquire reserves n bytes (n <= capacity), waiting for others to release.
func (w *weighted) acquire(ctx context.Context, n int64) error {
	if n > w.cap {
		return fmt.Errorf("oci: buffer of %d bytes exceeds the store's bound of %d", n, w.cap)
	}
	for {
		w.mu.Lock()
		if w.used+n <= w.cap {
			w.used += n
			w.mu.Unlock()
			return nil
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (w *weighted) release(n int64) {
	w.mu.Lock()
	w.used -= n
	close(w.wake)
	w.wake = make(chan struct{})
	w.mu.Unlock()
}

// buffer returns a byte slice of n bytes charged to w; free returns the charge.
// Buffers are not reused: a call abandoned on cancellation may still be reading
// one after free.
func (w *weighted) buffer(ctx context.Context, n int64) ([]byte, func(), error) {
	if err := w.acquire(ctx, n); err != nil {
		return nil, nil, err
	}
	var once sync.Once
	return make([]byte, n), func() { once.Do(func() { w.release(n) }) }, nil
}

// body is a request body the SDK can rewind: it reads exactly size bytes from a
// window of a seekable source, or from memory.
type body struct {
	ctx  context.Context
	rs   io.ReadSeeker
	base int64 // offset of the window in rs
	size int64
	pos  int64 // position within the window
}

func (b *body) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	if b.pos >= b.size {
		return 0, io.EOF
	}
	if rest := b.size - b.pos; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := b.rs.Read(p)
	b.pos += int64(n)
	if err == io.EOF {
		if b.pos < b.size {
			return n, fmt.Errorf("oci: source ended after %d of %d bytes: %w", b.pos, b.size, io.ErrUnexpectedEOF)
		}
		err = nil
	}
	return n, err
}

func (b *body) Seek(off int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = off
	case io.SeekCurrent:
		abs = b.pos + off
	case io.SeekEnd:
		abs = b.size + off
	default:
		return 0, errors.New("oci: bad whence")
	}
	if abs < 0 || abs > b.size {
		return 0, fmt.Errorf("oci: seek to %d outside a body of %d bytes", abs, b.size)
	}
	if _, err := b.rs.Seek(b.base+abs, io.SeekStart); err != nil {
		return 0, err
	}
	b.pos = abs
	return abs, nil
}

// Close does nothing: the SDK closes bodies after each call, and the source
// belongs to the caller.
func (b *body) Close() error { return nil }

// retryableBody makes size bytes of r a body the SDK can rewind. A seekable r is
// used in place (its remaining length must be exactly size); anything else is read
// into a buffer charged to the store's memory bound. release frees the buffer.
func (s *Store) retryableBody(ctx context.Context, r io.Reader, size int64) (b *body, release func(), err error) {
	if rs, ok := r.(io.ReadSeeker); ok {
		if cur, err := rs.Seek(0, io.SeekCurrent); err == nil {
			end, err := rs.Seek(0, io.SeekEnd)
			if err != nil {
				return nil, nil, fmt.Errorf("oci: source: %w", err)
			}
			if _, err := rs.Seek(cur, io.SeekStart); err != nil {
				return nil, nil, fmt.Errorf("oci: source: %w", err)
			}
			switch rest := end - cur; {
			case rest < size:
				return nil, nil, fmt.Errorf("oci: source has %d bytes, %d were declared", rest, size)
			case rest > size:
				return nil, nil, fmt.Errorf("oci: source has %d bytes, more than the %d declared", rest, size)
			}
			return &body{ctx: ctx, rs: rs, base: cur, size: size}, func() {}, nil
		}
		// A Seeker that cannot seek (a pipe): buffer it.
	}
	buf, free, err := s.mem.buffer(ctx, size)
	if err != nil {
		return nil, nil, err
	}
	if err := readExactly(r, buf); err != nil {
		free()
		return nil, nil, err
	}
	if err := noMore(r, size); err != nil {
		free()
		return nil, nil, err
	}
	return &body{ctx: ctx, rs: newBytesReader(buf), size: size}, free, nil
}

// readExactly fills buf from r and makes sure r has nothing more.
func readExactly(r io.Reader, buf []byte) error {
	n, err := io.ReadFull(r, buf)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) && len(buf) > 0 {
			return fmt.Errorf("oci: source ended after %d of %d bytes: %w", n, len(buf), io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("oci: reading the source: %w", err)
	}
	return nil
}

// noMore makes sure r is at its end.
func noMore(r io.Reader, size int64) error {
	var one [1]byte
	for {
		n, err := r.Read(one[:])
		if n > 0 {
			return fmt.Errorf("oci: source has more than the %d bytes declared", size)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("oci: reading the source: %w", err)
		}
	}
}

type bytesReader struct {
	b   []byte
	off int64
}

func newBytesReader(b []byte) *bytesReader { return &bytesReader{b: b} }

func (r *bytesReader) Read(p []byte) (int, error) {
	if r.off >= int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += int64(n)
	return n, nil
}

func (r *bytesReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += r.off
	case io.SeekEnd:
		off += int64(len(r.b))
	}
	if off < 0 {
		return 0, errors.New("oci: negative seek")
	}
	r.off = off
	return off, nil
}
