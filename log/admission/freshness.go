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
// Window after a newer one replaced it. (Measuring from when it was first
// published instead would refuse every anchor of a quiet log after Window:
// with no new entries there is no newer checkpoint to anchor to.) The
// replacement times live in memory only: after a restart the log knows
// only its current published checkpoint, so an anchor older than that is
// refused as stale and the agent retries with the checkpoint it reads now.
type freshness struct {
	window time.Duration
	now    func() time.Time

	mu         sync.Mutex
	current    uint64               // size of the latest published checkpoint
	have       bool                 // current is set
	superseded map[uint64]time.Time // older published sizes → when replaced
}

func parseSigned(signed []byte) (tlog.Checkpoint, error) {
	i := bytes.Index(signed, []byte("\n\n"))
	if i < 0 {
		return tlog.Checkpoint{}, fmt.Errorf("checkpoint is not a signed note")
	}
	return tlog.ParseCheckpoint(signed[:i+1])
}

// observe records that the checkpoint of size is published now.
func (f *freshness) observe(size uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.have && size <= f.current {
		return
	}
	now := f.now()
	if f.have {
		f.superseded[f.current] = now
	}
	f.current, f.have = size, true
	for s, t := range f.superseded {
		if now.Sub(t) > f.window {
			delete(f.superseded, s)
		}
	}
}

// check decides whether size is a fresh anchor. published reports whether
// size was ever published (it is at most the current size).
func (f *freshness) check(size uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case !f.have || size > f.current:
		return fmt.Errorf("%w: size %d has not been published", ErrUnknownAnchor, size)
	case size == f.current:
		return nil
	}
	t, ok := f.superseded[size]
	if !ok {
		return fmt.Errorf("%w: the checkpoint of size %d was not the published checkpoint within the last %s (latest: %d); anchor to the current checkpoint", ErrStaleFreshness, size, f.window, f.current)
	}
	if age := f.now().Sub(t); age > f.window {
		return fmt.Errorf("%w: the checkpoint of size %d was replaced %s ago, more than %s; anchor to the current checkpoint", ErrStaleFreshness, size, age.Round(time.Second), f.window)
	}
	return nil
}

// checkAnchor verifies a statement's freshness anchor: this log's origin, a
// checkpoint the engine signed at that size with that root, and fresh.
func (s *Service) checkAnchor(ctx context.Context, a coproc.Anchor) error {
	if a.Origin != s.origin {
		return fmt.Errorf("%w: origin %q, this log is %q", ErrUnknownAnchor, a.Origin, s.origin)
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
	// The tracker may lag the publisher by a moment: catch up first.
	if latest, err := s.cfg.Publisher.Latest(ctx); err == nil {
		if c, err := parseSigned(latest); err == nil {
			s.fresh.observe(c.Size)
		}
	}
	return s.fresh.check(a.Size)
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
		s.fresh.observe(c.Size)
		want = c.Size + 1
	}
}
