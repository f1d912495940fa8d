package admission

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/log/engine"
)

// TestRefusals submits one bad envelope per refusal and requires its status
// and reason, and that nothing changed: the log's size and the key's counter
// floor.
func TestRefusals(t *testing.T) {
	d := newDeployment(t, func(c *Config) { c.FreshnessWindow = 10 * time.Minute })
	good := newDevice(t, true)
	revoked := newDevice(t, false)
	stranger := newDevice(t, false)
	d.enrol(good, "good")
	d.enrol(revoked, "revoked")
	old := d.anchor()
	d.admit(good.attest(t, "vm-1", rootOf("a"), 10, old))
	if _, err := d.client().Revoke(t.Context(), revoked.id); err != nil {
		t.Fatal(err)
	}
	// old is replaced by newer checkpoints; 11 minutes later it is stale.
	fresh := d.anchor()
	d.clock.Add(11 * time.Minute)

	valid := good.attest(t, "vm-2", rootOf("b"), 11, fresh)
	var w map[string]any
	json.Unmarshal(valid, &w)

	badSig := func() []byte {
		env, _ := coproc.ParseEnvelope(valid)
		env.Signatures[0].Sig[10] ^= 1
		b, _ := env.Canonical()
		return b
	}
	notStatement := func() []byte {
		env := &coproc.Envelope{PayloadType: coproc.PayloadType, Payload: []byte(`{"hello":"world"}`)}
		sig, _ := good.sign(coproc.PAE(env.PayloadType, env.Payload))
		env.Signatures = []coproc.Signature{{KeyID: good.id, Sig: sig}}
		b, _ := env.Canonical()
		return b
	}
	otherOrigin := fresh
	otherOrigin.Origin = "other.example/log"
	otherRoot := fresh
	otherRoot.Root[0] ^= 1
	future := fresh
	future.Size += 100

	for _, tc := range []struct {
		name   string
		body   []byte
		status int
		reason string
	}{
		{"not JSON", []byte("hello"), 400, "malformed"},
		{"empty", nil, 400, "malformed"},
		{"not canonical", append(append([]byte{}, valid...), '\n'), 400, "malformed"},
		{"pretty printed", func() []byte { var b bytes.Buffer; json.Indent(&b, valid, "", " "); return b.Bytes() }(), 400, "malformed"},
		{"not a statement", notStatement(), 400, "bad-statement"},
		{"unknown key", stranger.attest(t, "vm-2", rootOf("b"), 1, fresh), 403, "unknown-key"},
		{"revoked key", revoked.attest(t, "vm-2", rootOf("b"), 1, fresh), 403, "revoked-key"},
		{"bad signature", badSig(), 403, "bad-signature"},
		{"replayed counter", good.attest(t, "vm-3", rootOf("c"), 10, fresh), 409, "replayed-counter"},
		{"rolled back counter", good.attest(t, "vm-3", rootOf("c"), 3, fresh), 409, "replayed-counter"},
		{"stale anchor", good.attest(t, "vm-3", rootOf("c"), 12, old), 409, "stale-freshness"},
		{"other origin", good.attest(t, "vm-3", rootOf("c"), 12, otherOrigin), 409, "unknown-anchor"},
		{"other root", good.attest(t, "vm-3", rootOf("c"), 12, otherRoot), 409, "unknown-anchor"},
		{"unsigned size", good.attest(t, "vm-3", rootOf("c"), 12, future), 409, "unknown-anchor"},
		{"too large", bytes.Repeat([]byte("x"), coproc.MaxEnvelopeSize+1), 413, "too-large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := d.size()
			r := d.post(tc.body, "")
			if r.status != tc.status || r.reason(t) != tc.reason {
				t.Errorf("POST = %d %s, want %d %s", r.status, r.body, tc.status, tc.reason)
			}
			if after := d.size(); after != before {
				t.Errorf("log size %d → %d after a refusal", before, after)
			}
		})
	}
	// Nothing above moved the floor: counter 11 is still admissible.
	d.admit(valid)
	if r := d.post(valid, "?wait=2"); r.status != 400 || r.reason(t) != "bad-request" {
		t.Errorf("?wait=2: %d %s", r.status, r.body)
	}
}

