package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/witness/policy"
)

// The worked examples of SPECS.md, byte for byte.
const (
	specLogVKey    = "example.com/ledger+edb3e1ea+AYE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU"
	specRoot5      = "iOmzfHUeCGffxCxa7Uow9wBv+JqN6lXFK/00Rkd5yGI="
	specRoot8      = "vBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk="
	specBody5to8   = "old 5\nrFr1LssMpdR9f17LJ5cpp7OGhjgNPtqS8bsZok0qOf8=\nH+n58mEFCHxpMBZA+XEBqTfOXrbvO5ai2OcliAzALlA=\nfGwZmzcPx665V5Us8Agwd7biI/lEUgKu60AVBoaWYMU=\nI6vsWkJlEMrRhn/X7DlllWJI/Q5WMTB/VtneLkJlbcY=\n\nexample.com/ledger\n8\nvBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk=\n\n— example.com/ledger 7bPh6nL75+eDWpg1ghEblRgVYRCAJl0vfAhSBsO82p2JITzWz8cjlS0K9BCRfQR1fhuQs9nrOph85AgZekJyKoHcCw4=\n"
	specWitnessVKy = "witness.example/w1+0ad7d35e+BIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c"
	specCosigText  = "example.com/ledger\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
	specCosigLine  = "— witness.example/w1 CtfTXgAAAABlU/EAq7i4X463xsjOJDoTY4mArJYgntCbeFaLuZ4a5CQ4pL1Trme7plkBVxxyNYLyHmdA/p4MXXNqnr1EGl6o5jVqCw==\n"
	specCosigTime  = 1700000000
)

func fixedClock(sec int64) func() time.Time { return func() time.Time { return time.Unix(sec, 0) } }

func TestSpecExamples(t *testing.T) {
	l := newTestLog(t, 8)
	if l.vkey != specLogVKey {
		t.Errorf("log vkey = %q, want %q", l.vkey, specLogVKey)
	}
	for size, want := range map[uint64]string{5: specRoot5, 8: specRoot8} {
		if got := base64.StdEncoding.EncodeToString(l.tree.HashAt(size)); got != want {
			t.Errorf("root(%d) = %s, want %s", size, got, want)
		}
	}
	if got := string(l.body(5, 8)); got != specBody5to8 {
		t.Errorf("MarshalAddCheckpoint(5→8) = %q, want %q", got, specBody5to8)
	}
	req, err := ParseAddCheckpoint([]byte(specBody5to8))
	if err != nil {
		t.Fatalf("ParseAddCheckpoint(spec body) = %v", err)
	}
	if got := string(req.Marshal()); got != specBody5to8 {
		t.Errorf("ParseAddCheckpoint(spec body).Marshal() = %q, want the input", got)
	}

	skey, _ := seededKey(t, 0x01, "witness.example/w1")
	c, err := NewCosigner(skey, fixedClock(specCosigTime))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.VKey(); got != specWitnessVKy {
		t.Errorf("Cosigner.VKey() = %q, want %q", got, specWitnessVKy)
	}
	line, err := c.cosignatureLine(specCosigText)
	if err != nil {
		t.Fatal(err)
	}
	if string(line) != specCosigLine {
		t.Errorf("cosignature line = %q, want %q", line, specCosigLine)
	}
	// formats/note's verifier, from the published 0x04 vkey, accepts it.
	v, err := fnote.NewVerifierForCosignatureV1(specWitnessVKy)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open([]byte(specCosigText+"\n"+specCosigLine), note.VerifierList(v))
	if err != nil {
		t.Fatalf("formats/note verifier rejects our cosignature: %v", err)
	}
	if ts, _ := fnote.CoSigV1Timestamp(n.Sigs[0]); ts.Unix() != specCosigTime {
		t.Errorf("cosignature time = %d, want %d", ts.Unix(), specCosigTime)
	}
}

