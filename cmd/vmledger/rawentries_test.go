package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/log/admission"
	"github.com/vmledger/vmledger/log/tlog"
)

// maxJSONCounter is the largest counter a JSON reader keeps exactly
// (2^53-1): the counter of the forged envelope below.
const maxJSONCounter = 9007199254740991

// rawLog is a log key, an admin token file and a data directory for
// `log serve` runs in one test.
type rawLog struct {
	t          *testing.T
	key, vkey  string
	token      string
	data, addr string
}

func newRawLog(t *testing.T) *rawLog {
	t.Helper()
	dir := t.TempDir()
	l := &rawLog{t: t, key: filepath.Join(dir, "log.key"), token: filepath.Join(dir, "admin.token"),
		data: filepath.Join(dir, "data"), addr: freeAddr(t)}
	vkey, err := runLogCmd(t.Context(), "keygen", "--name", "example.com/raw", "--out", l.key)
	if err != nil {
		t.Fatal(err)
	}
	l.vkey = strings.TrimSpace(vkey)
	if err := os.WriteFile(l.token, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *rawLog) args(extra ...string) []string {
	return append([]string{"log", "serve", "--data", l.data, "--listen", l.addr, "--key", l.key, "--log-level", "error"}, extra...)
}

// serve starts log serve with args; it returns the command's error if it
// exits before answering /healthz, else nil and a stop function.
func (l *rawLog) serve(args ...string) (stop func(), exited error) {
	t := l.t
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() {
		_, err := runLogCmd(ctx, args...)
		served <- err
	}()
	for {
		if resp, err := http.Get("http://" + l.addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-served:
			cancel()
			if err == nil {
				err = errors.New("exited without an error")
			}
			return nil, err
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop = func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("log serve after shutdown = %v", err)
		}
	}
	return stop, nil
}

func (l *rawLog) post(path string, body []byte) (int, string) {
	l.t.Helper()
	resp, err := http.Post("http://"+l.addr+path, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// keys returns the log's enrolled keys by key id.
func (l *rawLog) keys() map[string]admission.Key {
	l.t.Helper()
	resp, err := http.Get("http://" + l.addr + "/v1/coprocessors")
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Coprocessors []admission.Key }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		l.t.Fatal(err)
	}
	m := map[string]admission.Key{}
	for _, k := range out.Coprocessors {
		m[k.KeyID] = k
	}
	return m
}

// anchor returns the log's published checkpoint as a freshness anchor.
func (l *rawLog) anchor() coproc.Anchor {
	l.t.Helper()
	resp, err := http.Get("http://" + l.addr + "/checkpoint")
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	v, err := note.NewVerifier(l.vkey)
	if err != nil {
		l.t.Fatal(err)
	}
	n, err := note.Open(b, note.VerifierList(v))
	if err != nil {
		l.t.Fatalf("GET /checkpoint = %q: %v", b, err)
	}
	c, err := tlog.ParseCheckpoint([]byte(n.Text))
	if err != nil {
		l.t.Fatal(err)
	}
	return coproc.Anchor{Origin: c.Origin, Size: c.Size, Root: c.Root}
}

// rawDevice is a software co-processor key.
type rawDevice struct {
	priv *ecdsa.PrivateKey
	id   string
}

func newRawDevice(t *testing.T) *rawDevice {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := coproc.KeyID(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &rawDevice{priv: priv, id: id}
}

func (d *rawDevice) pem(t *testing.T) []byte {
	b, err := cryptoutils.MarshalPublicKeyToPEM(d.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (d *rawDevice) statement(t *testing.T, counter uint64, a coproc.Anchor) *coproc.Statement {
	t.Helper()
	st, err := coproc.NewStatement(coproc.Claim{VMID: "web01", Root: [32]byte{1}, Parameters: []string{"memory.bytes"}, Freshness: a},
		coproc.CoprocessorState{KeyID: d.id, Counter: counter}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// attest returns the canonical envelope of a statement with counter.
func (d *rawDevice) attest(t *testing.T, counter uint64, a coproc.Anchor) []byte {
	t.Helper()
	env, err := coproc.Seal(d.statement(t, counter, a), d.priv.Public(), func(pae []byte) ([]byte, error) { return coproc.SignPAE(d.priv, pae) })
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forge returns a canonical envelope that claims to be d's, with counter,
// signed by another key.
func (d *rawDevice) forge(t *testing.T, counter uint64, a coproc.Anchor) []byte {
	t.Helper()
	payload, err := d.statement(t, counter, a).Canonical()
	if err != nil {
		t.Fatal(err)
	}
	other := newRawDevice(t)
	sig, err := coproc.SignPAE(other.priv, coproc.PAE(coproc.PayloadType, payload))
	if err != nil {
		t.Fatal(err)
	}
	env := &coproc.Envelope{PayloadType: coproc.PayloadType, Payload: payload, Signatures: []coproc.Signature{{KeyID: d.id, Sig: sig}}}
	b, err := env.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func enrolRecord(t *testing.T, d *rawDevice) []byte {
	t.Helper()
	r, err := admission.NewEnrolment(d.priv.Public(), "raw", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return r.Marshal()
}

// TestLogServeRefusesRawEntriesWithAdmission: raw entries and admission in
// one log let anyone write admission state (enrol a key without the token,
// raise a key's counter floor with a forged envelope, revoke a key for
// good), so log serve refuses --allow-raw-entries with --admin-token-file as
// a usage error (exit 2) naming both flags. If it serves, the test shows
// each of those writes.
func TestLogServeRefusesRawEntriesWithAdmission(t *testing.T) {
	l := newRawLog(t)
	args := l.args("--allow-raw-entries", "--admin-token-file", l.token)
	stop, err := l.serve(args...)
	if err != nil {
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--allow-raw-entries") || !strings.Contains(err.Error(), "--admin-token-file") {
			t.Fatalf("log serve with both flags = %v, want a usage error naming --allow-raw-entries and --admin-token-file", err)
		}
		if code := run(t.Context(), args); code != exitUsage {
			t.Errorf("exit code = %d, want %d", code, exitUsage)
		}
		// The same from a config file.
		cfg := writeConfig(t, `{"data": "`+l.data+`", "listen": "`+l.addr+`", "key": "`+l.key+`", "allow-raw-entries": true, "admin-token-file": "`+l.token+`"}`)
		if code := run(t.Context(), []string{"log", "serve", "--config", cfg}); code != exitUsage {
			t.Errorf("both in --config: exit code = %d, want %d", code, exitUsage)
		}
		return
	}
	defer stop()
	t.Error("log serve --allow-raw-entries --admin-token-file serves")

	// Enrolment without the token.
	intruder := newRawDevice(t)
	if code, body := l.post("/v1/entries", enrolRecord(t, intruder)); code == http.StatusOK {
		if waitKey(t, l, intruder.id, func(admission.Key) bool { return true }) {
			t.Errorf("a raw enrolment record enrolled %s without the admin token (%s)", intruder.id, body)
		}
	}
	// The counter floor of an enrolled key, raised by a forged envelope.
	victim := newRawDevice(t)
	tok, _ := os.ReadFile(l.token)
	ec := &admission.EnrolClient{Base: "http://" + l.addr, Token: bytes.TrimSpace(tok)}
	if _, _, err := ec.Enrol(t.Context(), "victim", victim.pem(t)); err != nil {
		t.Fatal(err)
	}
	a := waitNonEmptyAnchor(t, l)
	if code, _ := l.post("/v1/entries", victim.forge(t, maxJSONCounter, a)); code == http.StatusOK {
		if waitKey(t, l, victim.id, func(k admission.Key) bool { return k.Counter == maxJSONCounter }) {
			code, body := l.post("/v1/attestations", victim.attest(t, 1, a))
			t.Errorf("after a raw forged envelope with counter %d, the key's real attestation with counter 1 = %d %s", uint64(maxJSONCounter), code, body)
		}
	}
	// A final revocation.
	if code, _ := l.post("/v1/entries", admission.NewRevocation(victim.id, time.Now()).Marshal()); code == http.StatusOK {
		if waitKey(t, l, victim.id, func(k admission.Key) bool { return k.Revoked }) {
			t.Errorf("a raw revocation record revoked %s for good", victim.id)
		}
	}
}

// waitKey polls the log's key list until keyid satisfies ok; false if it
// does not within 10 s (the index reads raw entries about once a second).
func waitKey(t *testing.T, l *rawLog, keyid string, ok func(admission.Key) bool) bool {
	t.Helper()
	for range 100 {
		if k, found := l.keys()[keyid]; found && ok(k) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// waitNonEmptyAnchor returns the published checkpoint once it is not empty.
func waitNonEmptyAnchor(t *testing.T, l *rawLog) coproc.Anchor {
	t.Helper()
	for {
		if a := l.anchor(); a.Size > 0 {
			return a
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestRawEntriesWriteNoAdmissionState: a log served with
// --allow-raw-entries refuses raw entries that admission would read as an
// enrolment record or an attestation, so that serving the same log with
// admission later takes no state from them. Other raw entries are appended.
func TestRawEntriesWriteNoAdmissionState(t *testing.T) {
	l := newRawLog(t)
	stop, err := l.serve(l.args("--allow-raw-entries")...)
	if err != nil {
		t.Fatal(err)
	}
	intruder := newRawDevice(t)
	for _, tc := range []struct {
		name  string
		entry []byte
	}{
		{"enrolment record", enrolRecord(t, intruder)},
		{"revocation record", admission.NewRevocation(intruder.id, time.Now()).Marshal()},
		{"attestation", intruder.attest(t, maxJSONCounter, l.anchor())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := l.post("/v1/entries", tc.entry); code != http.StatusBadRequest {
				t.Errorf("POST /v1/entries = %d %s, want 400", code, body)
			}
		})
	}
	if code, body := l.post("/v1/entries", []byte("any other bytes")); code != http.StatusOK {
		t.Errorf("POST /v1/entries of other bytes = %d %s, want 200", code, body)
	}
	stop()

	stop, err = l.serve(l.args("--admin-token-file", l.token)...)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if keys := l.keys(); len(keys) != 0 {
		t.Errorf("after raw entries, served with admission: keys %v, want none", keys)
	}
}
