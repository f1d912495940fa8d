// Package attest is the hypervisor agent's flow: everything between "this
// is the VM's configuration" and "launch it" or "refuse, and say why".
//
//	measure (salted config tree, package agent/measure)
//	  → freshness: the log's latest published checkpoint, verified with the
//	    trust file (log signature, witness quorum); while the log has
//	    published only the empty tree, which admission refuses as an anchor
//	    (409 empty-anchor), the agent tries again until its deadline
//	  → co-processor: NV-write the root, bump the counter, sign (package coproc)
//	  → log: POST /v1/attestations?wait=1 — admitted, sequenced, and answered
//	    once the entry is in a witness-cosigned checkpoint, with its bundle
//	  → verify the bundle exactly as a customer would (package client), with
//	    the configuration just measured and the VM secret as the expectation;
//	    the freshness anchor always proved consistent with the bundle's
//	    checkpoint (from the inclusion proof or the log's tiles); with a
//	    state file, the bundle's checkpoint also proved consistent with the
//	    one trusted before, from the log's tiles
//	  → keep the manifest and the bundle (package agent/store)
//
// Attest returns an error wrapping one of the sentinels below for each link
// that can break, so that a launcher can say which one did. It never returns
// a result that did not pass client.Verify. Incomplete tells the failures
// that say nothing about the VM (a part was unreachable, failed or timed
// out: retry later) from the refusals (a link was checked and does not hold).
package attest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/agent/store"
	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/log/bundle"
	"github.com/vmledger/vmledger/log/tlog"
)

// Sentinels, one per link of the chain.
var (
	ErrMeasure     = errors.New("measuring the configuration failed")
	ErrLog         = errors.New("the log is unreachable or answered wrongly")
	ErrFreshness   = errors.New("the log's checkpoint is not trusted")
	ErrCoprocessor = errors.New("the co-processor failed to attest")
	ErrRefused     = errors.New("the log refused the attestation")
	// ErrNotWitnessed: the log did not answer with a witness-cosigned
	// checkpoint before the deadline — the entry may be admitted, but the
	// witness quorum did not cosign a checkpoint containing it in time.
	ErrNotWitnessed = errors.New("no witness-cosigned checkpoint included the attestation in time (is the witness quorum up?)")
	ErrVerify       = errors.New("the attestation does not verify")
	// ErrEmptyAnchor: the log refused the statement because its anchor is
	// the empty tree (reason "empty-anchor": the log had not yet published
	// a non-empty checkpoint). Wrapped by a *RefusedError, with ErrRefused;
	// Attest tries again until its deadline.
	ErrEmptyAnchor = errors.New("the log refused the empty tree as the freshness anchor")
	ErrStore       = errors.New("saving the manifest or bundle failed")
)

// Incomplete reports whether err means the flow could not complete rather
// than that the attestation was refused: the log (ErrLog, including a
// consistency proof it did not give), the witness quorum (ErrNotWitnessed)
// or the co-processor (ErrCoprocessor) was unreachable, failed or timed out.
// Nothing was proved wrong; the same request may pass later. The log's
// refusal (ErrRefused), a checkpoint that is not trusted (ErrFreshness), a
// verification that failed (ErrVerify) or a configuration that does not
// measure (ErrMeasure) are refusals.
func Incomplete(err error) bool {
	return errors.Is(err, ErrLog) || errors.Is(err, ErrNotWitnessed) || errors.Is(err, ErrCoprocessor)
}

// Config is what the agent needs. CoProcessor, LogURL and Trust are
// required.
type Config struct {
	CoProcessor coproc.CoProcessor
	// LogURL is the log's base URL.
	LogURL string
	// Trust is the trust file the agent verifies with — the same a
	// customer uses.
	Trust *client.Trust
	// HTTPClient talks to the log; nil uses one with a 30 s timeout per
	// request. The wait for a witness-cosigned checkpoint is bounded by
	// WaitTimeout only, not by the client's Timeout.
	HTTPClient *http.Client
	// Store, if set, keeps the manifest and the bundle per VM.
	Store *store.Store
	// State, if set, is the agent's consistency state for the log: each
	// bundle's checkpoint must be consistent with the one trusted before,
	// proved from the log's tiles (under LogURL), and then becomes the
	// trusted one. A log that forked is refused (ErrVerify wrapping a
	// *client.InconsistentError) and the evidence kept in the state.
	State *client.State
	// WaitTimeout bounds the whole attestation (default 2 minutes).
	WaitTimeout time.Duration
	// Logger receives the steps; nil discards them.
	Logger *slog.Logger
}