// TestOverload holds one admission inside the engine's Add and requires
// the next to get 429 with Retry-After; then the engine pushes back (503)
// and the refused envelope's counter is not burnt.
func TestOverload(t *testing.T) {
	d := newDeployment(t, func(c *Config) { c.MaxInFlight = 1 })
	dv := newDevice(t, false)
	d.enrol(dv, "dv")
	a := d.anchor()
	first := dv.attest(t, "vm-1", rootOf("1"), 1, a)
	second := dv.attest(t, "vm-2", rootOf("2"), 2, a)

	gate, entered := make(chan struct{}), make(chan struct{}, 1)
	d.gated.mu.Lock()
	d.gated.gate, d.gated.entered = gate, entered
	d.gated.mu.Unlock()
	done := make(chan reply)
	go func() { done <- d.post(first, "") }()
	<-entered // the first admission holds the only slot
	before := d.size()
	r := d.post(second, "")
	if r.status != http.StatusTooManyRequests || r.reason(t) != "overloaded" || r.header.Get("Retry-After") == "" {
		t.Errorf("second admission while the first is in flight = %d %s (Retry-After %q), want 429 overloaded",
			r.status, r.body, r.header.Get("Retry-After"))
	}
	d.gated.mu.Lock()
	d.gated.gate = nil
	d.gated.mu.Unlock()
	close(gate)
	if r := <-done; r.status != http.StatusAccepted {
		t.Fatalf("first admission = %d %s", r.status, r.body)
	}
	if d.size() != before+1 {
		t.Errorf("size %d, want %d", d.size(), before+1)
	}

	d.gated.mu.Lock()
	d.gated.fail = fmt.Errorf("test: %w", engine.ErrPushback)
	d.gated.mu.Unlock()
	r = d.post(second, "")
	if r.status != http.StatusServiceUnavailable || r.reason(t) != "pushback" || r.header.Get("Retry-After") == "" {
		t.Errorf("admission under pushback = %d %s, want 503 pushback with Retry-After", r.status, r.body)
	}
	if d.size() != before+1 {
		t.Errorf("size %d after a 503, want %d (nothing appended)", d.size(), before+1)
	}
	// The retry of the same envelope is admitted: the reservation of
	// counter 2 was released when the append failed.
	d.admit(second)
}

func TestDuplicates(t *testing.T) {
	d := newDeployment(t, nil)
	dv := newDevice(t, true)
	d.enrol(dv, "dv")
	a := d.anchor()
	env := dv.attest(t, "vm-1", rootOf("x"), 1, a)
	idx := d.admit(env)
	size := d.size()

	t.Run("sequential", func(t *testing.T) {
		for _, q := range []string{"", "?wait=1"} {
			r := d.post(env, q)
			var got AdmitResponse
			r.json(t, &got)
			if r.status != http.StatusOK || got.Index != idx {
				t.Errorf("duplicate%s = %d %s, want 200 index %d", q, r.status, r.body, idx)
			}
		}
		if d.size() != size {
			t.Errorf("size %d after duplicates, want %d", d.size(), size)
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		env := dv.attest(t, "vm-2", rootOf("y"), 2, a)
		const n = 16
		var wg sync.WaitGroup
		replies := make([]reply, n)
		for i := range n {
			wg.Add(1)
			go func() { defer wg.Done(); replies[i] = d.post(env, "") }()
		}
		wg.Wait()
		created := 0
		var indexes []uint64
		for _, r := range replies {
			var got AdmitResponse
			r.json(t, &got)
			switch r.status {
			case http.StatusAccepted:
				created++
			case http.StatusOK:
			default:
				t.Errorf("concurrent duplicate = %d %s", r.status, r.body)
			}
			indexes = append(indexes, got.Index)
		}
		slices.Sort(indexes)
		if created != 1 || indexes[0] != indexes[len(indexes)-1] {
			t.Errorf("%d identical submissions: %d created, indexes %v; want 1 and one index", n, created, indexes)
		}
		if d.size() != size+1 {
			t.Errorf("size %d, want %d", d.size(), size+1)
		}
	})
}

// TestConcurrentCounters submits many envelopes of one key concurrently:
// whatever gets in must have counters that increase with the index.
func TestConcurrentCounters(t *testing.T) {
	d := newDeployment(t, nil)
	dv := newDevice(t, false)
	d.enrol(dv, "dv")
	a := d.anchor()
	const n = 40
	envs := make([][]byte, n)
	for i := range n {
		envs[i] = dv.attest(t, fmt.Sprintf("vm-%d", i), rootOf(fmt.Sprint(i)), uint64(n-i), a)
	}
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); statuses[i] = d.post(envs[i], "").status }()
	}
	wg.Wait()
	admitted := 0
	for i, s := range statuses {
		switch s {
		case http.StatusAccepted:
			admitted++
		case http.StatusConflict:
		default:
			t.Errorf("envelope %d: status %d", i, s)
		}
	}
	r := d.get("/v1/attestations?key=" + dv.id + "&limit=1000")
	var res SearchResponse
	r.json(t, &res)
	if len(res.Attestations) != admitted || admitted == 0 {
		t.Fatalf("%d admitted, %d indexed", admitted, len(res.Attestations))
	}
	for i := 1; i < len(res.Attestations); i++ {
		if p, c := res.Attestations[i-1], res.Attestations[i]; c.Counter <= p.Counter || c.Index <= p.Index {
			t.Errorf("entries %d (counter %d) and %d (counter %d): counters do not increase", p.Index, p.Counter, c.Index, c.Counter)
		}
	}
}

