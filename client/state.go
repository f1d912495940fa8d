package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vmledger/vmledger/internal/atomicfile"
	"github.com/vmledger/vmledger/log/tlog"
)

// State is what a client remembers between runs: for each log, the largest
// checkpoint it has verified (signed note, verbatim), and any evidence that a
// log showed it two checkpoints that cannot both be true.
//
// The state file is JSON:
//
//	{
//	  "version": 1,
//	  "checkpoints": {"<origin>": "<signed checkpoint note>"},
//	  "evidence": [{"origin": "…", "trusted": "<note>", "presented": "<note>", "reason": "…", "time": "…"}]
//	}
//
// It is written atomically (temporary file, fsync, rename, fsync of the
// directory), so a crash leaves either the old or the new state.
type State struct {
	path string
	data stateFile
}

type stateFile struct {
	Version     int               `json:"version"`
	Checkpoints map[string]string `json:"checkpoints"`
	Evidence    []Evidence        `json:"evidence,omitempty"`
}

// Evidence is a pair of signed checkpoints of one log that cannot both be
// true: the one this client trusted before and the one it was shown. Both
// carry the log's signature, so anybody with the log's key can check them.
type Evidence struct {
	Origin    string    `json:"origin"`
	Trusted   string    `json:"trusted"`
	Presented string    `json:"presented"`
	Reason    string    `json:"reason"`
	Time      time.Time `json:"time"`
}

// OpenState reads the state file at path; a missing file is an empty state.
func OpenState(path string) (*State, error) {
	s := &State{path: path, data: stateFile{Version: 1, Checkpoints: map[string]string{}}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &s.data); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	if s.data.Version != 1 {
		return nil, fmt.Errorf("state file %s: version %d, want 1", path, s.data.Version)
	}
	if s.data.Checkpoints == nil {
		s.data.Checkpoints = map[string]string{}
	}
	return s, nil
}

// Checkpoint returns the trusted signed checkpoint for origin, or nil.
func (s *State) Checkpoint(origin string) []byte {
	c, ok := s.data.Checkpoints[origin]
	if !ok {
		return nil
	}
	return []byte(c)
}

// Evidence returns the recorded evidence.
func (s *State) Evidence() []Evidence { return append([]Evidence(nil), s.data.Evidence...) }

func (s *State) save() error {
	b, err := json.MarshalIndent(s.data, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.path, append(b, '\n'), 0o600)
}

// ConsistencyProver fetches RFC 6962 consistency proofs from a log. Package
// client never needs one to verify a bundle; it is used only to move a
// client's trusted checkpoint forward (or prove an older one consistent).
type ConsistencyProver interface {
	// ConsistencyProof returns the proof from tree size old to tree size new
	// (old < new) of the log with the given origin.
	ConsistencyProof(ctx context.Context, origin string, old, new uint64) ([][]byte, error)
}

// InconsistentError reports that a log presented a checkpoint that cannot be
// reconciled with one the client trusted; the pair is recorded as evidence.
type InconsistentError struct {
	Evidence Evidence
}

func (e *InconsistentError) Error() string {
	return fmt.Sprintf("log %s is inconsistent with the checkpoint this client trusted before (%s); both signed checkpoints are kept as evidence", e.Evidence.Origin, e.Evidence.Reason)
}

// advance checks the verified signed checkpoint cp (body c) against the
// trusted one and, if it is newer and consistent, makes it the trusted one.
// It returns a description of what it did.
func (s *State) advance(ctx context.Context, c tlog.Checkpoint, signed []byte, prover ConsistencyProver, now time.Time) (string, error) {
	prevSigned := s.Checkpoint(c.Origin)
	if prevSigned == nil {
		s.data.Checkpoints[c.Origin] = string(signed)
		if err := s.save(); err != nil {
			return "", fmt.Errorf("saving state: %w", err)
		}
		return fmt.Sprintf("first checkpoint seen from %s (size %d); recorded", c.Origin, c.Size), nil
	}
	prev, err := parseSignedBody(prevSigned)
	if err != nil {
		return "", fmt.Errorf("state file: trusted checkpoint of %s: %w", c.Origin, err)
	}
	inconsistent := func(reason string) error {
		ev := Evidence{Origin: c.Origin, Trusted: string(prevSigned), Presented: string(signed), Reason: reason, Time: now.UTC()}
		s.data.Evidence = append(s.data.Evidence, ev)
		if err := s.save(); err != nil {
			return fmt.Errorf("saving evidence: %w (evidence: %s)", err, reason)
		}
		return &InconsistentError{Evidence: ev}
	}
	switch {
	case c.Size == prev.Size:
		if c.Root != prev.Root {
			return "", inconsistent(fmt.Sprintf("two different roots for size %d", c.Size))
		}
		return fmt.Sprintf("same checkpoint as trusted before (size %d)", c.Size), nil
	case prover == nil:
		return "", fmt.Errorf("%w: trusted size %d, bundle size %d: proving consistency needs the log (give --log URL), or verify without --state", ErrOfflineConsistency, prev.Size, c.Size)
	case c.Size > prev.Size:
		p, err := prover.ConsistencyProof(ctx, c.Origin, prev.Size, c.Size)
		if err != nil {
			return "", fmt.Errorf("%w: fetching the proof %d→%d: %w", ErrProofUnavailable, prev.Size, c.Size, err)
		}
		if err := tlog.VerifyConsistency(prev.Size, c.Size, p, prev.Root, c.Root); err != nil {
			return "", inconsistent(fmt.Sprintf("no valid consistency proof from size %d to %d: %v", prev.Size, c.Size, err))
		}
		s.data.Checkpoints[c.Origin] = string(signed)
		if err := s.save(); err != nil {
			return "", fmt.Errorf("saving state: %w", err)
		}
		return fmt.Sprintf("consistent with the trusted size %d; now trusting size %d", prev.Size, c.Size), nil
	default: // an older checkpoint than the trusted one
		p, err := prover.ConsistencyProof(ctx, c.Origin, c.Size, prev.Size)
		if err != nil {
			return "", fmt.Errorf("%w: fetching the proof %d→%d: %w", ErrProofUnavailable, c.Size, prev.Size, err)
		}
		if err := tlog.VerifyConsistency(c.Size, prev.Size, p, c.Root, prev.Root); err != nil {
			return "", inconsistent(fmt.Sprintf("no valid consistency proof from size %d to the trusted %d: %v", c.Size, prev.Size, err))
		}
		return fmt.Sprintf("older than, and consistent with, the trusted size %d", prev.Size), nil
	}
}

// parseSignedBody returns the checkpoint body of a signed note without
// verifying its signatures (they were verified when it was trusted).
func parseSignedBody(signed []byte) (tlog.Checkpoint, error) {
	text, _, ok := cutNote(signed)
	if !ok {
		return tlog.Checkpoint{}, fmt.Errorf("not a signed note")
	}
	return tlog.ParseCheckpoint(text)
}

// cutNote splits a signed note into its text (with the final newline) and
// its signature block.
func cutNote(signed []byte) (text, sigs []byte, ok bool) {
	for i := 0; i+1 < len(signed); i++ {
		if signed[i] == '\n' && signed[i+1] == '\n' {
			return signed[:i+1], signed[i+2:], true
		}
	}
	return nil, nil, false
}
