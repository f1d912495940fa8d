package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
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
	// Root is the configuration root the VM must attest, when Roots is
	// empty.
	Root measure.Digest
	// Roots, if not empty, are the roots the VM must attest by
	// configuration schema (coproc.ConfigSchema, ConfigSchemaV2): an
	// attestation is compared with the root of the schema it names, and
	// one of a schema not listed is unexpected.
	Roots map[string]measure.Digest
	// Keys, if not empty, are the co-processor key ids allowed to attest the
	// VM; otherwise any co-processor of the trust file may.
	Keys []string
	// Within, if not zero, is how long the VM may go without an attestation
	// as expected in the log: counted from when the monitor began watching
	// it and from each such attestation (its statement time, or when the
	// monitor saw it if that is earlier). Past it the monitor reports
	// AlertMissing, again every Within while it lasts: the VM may have been
	// started without the agent, which leaves no record at all.
	Within time.Duration
	// Manifest, if set, is the expected configuration's manifest (its
	// values and salts, computed from the configuration and VM secret;
	// its root is Root). With it, an alert for another root names what
	// can be named: the parameters whose values differ, when one of
	// Attested is the attested configuration's manifest, and otherwise
	// the parameter names the statement lists that the expected tree does
	// not have (or the reverse). A log entry holds the root and the
	// parameter names, never the values: without the attested manifest
	// the alert says so.
	Manifest *measure.Measurement
	// Manifests, if not empty, are the expected manifests by configuration
	// schema, as Roots are the roots: an alert names differences with the
	// manifest of the schema the attestation names (Manifest is not used).
	Manifests map[string]*measure.Measurement
	// Attested are manifests of attestations of this VM that its provider
	// handed over (the agent keeps one per VM in its store): when an
	// attested root is one of theirs, the alert names each parameter that
	// differs with the expected and the attested value.
	Attested []*measure.Measurement
}

// Alert kinds.
const (
	AlertCheckpoint       = "checkpoint"        // a checkpoint fails the log signature or witness policy
	AlertInconsistent     = "inconsistent"      // the log's entries do not hash to its checkpoint: a fork or a rewrite
	AlertUnexpectedConfig = "unexpected-config" // a watched VM attested another configuration root
	AlertUnexpectedKey    = "unexpected-key"    // a watched VM attested by a key that may not attest it
	AlertBadSignature     = "bad-signature"     // a watched VM's attestation does not verify
	AlertRevokedKey       = "revoked-key"       // a key that attested a watched VM is revoked, or a revoked key attested it
	AlertMissing          = "missing"           // no attestation of a watched VM within its Expectation.Within
)

// RoundReport is what one round of a monitor examined.
type RoundReport struct {
	// Origin and TreeSize are the verified checkpoint's (zero if the round
	// ended before one was verified).
	Origin   string
	TreeSize uint64
	// From and To: the entries [From, To) were checked in this round.
	From, To uint64
	// Attestations is the number of attestations of watched VMs among them,
	// and VMs the watched VMs they attest, sorted.
	Attestations int
	VMs          []string
	// Watched is the number of VMs watched.
	Watched int
	// Alerts are what is not as expected; none means all was.
	Alerts []Alert
}

// String is the round's one-line summary, for a person.
func (r *RoundReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "round: log %s size %d: ", r.Origin, r.TreeSize)
	if r.To > r.From {
		fmt.Fprintf(&b, "checked entries %d..%d (%d new)", r.From, r.To-1, r.To-r.From)
	} else {
		b.WriteString("no new entries")
	}
	fmt.Fprintf(&b, ", %d attestation(s) of %d of %d watched VM(s)", r.Attestations, len(r.VMs), r.Watched)
	if len(r.VMs) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(r.VMs, ", "))
	}
	if len(r.Alerts) == 0 {
		b.WriteString(": all as expected")
	} else {
		fmt.Fprintf(&b, ": %d alert(s)", len(r.Alerts))
	}
	return b.String()
}

