package tlog

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/transparency-dev/tessera/api/layout"
)

const (
	// TileHeight is the height of a tile: 8 tree levels.
	TileHeight = layout.TileHeight
	// TileWidth is the number of hashes in a full tile and of entries in a
	// full entry bundle: 256.
	TileWidth = layout.TileWidth
	// MaxTileLevel is the highest tile level a path may name.
	MaxTileLevel = 63
	// MaxEntrySize is the largest entry an entry bundle can carry.
	MaxEntrySize = 1<<16 - 1
)

// Tile names a hash tile or, with Entries set, an entry bundle. Width is the
// number of hashes (or entries) of a partial tile, 1..255, or 0 for a full
// tile of 256.
type Tile struct {
	Level   uint64 // tile level 0..63; 0 for entry bundles
	Index   uint64 // N
	Width   uint8  // 0 = full
	Entries bool   // an entry bundle, tile/entries/…
}

// Count returns the number of hashes or entries the tile holds: Width, or
// 256 for a full tile.
func (t Tile) Count() int {
	if t.Width == 0 {
		return TileWidth
	}
	return int(t.Width)
}

// Path returns the tile's path relative to the log prefix, e.g.
// "tile/0/x001/234.p/5" or "tile/entries/000".
func (t Tile) Path() string {
	if t.Entries {
		return layout.EntriesPath(t.Index, t.Width)
	}
	return layout.TilePath(t.Level, t.Index, t.Width)
}

// TileForSize returns the tile at level and index as it stands in a tree of
// the given size: full, or partial with the right width. ok is false if the
// tree has no hash of that tile yet.
func TileForSize(level, index, size uint64) (t Tile, ok bool) {
	if level > MaxTileLevel {
		return Tile{}, false
	}
	atLevel := size >> (level * TileHeight) // 0 once the shift reaches 64
	tiles := atLevel / TileWidth
	if atLevel%TileWidth != 0 {
		tiles++
	}
	if index >= tiles {
		return Tile{}, false
	}
	return Tile{Level: level, Index: index, Width: layout.PartialTileSize(level, index, size)}, true
}

// ParseTilePath parses a path relative to the log prefix:
// tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>]. It accepts only the
// canonical spelling: L in 0..63 without leading zeros, N in three-digit
// groups with x on every group but the last, W in 1..255 without leading
// zeros. Every error wraps [ErrMalformed].
func ParseTilePath(path string) (Tile, error) {
	rest, ok := strings.CutPrefix(path, "tile/")
	if !ok {
		return Tile{}, fmt.Errorf("tile path %q: %w: want tile/…", path, ErrMalformed)
	}
	level, n, ok := strings.Cut(rest, "/")
	if !ok {
		return Tile{}, fmt.Errorf("tile path %q: %w: no index", path, ErrMalformed)
	}
	var t Tile
	if level == "entries" {
		t.Entries = true
	} else {
		l, err := ParseDecimal(level)
		if err != nil || l > MaxTileLevel {
			return Tile{}, fmt.Errorf("tile path %q: %w: level %q is not 0..63", path, ErrMalformed, level)
		}
		t.Level = l
	}
	index, width, err := layout.ParseTileIndexPartial(n)
	if err != nil {
		return Tile{}, fmt.Errorf("tile path %q: %w: %v", path, ErrMalformed, err)
	}
	t.Index, t.Width = index, width
	// layout's parser is lenient about some spellings ("08" widths); the
	// canonical re-encoding must give back exactly what we were handed.
	if t.Path() != path {
		return Tile{}, fmt.Errorf("tile path %q: %w: not canonical (want %q)", path, ErrMalformed, t.Path())
	}
	return t, nil
}

// AppendBundleEntry appends one entry to an entry bundle: its length as a
// uint16 big-endian, then its bytes. It refuses entries larger than
// [MaxEntrySize].
func AppendBundleEntry(bundle, entry []byte) ([]byte, error) {
	if len(entry) > MaxEntrySize {
		return bundle, fmt.Errorf("entry of %d bytes: %w", len(entry), ErrEntryTooLarge)
	}
	bundle = binary.BigEndian.AppendUint16(bundle, uint16(len(entry)))
	return append(bundle, entry...), nil
}

// ErrEntryTooLarge is returned for an entry above [MaxEntrySize] bytes.
var ErrEntryTooLarge = fmt.Errorf("entry larger than %d bytes", MaxEntrySize)

// EncodeBundle returns the entry bundle holding entries.
func EncodeBundle(entries [][]byte) ([]byte, error) {
	n := 0
	for _, e := range entries {
		n += 2 + len(e)
	}
	b := make([]byte, 0, n)
	var err error
	for _, e := range entries {
		if b, err = AppendBundleEntry(b, e); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// ParseBundle splits an entry bundle into its entries, which alias b. It
// refuses a truncated bundle and more than 256 entries.
func ParseBundle(b []byte) ([][]byte, error) {
	var entries [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, fmt.Errorf("entry bundle: %w: dangling byte", ErrMalformed)
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, fmt.Errorf("entry bundle: %w: entry %d truncated", ErrMalformed, len(entries))
		}
		if len(entries) == TileWidth {
			return nil, fmt.Errorf("entry bundle: %w: more than %d entries", ErrMalformed, TileWidth)
		}
		entries = append(entries, b[2:2+n:2+n])
		b = b[2+n:]
	}
	return entries, nil
}

// ParseHashTile splits a hash tile into its hashes. The length must be a
// positive multiple of 32 bytes, at most 256 hashes.
func ParseHashTile(b []byte) ([]Hash, error) {
	if len(b) == 0 || len(b)%HashSize != 0 || len(b) > TileWidth*HashSize {
		return nil, fmt.Errorf("hash tile: %w: %d bytes", ErrMalformed, len(b))
	}
	hs := make([]Hash, len(b)/HashSize)
	for i := range hs {
		copy(hs[i][:], b[i*HashSize:])
	}
	return hs, nil
}
