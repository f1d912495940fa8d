package client_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/agent/attest"
	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/log/tlog"
	"github.com/vmledger/vmledger/testing/cluster"
)

// anchoredCoproc is the cluster's co-processor told to attest after the
// given anchor, whatever the agent fetched.
type anchoredCoproc struct {
	coproc.CoProcessor
	anchor coproc.Anchor
}

func (a anchoredCoproc) Attest(ctx context.Context, c coproc.Claim) (*coproc.Envelope, error) {
	c.Freshness = a.anchor
	return a.CoProcessor.Attest(ctx, c)
}

// TestTileProverProvesAnchor runs a real log, witnesses and agent (package
// testing/cluster) and attests VMs after the log's first non-empty
// checkpoint, so that a later entry's anchor is not covered by its inclusion
// proof. Offline, Verify says the anchor is not proven; with a TileProver
// reading the real log's tiles, it proves the anchor consistent with the
// bundle's checkpoint.
func TestTileProverProvesAnchor(t *testing.T) {
	ctx := t.Context()
	c, err := cluster.Start(ctx, cluster.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := nonEmptyCheckpoint(t, c.LogURL)
	agent := c.Agent()
	agent.CoProcessor = anchoredCoproc{c.CoProcessor, coproc.Anchor{Origin: first.Origin, Size: first.Size, Root: first.Root}}
	cfg := &measure.Config{MemoryBytes: 2 << 30, CPUCount: 2}
	var secret measure.Secret
	secret[0] = 7
	var res *attest.Result
	for _, id := range []string{"vm-a", "vm-b", "vm-c"} {
		r, err := attest.Attest(ctx, agent, attest.Request{VMID: id, Config: cfg, Secret: secret})
		if err != nil {
			t.Fatalf("attest %s after the anchor of size %d: %v", id, first.Size, err)
		}
		s := first.Size
		if r.Index-s >= s&-s { // not the index with low bits cleared
			res = r
		}
	}
	if res == nil {
		t.Fatalf("every entry's anchor (size %d) is covered by its inclusion proof", first.Size)
	}
	exp := &client.Expected{VMID: res.Report.VMID, Config: cfg, Secret: &secret}
	freshness := func(opts client.Options) string {
		t.Helper()
		r, err := client.Verify(ctx, res.Bundle, c.Trust, exp, opts)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		for _, c := range r.Results {
			if c.Check == client.CheckFreshness {
				return c.Detail
			}
		}
		t.Fatal("no freshness check")
		return ""
	}
	if d := freshness(client.Options{}); !strings.Contains(d, "not proven offline") {
		t.Errorf("offline, entry %d anchored at size %d: freshness %q, want it not proven", res.Index, first.Size, d)
	}
	p, err := client.NewTileProver(c.LogURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := freshness(client.Options{Prover: p}); !strings.Contains(d, "proven by the log's consistency proof") {
		t.Errorf("with the log's tiles, entry %d anchored at size %d: freshness %q, want it proven", res.Index, first.Size, d)
	}
}

// nonEmptyCheckpoint waits (until the test's deadline) for the log to
// publish a checkpoint of at least one entry, its enrolment record.
func nonEmptyCheckpoint(t *testing.T, logURL string) tlog.Checkpoint {
	t.Helper()
	for {
		resp, err := http.Get(logURL + "/checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /checkpoint: %v %s", err, resp.Status)
		}
		text, _, ok := bytes.Cut(body, []byte("\n\n"))
		if !ok {
			t.Fatalf("GET /checkpoint: not a signed note: %q", body)
		}
		cp, err := tlog.ParseCheckpoint(append(text, '\n'))
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size > 0 {
			return cp
		}
		select {
		case <-t.Context().Done():
			t.Fatal("the log published no non-empty checkpoint")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
