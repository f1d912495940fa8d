package admission

import (
	"bytes"
	"crypto/sha256"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/vmledger/vmledger/coproc"
)

// forge returns a canonical envelope that claims to be dv's, with counter,
// but is signed by another key.
func (dv *device) forge(t testing.TB, vm string, counter uint64, a coproc.Anchor) []byte {
	t.Helper()
	st, err := coproc.NewStatement(coproc.Claim{VMID: vm, Root: rootOf(vm), Parameters: testParams, Freshness: a},
		coproc.CoprocessorState{KeyID: dv.id, Counter: counter}, time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := st.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := newDevice(t, true).sign(coproc.PAE(coproc.PayloadType, payload))
	if err != nil {
		t.Fatal(err)
	}
	env := &coproc.Envelope{PayloadType: coproc.PayloadType, Payload: payload, Signatures: []coproc.Signature{{KeyID: dv.id, Sig: sig}}}
	b, err := env.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestIndexTakesNoStateFromUncheckedEntries appends attestations to the
// log behind admission's back (as a raw-entry endpoint of an older version
// did): one forged with the counter 2^53-1, one by a key enrolled only
// later, one by a key never enrolled. Whether the index reads them while
// running or rebuilds from the log, none of them is an attestation: the
// key's counter floor stays, its next real attestation is admitted, and
// search does not list them.
func TestIndexTakesNoStateFromUncheckedEntries(t *testing.T) {
	d := newDeployment(t, nil)
	victim, late, stranger := newDevice(t, true), newDevice(t, false), newDevice(t, true)
	d.enrol(victim, "victim")
	a := d.anchor()
	d.admit(victim.attest(t, "vm-real", rootOf("real"), 1, a))
	for _, e := range [][]byte{
		victim.forge(t, "vm-forged", 1<<53-1, a),
		late.attest(t, "vm-early", rootOf("early"), 1<<53-1, a),
		stranger.attest(t, "vm-stranger", rootOf("stranger"), 5, a),
	} {
		if _, err := d.eng.Add(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	d.enrol(late, "late")

	counter, lateCounter := uint64(1), uint64(0)
	check := func(t *testing.T) {
		if err := d.svc.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		for _, k := range d.svc.Keys() {
			if k.KeyID == victim.id && k.Counter != counter {
				t.Errorf("victim's counter = %d, want %d", k.Counter, counter)
			}
			if k.KeyID == late.id && k.Counter != lateCounter {
				t.Errorf("counter of the key enrolled after its earlier attestation = %d, want %d", k.Counter, lateCounter)
			}
		}
		for _, vm := range []string{"vm-forged", "vm-early", "vm-stranger"} {
			if r := d.get("/v1/vms/" + vm + "/attestations"); r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`"attestations":[]`)) {
				t.Errorf("GET /v1/vms/%s/attestations = %d %s, want none", vm, r.status, r.body)
			}
		}
		counter++
		lateCounter = counter
		for _, env := range [][]byte{
			victim.attest(t, "vm-real", rootOf("real"), counter, d.anchor()),
			late.attest(t, "vm-late", rootOf("late"), counter, d.anchor()),
		} {
			if r := d.post(env, ""); r.status != http.StatusAccepted {
				t.Errorf("the key's next real attestation (counter %d) = %d %s, want 202", counter, r.status, r.body)
			}
		}
	}
	t.Run("running", check)
	d.restart()
	t.Run("restarted", check)
	d.stop()
	if err := os.RemoveAll(d.indexDir); err != nil {
		t.Fatal(err)
	}
	d.start()
	t.Run("rebuilt", check)
}

// TestEmptyAnchor: a statement anchored to the log's empty tree proves
// nothing about when it was made (anyone can write that anchor in
// advance), so admission refuses it even while the empty checkpoint is
// fresh, and appends nothing.
func TestEmptyAnchor(t *testing.T) {
	d := newDeployment(t, nil)
	dv := newDevice(t, true)
	empty := d.anchor()
	if empty.Size != 0 {
		t.Fatalf("a new log's published checkpoint has size %d", empty.Size)
	}
	d.enrol(dv, "dv")
	before := d.size()
	if r := d.post(dv.attest(t, "vm-1", rootOf("1"), 1, empty), ""); r.status != http.StatusConflict || r.reason(t) != "empty-anchor" {
		t.Errorf("POST with an anchor of the empty tree = %d %s, want 409 empty-anchor", r.status, r.body)
	}
	// Another log's empty tree is refused for its origin first.
	otherEmpty := empty
	otherEmpty.Origin = "other.example/log"
	if r := d.post(dv.attest(t, "vm-1", rootOf("1"), 1, otherEmpty), ""); r.status != http.StatusConflict || r.reason(t) != "unknown-anchor" {
		t.Errorf("POST with another log's empty tree = %d %s, want 409 unknown-anchor", r.status, r.body)
	}
	if d.size() != before {
		t.Errorf("log size %d → %d after the refusal", before, d.size())
	}
	// The counter was not taken, and the published enrolment is an anchor.
	d.admit(dv.attest(t, "vm-1", rootOf("1"), 1, d.anchor()))
}

// TestFrontEndsUncheckedEntries: front-ends that share one Tessera log
// read each other's entries from the log. A forged envelope appended there
// behind admission's back raises no front-end's counter floor, and every
// front-end refuses an anchor of the empty tree.
func TestFrontEndsUncheckedEntries(t *testing.T) {
	fes := newFrontEnds(t, 2, true)
	dv, a := setUp(t, fes)
	if r := fes[0].post(dv.attest(t, "web-01", rootOf("web-01"), 1, a)); r.status != http.StatusAccepted {
		t.Fatalf("POST at A = %d %s, want 202", r.status, r.body)
	}
	if _, err := fes[0].eng.Add(t.Context(), dv.forge(t, "web-forged", 1<<53-1, a)); err != nil {
		t.Fatal(err)
	}
	empty := coproc.Anchor{Origin: a.Origin, Root: sha256.Sum256(nil)}
	for i, fe := range fes {
		fe.sync()
		if r := fe.post(dv.attest(t, "web-01", rootOf("web-01"), uint64(2+i), a)); r.status != http.StatusAccepted {
			t.Errorf("front-end %d: the key's next attestation after a forged one = %d %s, want 202", i, r.status, r.body)
		}
		if r := fe.post(dv.attest(t, "web-01", rootOf("web-01"), uint64(10+i), empty)); r.status != http.StatusConflict || r.reason(t) != "empty-anchor" {
			t.Errorf("front-end %d: anchor of the empty tree = %d %s, want 409 empty-anchor", i, r.status, r.body)
		}
		other := a
		other.Origin = "other.example/log"
		if r := fe.post(dv.attest(t, "web-01", rootOf("web-01"), uint64(20+i), other)); r.status != http.StatusConflict || r.reason(t) != "unknown-anchor" {
			t.Errorf("front-end %d: this log's checkpoint under another origin = %d %s, want 409 unknown-anchor", i, r.status, r.body)
		}
	}
}
