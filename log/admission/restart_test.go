package admission

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestRestart closes and reopens the engine and the service on the same
// directories: the counter floor and the enrolment state are enforced from
// what the log recorded, entries appended while the index was behind are
// indexed, and a deleted index is rebuilt with the same answers.
func TestRestart(t *testing.T) {
	d := newDeployment(t, nil)
	kept, gone := newDevice(t, true), newDevice(t, false)
	d.enrol(kept, "kept")
	d.enrol(gone, "gone")
	a := d.anchor()
	beforeRestart := a
	d.admit(kept.attest(t, "vm-1", rootOf("1"), 5, a))
	d.admit(gone.attest(t, "vm-2", rootOf("2"), 1, a))
	if _, err := d.client().Revoke(t.Context(), gone.id); err != nil {
		t.Fatal(err)
	}
	// A crash between the append and the index update: the entry is in the
	// log, the index never saw it.
	d.svc.Close()
	crashed := kept.attest(t, "vm-1", rootOf("3"), 7, a)
	if _, err := d.eng.Add(t.Context(), crashed); err != nil {
		t.Fatal(err)
	}

	snapshot := func() map[string][]byte {
		out := map[string][]byte{}
		for _, p := range []string{"/v1/vms/vm-1/attestations", "/v1/vms/vm-2/attestations",
			"/v1/attestations?key=" + kept.id, "/v1/attestations?key=" + gone.id,
			"/v1/attestations?root=" + hexRoot("1"), "/v1/coprocessors"} {
			r := d.get(p)
			if r.status != http.StatusOK {
				t.Fatalf("GET %s = %d %s", p, r.status, r.body)
			}
			out[p] = r.body
		}
		return out
	}
	check := func(t *testing.T) {
		a := d.anchor()
		for _, tc := range []struct {
			name   string
			env    []byte
			status int
			reason string
		}{
			{"floor from before the crash", kept.attest(t, "vm-9", rootOf("9"), 6, a), 409, "replayed-counter"},
			{"floor from the admitted entry", kept.attest(t, "vm-9", rootOf("9"), 5, a), 409, "replayed-counter"},
			{"revoked", gone.attest(t, "vm-9", rootOf("9"), 2, a), 403, "revoked-key"},
			{"unknown", newDevice(t, true).attest(t, "vm-9", rootOf("9"), 1, a), 403, "unknown-key"},
			{"anchor from before the restart", kept.attest(t, "vm-9", rootOf("9"), 100, beforeRestart), 409, "stale-freshness"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := d.size()
				if r := d.post(tc.env, ""); r.status != tc.status || r.reason(t) != tc.reason {
					t.Errorf("POST = %d %s, want %d %s", r.status, r.body, tc.status, tc.reason)
				}
				if d.size() != before {
					t.Errorf("refusal changed the log size")
				}
			})
		}
		r := d.post(crashed, "")
		if r.status != http.StatusOK {
			t.Errorf("the crashed entry is not a duplicate after restart: %d %s", r.status, r.body)
		}
	}

	d.restart()
	t.Run("restarted", check)
	want := snapshot()
	if !bytes.Contains(want["/v1/vms/vm-1/attestations"], []byte(`"counter":7`)) {
		t.Errorf("the entry appended while the index was down is not indexed: %s", want["/v1/vms/vm-1/attestations"])
	}

	d.stop()
	if err := os.RemoveAll(d.indexDir); err != nil {
		t.Fatal(err)
	}
	d.start()
	t.Run("rebuilt", check)
	got := snapshot()
	for p := range want {
		if !bytes.Equal(got[p], want[p]) {
			t.Errorf("GET %s after rebuild:\n%s\nbefore:\n%s", p, got[p], want[p])
		}
	}

	// A new admission after all that continues above the floor.
	d.admit(kept.attest(t, "vm-1", rootOf("4"), 8, d.anchor()))
}