// Alert is one thing a monitor reports.
type Alert struct {
	Kind   string    `json:"kind"`
	VMID   string    `json:"vm_id,omitempty"`
	Index  uint64    `json:"index"`
	Detail string    `json:"detail"`
	Time   time.Time `json:"time"`
	// Differences are the parameters whose attested value is not the
	// expected one, for an unexpected-config alert whose attested values
	// were at hand (Expectation.Attested).
	Differences []ParameterDiff `json:"differences,omitempty"`
}

// Monitor follows a log: each Step fetches the log's checkpoint, verifies it
// against the trust file's log key and witness policy, downloads every new
// entry, checks that the entries hash to the checkpoint's root (which also
// proves the new checkpoint consistent with the previous one), and reports
// every attestation of a watched VM that is not what its owner expects. It
// also reports the revocation of a key that attested a watched VM (and an
// attestation by a revoked key), and a watched VM with a window
// (Expectation.Within) that has no attestation as expected in the log for
// longer than that. Round says what each round checked.
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
	// Attesters: per watched VM, the co-processor keys whose verified
	// attestations of it the log holds, with the index of the last one.
	Attesters map[string]map[string]uint64 `json:"attesters,omitempty"`
	// Revoked: the key ids the log revoked, with the revocation's index.
	Revoked map[string]uint64 `json:"revoked,omitempty"`
	// Seen: per watched VM with a window, when it last attested as
	// expected (or when watching began); Missing: when it was last
	// reported missing.
	Seen    map[string]time.Time `json:"seen,omitempty"`
	Missing map[string]time.Time `json:"missing,omitempty"`
}

// clone returns a copy whose maps a round may change without touching s.
func (s monitorState) clone() monitorState {
	c := s
	c.Attesters = make(map[string]map[string]uint64, len(s.Attesters))
	for vm, keys := range s.Attesters {
		c.Attesters[vm] = maps.Clone(keys)
	}
	c.Revoked = cloneOrNew(s.Revoked)
	c.Seen = cloneOrNew(s.Seen)
	c.Missing = cloneOrNew(s.Missing)
	return c
}

func cloneOrNew[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return maps.Clone(m)
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
	r, err := m.Round(ctx)
	if err != nil {
		return nil, err
	}
	return r.Alerts, nil
}

// Round is Step with the round's report: what was checked, and the alerts.
func (m *Monitor) Round(ctx context.Context) (*RoundReport, error) {
	rep := &RoundReport{From: m.st.Next, To: m.st.Next, Watched: len(m.watch)}
	alerts, err := m.round(ctx, rep)
	if err != nil {
		return nil, err
	}
	rep.Alerts = alerts
	return rep, nil
}

func (m *Monitor) round(ctx context.Context, rep *RoundReport) ([]Alert, error) {
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
	rep.Origin, rep.TreeSize = cp.Origin, cp.Size
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
	// The round's view of what the entries say; kept only if they hash to
	// the checkpoint.
	next := m.st.clone()
	now := m.now().UTC()
	seen := map[string]bool{}
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
			a, vm := m.examine(&next, i, e, now)
			alerts = append(alerts, a...)
			if vm != "" {
				rep.Attestations++
				seen[vm] = true
			}
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
	alerts = append(alerts, m.missing(&next, cp.Size, now)...)
	next.Checkpoint, next.Next, next.Range = string(raw), cp.Size, rng.Hashes()
	prev := m.st
	m.st = next
	if err := m.save(); err != nil {
		m.st = prev
		return nil, err
	}
	rep.To = cp.Size
	rep.VMs = slices.Sorted(maps.Keys(seen))
	return alerts, nil
}

