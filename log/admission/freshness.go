package admission

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/tlog"
)

// freshness tracks which published checkpoints are fresh anchors.
//
// An anchor is fresh while it is the latest published checkpoint and for
// the window after a newer one replaced it. (Measuring from when it was first
// published instead would refuse every anchor of a quiet log after Window:
// with no new entries there is no newer checkpoint to anchor to.) The
// replacement times live in memory only: after a restart the log knows
// only its current published checkpoint, so an anchor older than that is
// refused as stale and the agent retries with the checkpoint it reads now.
type freshness struct {
	window time.Duration
	now    func() time.Time

	mu         sync.Mutex
	current    tlog.Checkpoint             // the latest published checkpoint
	have       bool                        // current is set
	superseded map[uint64]supersededAnchor // older published sizes, within the window
}

type supersededAnchor struct {
	root tlog.Hash
	at   time.Time // when a newer checkpoint was published
}

func parseSigned(signed []byte) (tlog.Checkpoint, error) {
	i := bytes.Index(signed, []byte("\n\n"))
	if i < 0 {
		return tlog.Checkpoint{}, fmt.Errorf("checkpoint is not a signed note")
	}
	return tlog.ParseCheckpoint(signed[:i+1])
}

// observe records that c is published now.
func (f *freshness) observe(c tlog.Checkpoint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.have && c.Size <= f.current.Size {
		return
	}
	now := f.now()
	if f.have {
		f.superseded[f.current.Size] = supersededAnchor{root: f.current.Root, at: now}
	}
	f.current, f.have = c, true
	for size, a := range f.superseded {
		if now.Sub(a.at) > f.window {
			delete(f.superseded, size)
		}
	}
}

// errNotTracked: the anchor's size is not a published checkpoint the
// tracker knows; the caller asks the engine what it is.
var errNotTracked = errors.New("anchor not tracked")

// check decides whether a is a fresh anchor of this log, from the
// published checkpoints it knows.
func (f *freshness) check(a coproc.Anchor) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.have || a.Size > f.current.Size {
		return errNotTracked
	}
	if a.Size == f.current.Size {
		if a.Root != f.current.Root {
			return fmt.Errorf("%w: root of size %d differs from this log's", ErrUnknownAnchor, a.Size)
		}
		return nil
	}
	old, ok := f.superseded[a.Size]
	if !ok {
		return errNotTracked
	}
	if a.Root != old.root {
		return fmt.Errorf("%w: root of size %d differs from this log's", ErrUnknownAnchor, a.Size)
	}
	if age := f.now().Sub(old.at); age > f.window {
		return fmt.Errorf("%w: the checkpoint of size %d was replaced %s ago, more than %s; anchor to the current checkpoint", ErrStaleFreshness, a.Size, age.Round(time.Second), f.window)
	}
	return nil
}

// checkAnchor verifies a statement's freshness anchor: this log's origin,
// a tree that is not empty, and a checkpoint that is published and fresh.
// Known published
// checkpoints are checked from memory; for others the engine says whether
// it signed that checkpoint (stale-freshness) or not (unknown-anchor).
func (s *Service) checkAnchor(ctx context.Context, a coproc.Anchor) error {
	if a.Origin != s.origin {
		return fmt.Errorf("%w: origin %q, this log is %q", ErrUnknownAnchor, a.Origin, s.origin)
	}
	if a.Size == 0 {
		return fmt.Errorf("%w: anyone can name it in advance; anchor to a published checkpoint of size 1 or more", ErrEmptyAnchor)
	}
	err := s.fresh.check(a)
	if !errors.Is(err, errNotTracked) {
		return err
	}
	// The tracker may lag the publisher by a moment: catch up and retry.
	if latest, err := s.cfg.Publisher.Latest(ctx); err == nil {
		if c, err := parseSigned(latest); err == nil {
			s.fresh.observe(c)
		}
	}
	if err = s.fresh.check(a); !errors.Is(err, errNotTracked) {
		return err
	}
	signed, err := s.cfg.Engine.CheckpointAt(ctx, a.Size)
	if errors.Is(err, engine.ErrNotFound) {
		return fmt.Errorf("%w: this log signed no checkpoint of size %d", ErrUnknownAnchor, a.Size)
	}
	if err != nil {
		return err
	}
	cp, err := parseSigned(signed)
	if err != nil {
		return fmt.Errorf("engine checkpoint %d: %w", a.Size, err)
	}
	if cp.Root != a.Root {
		return fmt.Errorf("%w: root of size %d differs from this log's", ErrUnknownAnchor, a.Size)
	}
	s.fresh.mu.Lock()
	current := s.fresh.current.Size
	s.fresh.mu.Unlock()
	if a.Size > current {
		return fmt.Errorf("%w: the checkpoint of size %d is signed but not published (latest published: %d)", ErrUnknownAnchor, a.Size, current)
	}
	return fmt.Errorf("%w: the checkpoint of size %d was not the published checkpoint within the last %s (latest: %d); anchor to the current checkpoint", ErrStaleFreshness, a.Size, s.cfg.FreshnessWindow, current)
}

// trackFreshness follows the publisher until ctx is done.
func (s *Service) trackFreshness(ctx context.Context) {
	var want uint64
	for {
		signed, err := s.cfg.Publisher.Wait(ctx, want)
		if err != nil {
			return
		}
		c, err := parseSigned(signed)
		if err != nil {
			s.log.Error("published checkpoint does not parse", "err", err)
			return
		}
		s.fresh.observe(c)
		want = c.Size + 1
	}
}