func hexRoot(s string) string {
	r := rootOf(s)
	const digits = "0123456789abcdef"
	b := make([]byte, 64)
	for i, c := range r {
		b[2*i], b[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(b)
}

// TestQuietLogAnchor: on a log that does not grow, the latest published
// checkpoint stays a valid anchor however old it is; once replaced, it
// stays valid for the window only.
func TestQuietLogAnchor(t *testing.T) {
	d := newDeployment(t, nil)
	dv := newDevice(t, false)
	d.enrol(dv, "dv")
	a := d.anchor()
	d.clock.Add(3 * time.Hour)
	d.admit(dv.attest(t, "vm-1", rootOf("1"), 1, a))
	d.anchor() // the admission's checkpoint is published: a is replaced now
	d.clock.Add(9 * time.Minute)
	d.admit(dv.attest(t, "vm-2", rootOf("2"), 2, a))
	d.clock.Add(2 * time.Minute)
	if r := d.post(dv.attest(t, "vm-3", rootOf("3"), 3, a), ""); r.status != 409 || r.reason(t) != "stale-freshness" {
		t.Errorf("anchor replaced 11 minutes ago: %d %s, want 409 stale-freshness", r.status, r.body)
	}
}

// TestRevokeWaitsForAdmissions holds an admission inside the append while
// the key is revoked: new admissions are refused at once, and the
// revocation is recorded after the admission in flight.
func TestRevokeWaitsForAdmissions(t *testing.T) {
	d := newDeployment(t, nil)
	dv := newDevice(t, true)
	d.enrol(dv, "dv")
	a := d.anchor()
	gate, entered := make(chan struct{}), make(chan struct{}, 1)
	d.gated.mu.Lock()
	d.gated.gate, d.gated.entered = gate, entered
	d.gated.mu.Unlock()
	admitted := make(chan reply)
	go func() { admitted <- d.post(dv.attest(t, "vm-1", rootOf("1"), 1, a), "") }()
	<-entered
	d.gated.mu.Lock()
	d.gated.gate = nil // the revocation's own append passes
	d.gated.mu.Unlock()
	revoked := make(chan Key)
	go func() {
		k, err := d.client().Revoke(t.Context(), dv.id)
		if err != nil {
			t.Error(err)
		}
		revoked <- k
	}()
	ks := d.svc.key(dv.id)
	for { // until the revocation has begun (a state, not a duration)
		ks.mu.Lock()
		started := ks.revoking
		ks.mu.Unlock()
		if started {
			break
		}
		runtime.Gosched()
	}
	if r := d.post(dv.attest(t, "vm-2", rootOf("2"), 2, a), ""); r.status != 403 || r.reason(t) != "revoked-key" {
		t.Errorf("admission during the revocation: %d %s, want 403 revoked-key", r.status, r.body)
	}
	close(gate)
	r := <-admitted
	k := <-revoked
	var got AdmitResponse
	r.json(t, &got)
	if r.status != 202 || k.RevokedIndex == nil || *k.RevokedIndex <= got.Index {
		t.Errorf("admission in flight = %d index %d, revocation at %v: want the revocation after it", r.status, got.Index, k.RevokedIndex)
	}
}

// TestDamagedIndexRebuilt: an index whose MANIFEST names a table that is
// gone, with its data in no memtable log (what a power cut can leave of an
// index that syncs lazily), is set aside and rebuilt from the log with the
// same answers, instead of keeping the log from starting.
func TestDamagedIndexRebuilt(t *testing.T) {
	d := newDeployment(t, nil)
	dv := newDevice(t, true)
	d.enrol(dv, "dv")
	d.admit(dv.attest(t, "vm-1", rootOf("1"), 3, d.anchor()))
	want := d.get("/v1/vms/vm-1/attestations")
	d.stop() // closing flushes the index's memtable to a table
	tables, err := filepath.Glob(filepath.Join(d.indexDir, "*.sst"))
	if err != nil || len(tables) == 0 {
		t.Fatalf("the closed index has no table files (%v)", err)
	}
	for _, f := range tables {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	d.start()
	if got := d.get("/v1/vms/vm-1/attestations"); got.status != http.StatusOK || !bytes.Equal(got.body, want.body) {
		t.Errorf("after the rebuild: %d %s, want %d %s", got.status, got.body, want.status, want.body)
	}
	if r := d.post(dv.attest(t, "vm-9", rootOf("9"), 3, d.anchor()), ""); r.status != 409 || r.reason(t) != "replayed-counter" {
		t.Errorf("the counter floor after the rebuild: %d %s, want 409 replayed-counter", r.status, r.body)
	}
	aside, err := filepath.Glob(d.indexDir + ".damaged-*")
	if err != nil || len(aside) != 1 {
		t.Errorf("the damaged index was not kept aside: %v %v", aside, err)
	}
}