// Request is one VM to attest.
type Request struct {
	VMID string
	// Config is the configuration that will be launched: what is measured.
	Config *measure.Config
	Secret measure.Secret
	// Expected, if set, is the configuration the VM's owner ordered; the
	// bundle is verified against it, so a host that is about to launch
	// anything else is refused. nil verifies against Config.
	Expected *measure.Config
}

// Result is a verified attestation.
type Result struct {
	Measurement *measure.Measurement
	Envelope    *coproc.Envelope
	Index       uint64
	Bundle      *bundle.Bundle
	// BundleJSON is the bundle as the log served it.
	BundleJSON []byte
	Report     *client.Report
	// Anchor is the checkpoint the statement was made after.
	Anchor coproc.Anchor
}

// Attest runs the whole flow for one VM.
func Attest(ctx context.Context, c Config, req Request) (*Result, error) {
	if c.CoProcessor == nil || c.LogURL == "" || c.Trust == nil {
		return nil, errors.New("attest: CoProcessor, LogURL and Trust are required")
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if c.WaitTimeout == 0 {
		c.WaitTimeout = 2 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, c.WaitTimeout)
	defer cancel()
	base := strings.TrimSuffix(c.LogURL, "/")
	log := c.Logger.With("vm", req.VMID)

	// The agent measures under the current schema (v2), which binds the
	// VM id into the root.
	cfg := *req.Config
	if cfg.VMID != "" && cfg.VMID != req.VMID {
		return nil, fmt.Errorf("%w: the configuration is of VM %q, the request attests VM %q", ErrMeasure, cfg.VMID, req.VMID)
	}
	cfg.VMID = req.VMID
	m, err := measure.Current.Measure(&cfg, req.Secret)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMeasure, err)
	}
	log.Info("measured", "root", m.Root.String(), "leaves", len(m.Leaves))

	anchor, env, entry, index, raw, err := attestAndSubmit(ctx, c, base, req.VMID, m, log)
	if err != nil {
		return nil, err
	}
	b, err := bundle.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: the log's bundle: %w", ErrLog, err)
	}
	if b.Proof.Index != index || !bytes.Equal(b.Entry, entry) {
		return nil, fmt.Errorf("%w: the log's bundle is for another entry (index %d, want %d)", ErrLog, b.Proof.Index, index)
	}
	log.Info("logged", "index", index)

	secret := req.Secret
	expected := req.Config
	if req.Expected != nil {
		expected = req.Expected
	}
	// The log just used proves, from its tiles, the state's trusted
	// checkpoint consistent with the bundle's (a log that forked cannot),
	// and the freshness anchor too when the inclusion proof does not hold
	// its root (entries were appended between the anchor and this one).
	prover, err := client.NewTileProver(base, c.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLog, err)
	}
	opts := client.Options{State: c.State, Prover: prover}
	// The agent's own manifest of what it attested: when the expected
	// configuration differs, it lets the report name each parameter that
	// differs, with the expected and the attested value.
	report, err := client.Verify(ctx, b, c.Trust, &client.Expected{VMID: req.VMID, Config: expected, Secret: &secret, Manifest: m}, opts)
	if err != nil {
		link := ErrVerify
		if report.Incomplete() {
			link = ErrLog // only the consistency proof was missing
		}
		if d := differences(report.Differences); d != "" {
			err = fmt.Errorf("%w (%s)", err, d)
		}
		return &Result{Measurement: m, Envelope: env, Index: index, Bundle: b, BundleJSON: raw, Report: report, Anchor: anchor},
			fmt.Errorf("%w: %w", link, err)
	}
	log.Info("verified", "cosigners", strings.Join(report.Cosigners, ","))

	if c.Store != nil {
		if err := c.Store.SaveManifest(req.VMID, m); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrStore, err)
		}
		if err := c.Store.SaveBundle(req.VMID, raw); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrStore, err)
		}
	}
	return &Result{Measurement: m, Envelope: env, Index: index, Bundle: b, BundleJSON: raw, Report: report, Anchor: anchor}, nil
}

