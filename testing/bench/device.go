package bench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/vmledger/vmledger/coproc"
)

// device is a co-processor key that signs statements with counters the
// benchmark chooses, outside the timed part (a TPM signs at a few per
// second; the benchmarks measure the log, not the signer).
type device struct {
	priv crypto.Signer
	pub  crypto.PublicKey
	id   string
}

func newDevice(p256 bool) (*device, error) {
	var priv crypto.Signer
	var err error
	if p256 {
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	id, err := coproc.KeyID(priv.Public())
	if err != nil {
		return nil, err
	}
	return &device{priv: priv, pub: priv.Public(), id: id}, nil
}

func (dv *device) pem() ([]byte, error) { return cryptoutils.MarshalPublicKeyToPEM(dv.pub) }

func (dv *device) sign(pae []byte) ([]byte, error) { return coproc.SignPAE(dv.priv, pae) }

var benchParams = []string{"cpu.count", "kernel.cmdline", "memory.bytes"}

// attest returns the canonical envelope of a statement about vm.
func (dv *device) attest(vm string, counter uint64, a coproc.Anchor, now time.Time) ([]byte, error) {
	st, err := coproc.NewStatement(coproc.Claim{VMID: vm, Root: sha256.Sum256([]byte(vm)), Parameters: benchParams, Freshness: a},
		coproc.CoprocessorState{KeyID: dv.id, Counter: counter}, now)
	if err != nil {
		return nil, err
	}
	env, err := coproc.Seal(st, dv.pub, dv.sign)
	if err != nil {
		return nil, err
	}
	return env.Canonical()
}

// The coproc.CoProcessor methods that enrolment needs (PublicKey, KeyID,
// Info); Attest is never called.

func (dv *device) PublicKey() crypto.PublicKey { return dv.pub }
func (dv *device) KeyID() string               { return dv.id }
func (dv *device) Close() error                { return nil }
func (dv *device) Attest(context.Context, coproc.Claim) (*coproc.Envelope, error) {
	return nil, fmt.Errorf("bench device: Attest is not implemented")
}

// Info describes the device as what it is, a software key (no TPM
// identity): enrolment reads its public key from here.
func (dv *device) Info(context.Context) (*coproc.Info, error) {
	pemKey, err := dv.pem()
	if err != nil {
		return nil, err
	}
	alg := "ed25519"
	if _, ok := dv.pub.(*ecdsa.PublicKey); ok {
		alg = "ecdsa-p256"
	}
	return &coproc.Info{Backend: "soft", Device: "bench (in memory)", KeyID: dv.id, PublicKeyPEM: string(pemKey), Algorithm: alg}, nil
}

var _ coproc.CoProcessor = (*device)(nil)

// signEnvelopes makes per[i] envelopes for each device i, counters 1…, in
// parallel on all cores.
func signEnvelopes(devs []*device, per func(i int) int, a coproc.Anchor, prefix string) ([][][]byte, error) {
	envs := make([][][]byte, len(devs))
	_, err := collect(len(devs), func(i int) ([]time.Duration, error) {
		now := time.Now()
		for j := range per(i) {
			b, err := devs[i].attest(fmt.Sprintf("%s-%d-%d", prefix, i, j), uint64(j+1), a, now)
			if err != nil {
				return nil, err
			}
			envs[i] = append(envs[i], b)
		}
		return nil, nil
	})
	return envs, err
}
