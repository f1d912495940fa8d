package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	tclient "github.com/transparency-dev/tessera/client"
	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/internal/atomicfile"
	"github.com/vmledger/vmledger/log/tlog"
)

// Expectation is what a monitor expects of every attestation of one VM.
type Expectation struct {
	// Root is the configuration root the VM must attest.
	Root measure.Digest
	// Keys, if not empty, are the co-processor key ids allowed to attest the
	// VM; otherwise any co-processor of the trust file may.
	Keys []string
}

// Alert kinds.
const (
	AlertCheckpoint       = "checkpoint"        // a checkpoint fails the log signature or witness policy
	AlertInconsistent     = "inconsistent"      // the log's entries do not hash to its checkpoint: a fork or a rewrite
	AlertUnexpectedConfig = "unexpected-config" // a watched VM attested another configuration root
	AlertUnexpectedKey    = "unexpected-key"    // a watched VM attested by a key that may not attest it
	AlertBadSignature     = "bad-signature"     // a watched VM's attestation does not verify
)

// Alert is one thing a monitor reports.
type Alert struct {
	Kind   string    `json:"kind"`
	VMID   string    `json:"vm_id,omitempty"`
	Index  uint64    `json:"index"`
	Detail string    `json:"detail"`
	Time   time.Time `json:"time"`
}

// Monitor follows a log: each Step fetches the log's checkpoint, verifies it
// against the trust file's log key and witness policy, downloads every new
// entry, checks that the entries hash to the checkpoint's root (which also
// proves the new checkpoint consistent with the previous one), and reports
// every attestation of a watched VM that is not what its owner expects.
//
// Its state (the last verified checkpoint, the next index and the compact
// range of the tree so far) is saved atomically after each step, so a
// restarted monitor resumes where it stopped and never re-trusts a rewritten
// history. When the log presents a checkpoint that does not extend the one
// verified before, the monitor reports it, does not advance, and keeps both
// signed checkpoints as evidence in its state file (Evidence), as the State
// of Verify does.
type Monitor struct {
	trust   *Trust
	watch   map[string]Expectation
	fetcher *tclient.HTTPFetcher
	path    string
	st      monitorState
	now     func() time.Time
}

type monitorState struct {
	Version    int      `json:"version"`
	Checkpoint string   `json:"checkpoint,omitempty"` // last verified signed checkpoint
	Next       uint64   `json:"next"`                 // first index not yet examined
	Range      [][]byte `json:"range"`                // compact range [0, Next)
	// Evidence: pairs of the last verified signed checkpoint and a signed
	// checkpoint the log then presented that does not extend it, as the
	// consistency State of Verify keeps them.
	Evidence []Evidence `json:"evidence,omitempty"`
}

// NewMonitor returns a monitor of the log at logURL (its tlog-tiles base
// URL) that keeps its state in statePath.
func NewMonitor(logURL string, trust *Trust, watch map[string]Expectation, statePath string, hc *http.Client) (*Monitor, error) {
	u, err := url.Parse(logURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("log URL %q: want http(s)://host[:port][/prefix]", logURL)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	f, err := tclient.NewHTTPFetcher(u, hc)
	if err != nil {
		return nil, err
	}
	m := &Monitor{trust: trust, watch: watch, fetcher: f, path: statePath, st: monitorState{Version: 1}, now: time.Now}
	b, err := os.ReadFile(statePath)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, &m.st); err != nil || m.st.Version != 1 {
			return nil, fmt.Errorf("monitor state %s: unreadable (%v); move it away to start over", statePath, err)
		}
	}
	return m, nil
}

// Next returns the index of the first entry not yet examined.
func (m *Monitor) Next() uint64 { return m.st.Next }

// Evidence returns the pairs of signed checkpoints kept because the log
// presented one that does not extend the one the monitor verified before.
func (m *Monitor) Evidence() []Evidence { return slices.Clone(m.st.Evidence) }

