package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"

	"github.com/vmledger/vmledger/witness/policy"
)

// Gossiper compares this witness's view of each log with the log's own
// checkpoint and with its peers' (their monitoring endpoints). In each round,
// for every witnessed log:
//
//  1. it fetches the log's checkpoint (if the log has a URL) and each peer's
//     latest cosigned checkpoint, keeping those with a valid log signature;
//  2. it feeds itself the largest one newer than its own state, with a
//     consistency proof built from the log's tiles (tlog-tiles) — the proof
//     is checked by the normal add-checkpoint path, never trusted;
//  3. among all the log-signed checkpoints it now knows (its own, the log's,
//     the peers', and those it refused earlier) it looks for pairs that
//     cannot both be true: same size and different roots; or sizes m < n
//     where the size-m root derived from the size-n tree's tiles — checked
//     against the size-n root with a consistency proof — differs from the
//     size-m checkpoint's root. Each such pair becomes fork Evidence.
//
// Failures to reach the log or a peer are logged, counted and retried next
// round; they are never evidence.
type Gossiper struct {
	w     *Witness
	peers []*Client
	hc    *http.Client
}

// NewGossiper returns a gossiper for w with the given peer witnesses' base
// URLs. hc nil means http.DefaultClient.
func NewGossiper(w *Witness, peers []*url.URL, hc *http.Client) *Gossiper {
	if hc == nil {
		hc = http.DefaultClient
	}
	g := &Gossiper{w: w, hc: hc}
	for _, p := range peers {
		g.peers = append(g.peers, NewClient(p, hc))
	}
	return g
}

// Run gossips every interval until ctx is done.
func (g *Gossiper) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := g.RunOnce(ctx); err != nil {
			g.w.logger.WarnContext(ctx, "gossip round incomplete", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RunOnce runs one gossip round over every witnessed log. Its error joins
// the fetch failures of the round; evidence is recorded, not returned.
func (g *Gossiper) RunOnce(ctx context.Context) error {
	var errs []error
	for _, l := range g.w.logs {
		if err := g.gossipLog(ctx, l); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.Origin, err))
		}
	}
	return errors.Join(errs...)
}

// seen is a log-signed checkpoint from some source.
type seen struct {
	note   []byte
	cp     *Checkpoint
	source string
}

func (g *Gossiper) gossipLog(ctx context.Context, l *policy.Log) error {
	var errs []error
	fail := func(err error) {
		g.w.gossipErr.Inc()
		errs = append(errs, err)
	}
	var all []*seen
	var tiles client.TileFetcherFunc
	if l.URL != nil {
		f, err := client.NewHTTPFetcher(l.URL.JoinPath("/"), g.hc)
		if err != nil {
			return err
		}
		tiles = f.ReadTile
		raw, err := f.ReadCheckpoint(ctx)
		if err != nil {
			fail(fmt.Errorf("log checkpoint: %w", err))
		} else if s, err := parseSeen(l, raw, "log "+l.URL.String()); err != nil {
			fail(fmt.Errorf("log checkpoint: %w", err))
		} else {
			all = append(all, s)
		}
	}
	for _, p := range g.peers {
		raw, err := p.Checkpoint(ctx, l.Origin)
		if err != nil {
			fail(fmt.Errorf("peer: %w", err))
			continue
		}
		if raw == nil {
			continue
		}
		s, err := parseSeen(l, raw, "peer "+p.base.String())
		if err != nil {
			fail(fmt.Errorf("peer %s: %w", p.base, err))
			continue
		}
		all = append(all, s)
	}

	// Feed ourselves the largest newer checkpoint.
	st, err := g.w.store.Latest(ctx, l.Origin)
	if err != nil {
		return err
	}
	if tiles != nil {
		sort.SliceStable(all, func(i, j int) bool { return all[i].cp.Size > all[j].cp.Size })
		for _, s := range all {
			if st != nil && s.cp.Size <= st.Size {
				break
			}
			if err := g.feed(ctx, l, st, s, tiles); err != nil {
				g.w.logger.DebugContext(ctx, "gossip: not fed", "origin", l.Origin, "size", s.cp.Size, "source", s.source, "err", err)
				continue
			}
			break
		}
		if st, err = g.w.store.Latest(ctx, l.Origin); err != nil {
			return err
		}
	}

	// Look for contradictions.
	if st != nil {
		s, err := parseSeen(l, st.Note, "this witness")
		if err != nil {
			return err
		}
		all = append(all, s)
	}
	rejected, err := g.w.store.Rejected(ctx, l.Origin)
	if err != nil {
		return err
	}
	for _, r := range rejected {
		if s, err := parseSeen(l, r, "refused by this witness"); err == nil {
			all = append(all, s)
		}
	}
	// One entry per checkpoint text; the notes may differ in cosignatures.
	var distinct []*seen
	texts := map[string]bool{}
	for _, s := range all {
		if !texts[s.cp.Text] {
			texts[s.cp.Text] = true
			distinct = append(distinct, s)
		}
	}
	g.findForks(ctx, l, distinct, tiles)
	return errors.Join(errs...)
}

func parseSeen(l *policy.Log, raw []byte, source string) (*seen, error) {
	if err := checkNote(raw); err != nil {
		return nil, err
	}
	cp, err := ParseCheckpointText(raw[:bytes.Index(raw, []byte("\n\n"))+1])
	if err != nil {
		return nil, err
	}
	if cp.Origin != l.Origin {
		return nil, fmt.Errorf("origin %q, want %q", cp.Origin, l.Origin)
	}
	if _, err := logSignedNote(l, raw); err != nil {
		return nil, err
	}
	return &seen{note: raw, cp: cp, source: source}, nil
}

