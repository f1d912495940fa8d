package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/witness/policy"
)

// Client speaks the tlog-witness protocol to one witness.
type Client struct {
	base *url.URL
	hc   *http.Client
}

// NewClient returns a client for the witness whose base URL is base (its
// add-checkpoint endpoint is base/add-checkpoint). hc nil means
// http.DefaultClient.
func NewClient(base *url.URL, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: base, hc: hc}
}

// StatusError is a witness answer other than 200 and 409 (see the status
// table in the package documentation).
type StatusError struct {
	StatusCode int
	Body       string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("witness answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), strings.TrimSpace(e.Body))
}

// AddCheckpoint sends a signed checkpoint with a consistency proof from old
// and returns the witness's cosignature line(s), unverified. On 409 it
// returns a *ConflictError carrying the witness's size, so that the caller
// can retry from that size; other refusals are *StatusError.
func (c *Client) AddCheckpoint(ctx context.Context, old uint64, proof [][]byte, signedCheckpoint []byte) ([]byte, error) {
	body := MarshalAddCheckpoint(old, proof, signedCheckpoint)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.JoinPath("add-checkpoint").String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("add-checkpoint to %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("add-checkpoint to %s: reading answer: %w", c.base, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return rb, nil
	case http.StatusConflict:
		if resp.Header.Get("Content-Type") != "text/x.tlog.size" {
			return nil, &StatusError{StatusCode: resp.StatusCode, Body: string(rb)}
		}
		s, ok := bytes.CutSuffix(rb, []byte("\n"))
		size, err := parseDecimal(s)
		if !ok || err != nil {
			return nil, fmt.Errorf("add-checkpoint to %s: 409 with malformed size %q", c.base, rb)
		}
		return nil, &ConflictError{Size: size}
	default:
		return nil, &StatusError{StatusCode: resp.StatusCode, Body: string(rb)}
	}
}

// Checkpoint fetches the witness's latest cosigned checkpoint for origin from
// its monitoring endpoint. It returns (nil, nil) on 404.
func (c *Client) Checkpoint(ctx context.Context, origin string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.JoinPath(OriginID(origin), "checkpoint").String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("checkpoint from %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodySize))
	if err != nil {
		return nil, fmt.Errorf("checkpoint from %s: %w", c.base, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return b, nil
	case http.StatusNotFound:
		return nil, nil
	default:
		return nil, &StatusError{StatusCode: resp.StatusCode, Body: string(b)}
	}
}

// ProofFunc returns the RFC 6962 consistency proof between two sizes of the
// log's tree. It is called with 0 < old < new.
type ProofFunc func(ctx context.Context, old, new uint64) ([][]byte, error)

// Collector gathers cosignatures for a log's checkpoints from the witnesses
// of a policy (those with a URL). It remembers each witness's size between
// calls, so a steady log sends each witness one request per checkpoint; a 409
// answer teaches it the witness's real size and it retries once from there.
// A Collector is safe for concurrent use, but a log should collect one
// checkpoint at a time, in increasing size.
type Collector struct {
	policy  *policy.Policy
	targets []*target
}

type target struct {
	w      *policy.Witness
	client *Client

	mu   sync.Mutex // guards size
	size uint64     // the witness's size as far as we know
}

// ErrQuorumNotMet is returned by Collect when the witnesses that answered do
// not satisfy the policy.
var ErrQuorumNotMet = errors.New("witness quorum not met")

// NewCollector returns a collector for the witnesses of p that have a URL.
func NewCollector(p *policy.Policy, hc *http.Client) *Collector {
	c := &Collector{policy: p}
	for _, w := range p.Witnesses {
		if w.URL != nil {
			c.targets = append(c.targets, &target{w: w, client: NewClient(w.URL, hc)})
		}
	}
	return c
}

// Collect sends the log-signed checkpoint to every witness in parallel and
// returns it with the valid cosignatures appended as soon as the policy's
// quorum holds (the remaining requests are cancelled). If every witness has
// answered and the quorum still fails, it returns the note with the
// cosignatures it has and an error wrapping ErrQuorumNotMet and each
// witness's failure.
func (c *Collector) Collect(ctx context.Context, signedCheckpoint []byte, proofs ProofFunc) ([]byte, error) {
	split := bytes.Index(signedCheckpoint, []byte("\n\n"))
	if split < 0 {
		return nil, fmt.Errorf("collect: malformed signed checkpoint")
	}
	cp, err := ParseCheckpointText(signedCheckpoint[:split+1])
	if err != nil {
		return nil, fmt.Errorf("collect: %w", err)
	}
	if v, err := c.policy.Verify(signedCheckpoint); err != nil && !errors.Is(err, policy.ErrQuorumNotMet) {
		return nil, fmt.Errorf("collect: %w", err)
	} else if err == nil && v.QuorumMet {
		return signedCheckpoint, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		t    *target
		line []byte
		err  error
	}
	results := make(chan result, len(c.targets))
	for _, t := range c.targets {
		go func() {
			line, err := t.add(ctx, cp, signedCheckpoint, proofs)
			results <- result{t, line, err}
		}()
	}
	merged := bytes.Clone(signedCheckpoint)
	var errs []error
	for range c.targets {
		r := <-results
		if r.err != nil {
			errs = append(errs, fmt.Errorf("witness %s: %w", r.t.w.Name, r.err))
			continue
		}
		merged = append(merged, r.line...)
		if v, err := c.policy.Verify(merged); err == nil && v.QuorumMet {
			return merged, nil
		}
	}
	return merged, errors.Join(append([]error{ErrQuorumNotMet}, errs...)...)
}

// add gets one witness's cosignature: it sends from the size it believes
// the witness has, follows one 409, and checks the returned line.
func (t *target) add(ctx context.Context, cp *Checkpoint, signed []byte, proofs ProofFunc) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for attempt := 0; ; attempt++ {
		old := t.size
		if old > cp.Size {
			old = 0 // we believed the witness ahead of us: ask it
		}
		var p [][]byte
		if old > 0 && old < cp.Size {
			var err error
			if p, err = proofs(ctx, old, cp.Size); err != nil {
				return nil, fmt.Errorf("consistency proof %d→%d: %w", old, cp.Size, err)
			}
		}
		resp, err := t.client.AddCheckpoint(ctx, old, p, signed)
		var conflict *ConflictError
		if errors.As(err, &conflict) && attempt == 0 {
			if conflict.Size > cp.Size {
				return nil, fmt.Errorf("witness has size %d, larger than this checkpoint's %d: %w", conflict.Size, cp.Size, err)
			}
			t.size = conflict.Size
			continue
		}
		if err != nil {
			return nil, err
		}
		line, err := checkCosignature(t.w.Verifier, signed, resp)
		if err != nil {
			return nil, err
		}
		t.size = cp.Size
		return line, nil
	}
}

// checkCosignature verifies the witness's answer against the checkpoint and
// returns exactly its signature line.
func checkCosignature(v note.Verifier, signed, resp []byte) ([]byte, error) {
	n, err := note.Open(append(bytes.Clone(signed), resp...), note.VerifierList(v))
	if err != nil || len(n.Sigs) != 1 {
		return nil, fmt.Errorf("witness answered without a valid cosignature: %q", resp)
	}
	return fmt.Appendf(nil, "— %s %s\n", n.Sigs[0].Name, n.Sigs[0].Base64), nil
}
