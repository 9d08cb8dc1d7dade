package certificate

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/tlog"
)

func leafData(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf(`{"key":"k%06d"}`, i))
	}
	return out
}

func leafHashes(data [][]byte) [][32]byte {
	out := make([][32]byte, len(data))
	for i, d := range data {
		out[i] = LeafHash(d)
	}
	return out
}

// tlogReader serves tlog's stored hashes for our leaves.
func tlogHashes(t testing.TB, data [][]byte) tlog.HashReaderFunc {
	t.Helper()
	var stored []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for i, d := range data {
		hs, err := tlog.StoredHashes(int64(i), d, r)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
	}
	return r
}

// Known answers: the RFC 6962 vectors shipped with transparency-dev/merkle.
func TestMerkleKnownAnswers(t *testing.T) {
	inputs := testonly.LeafInputs()
	roots := testonly.RootHashes()
	for size := 0; size <= len(inputs); size++ {
		var b Builder
		for _, in := range inputs[:size] {
			b.Add(in)
		}
		got := b.Root()
		if !bytes.Equal(got[:], roots[size]) {
			t.Errorf("size %d: root %x, want %x", size, got, roots[size])
		}
		byHashes := RootFromLeafHashes(leafHashes(inputs[:size]))
		if byHashes != got {
			t.Errorf("size %d: RootFromLeafHashes differs from Builder", size)
		}
	}
	for i, in := range inputs {
		h := LeafHash(in)
		if !bytes.Equal(h[:], testonly.NodeHashes()[0][i]) {
			t.Errorf("leaf %d: %x", i, h)
		}
	}
	// The empty tree is SHA-256 of nothing (RFC 6962 2.1).
	if EmptyRoot != sha256.Sum256(nil) || !bytes.Equal(EmptyRoot[:], testonly.EmptyRootHash()) {
		t.Error("empty root")
	}
	var b Builder
	if b.Root() != EmptyRoot || b.Size() != 0 {
		t.Error("zero Builder is not the empty tree")
	}
}

// Cross-check the root for every size 0..70 and some large sizes against two independent
// implementations: golang.org/x/mod/sumdb/tlog and transparency-dev/merkle's compact ranges.
func TestMerkleCrossCheck(t *testing.T) {
	sizes := []int{}
	for n := 0; n <= 70; n++ {
		sizes = append(sizes, n)
	}
	r := rand.New(rand.NewPCG(7, 7))
	sizes = append(sizes, 127, 128, 129, 1000, 1023, 1024, 1025, 4097)
	for i := 0; i < 4; i++ {
		sizes = append(sizes, 2000+r.IntN(20000))
	}
	data := leafData(sizes[len(sizes)-1] + 30000)
	reader := tlogHashes(t, data)
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	for _, n := range sizes {
		var b Builder
		for _, d := range data[:n] {
			b.Add(d)
		}
		got := b.Root()
		if b.Size() != uint64(n) {
			t.Fatalf("size %d: Builder.Size %d", n, b.Size())
		}
		// O(log n) state: one subtree root per set bit of the size.
		if len(b.stack) != bits.OnesCount64(uint64(n)) {
			t.Errorf("size %d: builder holds %d hashes, want %d", n, len(b.stack), bits.OnesCount64(uint64(n)))
		}
		if n > 0 {
			th, err := tlog.TreeHash(int64(n), reader)
			if err != nil {
				t.Fatal(err)
			}
			if [32]byte(th) != got {
				t.Errorf("size %d: root %x, tlog %x", n, got, th)
			}
		}
		cr := rf.NewEmptyRange(0)
		for _, d := range data[:n] {
			if err := cr.Append(rfc6962.DefaultHasher.HashLeaf(d), nil); err != nil {
				t.Fatal(err)
			}
		}
		want, err := cr.GetRootHash(nil)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			want = rfc6962.DefaultHasher.EmptyRoot()
		}
		if !bytes.Equal(got[:], want) {
			t.Errorf("size %d: root %x, compact range %x", n, got, want)
		}
		if n <= 5000 && RootFromLeafHashes(leafHashes(data[:n])) != got {
			t.Errorf("size %d: RootFromLeafHashes differs", n)
		}
	}
}