// attestAndSubmit takes the log's checkpoint as the freshness anchor, has
// the co-processor attest m's root after it, and submits the statement. A
// log that has not yet published a non-empty checkpoint (its first entry is
// an enrolment record) gives the empty tree as its checkpoint, which
// admission refuses as an anchor (ErrEmptyAnchor): then it tries again,
// with the log's next checkpoint and a new statement, until ctx's deadline.
func attestAndSubmit(ctx context.Context, c Config, base, vmID string, m *measure.Measurement, log *slog.Logger) (coproc.Anchor, *coproc.Envelope, []byte, uint64, []byte, error) {
	for {
		anchor, err := freshness(ctx, c, base)
		if err != nil {
			return coproc.Anchor{}, nil, nil, 0, nil, err
		}
		log.Info("freshness anchor", "origin", anchor.Origin, "size", anchor.Size)

		env, err := c.CoProcessor.Attest(ctx, coproc.Claim{VMID: vmID, Root: m.Root, Parameters: m.Names(), Freshness: anchor, ConfigSchema: m.Schema})
		if err != nil {
			return anchor, nil, nil, 0, nil, fmt.Errorf("%w: %w", ErrCoprocessor, err)
		}
		st, err := env.Statement()
		if err != nil {
			return anchor, nil, nil, 0, nil, fmt.Errorf("%w: its own statement does not parse: %w", ErrCoprocessor, err)
		}
		log.Info("co-processor attested", "keyid", c.CoProcessor.KeyID(), "counter", st.Predicate.Coprocessor.Counter)

		entry, err := env.Canonical()
		if err != nil {
			return anchor, nil, nil, 0, nil, fmt.Errorf("%w: %w", ErrCoprocessor, err)
		}
		index, raw, err := submit(ctx, c.HTTPClient, base, entry)
		if !errors.Is(err, ErrEmptyAnchor) {
			return anchor, env, entry, index, raw, err
		}
		log.Info("the log has not yet published a non-empty checkpoint; trying again", "size", anchor.Size)
		select {
		case <-ctx.Done():
			// Not a refusal: the log may publish one later.
			return anchor, nil, nil, 0, nil, fmt.Errorf("%w: it published no non-empty checkpoint to anchor to before the deadline (%v), and admission refuses the empty tree: %w", ErrLog, err, ctx.Err())
		case <-time.After(emptyAnchorRetry):
		}
	}
}

// emptyAnchorRetry is how long the agent waits before it asks again for a
// non-empty checkpoint.
const emptyAnchorRetry = time.Second

// differences says each parameter that differs, with both values.
func differences(diffs []client.ParameterDiff) string {
	s := make([]string, len(diffs))
	for i, d := range diffs {
		s[i] = fmt.Sprintf("%s: expected %s, attested %s", d.Name, d.Expected, d.Attested)
	}
	return strings.Join(s, "; ")
}

// freshness fetches and verifies the log's published checkpoint.
func freshness(ctx context.Context, c Config, base string) (coproc.Anchor, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/checkpoint", nil)
	if err != nil {
		return coproc.Anchor{}, fmt.Errorf("%w: %w", ErrLog, err)
	}
	resp, err := c.HTTPClient.Do(req)
	if err != nil {
		return coproc.Anchor{}, fmt.Errorf("%w: %w", ErrLog, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return coproc.Anchor{}, fmt.Errorf("%w: reading checkpoint: %w", ErrLog, err)
	}
	if resp.StatusCode != http.StatusOK {
		return coproc.Anchor{}, fmt.Errorf("%w: GET /checkpoint: %s: %s", ErrLog, resp.Status, strings.TrimSpace(string(body)))
	}
	v, err := c.Trust.Policy.Verify(body)
	if err != nil {
		return coproc.Anchor{}, fmt.Errorf("%w: %w", ErrFreshness, err)
	}
	cp, err := tlog.ParseCheckpoint([]byte(v.Text))
	if err != nil {
		return coproc.Anchor{}, fmt.Errorf("%w: %w", ErrFreshness, err)
	}
	return coproc.Anchor{Origin: cp.Origin, Size: cp.Size, Root: cp.Root}, nil
}

// RefusedError is the log's refusal: its HTTP status and machine-readable
// reason.
type RefusedError struct {
	Status int
	Reason string
	Detail string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Reason, e.Detail)
}

