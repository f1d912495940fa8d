package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	tclient "github.com/transparency-dev/tessera/client"
)

// TileProver builds consistency proofs from a log's C2SP tlog-tiles
// endpoints, so it works with any tiles log (ours, Tessera's, a static
// mirror). The proofs are verified by the caller, never trusted.
type TileProver struct {
	fetcher *tclient.HTTPFetcher
}

// NewTileProver returns a prover for the log whose tiles are below base.
func NewTileProver(base string, hc *http.Client) (*TileProver, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("log URL %q: want http(s)://host[:port][/prefix]", base)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	f, err := tclient.NewHTTPFetcher(u, hc)
	if err != nil {
		return nil, err
	}
	return &TileProver{fetcher: f}, nil
}

// ConsistencyProof implements ConsistencyProver. The origin is not used: the
// prover is bound to one log.
func (p *TileProver) ConsistencyProof(ctx context.Context, _ string, old, new uint64) ([][]byte, error) {
	pb, err := tclient.NewProofBuilder(ctx, new, p.fetcher.ReadTile)
	if err != nil {
		return nil, err
	}
	return pb.ConsistencyProof(ctx, old, new)
}
