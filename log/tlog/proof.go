package tlog

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
)

// LeafHash returns the RFC 6962 leaf hash of a log entry.
func LeafHash(entry []byte) Hash {
	return Hash(rfc6962.DefaultHasher.HashLeaf(entry))
}

// hashChildren is the RFC 6962 interior node hash.
func hashChildren(l, r []byte) []byte { return rfc6962.DefaultHasher.HashChildren(l, r) }

// RangeFactory builds RFC 6962 compact ranges.
var RangeFactory = &compact.RangeFactory{Hash: hashChildren}

// TileReader reads hash tiles. ReadTile returns the first width hashes of the
// tile at level and index, concatenated (width 0 means all 256). The caller
// only asks for tiles and widths that exist in a tree size the reader has
// committed to; the reader may return an error wrapping a not-found error
// otherwise.
type TileReader interface {
	ReadTile(ctx context.Context, level, index uint64, width uint8) ([]byte, error)
}

// HashReader returns the hashes of perfect subtrees (complete nodes) of one
// tree, in the order asked.
type HashReader interface {
	ReadHashes(ctx context.Context, ids []compact.NodeID) ([][]byte, error)
}

// TileHashReader is a [HashReader] over the tiles of a tree of a fixed size.
// It keeps the tiles it has read; it is not safe for concurrent use. With a
// [TileCache] it also shares the interior nodes of full tiles with other
// readers.
type TileHashReader struct {
	size  uint64
	r     TileReader
	cache *TileCache
	tiles map[tileKey][]byte
}

// NewTileHashReader returns a HashReader for the tree of the given size
// whose tiles r reads. cache may be nil.
func NewTileHashReader(size uint64, r TileReader) *TileHashReader {
	return &TileHashReader{size: size, r: r, tiles: make(map[tileKey][]byte)}
}

// WithCache makes h use and fill c, which must only ever hold tiles of
// the same log. It returns h.
func (h *TileHashReader) WithCache(c *TileCache) *TileHashReader {
	h.cache = c
	return h
}

// ReadHashes implements [HashReader]. Every node must be complete in the
// tree of the reader's size.
func (h *TileHashReader) ReadHashes(ctx context.Context, ids []compact.NodeID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		b, err := h.node(ctx, id)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (h *TileHashReader) node(ctx context.Context, id compact.NodeID) ([]byte, error) {
	if id.Level >= 64 {
		return nil, fmt.Errorf("node %+v: level out of range", id)
	}
	if first, end := id.Coverage(); end > h.size || end <= first {
		return nil, fmt.Errorf("node %+v is not complete in a tree of size %d", id, h.size)
	}
	// The node is the root of 2^sub hashes of the bottom row of a tile.
	tileLevel, tileIndex, sub, pos := layout.NodeCoordsToTileAddress(uint64(id.Level), id.Index)
	t, ok := TileForSize(tileLevel, tileIndex, h.size)
	if !ok {
		return nil, fmt.Errorf("tile %d/%d is not in a tree of size %d", tileLevel, tileIndex, h.size)
	}
	// A tile of a given width never changes, partial or full: the cache
	// keys on the width too.
	key := tileKey{tileLevel, tileIndex, t.Width}
	width := t.Count()
	if pos >= uint64(width>>sub) {
		return nil, fmt.Errorf("tile %s too short for node %+v", t.Path(), id)
	}
	if h.cache != nil {
		if nodes := h.cache.get(key); nodes != nil {
			return nodeInTree(nodes, width, sub, pos), nil
		}
	}
	if tr, ok := h.r.(TileTreeReader); ok && h.cache != nil && t.Width == 0 {
		nodes, ok, err := tr.ReadTileTree(ctx, t.Level, t.Index)
		if err != nil {
			return nil, fmt.Errorf("reading tile %s: %w", t.Path(), err)
		}
		if ok && len(nodes) == TileTreeSize {
			h.cache.put(key, nodes)
			return nodeInTree(nodes, width, sub, pos), nil
		}
	}
	tile, ok := h.tiles[key]
	if !ok {
		b, err := h.r.ReadTile(ctx, t.Level, t.Index, t.Width)
		if err != nil {
			return nil, fmt.Errorf("reading tile %s: %w", t.Path(), err)
		}
		if len(b) != width*HashSize {
			return nil, fmt.Errorf("tile %s has %d bytes, want %d", t.Path(), len(b), width*HashSize)
		}
		tile = b
		h.tiles[key] = tile
	}
	if h.cache != nil {
		nodes := TileTree(tile)
		h.cache.put(key, nodes)
		return nodeInTree(nodes, width, sub, pos), nil
	}
	first, n := int(pos)<<sub, 1<<sub
	return subtreeRoot(tile[first*HashSize : (first+n)*HashSize]), nil
}

// tileKey names a tile of a given width (0: full).
type tileKey struct {
	level, index uint64
	width        uint8
}

// TileTreeSize is the size of a full tile's [TileTree].
const TileTreeSize = (2*TileWidth - 1) * HashSize

// TileTreeReader is implemented by a [TileReader] that stores a full tile's
// [TileTree] when the tile completes, so that a proof through a tile
// missing from the cache reads its nodes instead of rehashing 255 of them.
// ReadTileTree returns the TileTreeSize bytes, or ok false if the tile was
// stored without them.
type TileTreeReader interface {
	ReadTileTree(ctx context.Context, level, index uint64) (nodes []byte, ok bool, err error)
}

// TileCache keeps the interior nodes of recently used tiles, full or
// partial (a tile of a given width never changes), so that proofs need not
// rehash them: at most 16 KiB per tile. It evicts the least recently used
// tile. It is safe for concurrent use.
type TileCache struct {
	mu    sync.Mutex
	max   int
	tiles map[tileKey]*list.Element
	lru   list.List // of *cachedTile, most recent first
}

type cachedTile struct {
	key   tileKey
	nodes []byte
}

// NewTileCache returns a cache of at most maxTiles tiles.
func NewTileCache(maxTiles int) *TileCache {
	return &TileCache{max: max(maxTiles, 1), tiles: make(map[tileKey]*list.Element)}
}

func (c *TileCache) get(key tileKey) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.tiles[key]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cachedTile).nodes
}