func TestEnrolmentAPI(t *testing.T) {
	d := newDeployment(t, nil)
	dv := newDevice(t, true)
	pemKey := string(dv.pem(t))
	body := func(name, key string) []byte {
		b, _ := json.Marshal(EnrolRequest{Name: name, PublicKey: key})
		return b
	}
	url := d.hs.URL + "/v1/coprocessors"
	bearer := "Bearer " + string(d.token)
	for _, tc := range []struct {
		name   string
		method string
		path   string
		body   []byte
		auth   string
		status int
		reason string
	}{
		{"no token", "POST", "", body("a", pemKey), "", 401, "unauthorized"},
		{"wrong token", "POST", "", body("a", pemKey), "Bearer nope", 401, "unauthorized"},
		{"token prefix", "POST", "", body("a", pemKey), bearer[:len(bearer)-1], 401, "unauthorized"},
		{"basic auth", "POST", "", body("a", pemKey), "Basic " + base64.StdEncoding.EncodeToString(d.token), 401, "unauthorized"},
		{"bad PEM", "POST", "", body("a", "not a key"), bearer, 400, "bad-key"},
		{"RSA-sized junk", "POST", "", body("a", strings.Replace(pemKey, "PUBLIC KEY", "PRIVATE KEY", 2)), bearer, 400, "bad-key"},
		{"name with space", "POST", "", body("a b", pemKey), bearer, 400, "bad-key"},
		{"unknown field", "POST", "", []byte(`{"name":"a","public_key":"x","extra":1}`), bearer, 400, "malformed"},
		{"revoke without token", "DELETE", "/" + dv.id, nil, "", 401, "unauthorized"},
		{"revoke unknown", "DELETE", "/" + dv.id, nil, bearer, 404, "not-found"},
		{"revoke bad id", "DELETE", "/XYZ", nil, bearer, 400, "bad-request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := d.size()
			r := do(t, tc.method, url+tc.path, tc.body, "Authorization", tc.auth)
			if r.status != tc.status || r.reason(t) != tc.reason {
				t.Errorf("%s = %d %s, want %d %s", tc.name, r.status, r.body, tc.status, tc.reason)
			}
			if d.size() != before {
				t.Errorf("log grew on a refused admin request")
			}
		})
	}

	before := d.size()
	k, created, err := d.client().Enrol(t.Context(), "host-a", dv.pem(t))
	if err != nil || !created || k.KeyID != dv.id || k.Name != "host-a" || k.EnrolledIndex != before {
		t.Fatalf("Enrol = %+v, %v, %v", k, created, err)
	}
	if _, created, err := d.client().Enrol(t.Context(), "host-a", dv.pem(t)); err != nil || created || d.size() != before+1 {
		t.Errorf("second Enrol: created %v, %v, size %d", created, err, d.size())
	}
	// The enrolment is a log entry of its own kind.
	entries, err := d.svc.readEntries(t.Context(), before, before+1)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := ParseRecord(entries[0])
	if err != nil || rec.Action != ActionEnrol || rec.KeyID != dv.id || rec.Name != "host-a" || rec.Time != "2026-11-28T12:00:00Z" {
		t.Errorf("enrolment entry %s: %+v, %v", entries[0], rec, err)
	}
	k, err = d.client().Revoke(t.Context(), dv.id)
	if err != nil || !k.Revoked || k.RevokedIndex == nil || *k.RevokedIndex != before+1 {
		t.Fatalf("Revoke = %+v, %v", k, err)
	}
	var list CoprocessorsResponse
	d.get("/v1/coprocessors").json(t, &list)
	if len(list.Coprocessors) != 1 || !list.Coprocessors[0].Revoked || list.Coprocessors[0].EnrolledAt == "" || list.Coprocessors[0].RevokedAt == "" {
		t.Errorf("GET /v1/coprocessors = %+v", list)
	}
	_, _, err = d.client().Enrol(t.Context(), "again", dv.pem(t))
	var re *RefusedError
	if !errors.As(err, &re) || re.Status != 403 || re.Reason != "revoked-key" {
		t.Errorf("re-enrolling a revoked key: %v", err)
	}
}