// Every index of several sizes: our audit path equals tlog's, and verifies with tlog's
// and transparency-dev's verifiers; and a wrong leaf, index, size or root fails.
func TestInclusionProofsCrossCheck(t *testing.T) {
	data := leafData(300)
	reader := tlogHashes(t, data)
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 31, 33, 64, 65, 70, 129, 300} {
		leaves := leafHashes(data[:n])
		root := RootFromLeafHashes(leaves)
		th, err := tlog.TreeHash(int64(n), reader)
		if err != nil {
			t.Fatal(err)
		}
		all := make([]uint64, n)
		for i := range all {
			all[i] = uint64(i)
		}
		batch, err := InclusionProofs(leaves, all)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			p, err := InclusionProof(leaves, uint64(i))
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(p) != fmt.Sprint(batch[i]) {
				t.Fatalf("size %d index %d: batch proof differs", n, i)
			}
			tp, err := tlog.ProveRecord(int64(n), int64(i), reader) // tree size first, then the record index
			if err != nil {
				t.Fatal(err)
			}
			if len(tp) != len(p) {
				t.Fatalf("size %d index %d: %d hashes, tlog %d", n, i, len(p), len(tp))
			}
			for j := range tp {
				if [32]byte(tp[j]) != p[j] {
					t.Fatalf("size %d index %d: hash %d differs from tlog", n, i, j)
				}
			}
			if err := tlog.CheckRecord(tp, int64(n), th, int64(i), tlog.RecordHash(data[i])); err != nil {
				t.Fatalf("tlog rejects its own proof: %v", err)
			}
			if err := VerifyInclusion(leaves[i], uint64(i), uint64(n), p, root); err != nil {
				t.Fatalf("size %d index %d: %v", n, i, err)
			}
			raw := make([][]byte, len(p))
			for j := range p {
				raw[j] = append([]byte{}, p[j][:]...)
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(i), uint64(n), leaves[i][:], raw, root[:]); err != nil {
				t.Fatalf("transparency-dev rejects our proof: %v", err)
			}
			// Failures.
			other := (i + 1) % n
			if n > 1 && VerifyInclusion(leaves[other], uint64(i), uint64(n), p, root) == nil {
				t.Fatalf("size %d: proof for %d accepted leaf %d", n, i, other)
			}
			if n > 1 && VerifyInclusion(leaves[i], uint64(other), uint64(n), p, root) == nil {
				t.Fatalf("size %d: proof for %d accepted at index %d", n, i, other)
			}
			wrong := root
			wrong[0] ^= 1
			if err := VerifyInclusion(leaves[i], uint64(i), uint64(n), p, wrong); !errors.Is(err, ErrInclusion) {
				t.Fatalf("wrong root accepted: %v", err)
			}
			if len(p) > 0 {
				q := append([][32]byte{}, p...)
				q[len(q)-1][31] ^= 0x80
				if VerifyInclusion(leaves[i], uint64(i), uint64(n), q, root) == nil {
					t.Fatal("tampered path accepted")
				}
				if VerifyInclusion(leaves[i], uint64(i), uint64(n), p[:len(p)-1], root) == nil {
					t.Fatal("short path accepted")
				}
			}
			if VerifyInclusion(leaves[i], uint64(i), uint64(n), append(append([][32]byte{}, p...), root), root) == nil {
				t.Fatal("long path accepted")
			}
		}
		if _, err := InclusionProof(leaves, uint64(n)); err == nil {
			t.Error("index out of range accepted")
		}
		if VerifyInclusion(leaves[0], uint64(n), uint64(n), nil, root) == nil {
			t.Error("index == size accepted")
		}
	}
}

func BenchmarkBuilder(b *testing.B) {
	line := bytes.Repeat([]byte("x"), 400)
	b.SetBytes(int64(len(line)))
	var bl Builder
	for i := 0; i < b.N; i++ {
		bl.Add(line)
	}
	_ = bl.Root()
}