// feed submits s to this witness with a proof from the log's tiles. Only a
// checkpoint whose root the log's own tiles reproduce is fed: from an empty
// state no proof is needed, and without this check a witness would adopt
// whatever branch a peer showed it first.
func (g *Gossiper) feed(ctx context.Context, l *policy.Log, st *State, s *seen, tiles client.TileFetcherFunc) error {
	var old uint64
	var p [][]byte
	if st != nil {
		old = st.Size
	}
	if s.cp.Size > 0 {
		root, err := rootFromTiles(ctx, tilesAt(tiles, s.cp.Size), s.cp.Size)
		if err != nil {
			return err
		}
		if !bytes.Equal(root, s.cp.Root[:]) {
			return fmt.Errorf("the log's tiles do not reproduce the size-%d root", s.cp.Size)
		}
	}
	if old > 0 {
		pb, err := client.NewProofBuilder(ctx, s.cp.Size, tilesAt(tiles, s.cp.Size))
		if err != nil {
			return err
		}
		if p, err = pb.ConsistencyProof(ctx, old, s.cp.Size); err != nil {
			return err
		}
	}
	logSigned, err := logSignedNote(l, s.note)
	if err != nil {
		return err
	}
	req := &AddCheckpointRequest{Old: old, Proof: p, Checkpoint: s.note, Parsed: *s.cp}
	if _, err := g.w.addVerified(ctx, l, req, logSigned); err != nil {
		return err
	}
	g.w.logger.InfoContext(ctx, "gossip: cosigned", "origin", l.Origin, "size", s.cp.Size, "source", s.source)
	return nil
}

// findForks records evidence for every contradicting pair in all.
func (g *Gossiper) findForks(ctx context.Context, l *policy.Log, all []*seen, tiles client.TileFetcherFunc) {
	for i, a := range all {
		for _, b := range all[i+1:] {
			if a.cp.Size == b.cp.Size && a.cp.Root != b.cp.Root {
				g.w.recordEvidence(ctx, &Evidence{
					Kind: KindSameSize, Origin: l.Origin,
					First: string(a.note), Second: string(b.note),
					Source: a.source + " vs " + b.source,
				})
			}
		}
	}
	if tiles == nil {
		return
	}
	// Derive older roots from each larger tree whose tiles the log serves.
	sort.SliceStable(all, func(i, j int) bool { return all[i].cp.Size > all[j].cp.Size })
	tried := map[[32]byte]bool{}
	for _, big := range all {
		if tried[big.cp.Root] {
			continue
		}
		tried[big.cp.Root] = true
		for _, small := range all {
			if small.cp.Size >= big.cp.Size {
				continue
			}
			root, p, err := deriveRoot(ctx, tilesAt(tiles, big.cp.Size), small.cp.Size, big.cp)
			if err != nil {
				// The log's tiles are not those of this tree (it has not
				// grown to it, or it is another branch): nothing to learn.
				g.w.logger.DebugContext(ctx, "gossip: cannot derive root", "origin", l.Origin, "size", small.cp.Size, "from", big.cp.Size, "err", err)
				break
			}
			if !bytes.Equal(root, small.cp.Root[:]) {
				g.w.recordEvidence(ctx, &Evidence{
					Kind: KindInconsistent, Origin: l.Origin,
					First: string(small.note), Second: string(big.note),
					DerivedRoot: root, Proof: p,
					Source: small.source + " vs " + big.source,
				})
			}
		}
	}
}

// deriveRoot computes the root of the first m leaves of the tree of big from
// the log's tiles, with the consistency proof from it to big's root, and
// checks that proof (so that tiles of another tree are an error, not
// evidence).
func deriveRoot(ctx context.Context, tiles client.TileFetcherFunc, m uint64, big *Checkpoint) ([]byte, [][]byte, error) {
	if m == 0 {
		return emptyRoot[:], nil, nil
	}
	root, err := rootFromTiles(ctx, tiles, m)
	if err != nil {
		return nil, nil, err
	}
	pb, err := client.NewProofBuilder(ctx, big.Size, tiles)
	if err != nil {
		return nil, nil, err
	}
	p, err := pb.ConsistencyProof(ctx, m, big.Size)
	if err != nil {
		return nil, nil, err
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, m, big.Size, p, root, big.Root[:]); err != nil {
		return nil, nil, fmt.Errorf("log tiles do not match the size-%d checkpoint: %w", big.Size, err)
	}
	return root, p, nil
}

// rootFromTiles computes the root of the first m leaves from tiles.
func rootFromTiles(ctx context.Context, tiles client.TileFetcherFunc, m uint64) ([]byte, error) {
	nodes, err := client.FetchRangeNodes(ctx, m, tiles)
	if err != nil {
		return nil, err
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	rng, err := rf.NewRange(0, m, nodes)
	if err != nil {
		return nil, err
	}
	return rng.GetRootHash(nil)
}

// tilesAt reads every tile as it is in the tree of the given size, whatever
// partial width the caller asks for, and cuts it to that width. Reading the
// size-n tree this way gives the nodes of any smaller tree size m < n as the
// size-n tree has them — which is what fork detection must compare — and
// needs no partial tiles of size m, which the log may never have written
// (another branch) or may have deleted.
func tilesAt(f client.TileFetcherFunc, size uint64) client.TileFetcherFunc {
	return func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
		t, err := f(ctx, level, index, layout.PartialTileSize(level, index, size))
		if err != nil {
			return nil, err
		}
		if p > 0 {
			if len(t) < int(p)*32 {
				return nil, fmt.Errorf("tile %d/%d has %d bytes, want at least %d", level, index, len(t), int(p)*32)
			}
			t = t[:int(p)*32]
		}
		return t, nil
	}
}