func TestSearch(t *testing.T) {
	d := newDeployment(t, nil)
	a1, a2 := newDevice(t, true), newDevice(t, false)
	d.enrol(a1, "a1")
	d.enrol(a2, "a2")
	a := d.anchor()
	var idx []uint64
	idx = append(idx, d.admit(a1.attest(t, "web/01", rootOf("r1"), 1, a)))
	idx = append(idx, d.admit(a2.attest(t, "web/01", rootOf("r2"), 1, a)))
	idx = append(idx, d.admit(a1.attest(t, "db-01", rootOf("r1"), 2, a)))
	idx = append(idx, d.admit(a1.attest(t, "web/01", rootOf("r3"), 3, a)))

	indexes := func(path string) []uint64 {
		t.Helper()
		r := d.get(path)
		if r.status != 200 {
			t.Fatalf("GET %s = %d %s", path, r.status, r.body)
		}
		var res SearchResponse
		r.json(t, &res)
		out := []uint64{}
		for _, a := range res.Attestations {
			out = append(out, a.Index)
		}
		return out
	}
	r1 := rootOf("r1")
	for _, tc := range []struct {
		path string
		want []uint64
	}{
		{"/v1/vms/web%2F01/attestations", []uint64{idx[0], idx[1], idx[3]}},
		{"/v1/vms/db-01/attestations", []uint64{idx[2]}},
		{"/v1/vms/nobody/attestations", []uint64{}},
		{"/v1/attestations?root=" + hex.EncodeToString(r1[:]), []uint64{idx[0], idx[2]}},
		{"/v1/attestations?key=" + a1.id, []uint64{idx[0], idx[2], idx[3]}},
		{"/v1/attestations?key=" + a2.id, []uint64{idx[1]}},
		{"/v1/attestations?key=" + a1.id + "&limit=1", []uint64{idx[0]}},
		{fmt.Sprintf("/v1/attestations?key=%s&after=%d", a1.id, idx[0]), []uint64{idx[2], idx[3]}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if got := indexes(tc.path); !slices.Equal(got, tc.want) {
				t.Errorf("GET %s = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
	var res SearchResponse
	d.get("/v1/attestations?key="+a1.id+"&limit=2").json(t, &res)
	if res.NextAfter == nil || *res.NextAfter != idx[2] {
		t.Errorf("next_after = %v, want %d", res.NextAfter, idx[2])
	}
	got := res.Attestations[0]
	if want := (Attestation{Index: idx[0], VMID: "web/01", ConfigRoot: hex.EncodeToString(r1[:]), KeyID: a1.id, Counter: 1, Time: "2026-11-28T12:00:00Z"}); got != want {
		t.Errorf("result = %+v, want %+v", got, want)
	}
	for _, path := range []string{"/v1/attestations", "/v1/attestations?root=zz", "/v1/attestations?key=" + a1.id + "&root=" + hex.EncodeToString(r1[:]),
		"/v1/attestations?key=" + a1.id + "&limit=0", "/v1/attestations?key=" + a1.id + "&after=01"} {
		if r := d.get(path); r.status != 400 || r.reason(t) != "bad-request" {
			t.Errorf("GET %s = %d %s, want 400 bad-request", path, r.status, r.body)
		}
	}
}
