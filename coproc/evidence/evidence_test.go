package evidence_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/evidence"
	"github.com/vmledger/vmledger/coproc/tpm"
	"github.com/vmledger/vmledger/coproc/tpm/swtpmtest"
	"github.com/vmledger/vmledger/coproc/tpmsim"
)

type noClose struct{ transport.TPM }

func (noClose) Close() error { return nil }

// backends opens two provisioned TPM co-processors: on the simulator (a
// process-wide singleton) two with their own SRK, keys and indexes; on
// swtpm two TPMs.
func backends(t *testing.T) map[string]func(t *testing.T) (c, other *tpm.CoProcessor) {
	return map[string]func(t *testing.T) (c, other *tpm.CoProcessor){
		"simulator": func(t *testing.T) (c, other *tpm.CoProcessor) {
			sim, err := tpmsim.Open()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sim.Close() })
			return provisioned(t, sim, tpm.Config{}), provisioned(t, sim, tpm.Config{
				SRKHandle: 0x81000B00, KeyHandle: 0x81000B01, AKHandle: 0x81000B02,
				RootIndex: 0x01000B00, CounterIndex: 0x01000B01,
			})
		},
		"swtpm": func(t *testing.T) (c, other *tpm.CoProcessor) {
			var cs [2]*tpm.CoProcessor
			for i := range cs {
				sw := swtpmtest.Start(t)
				tr, err := tpm.DialSwtpm(t.Context(), sw.Addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { tr.Close() })
				cs[i] = provisioned(t, tr, tpm.Config{})
			}
			return cs[0], cs[1]
		},
	}
}