func (c *TileCache) put(key tileKey, nodes []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.tiles[key]; ok {
		return
	}
	c.tiles[key] = c.lru.PushFront(&cachedTile{key, nodes})
	if c.lru.Len() > c.max {
		old := c.lru.Remove(c.lru.Back()).(*cachedTile)
		delete(c.tiles, old.key)
	}
}

// TileTree returns every complete node of a tile's subtrees, row by row
// from the tile's hashes (w of them) up: row r holds the w>>r roots of the
// perfect subtrees of 2^r hashes; for a full tile, TileTreeSize bytes (511
// hashes: 256, 128, …, 1).
func TileTree(tile []byte) []byte {
	w := len(tile) / HashSize
	total := 0
	for n := w; n > 0; n /= 2 {
		total += n
	}
	nodes := make([]byte, 0, total*HashSize)
	nodes = append(nodes, tile...)
	var in [1 + 2*HashSize]byte
	in[0] = 1 // RFC 6962 interior node prefix, as in subtreeRoot
	row := nodes[:len(tile)]
	for n := w; n > 1; n /= 2 {
		start := len(nodes)
		for i := 0; i < n/2; i++ {
			copy(in[1:], row[2*i*HashSize:(2*i+2)*HashSize])
			h := sha256.Sum256(in[:])
			nodes = append(nodes, h[:]...)
		}
		row = nodes[start:]
	}
	return nodes
}

// nodeInTree returns node pos of row sub (0 = the tile's hashes) of the
// tileTree of a tile of w hashes.
func nodeInTree(nodes []byte, w int, sub uint, pos uint64) []byte {
	off := 0
	for r := uint(0); r < sub; r++ {
		off += w >> r
	}
	i := (off + int(pos)) * HashSize
	return nodes[i : i+HashSize : i+HashSize]
}

