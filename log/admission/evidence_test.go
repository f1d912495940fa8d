package admission

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/vmledger/vmledger/coproc/evidence"
)

// testIdentity is a well-formed TPM identity around a software P-256 point.
func testIdentity(t *testing.T) *evidence.Identity {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := evidence.AKTemplate
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: k.X.FillBytes(make([]byte, 32))},
		Y: tpm2.TPM2BECCParameter{Buffer: k.Y.FillBytes(make([]byte, 32))},
	})
	name := append([]byte{0, 0x0b}, make([]byte, 32)...)
	id, err := evidence.ParseIdentity((&evidence.Identity{AKPublic: tpm2.Marshal(pub), RootNVName: name, CounterNVName: name}).Marshal())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestRecordTPMIdentity(t *testing.T) {
	dv := newDevice(t, true)
	rec, err := NewEnrolment(dv.pub, "host-a", time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	id := testIdentity(t)
	rec.TPMIdentity = id.String()
	got, err := ParseRecord(rec.Marshal())
	if err != nil || got.TPMIdentity != id.String() {
		t.Fatalf("ParseRecord = %+v, %v", got, err)
	}
	for name, edit := range map[string]func(r *Record){
		"identity not base64":      func(r *Record) { r.TPMIdentity = "not base64!" },
		"identity truncated":       func(r *Record) { r.TPMIdentity = id.String()[:20] },
		"revocation with identity": func(r *Record) { *r = *NewRevocation(rec.KeyID, time.Now()); r.TPMIdentity = id.String() },
	} {
		t.Run(name, func(t *testing.T) {
			r := *rec
			edit(&r)
			if _, err := ParseRecord(r.Marshal()); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseRecord = %v, want ErrMalformed", err)
			}
		})
	}
	if !strings.Contains(string(rec.Marshal()), `"name":"host-a","tpm_identity":"`) {
		t.Errorf("record field order: %s", rec.Marshal())
	}
}