// Step runs one round. It returns the alerts found; an error means the
// round could not complete (the log unreachable, say) and will be retried
// by the next Step from the same state.
func (m *Monitor) Step(ctx context.Context) ([]Alert, error) {
	raw, err := m.fetcher.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetching checkpoint: %w", err)
	}
	v, err := m.trust.Policy.Verify(raw)
	if err != nil {
		return []Alert{m.alert(AlertCheckpoint, "", m.st.Next, "log checkpoint refused: "+err.Error())}, nil
	}
	cp, err := tlog.ParseCheckpoint([]byte(v.Text))
	if err != nil {
		return []Alert{m.alert(AlertCheckpoint, "", m.st.Next, "log checkpoint malformed: "+err.Error())}, nil
	}
	if cp.Size < m.st.Next {
		detail, err := m.inconsistent(cp.Origin, raw, fmt.Sprintf("the log's checkpoint has size %d, smaller than the %d entries already verified", cp.Size, m.st.Next))
		if err != nil {
			return nil, err
		}
		return []Alert{m.alert(AlertInconsistent, "", cp.Size, detail)}, nil
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	// A copy: Append reuses the slice it was given, and m.st.Range must stay
	// the verified range if this round ends in an alert (it is saved then).
	rng, err := rf.NewRange(0, m.st.Next, slices.Clone(m.st.Range))
	if err != nil {
		return nil, fmt.Errorf("monitor state: %w", err)
	}
	var alerts []Alert
	for i := m.st.Next; i < cp.Size; {
		bundle, err := tclient.GetEntryBundle(ctx, m.fetcher.ReadEntryBundle, i/256, cp.Size)
		if err != nil {
			return nil, fmt.Errorf("fetching entries at %d: %w", i, err)
		}
		for j := i % 256; j < uint64(len(bundle.Entries)) && i < cp.Size; j++ {
			e := bundle.Entries[j]
			if err := rng.Append(rfc6962.DefaultHasher.HashLeaf(e), nil); err != nil {
				return nil, err
			}
			alerts = append(alerts, m.examine(i, e)...)
			i++
		}
		if i%256 != 0 && i < cp.Size {
			return nil, fmt.Errorf("entry bundle %d is short", i/256)
		}
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	if tlog.Hash(root) != cp.Root {
		// The entries do not hash to what the log signed: keep the old state,
		// report, and never advance past this.
		detail, err := m.inconsistent(cp.Origin, raw,
			fmt.Sprintf("entries 0..%d hash to %x, the log's signed checkpoint says %x: the log forked or rewrote its history", cp.Size, root, cp.Root[:]))
		if err != nil {
			return nil, err
		}
		return append(alerts[:0], m.alert(AlertInconsistent, "", cp.Size, detail)), nil
	}
	m.st.Checkpoint, m.st.Next, m.st.Range = string(raw), cp.Size, rng.Hashes()
	if err := m.save(); err != nil {
		return nil, err
	}
	return alerts, nil
}

// inconsistent keeps the last verified signed checkpoint and the presented
// one as evidence (once per pair), saves the state without advancing it, and
// returns the alert's detail. Before any checkpoint was verified there is no
// pair to keep: reason is all there is.
func (m *Monitor) inconsistent(origin string, presented []byte, reason string) (string, error) {
	if m.st.Checkpoint == "" {
		return reason, nil
	}
	ev := Evidence{Origin: origin, Trusted: m.st.Checkpoint, Presented: string(presented), Reason: reason, Time: m.now().UTC()}
	if !slices.ContainsFunc(m.st.Evidence, func(e Evidence) bool { return e.Trusted == ev.Trusted && e.Presented == ev.Presented }) {
		m.st.Evidence = append(m.st.Evidence, ev)
		if err := m.save(); err != nil {
			m.st.Evidence = m.st.Evidence[:len(m.st.Evidence)-1]
			return "", fmt.Errorf("saving evidence (%s): %w", reason, err)
		}
	}
	return reason + "; both signed checkpoints are kept as evidence in " + m.path, nil
}

func (m *Monitor) save() error {
	b, err := json.Marshal(m.st)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(m.path, b, 0o600); err != nil {
		return fmt.Errorf("saving monitor state: %w", err)
	}
	return nil
}

// examine reports what is wrong with entry i, if it attests a watched VM.
// Entries that are not attestations, or attest unwatched VMs, are ignored.
func (m *Monitor) examine(i uint64, entry []byte) []Alert {
	env, err := coproc.ParseEnvelope(entry)
	if err != nil || len(env.Signatures) != 1 {
		return nil
	}
	st, err := env.Statement()
	if err != nil {
		return nil
	}
	vm := st.VMID()
	exp, watched := m.watch[vm]
	if !watched {
		return nil
	}
	var alerts []Alert
	keyID := env.Signatures[0].KeyID
	k, trusted := m.trust.Coprocessors[keyID]
	switch {
	case !trusted:
		alerts = append(alerts, m.alert(AlertUnexpectedKey, vm, i, "attested by key "+keyID+", which is not in the trust file"))
	case len(exp.Keys) > 0 && !slices.Contains(exp.Keys, keyID):
		alerts = append(alerts, m.alert(AlertUnexpectedKey, vm, i, "attested by co-processor "+k.Name+", which may not attest this VM"))
	default:
		if err := coproc.Verify(env, k.Public); err != nil {
			alerts = append(alerts, m.alert(AlertBadSignature, vm, i, err.Error()))
		}
	}
	if root := measure.Digest(st.ConfigRoot()); root != exp.Root {
		alerts = append(alerts, m.alert(AlertUnexpectedConfig, vm, i, fmt.Sprintf("attested config root %v, expected %v", root, exp.Root)))
	}
	return alerts
}

func (m *Monitor) alert(kind, vm string, index uint64, detail string) Alert {
	return Alert{Kind: kind, VMID: vm, Index: index, Detail: detail, Time: m.now().UTC()}
}