// subtreeRoot returns the root of the perfect subtree whose leaves are the
// concatenated hashes in row (a power of two of them). It is the proof
// hot path (up to 255 node hashes per tile), so it hashes in place without
// allocating: the same SHA-256(0x01 ‖ left ‖ right) as rfc6962.HashChildren,
// which TestSubtreeRoot checks it against.
func subtreeRoot(row []byte) []byte {
	n := len(row) / HashSize
	if n == 1 {
		return row
	}
	buf := make([]byte, len(row)/2)
	var in [1 + 2*HashSize]byte
	in[0] = 1 // RFC 6962 interior node prefix
	src := row
	for ; n > 1; n /= 2 {
		for i := 0; i < n/2; i++ {
			copy(in[1:], src[2*i*HashSize:(2*i+2)*HashSize])
			h := sha256.Sum256(in[:])
			copy(buf[i*HashSize:], h[:])
		}
		src = buf[:n/2*HashSize]
	}
	return src[:HashSize:HashSize]
}

// InclusionProof returns the RFC 6962 inclusion proof of the leaf at index
// in the tree of the given size, reading node hashes from r.
func InclusionProof(ctx context.Context, r HashReader, index, size uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	return readProof(ctx, r, nodes)
}

// ConsistencyProof returns the RFC 6962 consistency proof from the tree of
// size old to the tree of size new, reading node hashes from r. It is empty
// when old is 0 or old equals new.
func ConsistencyProof(ctx context.Context, r HashReader, old, new uint64) ([][]byte, error) {
	nodes, err := proof.Consistency(old, new)
	if err != nil {
		return nil, fmt.Errorf("consistency proof: %w", err)
	}
	return readProof(ctx, r, nodes)
}

func readProof(ctx context.Context, r HashReader, nodes proof.Nodes) ([][]byte, error) {
	hashes, err := r.ReadHashes(ctx, nodes.IDs)
	if err != nil {
		return nil, err
	}
	return nodes.Rehash(hashes, hashChildren)
}

// TreeHash returns the root of the tree of the given size, reading node
// hashes from r.
func TreeHash(ctx context.Context, r HashReader, size uint64) (Hash, error) {
	if size == 0 {
		return EmptyRoot, nil
	}
	ids := compact.RangeNodes(0, size, nil)
	hashes, err := r.ReadHashes(ctx, ids)
	if err != nil {
		return Hash{}, err
	}
	cr, err := RangeFactory.NewRange(0, size, hashes)
	if err != nil {
		return Hash{}, err
	}
	root, err := cr.GetRootHash(nil)
	if err != nil {
		return Hash{}, err
	}
	return Hash(root), nil
}

// VerifyInclusion checks that leafHash is at index in the tree of the given
// size and root. It returns nil or an error explaining the mismatch.
func VerifyInclusion(index, size uint64, leafHash Hash, hashes [][]byte, root Hash) error {
	return readableMismatch(proof.VerifyInclusion(rfc6962.DefaultHasher, index, size, leafHash[:], hashes, root[:]))
}

// VerifyConsistency checks that the tree of size new and root newRoot
// extends the tree of size old and root oldRoot.
func VerifyConsistency(old, new uint64, hashes [][]byte, oldRoot, newRoot Hash) error {
	return readableMismatch(proof.VerifyConsistency(rfc6962.DefaultHasher, old, new, hashes, oldRoot[:], newRoot[:]))
}

// RootMismatchError is merkle's proof.RootMismatchError (errors.As finds
// both) with the roots in hex: merkle's own text prints them as lists of
// decimal bytes, which reports and the explorer then show to people.
type RootMismatchError struct{ proof.RootMismatchError }

func (e RootMismatchError) Error() string {
	return fmt.Sprintf("calculated root %x does not match the expected root %x", e.CalculatedRoot, e.ExpectedRoot)
}

func (e RootMismatchError) Unwrap() error { return e.RootMismatchError }

func readableMismatch(err error) error {
	var m proof.RootMismatchError
	if errors.As(err, &m) {
		return RootMismatchError{m}
	}
	return err
}

// TileSlot locates a tree node in the bottom row of a tile: nodes at heights
// that are multiples of 8 are stored, at position pos of tile (level, index).
// ok is false for the nodes inside tiles, which are recomputed on demand.
func TileSlot(id compact.NodeID) (level, index uint64, pos int, ok bool) {
	if id.Level%TileHeight != 0 {
		return 0, 0, 0, false
	}
	return uint64(id.Level / TileHeight), id.Index / TileWidth, int(id.Index % TileWidth), true
}
