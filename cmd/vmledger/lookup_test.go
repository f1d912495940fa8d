package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/log/admission"
	"github.com/vmledger/vmledger/log/bundle"
)

// lookupLog is a real log serve (admission on) holding, in this order: the
// enrolment of keys A and B, the attestations web01#1 (A, root R1), web01#2
// (A, root R2), db01#1 (B, root R1), and the revocation of B — all in a
// published checkpoint.
type lookupLog struct {
	*rawLog
	base            string
	a, b            *rawDevice
	r1, r2          [32]byte
	web1, web2, db1 uint64 // the attestations' indexes
	trust           string // a trust file for the log and both keys
}

func startLookupLog(t *testing.T) *lookupLog {
	t.Helper()
	l := &lookupLog{rawLog: newRawLog(t), a: newRawDevice(t), b: newRawDevice(t), r1: [32]byte{0x11, 1}, r2: [32]byte{0x22, 2}}
	l.base = "http://" + l.addr
	stop, err := l.serve(l.args("--admin-token-file", l.token)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	tok, _ := os.ReadFile(l.token)
	ec := &admission.EnrolClient{Base: l.base, Token: bytes.TrimSpace(tok)}
	for name, d := range map[string]*rawDevice{"host-a": l.a, "host-b": l.b} {
		if _, _, err := ec.Enrol(t.Context(), name, d.pem(t)); err != nil {
			t.Fatal(err)
		}
	}
	anchor := waitNonEmptyAnchor(t, l.rawLog)
	l.web1 = l.admit(t, l.a, "web01", l.r1, 1, anchor)
	l.web2 = l.admit(t, l.a, "web01", l.r2, 2, anchor)
	l.db1 = l.admit(t, l.b, "db01", l.r1, 1, anchor)
	if _, err := ec.Revoke(t.Context(), l.b.id); err != nil {
		t.Fatal(err)
	}
	// Wait until a published checkpoint covers the revocation too, so that
	// later reads all see one checkpoint (TestBundleCmd compares two
	// bundles byte for byte).
	for l.anchor().Size < l.db1+2 {
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	lineA, _ := client.TrustLine("host-a", l.a.priv.Public())
	lineB, _ := client.TrustLine("host-b", l.b.priv.Public())
	l.trust = filepath.Join(t.TempDir(), "trust.txt")
	if err := os.WriteFile(l.trust, []byte("log "+l.vkey+"\nquorum none\n"+lineA+"\n"+lineB+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return l
}

// admit posts an attestation by d of vm with root and counter and waits
// until a published checkpoint includes it.
func (l *lookupLog) admit(t *testing.T, d *rawDevice, vm string, root [32]byte, counter uint64, a coproc.Anchor) uint64 {
	t.Helper()
	st, err := coproc.NewStatement(coproc.Claim{VMID: vm, Root: root, Parameters: []string{"memory.bytes"}, Freshness: a},
		coproc.CoprocessorState{KeyID: d.id, Counter: counter}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	env, err := coproc.Seal(st, d.priv.Public(), func(pae []byte) ([]byte, error) { return coproc.SignPAE(d.priv, pae) })
	if err != nil {
		t.Fatal(err)
	}
	body, err := env.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	code, resp := l.post("/v1/attestations?wait=1", body)
	if code != http.StatusCreated {
		t.Fatalf("POST /v1/attestations = %d %s", code, resp)
	}
	var ar admission.AdmitResponse
	if err := json.Unmarshal([]byte(resp), &ar); err != nil {
		t.Fatal(err)
	}
	return ar.Index
}

// runExit runs the command line as main does and returns the exit code.
func runExit(t *testing.T, args ...string) int {
	t.Helper()
	return run(t.Context(), args)
}

func TestLookup(t *testing.T) {
	l := startLookupLog(t)
	r1, r2 := hex.EncodeToString(l.r1[:]), hex.EncodeToString(l.r2[:])
	lookup := func(t *testing.T, args ...string) LookupResult {
		t.Helper()
		stdout, stderr, err := runCLISplit(t, append([]string{"lookup", "--log", l.base, "--json"}, args...)...)
		if err != nil {
			t.Fatalf("lookup %q = %v\n%s", args, err, stderr)
		}
		var res LookupResult
		dec := json.NewDecoder(strings.NewReader(stdout))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&res); err != nil {
			t.Fatalf("lookup --json printed %q: %v", stdout, err)
		}
		return res
	}
	type want struct {
		index    uint64
		vm, root string
		key      string
		counter  uint64
	}
	for _, tc := range []struct {
		name  string
		args  []string
		query map[string]string
		want  []want
	}{
		{"by VM", []string{"--vm", "web01"}, map[string]string{"vm": "web01"},
			[]want{{l.web1, "web01", r1, l.a.id, 1}, {l.web2, "web01", r2, l.a.id, 2}}},
		{"by root", []string{"--root", r1}, map[string]string{"root": r1},
			[]want{{l.web1, "web01", r1, l.a.id, 1}, {l.db1, "db01", r1, l.b.id, 1}}},
		{"by root in uppercase", []string{"--root", strings.ToUpper(r2)}, map[string]string{"root": r2},
			[]want{{l.web2, "web01", r2, l.a.id, 2}}},
		{"by key", []string{"--key", l.b.id}, map[string]string{"key": l.b.id},
			[]want{{l.db1, "db01", r1, l.b.id, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := lookup(t, tc.args...)
			if res.Log != l.base || len(res.Query) != len(tc.query) || res.NextAfter != nil {
				t.Errorf("log %q, query %v, next_after %v; want %q, %v, none", res.Log, res.Query, res.NextAfter, l.base, tc.query)
			}
			for k, v := range tc.query {
				if res.Query[k] != v {
					t.Errorf("query[%s] = %q, want %q", k, res.Query[k], v)
				}
			}
			if len(res.Attestations) != len(tc.want) {
				t.Fatalf("%d attestations %+v, want %d", len(res.Attestations), res.Attestations, len(tc.want))
			}
			for i, w := range tc.want {
				a := res.Attestations[i]
				if a.Index != w.index || a.VMID != w.vm || a.ConfigRoot != w.root || a.KeyID != w.key || a.Counter != w.counter || a.Time == "" {
					t.Errorf("attestation %d = %+v, want %+v", i, a, w)
				}
				if wantURL := l.base + "/v1/bundles/" + strconv.FormatUint(w.index, 10); a.Bundle != wantURL {
					t.Errorf("attestation %d: bundle %q, want %q", i, a.Bundle, wantURL)
				}
			}
		})
	}

	t.Run("paging", func(t *testing.T) {
		first := lookup(t, "--vm", "web01", "--limit", "1")
		if len(first.Attestations) != 1 || first.Attestations[0].Index != l.web1 || first.NextAfter == nil || *first.NextAfter != l.web1 {
			t.Fatalf("--limit 1 = %+v, want web01#1 and next_after %d", first, l.web1)
		}
		next := lookup(t, "--vm", "web01", "--after", strconv.FormatUint(*first.NextAfter, 10))
		if len(next.Attestations) != 1 || next.Attestations[0].Index != l.web2 || next.NextAfter != nil {
			t.Fatalf("--after %d = %+v, want only web01#2", *first.NextAfter, next)
		}
	})

	t.Run("human", func(t *testing.T) {
		stdout, _, err := runCLISplit(t, "lookup", "--log", l.base, "--vm", "web01")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(stdout, "\n")
		if len(lines) < 3 || !strings.HasPrefix(lines[0], "INDEX") ||
			!strings.HasPrefix(lines[1], strconv.FormatUint(l.web1, 10)+" ") || !strings.Contains(lines[1], r1) ||
			!strings.HasPrefix(lines[2], strconv.FormatUint(l.web2, 10)+" ") || !strings.Contains(lines[2], r2) {
			t.Errorf("lookup --vm web01 printed\n%s\nwant a header and the two attestations in log order", stdout)
		}
	})

	t.Run("not found", func(t *testing.T) {
		for _, args := range [][]string{
			{"--vm", "nobody"},
			{"--root", strings.Repeat("ab", 32)},
			{"--key", strings.Repeat("cd", 32)},
			{"--vm", "web01", "--after", strconv.FormatUint(l.web2, 10)},
		} {
			args = append([]string{"lookup", "--log", l.base}, args...)
			if code := runExit(t, args...); code != exitNotFound {
				t.Errorf("%q: exit %d, want %d", args, code, exitNotFound)
			}
			stdout, _, err := runCLISplit(t, append(args, "--json")...)
			var res LookupResult
			if !errors.As(err, new(notFoundError)) || json.Unmarshal([]byte(stdout), &res) != nil || res.Attestations == nil || len(res.Attestations) != 0 {
				t.Errorf("%q --json = %v, printed %q; want not found and an empty list", args, err, stdout)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		notLog := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, "<html>no such page</html>")
		}))
		defer notLog.Close()
		for _, tc := range []struct {
			name string
			args []string
			code int
			msg  string
		}{
			{"no query", []string{"--log", l.base}, exitUsage, "exactly one of"},
			{"two queries", []string{"--log", l.base, "--vm", "web01", "--root", r1}, exitUsage, "exactly one of"},
			{"root not hex", []string{"--log", l.base, "--root", strings.Repeat("zz", 32)}, exitUsage, "64 hex digits"},
			{"root too short", []string{"--log", l.base, "--root", r1[:62]}, exitUsage, "64 hex digits"},
			{"key not hex", []string{"--log", l.base, "--key", "host-a"}, exitUsage, "64 hex digits"},
			{"VM id with a space", []string{"--log", l.base, "--vm", "web 01"}, exitUsage, "not allowed"},
			{"no --log", []string{"--vm", "web01"}, exitUsage, "--log"},
			{"not a URL", []string{"--log", "127.0.0.1:8080", "--vm", "web01"}, exitUsage, "base URL"},
			{"not http", []string{"--log", "ftp://" + l.addr, "--vm", "web01"}, exitUsage, "base URL"},
			{"nobody listening", []string{"--log", "http://" + freeAddr(t), "--vm", "web01"}, exitIncomplete, "cannot reach the log"},
			{"not a log", []string{"--log", notLog.URL, "--vm", "web01"}, exitFailure, "not like a vmledger log"},
			{"a wrong path on the log", []string{"--log", l.base + "/wrong", "--vm", "web01"}, exitFailure, "check --log"},
			{"limit 0", []string{"--log", l.base, "--vm", "web01", "--limit", "0"}, exitUsage, "--limit"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				args := append([]string{"lookup"}, tc.args...)
				_, stderr, err := runCLISplit(t, args...)
				if err == nil || !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("%q = %v %s, want an error saying %q", args, err, stderr, tc.msg)
				}
				if code := runExit(t, args...); code != tc.code {
					t.Errorf("%q: exit %d, want %d", args, code, tc.code)
				}
			})
		}
	})
}

func TestBundleCmd(t *testing.T) {
	l := startLookupLog(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "web01.bundle.json")
	_, stderr, err := runCLISplit(t, "bundle", "--log", l.base, "--vm", "web01", "--out", out)
	if err != nil {
		t.Fatalf("bundle = %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "vmledger verify") {
		t.Errorf("bundle said %q, want it to point to vmledger verify", stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	bd, err := bundle.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := coproc.ParseEnvelope(bd.Entry)
	st, err := env.Statement()
	if err != nil || bd.Proof.Index != l.web2 || st.VMID() != "web01" || st.Predicate.Coprocessor.Counter != 2 {
		t.Fatalf("bundle of index %d, statement %+v, %v; want web01's latest attestation, index %d", bd.Proof.Index, st, err, l.web2)
	}
	// The bundle passes the customer's verifier (every check but the
	// configuration, which needs --expected: this test has no configuration).
	stdout, _, _ := runCLISplit(t, "verify", "--bundle", out, "--trust", l.trust, "--json")
	var report struct {
		Checks []struct{ Check, Status, Detail string } `json:"checks"`
	}
	if err := json.Unmarshal([]byte(stdout), &report); err != nil || len(report.Checks) == 0 {
		t.Fatalf("verify --json printed %q: %v", stdout, err)
	}
	passed := map[string]bool{}
	for _, c := range report.Checks {
		passed[c.Check] = c.Status == string(client.Pass)
		if c.Check != client.CheckConfiguration && c.Status != string(client.Pass) && c.Status != string(client.NotRequested) {
			t.Errorf("verify of the downloaded bundle: check %s = %s (%s), want pass", c.Check, c.Status, c.Detail)
		}
	}
	for _, c := range []string{client.CheckEnvelope, client.CheckSignature, client.CheckStatement, client.CheckInclusion} {
		if !passed[c] {
			t.Errorf("verify of the downloaded bundle: check %s did not pass\n%s", c, stdout)
		}
	}

	stdout, _, err = runCLISplit(t, "bundle", "--log", l.base, "--vm", "web01", "--out", "-")
	if err != nil || stdout != string(b) {
		t.Errorf("bundle --out - = %v, printed %d bytes; want the same %d bytes as the file", err, len(stdout), len(b))
	}

	t.Run("unknown VM", func(t *testing.T) {
		missing := filepath.Join(dir, "nobody.json")
		args := []string{"bundle", "--log", l.base, "--vm", "nobody", "--out", missing}
		if code := runExit(t, args...); code != exitNotFound {
			t.Errorf("exit %d, want %d", code, exitNotFound)
		}
		if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after not found, --out %s: %v, want no file", missing, err)
		}
	})

	// A log (or something on the way) that answers another VM's bundle, or
	// a damaged one: bundle refuses it and writes nothing.
	var serve []byte
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(serve)
	}))
	defer liar.Close()
	bd.Proof.Hashes[0][0] ^= 1
	damaged, err := bd.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, vm string
		body     []byte
		msg      string
	}{
		{"another VM's bundle", "db01", b, "another VM"},
		{"a damaged proof", "web01", damaged, "proof"},
		{"not a bundle", "web01", []byte(`{"attestations": []}`), "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serve = tc.body
			target := filepath.Join(t.TempDir(), "b.json")
			_, _, err := runCLISplit(t, "bundle", "--log", liar.URL, "--vm", tc.vm, "--out", target)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("bundle = %v, want a refusal saying %q", err, tc.msg)
			}
			if code := runExit(t, "bundle", "--log", liar.URL, "--vm", tc.vm, "--out", target); code != exitFailure {
				t.Errorf("exit %d, want %d", code, exitFailure)
			}
			if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("--out after a refusal: %v, want no file", err)
			}
		})
	}

	for _, args := range [][]string{
		{"bundle", "--log", l.base, "--vm", "web01"},
		{"bundle", "--log", l.base, "--out", out},
		{"bundle", "--log", "nonsense", "--vm", "web01", "--out", out},
	} {
		if code := runExit(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
}

func TestLogKeys(t *testing.T) {
	l := startLookupLog(t)
	stdout, stderr, err := runCLISplit(t, "log", "keys", "--log", l.base, "--json")
	if err != nil {
		t.Fatalf("log keys = %v\n%s", err, stderr)
	}
	var res KeysResult
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("log keys --json printed %q: %v", stdout, err)
	}
	if res.Log != l.base || len(res.Keys) != 2 {
		t.Fatalf("log keys = %+v, want both keys of %s", res, l.base)
	}
	byID := map[string]LoggedKey{}
	for _, k := range res.Keys {
		byID[k.KeyID] = k
	}
	ka, kb := byID[l.a.id], byID[l.b.id]
	if ka.Revoked || ka.RevokedIndex != nil || ka.RevokedEntry != "" || ka.Name != "host-a" || ka.Counter != 2 {
		t.Errorf("key A = %+v, want host-a enrolled, not revoked, counter 2", ka)
	}
	if !kb.Revoked || kb.RevokedIndex == nil || kb.RevokedAt == "" || kb.Name != "host-b" || kb.Counter != 1 || *kb.RevokedIndex <= l.db1 {
		t.Fatalf("key B = %+v, want host-b revoked after index %d, counter 1", kb, l.db1)
	}
	// The entries named are the enrolment and revocation records of the
	// key, proved by the log's bundles.
	for _, tc := range []struct {
		url, keyID, action string
		index              uint64
	}{
		{ka.EnrolledEntry, l.a.id, admission.ActionEnrol, ka.EnrolledIndex},
		{kb.EnrolledEntry, l.b.id, admission.ActionEnrol, kb.EnrolledIndex},
		{kb.RevokedEntry, l.b.id, admission.ActionRevoke, *kb.RevokedIndex},
	} {
		// The revocation is answered before a published checkpoint
		// includes it: wait for one.
		var resp *http.Response
		var body []byte
		for {
			if resp, err = http.Get(tc.url); err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				break
			}
			select {
			case <-t.Context().Done():
				t.Fatalf("GET %s: still %s", tc.url, body)
			case <-time.After(50 * time.Millisecond):
			}
		}
		bd, err := bundle.Parse(body)
		if err != nil {
			t.Fatalf("GET %s = %d %q: %v", tc.url, resp.StatusCode, body, err)
		}
		rec, err := admission.ParseRecord(bd.Entry)
		if err != nil || rec.KeyID != tc.keyID || rec.Action != tc.action || bd.Proof.Index != tc.index {
			t.Errorf("GET %s: entry %d is %+v, %v; want the %s record of %s at %d", tc.url, bd.Proof.Index, rec, err, tc.action, tc.keyID, tc.index)
		}
	}

	stdout, _, err = runCLISplit(t, "log", "keys", "--log", l.base)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(stdout, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "KEY ID") {
		t.Fatalf("log keys printed\n%s", stdout)
	}
	for _, line := range lines[1:3] {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == l.a.id:
			if f[1] != "host-a" || f[2] != strconv.FormatUint(ka.EnrolledIndex, 10) || f[4] != "-" {
				t.Errorf("key A's line %q", line)
			}
		case len(f) > 0 && f[0] == l.b.id:
			if f[1] != "host-b" || f[4] != strconv.FormatUint(*kb.RevokedIndex, 10) {
				t.Errorf("key B's line %q", line)
			}
		default:
			t.Errorf("unexpected line %q", line)
		}
	}

	// A log with no key: an empty list, exit 0.
	empty := newRawLog(t)
	stop, err := empty.serve(empty.args()...)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	stdout, _, err = runCLISplit(t, "log", "keys", "--log", "http://"+empty.addr, "--json")
	if err != nil || !strings.Contains(stdout, `"keys": []`) {
		t.Errorf("log keys of a log without keys = %v, printed %q; want an empty list", err, stdout)
	}
	if code := runExit(t, "log", "keys", "--log", "http://"+freeAddr(t)); code != exitIncomplete {
		t.Errorf("log keys with nobody listening: exit %d, want %d", code, exitIncomplete)
	}
}
