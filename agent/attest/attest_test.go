package attest_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/agent/attest"
	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/soft"
	"github.com/vmledger/vmledger/testing/cluster"
)

func testConfig() *measure.Config {
	cmdline := "console=ttyS0 ro"
	return &measure.Config{
		MemoryBytes: 2 << 30, CPUCount: 2,
		NICs:          []measure.NIC{{MAC: measure.MAC{0x52, 0x54, 0, 1, 2, 3}, VLAN: 7}},
		Disks:         []measure.Disk{{Target: "vda", SHA256: &measure.Digest{0xd1}}},
		KernelCmdline: &cmdline,
	}
}

func secret(b byte) measure.Secret {
	var s measure.Secret
	for i := range s {
		s[i] = b
	}
	return s
}

// start runs a deployment (badger log, three witnesses with a 2-of-3
// policy, the TPM simulator) in dir.
func start(t *testing.T, o cluster.Options) *cluster.Cluster {
	t.Helper()
	c, err := cluster.Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// attestWithState runs the flow as one agent run does: the state file is
// opened afresh, as `agent launch --state` does each time.
func attestWithState(t *testing.T, a attest.Config, statePath, vm string) (*attest.Result, error) {
	t.Helper()
	st, err := client.OpenState(statePath)
	if err != nil {
		t.Fatal(err)
	}
	a.State = st
	return attest.Attest(t.Context(), a, attest.Request{VMID: vm, Config: testConfig(), Secret: secret(1)})
}

// consistencyDetail is the detail of the report's consistency check.
func consistencyDetail(r *client.Report) string {
	for _, c := range r.Results {
		if c.Check == client.CheckConsistency && c.Status == client.Pass {
			return c.Detail
		}
	}
	return ""
}

// TestAttestStateAcrossRuns: with a state file, every run after the first
// proves the log's new checkpoint consistent with the one trusted before,
// through the log it attested with.
func TestAttestStateAcrossRuns(t *testing.T) {
	c := start(t, cluster.Options{Dir: t.TempDir()})
	state := filepath.Join(t.TempDir(), "state.json")
	var sizes []uint64
	for i := range 3 {
		r, err := attestWithState(t, c.Agent(), state, "web01")
		if err != nil {
			t.Fatalf("run %d with the state file: %v", i+1, err)
		}
		detail := consistencyDetail(r.Report)
		if i > 0 && !strings.Contains(detail, "consistent with the trusted size") {
			t.Errorf("run %d: consistency %q, want it proved against the trusted checkpoint", i+1, detail)
		}
		sizes = append(sizes, r.Report.TreeSize)
	}
	if !(sizes[0] < sizes[1] && sizes[1] < sizes[2]) {
		t.Errorf("tree sizes %v: want every run to prove consistency with a larger tree", sizes)
	}
	st, err := client.OpenState(state)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Evidence()) != 0 {
		t.Errorf("evidence %+v after an honest log, want none", st.Evidence())
	}
}

// TestAttestForkedLogRefused: a second log with the same key and
// witnesses, but another history, is refused by an agent whose state file
// trusts the first log's checkpoint — and both signed checkpoints are kept
// as evidence. The honest log still works afterwards.
func TestAttestForkedLogRefused(t *testing.T) {
	honestDir := t.TempDir()
	honest := start(t, cluster.Options{Dir: honestDir})
	state := filepath.Join(t.TempDir(), "state.json")
	first, err := attestWithState(t, honest.Agent(), state, "web01")
	if err != nil {
		t.Fatal(err)
	}
	trusted, err := client.OpenState(state)
	if err != nil {
		t.Fatal(err)
	}
	trustedCP := trusted.Checkpoint(first.Report.Origin)

	// The TPM simulator is one per process: the fork's own enrolled key
	// is a software one.
	forked := start(t, cluster.Options{Dir: t.TempDir(), KeysFrom: honestDir, Coproc: "soft:" + filepath.Join(t.TempDir(), "coproc")})
	if err := forked.Enroll(t.Context(), "host-a", honest.CoProcessor); err != nil {
		t.Fatal(err)
	}
	fa := honest.Agent()
	fa.LogURL = forked.LogURL
	// Without a state file the fork is indistinguishable: its checkpoints
	// carry the same log key and witness keys. This also grows it past the
	// trusted size, so that only a consistency proof can tell.
	for _, vm := range []string{"db01", "db02"} {
		if _, err := attest.Attest(t.Context(), fa, attest.Request{VMID: vm, Config: testConfig(), Secret: secret(1)}); err != nil {
			t.Fatalf("forked log without a state file: %v", err)
		}
	}

	r, err := attestWithState(t, fa, state, "web01")
	var ie *client.InconsistentError
	if !errors.Is(err, attest.ErrVerify) || !errors.Is(err, client.ErrConsistency) || !errors.As(err, &ie) {
		t.Fatalf("forked log with the state file: %v, want ErrVerify, an InconsistentError", err)
	}
	if r != nil && r.Report != nil && r.Report.TreeSize <= first.Report.TreeSize {
		t.Errorf("forked tree size %d, want larger than the trusted %d (the proof path)", r.Report.TreeSize, first.Report.TreeSize)
	}
	after, err := client.OpenState(state)
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Checkpoint(first.Report.Origin); string(got) != string(trustedCP) {
		t.Errorf("the state now trusts\n%s\nwant still the honest log's\n%s", got, trustedCP)
	}
	if ev := after.Evidence(); len(ev) != 1 || ev[0].Trusted != string(trustedCP) {
		t.Errorf("evidence %+v, want one record with the honest checkpoint as the trusted one", ev)
	}

	if _, err := attestWithState(t, honest.Agent(), state, "web01"); err != nil {
		t.Errorf("the honest log after the fork was refused: %v", err)
	}
}