func provisioned(t *testing.T, tr transport.TPM, cfg tpm.Config) *tpm.CoProcessor {
	t.Helper()
	if _, err := tpm.Provision(t.Context(), tr, cfg); err != nil {
		t.Fatal(err)
	}
	c, err := tpm.Open(t.Context(), noClose{tr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func claim(i int) coproc.Claim {
	return coproc.Claim{
		VMID:       "web01",
		Root:       sha256.Sum256(fmt.Appendf(nil, "config %d", i)),
		Parameters: []string{"cpu.count", "kernel.cmdline", "memory.bytes"},
		Freshness:  coproc.Anchor{Origin: "example.com/ledger", Size: uint64(10 + i), Root: sha256.Sum256(fmt.Appendf(nil, "checkpoint %d", i))},
	}
}

func attest(t *testing.T, c *tpm.CoProcessor, i int) *coproc.Statement {
	t.Helper()
	env, err := c.Attest(t.Context(), claim(i))
	if err != nil {
		t.Fatal(err)
	}
	st, err := coproc.VerifyStatement(env, c.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// withEvidence returns a copy of st carrying ev (and the fields edit sets).
func withEvidence(st *coproc.Statement, ev []byte, edit func(*coproc.Statement)) *coproc.Statement {
	cp := *st
	cp.Subject = append([]coproc.Subject{}, st.Subject...)
	cp.Predicate.Coprocessor.Evidence = base64.StdEncoding.EncodeToString(ev)
	if edit != nil {
		edit(&cp)
	}
	return &cp
}

func TestEvidence(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			c, other := open(t)
			id := c.Identity()
			// The identity round-trips through its encodings.
			if got, err := evidence.ParseIdentityString(id.String()); err != nil || !bytes.Equal(got.Marshal(), id.Marshal()) {
				t.Fatalf("ParseIdentityString: %v", err)
			}
			if got, err := evidence.FindPEM(id.PEM()); err != nil || got == nil || !bytes.Equal(got.Marshal(), id.Marshal()) {
				t.Fatalf("FindPEM: %v", err)
			}

			first := attest(t, c, 1)
			second := attest(t, c, 2)
			rep1, err := evidence.Verify(first, id)
			if err != nil {
				t.Fatalf("Verify(first): %v", err)
			}
			rep2, err := evidence.Verify(second, id)
			if err != nil {
				t.Fatalf("Verify(second): %v", err)
			}
			if rep2.Clock < rep1.Clock || rep2.ResetCount != rep1.ResetCount {
				t.Errorf("reports %v then %v: the clock went back or the TPM reset", rep1, rep2)
			}

			// go-tpm reads our TPMS_ATTEST blobs: NV certifications of the
			// enrolled indexes with the statement's root and counter.
			ev, err := evidence.Parse(second.EvidenceBytes())
			if err != nil {
				t.Fatal(err)
			}
			root := second.ConfigRoot()
			for _, tc := range []struct {
				cert evidence.Certification
				name []byte
				want []byte
			}{
				{ev.Root, id.RootNVName, root[:]},
				{ev.Counter, id.CounterNVName, binary.BigEndian.AppendUint64(nil, second.Predicate.Coprocessor.Counter)},
			} {
				att, err := tpm2.Unmarshal[tpm2.TPMSAttest](tc.cert.Attest)
				if err != nil {
					t.Fatalf("go-tpm Unmarshal TPMS_ATTEST: %v", err)
				}
				nv, err := att.Attested.NV()
				if err != nil || att.Magic != tpm2.TPMGeneratedValue || att.Type != tpm2.TPMSTAttestNV {
					t.Fatalf("TPMS_ATTEST magic %#x type %#x: %v", att.Magic, att.Type, err)
				}
				if !bytes.Equal(nv.IndexName.Buffer, tc.name) || !bytes.Equal(nv.NVContents.Buffer, tc.want) {
					t.Errorf("certified %x = %x, want %x = %x", nv.IndexName.Buffer, nv.NVContents.Buffer, tc.name, tc.want)
				}
				if _, err := tpm2.Unmarshal[tpm2.TPMTSignature](tc.cert.Signature); err != nil {
					t.Fatalf("go-tpm Unmarshal TPMT_SIGNATURE: %v", err)
				}
			}

			// Another TPM: its AK and its indexes.
			otherStmt := attest(t, other, 2)

			refusals := []struct {
				name string
				st   *coproc.Statement
				id   *evidence.Identity
				want error
			}{
				{"counter differs", withEvidence(second, second.EvidenceBytes(), func(s *coproc.Statement) { s.Predicate.Coprocessor.Counter = 1000 }), id, evidence.ErrCounter},
				{"root differs", withEvidence(second, second.EvidenceBytes(), func(s *coproc.Statement) {
					s.Subject[0].Digest.SHA256 = fmt.Sprintf("%x", sha256.Sum256([]byte("evil")))
				}), id, evidence.ErrRoot},
				{"replayed from the earlier attestation", withEvidence(second, first.EvidenceBytes(), nil), id, evidence.ErrRoot},
				{"replayed, root kept", withEvidence(second, first.EvidenceBytes(), func(s *coproc.Statement) { s.Subject = first.Subject }), id, evidence.ErrCounter},
				{"another VM", withEvidence(second, second.EvidenceBytes(), func(s *coproc.Statement) { s.Subject[0].Name = "vm:web02" }), id, evidence.ErrExtraData},
				{"another anchor", withEvidence(second, second.EvidenceBytes(), func(s *coproc.Statement) { s.Predicate.Freshness.Size++ }), id, evidence.ErrExtraData},
				{"another TPM's evidence", withEvidence(second, otherStmt.EvidenceBytes(), nil), id, evidence.ErrSignature},
				{"another TPM's AK enrolled", second, &evidence.Identity{AKPublic: other.Identity().AKPublic, RootNVName: id.RootNVName, CounterNVName: id.CounterNVName}, evidence.ErrSignature},
				{"other root index enrolled", second, &evidence.Identity{AKPublic: id.AKPublic, RootNVName: id.CounterNVName, CounterNVName: id.CounterNVName}, evidence.ErrIndexName},
				{"no evidence", withEvidence(second, nil, func(s *coproc.Statement) { s.Predicate.Coprocessor.AttestedBy = coproc.AttestedBySoftware }), id, evidence.ErrMissing},
			}
			for _, tc := range refusals {
				t.Run(tc.name, func(t *testing.T) {
					_, err := evidence.Verify(tc.st, tc.id)
					var ee *evidence.Error
					if !errors.Is(err, tc.want) || !errors.As(err, &ee) {
						t.Fatalf("Verify = %v, want %v", err, tc.want)
					}
				})
			}

			// Every byte of the evidence matters.
			raw := second.EvidenceBytes()
			for i := range raw {
				for _, flip := range []byte{0x01, 0x80} {
					b := bytes.Clone(raw)
					b[i] ^= flip
					if _, err := evidence.Verify(withEvidence(second, b, nil), id); err == nil {
						t.Fatalf("evidence with byte %d ^ %#x verified", i, flip)
					}
				}
			}
			for _, b := range [][]byte{raw[:len(raw)-1], append(bytes.Clone(raw), 0)} {
				if _, err := evidence.Verify(withEvidence(second, b, nil), id); !errors.Is(err, evidence.ErrEncoding) {
					t.Errorf("evidence of %d bytes (real %d): %v, want ErrEncoding", len(b), len(raw), err)
				}
			}
		})
	}
}

// BenchmarkVerify measures what admission and the verifier add per
// statement: evidence.Verify of a simulator-made statement (two ECDSA
// P-256 verifications and two TPMS_ATTEST parses).
func BenchmarkVerify(b *testing.B) {
	sim, err := tpmsim.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	if _, err := tpm.Provision(b.Context(), sim, tpm.Config{}); err != nil {
		b.Fatal(err)
	}
	c, err := tpm.Open(b.Context(), noClose{sim}, tpm.Config{})
	if err != nil {
		b.Fatal(err)
	}
	env, err := c.Attest(b.Context(), claim(1))
	if err != nil {
		b.Fatal(err)
	}
	st, err := env.Statement()
	if err != nil {
		b.Fatal(err)
	}
	id := c.Identity()
	for b.Loop() {
		if _, err := evidence.Verify(st, id); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzVerify: whatever the evidence bytes, Verify neither panics nor
// accepts anything but the TPM's own evidence (admission runs it on what
// any client sends). Also ParseIdentity on arbitrary bytes.
func FuzzVerify(f *testing.F) {
	sim, err := tpmsim.Open()
	if err != nil {
		f.Fatal(err)
	}
	defer sim.Close()
	if _, err := tpm.Provision(f.Context(), sim, tpm.Config{}); err != nil {
		f.Fatal(err)
	}
	c, err := tpm.Open(f.Context(), noClose{sim}, tpm.Config{})
	if err != nil {
		f.Fatal(err)
	}
	env, err := c.Attest(f.Context(), claim(1))
	if err != nil {
		f.Fatal(err)
	}
	st, err := env.Statement()
	if err != nil {
		f.Fatal(err)
	}
	id := c.Identity()
	real := st.EvidenceBytes()
	f.Add(real)
	f.Add(id.Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		evidence.ParseIdentity(b)
		if len(b) == 0 {
			return
		}
		_, err := evidence.Verify(withEvidence(st, b, nil), id)
		if err == nil && !bytes.Equal(b, real) {
			t.Fatalf("Verify accepted evidence %x", b)
		}
	})
}