// TestSpecExamplesOverHTTP drives the worked examples through a real server.
func TestSpecExamplesOverHTTP(t *testing.T) {
	l := newTestLog(t, 8)
	tw := newTestWitness(t, witnessOpts{now: fixedClock(specCosigTime), logs: []*policy.Log{l.policyLog(t, "")}})
	if got := mustCosign(t, tw.url, l.body(0, 0)); got != specCosigLine {
		t.Errorf("add-checkpoint(size 0) = %q, want %q", got, specCosigLine)
	}
	mustCosign(t, tw.url, l.body(0, 5))
	got := mustCosign(t, tw.url, []byte(specBody5to8))
	v, _ := fnote.NewVerifierForCosignatureV1(specWitnessVKy)
	if _, err := note.Open(append(l.checkpoint(8), got...), note.VerifierList(v)); err != nil {
		t.Errorf("cosignature of the 5→8 request does not verify: %v", err)
	}
}

func TestAddCheckpointStatus(t *testing.T) {
	l := newTestLog(t, 16)
	fork := newTestLogPrefix(t, 16, "forked ")
	other, _ := seededKey(t, 0x03, "other.example/log")
	otherSigner, _ := note.NewSigner(other)
	impostorSkey, _ := seededKey(t, 0x04, testOrigin) // same name, other key
	impostor, _ := note.NewSigner(impostorSkey)
	unknownSkey, _ := seededKey(t, 0x05, "stranger.example/w")
	unknown, _ := note.NewSigner(unknownSkey)

	sign := func(text string, signers ...note.Signer) []byte {
		n, err := note.Sign(&note.Note{Text: text}, signers...)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	cp8 := string(l.checkpoint(8))
	badSig := []byte(cp8)
	badSig[len(badSig)-10] ^= 'A' ^ 'B' // stays base64, breaks the signature
	if badSig[len(badSig)-10] == cp8[len(cp8)-10] {
		t.Fatal("mangling failed")
	}
	proof58 := l.proof(5, 8)
	badProof := append([][]byte{}, proof58...)
	badProof[1] = bytes.Repeat([]byte{7}, 32)
	emptyTextWrongRoot := fmt.Sprintf("%s\n0\n%s\n", testOrigin, base64.StdEncoding.EncodeToString(l.tree.HashAt(3)))
	tooManyProofLines := "old 5\n" + strings.Repeat(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n", 64) + "\n" + cp8
	mostProofLines := "old 5\n" + strings.Repeat(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n", 63) + "\n" + cp8
	// The log's valid signature line and a failing line of the same key, in
	// both orders (x/mod's note.Open checks only the first line of a key).
	goodLine := cp8[strings.LastIndex(cp8[:len(cp8)-1], "\n")+1:]
	failingLine := string(badSig[strings.LastIndex(string(badSig[:len(badSig)-1]), "\n")+1:])
	validThenFailing := cp8 + failingLine
	failingThenValid := strings.TrimSuffix(cp8, goodLine) + failingLine + goodLine

	tests := []struct {
		name  string
		setup [][]byte // bodies that must be cosigned first
		body  []byte
		code  int
		ct    string
		want  string // exact body, if not empty
	}{
		{name: "200 first contact old 0", body: l.body(0, 5), code: 200},
		{name: "200 size 0", body: l.body(0, 0), code: 200},
		{name: "200 spec 5 to 8", setup: [][]byte{l.body(0, 5)}, body: []byte(specBody5to8), code: 200},
		{name: "200 same size same root again", setup: [][]byte{l.body(0, 8)}, body: l.body(8, 8), code: 200},
		{name: "200 unknown cosignature ignored", body: MarshalAddCheckpoint(0, nil, sign(l.text(8), l.signer, unknown)), code: 200},
		{name: "200 several log signatures", body: MarshalAddCheckpoint(0, nil, append([]byte(cp8), "— other.example/log "+strings.Repeat("A", 96)+"\n"...)), code: 200},

		{name: "400 old with leading zero", setup: [][]byte{l.body(0, 5)}, body: []byte(strings.Replace(specBody5to8, "old 5", "old 05", 1)), code: 400},
		{name: "400 old with plus", body: []byte("old +0\n\n" + cp8), code: 400},
		{name: "400 old negative", body: []byte("old -1\n\n" + cp8), code: 400},
		{name: "400 old trailing space", body: []byte("old 0 \n\n" + cp8), code: 400},
		{name: "400 old missing", body: []byte("\n" + cp8), code: 400},
		{name: "400 old not a number", body: []byte("old five\n\n" + cp8), code: 400},
		{name: "400 old overflows", body: []byte("old 18446744073709551616\n\n" + cp8), code: 400},
		{name: "400 trailing junk", body: []byte(specBody5to8 + "junk"), code: 400},
		{name: "400 trailing newline", body: []byte(specBody5to8 + "\n"), code: 400},
		{name: "400 64 proof lines", body: []byte(tooManyProofLines), code: 400},
		{name: "400 CR", body: []byte(strings.ReplaceAll(specBody5to8, "\n", "\r\n")), code: 400},
		{name: "400 CR in checkpoint", body: []byte("old 0\n\n" + strings.Replace(cp8, "\n8\n", "\n8\r\n", 1)), code: 400},
		{name: "400 no blank line", body: []byte("old 0\n" + cp8), code: 400},
		{name: "400 proof line not base64", body: []byte("old 5\nnot base64!\n\n" + cp8), code: 400},
		{name: "400 proof line not 32 bytes", body: []byte("old 5\nAAAA\n\n" + cp8), code: 400},
		{name: "400 proof line non-canonical base64", body: []byte("old 5\n" + base64.StdEncoding.EncodeToString(make([]byte, 32))[:42] + "B=\n\n" + cp8), code: 400},
		{name: "400 checkpoint size leading zero", body: MarshalAddCheckpoint(0, nil, sign(strings.Replace(l.text(8), "\n8\n", "\n08\n", 1), l.signer)), code: 400},
		{name: "400 checkpoint root short", body: MarshalAddCheckpoint(0, nil, sign(testOrigin+"\n8\nAAAA\n", l.signer)), code: 400},
		{name: "400 checkpoint without signatures", body: []byte("old 0\n\n" + l.text(8) + "\n"), code: 400},
		{name: "400 bad signature line", body: []byte("old 0\n\n" + l.text(8) + "\n- example.com/ledger AAAA\n"), code: 400},
		{name: "400 empty body", body: nil, code: 400},
		{name: "400 old 9 size 8", body: MarshalAddCheckpoint(9, nil, []byte(cp8)), code: 400},
		{name: "413 body too large", body: append([]byte("old 0\n"), bytes.Repeat([]byte("A"), MaxBodySize+1)...), code: 413},

		{name: "403 no log signature", body: MarshalAddCheckpoint(0, nil, sign(l.text(8), unknown)), code: 403},
		{name: "403 same name other key", body: MarshalAddCheckpoint(0, nil, sign(l.text(8), impostor)), code: 403},
		{name: "403 log signature fails", body: MarshalAddCheckpoint(0, nil, badSig), code: 403},
		{name: "403 valid then failing log signature", body: MarshalAddCheckpoint(0, nil, []byte(validThenFailing)), code: 403},
		{name: "403 failing then valid log signature", body: MarshalAddCheckpoint(0, nil, []byte(failingThenValid)), code: 403},

		{name: "404 unknown origin", body: MarshalAddCheckpoint(0, nil, sign("other.example/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", otherSigner)), code: 404},

		{name: "409 first contact non-zero old", body: l.body(5, 8), code: 409, ct: "text/x.tlog.size", want: "0\n"},
		{name: "409 stale old", setup: [][]byte{l.body(0, 5), l.body(5, 8)}, body: l.body(5, 10), code: 409, ct: "text/x.tlog.size", want: "8\n"},
		{name: "409 old 0 after state", setup: [][]byte{l.body(0, 5)}, body: l.body(0, 8), code: 409, ct: "text/x.tlog.size", want: "5\n"},

		{name: "422 63 proof lines parse (the most allowed), proof wrong", setup: [][]byte{l.body(0, 5)}, body: []byte(mostProofLines), code: 422},
		{name: "422 bad proof", setup: [][]byte{l.body(0, 5)}, body: MarshalAddCheckpoint(5, badProof, l.checkpoint(8)), code: 422},
		{name: "422 missing proof", setup: [][]byte{l.body(0, 5)}, body: MarshalAddCheckpoint(5, nil, l.checkpoint(8)), code: 422},
		{name: "422 proof for another old size", setup: [][]byte{l.body(0, 5)}, body: MarshalAddCheckpoint(5, l.proof(4, 8), l.checkpoint(8)), code: 422},
		{name: "422 proof with old 0", body: MarshalAddCheckpoint(0, proof58, l.checkpoint(8)), code: 422},
		{name: "422 size 0 wrong root", body: MarshalAddCheckpoint(0, nil, sign(emptyTextWrongRoot, l.signer)), code: 422},
		{name: "422 same size different root", setup: [][]byte{l.body(0, 8)}, body: MarshalAddCheckpoint(8, nil, fork.checkpoint(8)), code: 422},
		{name: "422 same size with a proof", setup: [][]byte{l.body(0, 8)}, body: MarshalAddCheckpoint(8, proof58[:1], l.checkpoint(8)), code: 422},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tw := newTestWitness(t, witnessOpts{logs: []*policy.Log{l.policyLog(t, "")}})
			for _, b := range tt.setup {
				mustCosign(t, tw.url, b)
			}
			before, err := tw.w.Latest(t.Context(), testOrigin)
			if err != nil {
				t.Fatal(err)
			}
			r := post(t, tw.url, tt.body)
			if r.code != tt.code {
				t.Fatalf("POST /add-checkpoint %q = %d %q, want %d", tt.body, r.code, r.body, tt.code)
			}
			if r.code != 200 {
				// A refusal changes nothing the witness cosigned.
				after, err := tw.w.Latest(t.Context(), testOrigin)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(before, after) {
					t.Errorf("state changed by a refused request: before %q, after %q", before, after)
				}
			}
			if tt.ct != "" && r.ct != tt.ct {
				t.Errorf("Content-Type = %q, want %q", r.ct, tt.ct)
			}
			if tt.want != "" && r.body != tt.want {
				t.Errorf("body = %q, want %q", r.body, tt.want)
			}
			if r.code == 200 {
				req, err := ParseAddCheckpoint(tt.body)
				if err != nil {
					t.Fatal(err)
				}
				v := tw.w.cosigner.Verifier()
				text := req.Checkpoint[:bytes.Index(req.Checkpoint, []byte("\n\n"))+2]
				if _, err := note.Open(append(bytes.Clone(text), r.body...), note.VerifierList(v)); err != nil {
					t.Errorf("200 body %q is not a valid cosignature: %v", r.body, err)
				}
			}
		})
	}
}

// TestStateAndMonitoring checks what the witness remembers and serves.
func TestStateAndMonitoring(t *testing.T) {
	l := newTestLog(t, 8)
	fork := newTestLogPrefix(t, 8, "forked ")
	tw := newTestWitness(t, witnessOpts{logs: []*policy.Log{l.policyLog(t, "")}})
	mon := tw.url.JoinPath(OriginID(testOrigin), "checkpoint").String()
	if r := get(t, mon); r.code != 404 {
		t.Errorf("GET monitoring before any cosignature = %d, want 404", r.code)
	}
	if r := get(t, tw.url.JoinPath(strings.Repeat("ab", 32), "checkpoint").String()); r.code != 404 {
		t.Errorf("GET monitoring of unknown origin = %d, want 404", r.code)
	}
	line := mustCosign(t, tw.url, l.body(0, 5))
	r := get(t, mon)
	if want := string(l.checkpoint(5)) + line; r.code != 200 || r.body != want {
		t.Errorf("GET monitoring = %d %q, want 200 %q", r.code, r.body, want)
	}

	// A contradicting checkpoint is refused, kept, and becomes evidence.
	if r := post(t, tw.url, MarshalAddCheckpoint(5, nil, fork.checkpoint(5))); r.code != 422 {
		t.Fatalf("same size, other root = %d, want 422", r.code)
	}
	if r := get(t, mon); !strings.HasPrefix(r.body, string(l.checkpoint(5))) {
		t.Errorf("state changed after a refused checkpoint: %q", r.body)
	}
	rej, err := tw.store.Rejected(t.Context(), testOrigin)
	if err != nil || len(rej) != 1 || !bytes.Equal(rej[0], fork.checkpoint(5)) {
		t.Errorf("Rejected() = %q, %v; want the forked checkpoint", rej, err)
	}
	r = get(t, tw.url.JoinPath("v1", "evidence").String())
	var ev []*Evidence
	if err := json.Unmarshal([]byte(r.body), &ev); err != nil || len(ev) != 1 {
		t.Fatalf("GET /v1/evidence = %q (%v), want one bundle", r.body, err)
	}
	if err := VerifyEvidence(ev[0], l.policyLog(t, "").Verifier); err != nil {
		t.Errorf("VerifyEvidence(served evidence) = %v", err)
	}
	if ev[0].Kind != KindSameSize {
		t.Errorf("evidence kind = %q, want %q", ev[0].Kind, KindSameSize)
	}
	// A contradiction that arrives with the wrong old size is answered 409
	// but still recorded.
	fork2 := newTestLogPrefix(t, 8, "other fork ")
	if r := post(t, tw.url, MarshalAddCheckpoint(0, nil, fork2.checkpoint(5))); r.code != 409 {
		t.Fatalf("contradiction with old 0 = %d, want 409", r.code)
	}
	if ev := servedEvidence(t, tw); len(ev) != 2 {
		t.Errorf("evidence after a contradiction answered 409: %d bundles, want 2", len(ev))
	}
	// Seeing the same contradiction again records nothing new.
	post(t, tw.url, MarshalAddCheckpoint(5, nil, fork.checkpoint(5)))
	m := get(t, tw.url.JoinPath("metrics").String())
	if !strings.Contains(m.body, "witness_fork_evidence_total 2") {
		t.Errorf("metrics lack witness_fork_evidence_total 2:\n%s", m.body)
	}
	if h := get(t, tw.url.JoinPath("healthz").String()); h.code != 200 {
		t.Errorf("GET /healthz = %d", h.code)
	}
}

func TestRequestBudget(t *testing.T) {
	l := newTestLog(t, 8)
	now := time.Unix(1700000000, 0)
	tw := newTestWitness(t, witnessOpts{
		logs:   []*policy.Log{l.policyLog(t, "")},
		budget: Budget{Rate: 0.5, Burst: 2},
		now:    func() time.Time { return now },
	})
	// Requests without a valid log signature spend nothing, and neither
	// do reads of the monitoring endpoint (they have their own budget).
	unsigned := MarshalAddCheckpoint(0, nil, []byte(l.text(5)+"\n— stranger.example/x AAAAAAAA\n"))
	mon := tw.url.JoinPath(OriginID(testOrigin), "checkpoint").String()
	for range 5 {
		if r := post(t, tw.url, unsigned); r.code != 403 {
			t.Fatalf("unsigned request = %d, want 403", r.code)
		}
		get(t, mon)
	}
	if r := get(t, mon); r.code != http.StatusTooManyRequests {
		t.Errorf("monitoring reads beyond their budget = %d, want 429", r.code)
	}
	mustCosign(t, tw.url, l.body(0, 5))
	mustCosign(t, tw.url, l.body(5, 6))
	r := post(t, tw.url, l.body(6, 7))
	if r.code != http.StatusTooManyRequests || r.hdr.Get("Retry-After") != "2" {
		t.Fatalf("third request in a burst of 2 = %d Retry-After %q, want 429 Retry-After 2", r.code, r.hdr.Get("Retry-After"))
	}
	now = now.Add(2 * time.Second)
	mustCosign(t, tw.url, l.body(6, 7))
	// Unknown origins are 404 and spend nothing.
	if r := post(t, tw.url, []byte("old 0\n\nother.example/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— other.example/log AAAAAAAA\n")); r.code != 404 {
		t.Errorf("unknown origin = %d, want 404", r.code)
	}
}

// TestReplaysSpendNoBudget: anyone can send the log's public checkpoints
// again (issue 16, fault 5). A replay of the checkpoint cosigned last is
// answered with the stored cosignature, and a 409 or a failed proof from
// the stored state; none of them spends the budget that the log's next
// checkpoint needs, and a failed proof sent again is not stored again.
func TestReplaysSpendNoBudget(t *testing.T) {
	l := newTestLog(t, 8)
	now := time.Unix(1700000000, 0)
	tw := newTestWitness(t, witnessOpts{
		logs:   []*policy.Log{l.policyLog(t, "")},
		budget: Budget{Rate: 0.5, Burst: 3},
		now:    func() time.Time { return now },
	})
	first := mustCosign(t, tw.url, l.body(0, 5))
	badProof := l.body(5, 8)
	badProof = bytes.Replace(badProof, []byte("\n\n"), []byte("\n"+base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n\n"), 1)
	for i := range 50 {
		now = now.Add(time.Second) // cosignatures made now would carry a new time
		if got := mustCosign(t, tw.url, l.body(5, 5)); got != first {
			t.Fatalf("replay %d answered %q, want the stored cosignature %q", i, got, first)
		}
		if r := post(t, tw.url, l.body(0, 5)); r.code != http.StatusConflict || r.body != "5\n" {
			t.Fatalf("replay with old 0 = %d %q, want 409 5", r.code, r.body)
		}
		if r := post(t, tw.url, badProof); r.code != http.StatusUnprocessableEntity {
			t.Fatalf("a bad proof = %d %q, want 422", r.code, r.body)
		}
	}
	// 50 seconds have passed: the budget refilled to its burst (3), and
	// none of the 150 requests above took from it.
	for _, size := range []uint64{6, 7, 8} {
		mustCosign(t, tw.url, l.body(size-1, size))
	}
	if r := post(t, tw.url, l.body(8, 8)); r.code != http.StatusOK {
		t.Errorf("replay after the budget is spent = %d %q, want 200", r.code, r.body)
	}
	l.grow(9)
	if r := post(t, tw.url, l.body(8, 9)); r.code != http.StatusTooManyRequests {
		t.Errorf("fourth advancing request in a burst of 3 = %d %q, want 429", r.code, r.body)
	}
	if rej, err := tw.store.Rejected(t.Context(), testOrigin); err != nil || len(rej) != 1 {
		t.Errorf("rejected checkpoints stored: %d, %v; want the one sent 50 times, once", len(rej), err)
	}
	if n := strings.Count(tw.logs.String(), "refused log-signed checkpoint"); n != 1 {
		t.Errorf("the witness logged %d refusals of the same checkpoint, want 1", n)
	}
	m := get(t, tw.url.JoinPath("metrics").String())
	if !strings.Contains(m.body, "witness_add_checkpoint_replays_total 51") {
		t.Errorf("metrics lack witness_add_checkpoint_replays_total 51:\n%s", m.body)
	}
}

// TestMonitoringBudgetPerClient: the monitoring endpoint's budget is per
// origin and client, so a client that floods it gets 429 while another
// (a gossip peer) is still served; and the buckets stay bounded when many
// clients come and go.
func TestMonitoringBudgetPerClient(t *testing.T) {
	l := newTestLog(t, 8)
	now := time.Unix(1700000000, 0)
	tw := newTestWitness(t, witnessOpts{
		logs:   []*policy.Log{l.policyLog(t, "")},
		budget: Budget{Rate: 0.5, Burst: 2},
		now:    func() time.Time { return now },
	})
	mustCosign(t, tw.url, l.body(0, 5))
	read := func(remote string) int {
		req := httptest.NewRequest("GET", "/"+OriginID(testOrigin)+"/checkpoint", nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		tw.w.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	for range 10 {
		read("192.0.2.1:4000")
	}
	if code := read("192.0.2.1:4001"); code != http.StatusTooManyRequests {
		t.Errorf("the flooding client's next read = %d, want 429", code)
	}
	for _, peer := range []string{"192.0.2.2:4000", "[2001:db8::1]:4000"} {
		if code := read(peer); code != http.StatusOK {
			t.Errorf("a read by %s while another client floods = %d, want 200", peer, code)
		}
	}
	// One IPv6 /64 is one client.
	read("[2001:db8::2]:4000")
	if code := read("[2001:db8::3]:4000"); code != http.StatusTooManyRequests {
		t.Errorf("a third read from one IPv6 /64 = %d, want 429", code)
	}
	// Many clients: once they are idle long enough to have refilled, their
	// buckets are forgotten.
	for i := range maxBuckets + 10 {
		read(fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255))
	}
	if n := len(tw.w.readLimiter.buckets); n > maxBuckets+1 {
		t.Errorf("%d buckets after %d clients, want at most %d", n, maxBuckets+10, maxBuckets+1)
	}
	now = now.Add(time.Minute)
	read("198.51.100.1:1")
	if n := len(tw.w.readLimiter.buckets); n > 2 {
		t.Errorf("%d buckets after every client was idle for a minute, want the new one", n)
	}
}

// TestStorageRemoved removes the witness's data directory under it (issue
// 16, fault 6). Badger keeps writing into the unlinked files and its
// fsyncs succeed, so without a check the witness would cosign states that
// no restart can read. It must answer 503 with the reason to everything
// that reads or writes its state, and /healthz must say so.
func TestStorageRemoved(t *testing.T) {
	l := newTestLog(t, 8)
	tw := newTestWitness(t, witnessOpts{logs: []*policy.Log{l.policyLog(t, "")}})
	mustCosign(t, tw.url, l.body(0, 5))
	if h := get(t, tw.url.JoinPath("healthz").String()); h.code != 200 {
		t.Fatalf("GET /healthz before = %d %q", h.code, h.body)
	}
	if err := os.RemoveAll(tw.dir); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		body []byte
	}{
		{"a new checkpoint", l.body(5, 6)},
		{"a replay", l.body(5, 5)},
		{"a stale old", l.body(0, 6)},
	} {
		r := post(t, tw.url, c.body)
		if r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, ErrStorageFailed.Error()) {
			t.Errorf("%s after the data directory was removed = %d %q, want 503 %q", c.name, r.code, r.body, ErrStorageFailed)
		}
	}
	for _, path := range []string{"healthz", OriginID(testOrigin) + "/checkpoint", "v1/evidence"} {
		if r := get(t, tw.url.JoinPath(path).String()); r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, "removed or replaced") {
			t.Errorf("GET /%s after the data directory was removed = %d %q, want 503 with the reason", path, r.code, r.body)
		}
	}
	// Close must return although badger cannot flush its memtable.
	tw.close()
}

// TestStorageRemovedDuringCommit removes the data directory between the
// store's check and badger's commit: the commit succeeds (into unlinked
// files), and the cosignature must still not be given.
func TestStorageRemovedDuringCommit(t *testing.T) {
	l := newTestLog(t, 8)
	tw := newTestWitness(t, witnessOpts{logs: []*policy.Log{l.policyLog(t, "")}})
	mustCosign(t, tw.url, l.body(0, 5))
	tw.store.testHookUpdated = func() {
		if err := os.RemoveAll(tw.dir); err != nil {
			t.Error(err)
		}
	}
	if r := post(t, tw.url, l.body(5, 6)); r.code != http.StatusServiceUnavailable {
		t.Errorf("add-checkpoint whose commit went into a removed directory = %d %q, want 503", r.code, r.body)
	}
	if r := get(t, tw.url.JoinPath(OriginID(testOrigin), "checkpoint").String()); r.code != http.StatusServiceUnavailable {
		t.Errorf("monitoring endpoint after that = %d %q, want 503 (its state was not persisted)", r.code, r.body)
	}
	tw.close()
}

// TestAddCheckpointAfterClientHalfClose: a client that half-closes its
// connection after sending (its request context then ends in net/http)
// still gets the decision, not a 500 (found by testing/hostile).
func TestAddCheckpointAfterClientHalfClose(t *testing.T) {
	l := newTestLog(t, 8)
	tw := newTestWitness(t, witnessOpts{logs: []*policy.Log{l.policyLog(t, "")}})
	for _, c := range []struct {
		body []byte
		want int
	}{{l.body(0, 5), http.StatusOK}, {l.body(0, 8), http.StatusConflict}} {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		req := httptest.NewRequestWithContext(ctx, "POST", "/add-checkpoint", bytes.NewReader(c.body))
		rec := httptest.NewRecorder()
		tw.w.Handler().ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("add-checkpoint with its request context ended = %d %q, want %d", rec.Code, rec.Body.String(), c.want)
		}
	}
}