// TestIncomplete: what says nothing about the VM — a part of the chain
// unreachable, failing or too slow — is told apart from a refusal, with
// the sentinel of the part.
func TestIncomplete(t *testing.T) {
	ctx := t.Context()
	c := start(t, cluster.Options{Dir: t.TempDir()})
	req := func(vm string) attest.Request {
		return attest.Request{VMID: vm, Config: testConfig(), Secret: secret(1)}
	}
	changed := testConfig()
	changed.CPUCount = 32
	otherLog := c.Agent()
	tr, err := client.ParseTrust([]byte(strings.Replace(c.TrustText, c.LogVKey, otherLogVKey(t), 1)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	otherLog.Trust = tr
	unenrolled := c.Agent()
	unenrolled.CoProcessor = softCoproc(t, filepath.Join(t.TempDir(), "coproc"))
	goneDir := filepath.Join(t.TempDir(), "coproc")
	gone := c.Agent()
	gone.CoProcessor = softCoproc(t, goneDir)
	if err := os.RemoveAll(goneDir); err != nil {
		t.Fatal(err)
	}
	down := c.Agent()
	down.LogURL = closedURL(t)
	// A front of the log that serves everything but its tiles: the
	// consistency proof for the state file cannot be had.
	noTiles := c.Agent()
	noTiles.LogURL = proxy(t, c.LogURL, func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/tile/") })
	state := filepath.Join(t.TempDir(), "state.json")
	if _, err := attestWithState(t, c.Agent(), state, "web01"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		run        func() error
		want       error
		incomplete bool
	}{
		{"log unreachable", func() error { _, err := attest.Attest(ctx, down, req("web01")); return err }, attest.ErrLog, true},
		{"co-processor fails", func() error { _, err := attest.Attest(ctx, gone, req("web01")); return err }, attest.ErrCoprocessor, true},
		{"consistency proof unavailable", func() error { _, err := attestWithState(t, noTiles, state, "web01"); return err }, client.ErrProofUnavailable, true},
		{"key not enrolled", func() error { _, err := attest.Attest(ctx, unenrolled, req("web01")); return err }, attest.ErrRefused, false},
		{"checkpoint of an untrusted log", func() error { _, err := attest.Attest(ctx, otherLog, req("web01")); return err }, attest.ErrFreshness, false},
		{"another configuration", func() error {
			_, err := attest.Attest(ctx, c.Agent(), attest.Request{VMID: "web01", Config: changed, Secret: secret(1), Expected: testConfig()})
			return err
		}, client.ErrConfiguration, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if !errors.Is(err, tt.want) || attest.Incomplete(err) != tt.incomplete {
				t.Fatalf("err = %v (Incomplete %v), want %v with Incomplete %v", err, attest.Incomplete(err), tt.want, tt.incomplete)
			}
		})
	}
	// The proxy's refusal did not cost the state anything: the log itself
	// proves consistency.
	if _, err := attestWithState(t, c.Agent(), state, "web01"); err != nil {
		t.Errorf("after the missing proof, through the log itself: %v", err)
	}
}

// TestWaitUntilDeadline: with the witness quorum down, the agent waits for
// a cosigned checkpoint until the flow's deadline, although each HTTP
// request of its client times out sooner (as the default client's 30 s did
// before a 2-minute --timeout); then it says the quorum did not cosign, an
// incomplete flow rather than a refusal.
func TestWaitUntilDeadline(t *testing.T) {
	c := start(t, cluster.Options{Dir: t.TempDir()})
	c.StopWitness(0)
	c.StopWitness(1)
	a := c.Agent()
	a.HTTPClient = &http.Client{Timeout: time.Second}
	a.WaitTimeout = 5 * time.Minute
	// The flow's deadline: the log never answers before it, so the agent
	// can only return once it has passed.
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
	defer cancel()
	_, err := attest.Attest(ctx, a, attest.Request{VMID: "web01", Config: testConfig(), Secret: secret(1)})
	if !errors.Is(err, attest.ErrNotWitnessed) || !attest.Incomplete(err) {
		t.Fatalf("err = %v, want ErrNotWitnessed, Incomplete", err)
	}
	if ctx.Err() == nil {
		t.Fatalf("the agent gave up before its deadline: %v", err)
	}
}

func otherLogVKey(t *testing.T) string {
	t.Helper()
	_, vkey, err := note.GenerateKey(rand.Reader, "vmledger.test/log")
	if err != nil {
		t.Fatal(err)
	}
	return vkey
}

func softCoproc(t *testing.T, dir string) coproc.CoProcessor {
	t.Helper()
	if _, err := soft.Init(t.Context(), dir, soft.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	cp, err := soft.Open(t.Context(), dir, soft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// closedURL is the URL of a loopback port nobody listens on any more.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	return "http://" + ln.Addr().String()
}

// proxy serves target through a reverse proxy on loopback that answers 503
// to the requests fail selects.
func proxy(t *testing.T, target string, fail func(*http.Request) bool) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail(r) {
			http.Error(w, "tiles unavailable", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestMismatchNamesParameters: when the configuration about to be launched
// is not the one the owner ordered, the refusal names each parameter that
// differs with its expected and attested values — the agent measured the
// attested configuration itself — not only two roots.
func TestMismatchNamesParameters(t *testing.T) {
	c := start(t, cluster.Options{Dir: t.TempDir()})
	changed := testConfig()
	changed.CPUCount = 32
	changed.MemoryBytes = 8 << 30
	r, err := attest.Attest(t.Context(), c.Agent(), attest.Request{VMID: "web01", Config: changed, Secret: secret(1), Expected: testConfig()})
	if !errors.Is(err, attest.ErrVerify) || !errors.Is(err, client.ErrConfiguration) {
		t.Fatalf("err = %v, want ErrVerify and ErrConfiguration", err)
	}
	want := []client.ParameterDiff{
		{Name: measure.NameCPUCount, Expected: "2", Attested: "32"},
		{Name: measure.NameMemoryBytes, Expected: "2147483648", Attested: "8589934592"},
	}
	if r == nil || r.Report == nil {
		t.Fatalf("no report with the refusal")
	}
	if !slices.Equal(r.Report.Differences, want) {
		t.Errorf("differences %+v, want %+v", r.Report.Differences, want)
	}
	for _, d := range want {
		if s := fmt.Sprintf("%s: expected %s, attested %s", d.Name, d.Expected, d.Attested); !strings.Contains(err.Error(), s) {
			t.Errorf("the refusal %q does not say %q", err, s)
		}
	}
}

// freshnessDetail is the detail of the report's freshness check.
func freshnessDetail(r *client.Report) string {
	for _, c := range r.Results {
		if c.Check == client.CheckFreshness {
			return string(c.Status) + ": " + c.Detail
		}
	}
	return ""
}

// staleCheckpointFront serves the log at target, except GET /checkpoint,
// which it answers with cached (as a cache in front of a log does, within
// the log's freshness window).
func staleCheckpointFront(t *testing.T, target string, cached []byte) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/checkpoint" {
			w.Write(cached)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func getCheckpoint(t *testing.T, base string) []byte {
	t.Helper()
	resp, err := http.Get(base + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /checkpoint: %v %s", err, resp.Status)
	}
	return b
}

// TestAnchorProvedThroughLog: when other entries were appended between the
// agent's freshness anchor and its entry, the inclusion proof does not hold
// the anchor's root; the agent's own check then proves the anchor
// consistent with the bundle's checkpoint through the log's tiles, rather
// than accepting it unproven.
func TestAnchorProvedThroughLog(t *testing.T) {
	c := start(t, cluster.Options{Dir: t.TempDir()})
	early := getCheckpoint(t, c.LogURL) // size 1: the enrolment record
	for _, vm := range []string{"db01", "db02", "db03"} {
		if _, err := c.Attest(t.Context(), vm, testConfig(), secret(1)); err != nil {
			t.Fatal(err)
		}
	}
	a := c.Agent()
	a.LogURL = staleCheckpointFront(t, c.LogURL, early)
	r, err := attest.Attest(t.Context(), a, attest.Request{VMID: "web01", Config: testConfig(), Secret: secret(1)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Anchor.Size != 1 || r.Index != 4 {
		t.Fatalf("anchor size %d, index %d: want 1 and 4 (entries between them)", r.Anchor.Size, r.Index)
	}
	if d := freshnessDetail(r.Report); !strings.Contains(d, "pass: ") || !strings.Contains(d, "proven by the log's consistency proof") {
		t.Errorf("freshness %q, want the anchor proven by the log's consistency proof", d)
	}
}
