// Package synth generates synthetic user records for tests, the demo and benchmarks:
// users with several records each, sizes from zero bytes to a few MiB, and the keys
// that break naive tools (spaces, NFC and NFD twins, "a-" beside "a/", zero-byte
// objects). Everything is deterministic from a seed, so a test can regenerate the
// expected bytes of any record instead of storing them.
package synth

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"

	"golang.org/x/sync/errgroup"

	"github.com/ferrymigrate/ferry/providers"
)

// Options shape a data set.
type Options struct {
	Users          int   // number of users (default 100)
	RecordsPerUser int   // average records per user (default 5)
	MinSize        int64 // smallest ordinary record (default 512)
	MaxSize        int64 // largest ordinary record (default 16 KiB)
	// LargeEvery makes every Nth record large (MaxLarge bytes at most); 0: none.
	LargeEvery int
	MaxLarge   int64
	// Tricky adds the awkward keys (on the first users).
	Tricky bool
	// DirMarkers adds "x/" marker keys too (object stores only).
	DirMarkers bool
	Seed       uint64
}

// Record is one generated record: its key, size and content seed.
type Record struct {
	Key  string
	Size int64
	Seed uint64
}

// User returns the user part of a generated key.
func User(i int) string { return fmt.Sprintf("user-%05d", i) }

// Records returns the data set, sorted by key.
func Records(o Options) []Record {
	if o.Users <= 0 {
		o.Users = 100
	}
	if o.RecordsPerUser <= 0 {
		o.RecordsPerUser = 5
	}
	if o.MinSize <= 0 {
		o.MinSize = 512
	}
	if o.MaxSize < o.MinSize {
		o.MaxSize = 16 << 10
	}
	if o.MaxLarge <= 0 {
		o.MaxLarge = 4 << 20
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	kinds := []string{"photos", "docs", "mail", "settings"}
	var out []Record
	n := 0
	for u := 0; u < o.Users; u++ {
		user := User(u)
		count := 1 + rng.IntN(2*o.RecordsPerUser-1)
		for i := 0; i < count; i++ {
			n++
			size := o.MinSize + rng.Int64N(o.MaxSize-o.MinSize+1)
			if o.LargeEvery > 0 && n%o.LargeEvery == 0 {
				size = o.MaxLarge/2 + rng.Int64N(o.MaxLarge/2+1)
			}
			key := fmt.Sprintf("%s/%s/%04d.bin", user, kinds[rng.IntN(len(kinds))], i)
			out = append(out, Record{Key: key, Size: size, Seed: rng.Uint64()})
		}
	}
	if o.Tricky && o.Users > 0 {
		u := User(0)
		tricky := []Record{
			{Key: u + "/empty", Size: 0},
			{Key: u + "/a b.txt", Size: 11},
			{Key: u + "/caf\u00e9.txt", Size: 20},  // NFC
			{Key: u + "/cafe\u0301.txt", Size: 21}, // NFD: another key
			{Key: u + "/a-", Size: 3},
			{Key: u + "/a/b", Size: 4},
			{Key: u + "/plus+percent%20.txt", Size: 5},
			{Key: u + "/日本/文字.txt", Size: 9},
		}
		if o.DirMarkers {
			tricky = append(tricky, Record{Key: u + "/dir/", Size: 0})
		}
		for i := range tricky {
			tricky[i].Seed = rng.Uint64()
		}
		out = append(out, tricky...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	// Keys are unique by construction except for random collisions of kind/index: drop them.
	uniq := out[:0]
	for i, r := range out {
		if i > 0 && r.Key == out[i-1].Key {
			continue
		}
		uniq = append(uniq, r)
	}
	return uniq
}

// Bytes returns the record's content.
func (r Record) Bytes() []byte {
	b := make([]byte, r.Size)
	Fill(b, r.Seed)
	return b
}

// Reader streams the record's content without holding it.
func (r Record) Reader() io.Reader {
	return io.LimitReader(&seedReader{rng: rand.NewChaCha8(seed32(r.Seed))}, r.Size)
}

// Fill fills b with the content stream of seed.
func Fill(b []byte, seed uint64) {
	_, _ = io.ReadFull(&seedReader{rng: rand.NewChaCha8(seed32(seed))}, b)
}

func seed32(s uint64) [32]byte {
	var k [32]byte
	binary.LittleEndian.PutUint64(k[:], s)
	return k
}

type seedReader struct{ rng *rand.ChaCha8 }

func (s *seedReader) Read(p []byte) (int, error) { return s.rng.Read(p) }

// Populate writes records into store, concurrency at a time. Records larger than
// 8 MiB stream; smaller ones are written from memory.
func Populate(ctx context.Context, store providers.Store, recs []Record, concurrency int) error {
	if concurrency <= 0 {
		concurrency = 8
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for _, r := range recs {
		g.Go(func() error {
			var body io.Reader
			if r.Size <= 8<<20 {
				body = bytes.NewReader(r.Bytes())
			} else {
				body = r.Reader()
			}
			if _, err := store.Put(ctx, r.Key, body, r.Size, providers.PutOptions{}); err != nil {
				return fmt.Errorf("synth: put %q: %w", r.Key, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// Subset returns every record whose key hashes into fraction (deterministic), for
// backup sites that hold part of the primary's records.
func Subset(recs []Record, fraction float64, salt uint64) []Record {
	var out []Record
	for _, r := range recs {
		h := rand.New(rand.NewPCG(r.Seed, salt)).Float64()
		if h < fraction {
			out = append(out, r)
		}
	}
	return out
}