// missing reports each watched VM with a window that has gone without an
// attestation as expected for longer than it, at most once per window.
func (m *Monitor) missing(st *monitorState, size uint64, now time.Time) []Alert {
	var alerts []Alert
	for _, vm := range slices.Sorted(maps.Keys(m.watch)) {
		within := m.watch[vm].Within
		if within <= 0 {
			continue
		}
		last, ok := st.Seen[vm]
		if !ok {
			st.Seen[vm] = now // watching begins
			continue
		}
		if now.Sub(last) <= within {
			continue
		}
		if told, ok := st.Missing[vm]; ok && told.After(last) && now.Sub(told) < within {
			continue
		}
		st.Missing[vm] = now
		alerts = append(alerts, Alert{Kind: AlertMissing, VMID: vm, Index: size, Time: now,
			Detail: fmt.Sprintf("no attestation as expected in the log (size %d) since %s, longer than its window of %s: was the VM started without the agent?", size, last.Format(time.RFC3339), within)})
	}
	return alerts
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

// examine reports what is wrong with entry i, if it attests a watched VM
// (and then returns the VM), or if it revokes a key that attested one.
// Other entries are ignored. It records in st the keys that attested
// watched VMs, the revoked keys, and when each VM attested as expected.
func (m *Monitor) examine(st *monitorState, i uint64, entry []byte, now time.Time) ([]Alert, string) {
	if keyID, ok := parseRevocation(entry); ok {
		if _, dup := st.Revoked[keyID]; !dup {
			st.Revoked[keyID] = i
		}
		var alerts []Alert
		for _, vm := range slices.Sorted(maps.Keys(st.Attesters)) {
			if last, ok := st.Attesters[vm][keyID]; ok {
				alerts = append(alerts, m.alert(AlertRevokedKey, vm, i, fmt.Sprintf("co-processor %s, which attested this VM (last at index %d), was revoked: re-attest the VM on a host whose key is trusted", m.keyName(keyID), last)))
			}
		}
		return alerts, ""
	}
	env, err := coproc.ParseEnvelope(entry)
	if err != nil || len(env.Signatures) != 1 {
		return nil, ""
	}
	stmt, err := env.Statement()
	if err != nil {
		return nil, ""
	}
	vm := stmt.VMID()
	exp, watched := m.watch[vm]
	if !watched {
		return nil, ""
	}
	var alerts []Alert
	keyID := env.Signatures[0].KeyID
	k, trusted := m.trust.Coprocessors[keyID]
	signed := false
	switch {
	case !trusted:
		alerts = append(alerts, m.alert(AlertUnexpectedKey, vm, i, "attested by key "+keyID+", which is not in the trust file"))
	default:
		if err := coproc.Verify(env, k.Public); err != nil {
			alerts = append(alerts, m.alert(AlertBadSignature, vm, i, err.Error()))
			break
		}
		signed = true
		if len(exp.Keys) > 0 && !slices.Contains(exp.Keys, keyID) {
			alerts = append(alerts, m.alert(AlertUnexpectedKey, vm, i, "attested by co-processor "+k.Name+", which may not attest this VM"))
		}
	}
	if signed {
		if st.Attesters[vm] == nil {
			st.Attesters[vm] = map[string]uint64{}
		}
		st.Attesters[vm][keyID] = i
		if r, ok := st.Revoked[keyID]; ok {
			alerts = append(alerts, m.alert(AlertRevokedKey, vm, i, fmt.Sprintf("attested by co-processor %s, which the log revoked at index %d", m.keyName(keyID), r)))
		}
	}
	schema := stmt.Predicate.ConfigSchema
	want, known := exp.Root, true
	if len(exp.Roots) > 0 {
		want, known = exp.Roots[schema]
	}
	if root := measure.Digest(stmt.ConfigRoot()); !known {
		alerts = append(alerts, m.alert(AlertUnexpectedConfig, vm, i, fmt.Sprintf("attested config root %v under schema %s, for which no root is expected", root, schema)))
	} else if root != want {
		why, diffs := explainRoot(exp.forSchema(schema), stmt, root, i)
		a := m.alert(AlertUnexpectedConfig, vm, i, fmt.Sprintf("attested config root %v, expected %v (%s); %s", root, want, schema, why))
		a.Differences = diffs
		alerts = append(alerts, a)
	}
	if len(alerts) == 0 {
		// As expected: the VM's window starts again, from the statement's
		// time unless the monitor saw it earlier than that.
		at := now
		if t := stmt.Time(); !t.IsZero() && t.Before(now) {
			at = t.UTC()
		}
		if last, ok := st.Seen[vm]; !ok || at.After(last) {
			st.Seen[vm] = at
		}
	}
	return alerts, vm
}

// explainRoot says what differs between the expected configuration and the
// attestation at index i of another root, as far as it can be told: the
// statement holds the root and the parameter names, not the values.
// forSchema is exp with Manifest the expected manifest of schema, and
// Attested only the manifests of that schema.
func (exp Expectation) forSchema(schema string) Expectation {
	if len(exp.Manifests) > 0 {
		exp.Manifest = exp.Manifests[schema]
	}
	var att []*measure.Measurement
	for _, a := range exp.Attested {
		if a != nil && a.Schema == schema {
			att = append(att, a)
		}
	}
	exp.Attested = att
	return exp
}

func explainRoot(exp Expectation, stmt *coproc.Statement, root measure.Digest, i uint64) (string, []ParameterDiff) {
	ask := fmt.Sprintf("the log holds the attested root and parameter names, not the values: to name the parameters that differ, get the provider's manifest of entry %d (add it to the VM's \"manifests\" in the watch file, or run vmledger verify --manifest)", i)
	if exp.Manifest == nil {
		return ask, nil
	}
	for _, a := range exp.Attested {
		if a != nil && a.Root == root && a.Check() == nil {
			diffs, why := explainMismatch(exp.Manifest, root, &Expected{Manifest: a})
			for _, d := range diffs {
				why += fmt.Sprintf("; %s: expected %s, attested %s", d.Name, d.Expected, d.Attested)
			}
			return why, diffs
		}
	}
	want := make(map[string]bool, len(exp.Manifest.Leaves))
	for _, l := range exp.Manifest.Leaves {
		want[l.Name] = true
	}
	var extra, missing []string
	for _, n := range stmt.Predicate.Parameters {
		if !want[n] {
			extra = append(extra, n)
		}
		delete(want, n)
	}
	missing = slices.Sorted(maps.Keys(want))
	var named []string
	if len(extra) > 0 {
		named = append(named, "attested parameters the expected configuration does not have: "+strings.Join(extra, ", "))
	}
	if len(missing) > 0 {
		named = append(named, "expected parameters the attestation does not list: "+strings.Join(missing, ", "))
	}
	if len(named) == 0 {
		named = append(named, "the same parameter names as expected, so some value (or the VM secret) differs")
	}
	return strings.Join(named, "; ") + "; " + ask, nil
}

// keyName is the trust file's name of a co-processor key, or its id.
func (m *Monitor) keyName(keyID string) string {
	if k, ok := m.trust.Coprocessors[keyID]; ok && k.Name != "" {
		return k.Name + " (" + keyID + ")"
	}
	return keyID
}

// enrolmentType is the _type of the log's enrolment records (package
// log/admission, Record): {"_type": …, "action": "enrol"|"revoke",
// "keyid": …, …}, canonical JSON with _type first.
const enrolmentType = "https://vmledger.dev/log/enrolment/v1"

// parseRevocation returns the key id of a revocation record.
func parseRevocation(entry []byte) (string, bool) {
	if !bytes.HasPrefix(entry, []byte(`{"_type":"`+enrolmentType+`"`)) {
		return "", false
	}
	var r struct {
		Action string `json:"action"`
		KeyID  string `json:"keyid"`
	}
	if json.Unmarshal(entry, &r) != nil || r.Action != "revoke" || r.KeyID == "" {
		return "", false
	}
	return r.KeyID, true
}

func (m *Monitor) alert(kind, vm string, index uint64, detail string) Alert {
	return Alert{Kind: kind, VMID: vm, Index: index, Detail: detail, Time: m.now().UTC()}
}
