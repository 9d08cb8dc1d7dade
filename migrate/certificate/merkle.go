package certificate

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// MerkleAlgorithm names the tree in the predicate: RFC 6962 (section 2.1) with SHA-256.
const MerkleAlgorithm = "RFC6962-SHA256"

// ErrInclusion is wrapped by every inclusion-proof verification failure.
var ErrInclusion = errors.New("inclusion proof does not verify")

// EmptyRoot is the root of the empty tree: SHA-256 of the empty string (RFC 6962 2.1).
var EmptyRoot = [32]byte(sha256.Sum256(nil))

// LeafHash is the RFC 6962 leaf hash of one manifest line (without its newline):
// SHA-256(0x00 || line).
func LeafHash(line []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(line)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// NodeHash is the RFC 6962 interior node hash: SHA-256(0x01 || left || right).
func NodeHash(left, right [32]byte) [32]byte {
	var buf [65]byte
	buf[0] = 1
	copy(buf[1:33], left[:])
	copy(buf[33:], right[:])
	return sha256.Sum256(buf[:])
}

// Builder computes the RFC 6962 root of a sequence of leaves as they stream by. It keeps
// only the roots of the perfect subtrees that cover the leaves so far (a compact range:
// at most one per set bit of Size, so at most 64 hashes), never the leaves themselves.
// The zero Builder is an empty tree.
type Builder struct {
	size  uint64
	stack [][32]byte // subtree roots, largest (leftmost) first
}

// Add appends one manifest line (without its newline) as the next leaf.
func (b *Builder) Add(line []byte) { b.AddLeafHash(LeafHash(line)) }

// AddLeafHash appends a leaf by its leaf hash.
func (b *Builder) AddLeafHash(h [32]byte) {
	b.stack = append(b.stack, h)
	// Each trailing one bit of the old size is a perfect subtree of the same height as
	// the one just completed: merge them.
	for n := b.size; n&1 == 1; n >>= 1 {
		top := len(b.stack)
		b.stack[top-2] = NodeHash(b.stack[top-2], b.stack[top-1])
		b.stack = b.stack[:top-1]
	}
	b.size++
}

// Size is the number of leaves added.
func (b *Builder) Size() uint64 { return b.size }

// Root is the RFC 6962 Merkle tree hash of the leaves added so far.
func (b *Builder) Root() [32]byte {
	if len(b.stack) == 0 {
		return EmptyRoot
	}
	r := b.stack[len(b.stack)-1]
	for i := len(b.stack) - 2; i >= 0; i-- {
		r = NodeHash(b.stack[i], r)
	}
	return r
}

// RootFromLeafHashes is the RFC 6962 Merkle tree hash of the given leaf hashes.
func RootFromLeafHashes(leafHashes [][32]byte) [32]byte {
	if len(leafHashes) == 0 {
		return EmptyRoot
	}
	return subtreeHash(leafHashes)
}

func subtreeHash(l [][32]byte) [32]byte {
	if len(l) == 1 {
		return l[0]
	}
	k := splitPoint(uint64(len(l)))
	return NodeHash(subtreeHash(l[:k]), subtreeHash(l[k:]))
}

// splitPoint is the largest power of two smaller than n (n > 1).
func splitPoint(n uint64) uint64 {
	return 1 << (bits.Len64(n-1) - 1)
}

// InclusionProof returns the RFC 6962 audit path (section 2.1.1) for leaf index in the
// tree of the given leaf hashes, ordered from the leaf's sibling up to the root's child.
func InclusionProof(leafHashes [][32]byte, index uint64) ([][32]byte, error) {
	proofs, err := InclusionProofs(leafHashes, []uint64{index})
	if err != nil {
		return nil, err
	}
	return proofs[0], nil
}

// InclusionProofs returns the audit paths of several leaves in one pass over the tree
// (O(n) hashing in total, however many indexes are asked for). proofs[i] belongs to
// indexes[i].
func InclusionProofs(leafHashes [][32]byte, indexes []uint64) ([][][32]byte, error) {
	n := uint64(len(leafHashes))
	targets := make(map[uint64][]int, len(indexes))
	for i, idx := range indexes {
		if idx >= n {
			return nil, fmt.Errorf("leaf index %d out of range for tree size %d", idx, n)
		}
		targets[idx] = append(targets[idx], i)
	}
	proofs := make([][][32]byte, len(indexes))
	for i := range proofs {
		proofs[i] = [][32]byte{}
	}
	if len(indexes) == 0 {
		return proofs, nil
	}
	sorted := make([]uint64, 0, len(targets))
	for idx := range targets {
		sorted = append(sorted, idx)
	}
	slices.Sort(sorted)
	var walk func(lo uint64, l [][32]byte, want []uint64) [32]byte
	walk = func(lo uint64, l [][32]byte, want []uint64) [32]byte {
		if len(want) == 0 || len(l) == 1 {
			return subtreeHash(l)
		}
		k := splitPoint(uint64(len(l)))
		split := 0
		for split < len(want) && want[split] < lo+k {
			split++
		}
		left := walk(lo, l[:k], want[:split])
		right := walk(lo+k, l[k:], want[split:])
		for _, idx := range want[:split] {
			for _, i := range targets[idx] {
				proofs[i] = append(proofs[i], right)
			}
		}
		for _, idx := range want[split:] {
			for _, i := range targets[idx] {
				proofs[i] = append(proofs[i], left)
			}
		}
		return NodeHash(left, right)
	}
	walk(0, leafHashes, sorted)
	return proofs, nil
}

// RootFromInclusionProof computes the root that an audit path implies for a leaf
// (RFC 9162 section 2.1.3.2, the same tree as RFC 6962).
func RootFromInclusionProof(leafHash [32]byte, index, size uint64, proof [][32]byte) ([32]byte, error) {
	if index >= size {
		return [32]byte{}, fmt.Errorf("%w: leaf index %d is not below tree size %d", ErrInclusion, index, size)
	}
	fn, sn := index, size-1
	r := leafHash
	for _, p := range proof {
		if sn == 0 {
			return [32]byte{}, fmt.Errorf("%w: audit path is too long for index %d in a tree of %d", ErrInclusion, index, size)
		}
		if fn&1 == 1 || fn == sn {
			r = NodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = NodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return [32]byte{}, fmt.Errorf("%w: audit path is too short for index %d in a tree of %d", ErrInclusion, index, size)
	}
	return r, nil
}

// VerifyInclusion checks that proof is the audit path of the leaf with leafHash at index
// in the tree of the given size and root. It returns an error wrapping ErrInclusion if not.
func VerifyInclusion(leafHash [32]byte, index, size uint64, proof [][32]byte, root [32]byte) error {
	got, err := RootFromInclusionProof(leafHash, index, size, proof)
	if err != nil {
		return err
	}
	if got != root {
		return fmt.Errorf("%w: the audit path leads to root %x, not %x", ErrInclusion, got, root)
	}
	return nil
}

// parseHash32 decodes 64 lowercase hex digits.
func parseHash32(s string) ([32]byte, error) {
	var h [32]byte
	if !isLowerHex(s, 64) {
		return h, fmt.Errorf("%q is not 64 lowercase hex digits", truncate(s, 80))
	}
	_, err := hex.Decode(h[:], []byte(s))
	return h, err
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
