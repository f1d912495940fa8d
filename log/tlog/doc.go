// Package tlog holds the wire formats of the vmledger transparency log and the
// proof arithmetic over them. It does no I/O: storage is reached through the
// [TileReader] and [HashReader] interfaces that callers implement.
//
// Every format here is a public standard, so that other people's verifiers
// accept our data: RFC 6962 for the tree, C2SP tlog-checkpoint and
// signed-note for checkpoints, C2SP tlog-tiles for the read API and C2SP
// tlog-proof for offline proofs. Hashing, compact ranges and proof
// verification come from github.com/transparency-dev/merkle, tile paths from
// github.com/transparency-dev/tessera/api/layout and note signatures from
// golang.org/x/mod/sumdb/note; this package adds strict parsing and glue.
//
// # The tree (RFC 6962 §2.1)
//
// A log entry is an opaque byte string of at most 65,535 bytes. Its leaf hash
// is SHA-256(0x00 ‖ entry); an interior node is SHA-256(0x01 ‖ left ‖ right);
// for n > 1 leaves the left subtree holds the largest power of two smaller
// than n. The empty tree's root is SHA-256("").
//
// Worked example: with the eight 7-byte leaves "vmcfg 0" … "vmcfg 7", the
// root at size 5 is iOmzfHUeCGffxCxa7Uow9wBv+JqN6lXFK/00Rkd5yGI= and at size
// 8 vBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk=; the consistency proof from
// 5 to 8 has the four hashes rFr1Ls…, H+n58m…, fGwZmz…, I6vsWk… (the tests
// pin all of them).
//
// # Checkpoints (c2sp.org/tlog-checkpoint, c2sp.org/signed-note)
//
// A checkpoint is the text of a signed note: the origin, the tree size in
// decimal without leading zeros, and the standard-base64 root hash, each
// followed by LF. We emit no extension lines. Signed, it is followed by an
// empty line and one signature line per signer:
//
//	example.com/ledger
//	8
//	vBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk=
//
//	— example.com/ledger 7bPh6nL75+eDWpg1ghEblRgVYRCAJl0vfAhSBsO82p2JITzWz8cjlS0K9BCRfQR1fhuQs9nrOph85AgZekJyKoHcCw4=
//
// The signature line carries the key name (which equals the origin), then
// base64 of the 4-byte key ID and the 64-byte Ed25519 signature over the text
// above the empty line. The log key is kept in the x/mod private key form
// PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 ‖ seed)>, and published as the
// verifier key <name>+<hex key ID>+<base64(0x01 ‖ public key)>, here
// example.com/ledger+edb3e1ea+AYE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU
// for the seed 0x02 × 32.
//
// # Tiles (c2sp.org/tlog-tiles)
//
// The tree is cut into tiles of height 8. The tile at level L, index N holds
// the hashes of the tree nodes at height 8L with indexes 256N … 256N+255,
// concatenated; level 0 holds leaf hashes and hash i of a level-L tile (L ≥ 1)
// is the root of the full level-(L−1) tile 256N+i. A tree of size s has at
// level L a partial tile of W = ⌊s/256^L⌋ mod 256 hashes, served at a path
// with the suffix .p/<W>. N is written in groups of three digits, every group
// but the last prefixed with x:
//
//	tile/0/000              leaf hashes 0 … 255
//	tile/0/x001/x234/067    leaf hashes of tile 1,234,067
//	tile/1/000.p/3          the roots of level-0 tiles 0, 1 and 2
//	tile/entries/001.p/17   entries 256 … 272
//
// An entry bundle is the concatenation of (uint16 big-endian length ‖ entry)
// for the entries of one level-0 tile, so entry i's leaf hash is hash
// i mod 256 of level-0 tile ⌊i/256⌋. [ParseTilePath] rejects every
// non-canonical spelling (leading zeros, misplaced x, W outside 1..255,
// levels above 63) so that one object has exactly one name.
//
// # Offline proofs (c2sp.org/tlog-proof)
//
// A [Proof] is what a customer archives: the line c2sp.org/tlog-proof@v1,
// optionally extra <base64>, then index <decimal>, the inclusion proof hashes
// in base64 (leaf sibling first), an empty line and the signed checkpoint
// verbatim, cosignatures included.
package tlog