// Unwrap gives ErrRefused, and the sentinel of the reason where the agent
// acts on it (ErrEmptyAnchor).
func (e *RefusedError) Unwrap() []error {
	if e.Reason == reasonEmptyAnchor {
		return []error{ErrRefused, ErrEmptyAnchor}
	}
	return []error{ErrRefused}
}

// reasonEmptyAnchor is the log's machine-readable reason for a statement
// anchored to the empty tree (package log/admission, ErrEmptyAnchor).
const reasonEmptyAnchor = "empty-anchor"

// idempotencyKey names an admission request by its entry's leaf hash.
func idempotencyKey(entry []byte) string {
	h := tlog.LeafHash(entry)
	return hex.EncodeToString(h[:])
}

// submit posts the entry and waits for its bundle. The log answers once a
// witness-cosigned checkpoint includes the entry, so the request may last
// until ctx's deadline: hc's per-request Timeout does not apply to it.
func submit(ctx context.Context, hc *http.Client, base string, entry []byte) (uint64, []byte, error) {
	wc := *hc
	wc.Timeout = 0
	hc = &wc
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/attestations?wait=1", bytes.NewReader(entry))
		if err != nil {
			return 0, nil, fmt.Errorf("%w: %w", ErrLog, err)
		}
		req.Header.Set("Content-Type", "application/json")
		// Admission is idempotent (the same envelope gets the same index),
		// and saying so lets net/http resend the request on a new
		// connection when the log closed the pooled one it went out on.
		req.Header.Set("Idempotency-Key", idempotencyKey(entry))
		resp, err := hc.Do(req)
		if err != nil {
			var ne net.Error
			if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout() && ctx.Err() != nil) {
				// Connected and sent, then no answer until the deadline:
				// the log waits for a cosigned checkpoint.
				return 0, nil, fmt.Errorf("%w: %w", ErrNotWitnessed, err)
			}
			return 0, nil, fmt.Errorf("%w: %w", ErrLog, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, bundle.MaxSize+4096))
		resp.Body.Close()
		if err != nil {
			return 0, nil, fmt.Errorf("%w: %w", ErrLog, err)
		}
		switch resp.StatusCode {
		case http.StatusOK, http.StatusCreated:
			var out struct {
				Index  *uint64         `json:"index"`
				Bundle json.RawMessage `json:"bundle"`
			}
			if err := json.Unmarshal(body, &out); err != nil || out.Index == nil || len(out.Bundle) == 0 {
				return 0, nil, fmt.Errorf("%w: unexpected answer to POST /v1/attestations: %.200q", ErrLog, body)
			}
			return *out.Index, out.Bundle, nil
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			wait := time.Second
			if s := resp.Header.Get("Retry-After"); s != "" {
				if d, err := time.ParseDuration(s + "s"); err == nil && d > 0 && d < time.Minute {
					wait = d
				}
			}
			select {
			case <-ctx.Done():
				return 0, nil, fmt.Errorf("%w: overloaded (%s) until the deadline: %w", ErrLog, resp.Status, ctx.Err())
			case <-time.After(wait):
			}
			continue
		}
		var e struct {
			Error  string `json:"error"`
			Reason string `json:"reason"`
		}
		if json.Unmarshal(body, &e) != nil || e.Reason == "" {
			e.Reason, e.Error = "unknown", strings.TrimSpace(string(body))
		}
		if resp.StatusCode >= 500 {
			return 0, nil, fmt.Errorf("%w: %s: %s", ErrLog, resp.Status, e.Error)
		}
		return 0, nil, &RefusedError{Status: resp.StatusCode, Reason: e.Reason, Detail: e.Error}
	}
}
