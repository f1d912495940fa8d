package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/testing/cluster"
)

// VerifyConfig configures [Verify].
type VerifyConfig struct {
	// Dir is the parent of the cluster's temporary directory.
	Dir string
	// Verifications is how many bundles (and signature sets) are verified
	// per round; Rounds how many rounds alternate the two, the best round
	// of each being reported.
	Verifications, Rounds int
}

// Verify attests one VM on a testing/cluster deployment and then verifies
// its bundle offline as a customer does (client.Verify: co-processor
// signature, log signature, witness cosignatures, inclusion, the
// configuration root recomputed from the configuration and secret), on one
// goroutine, against the signature checks alone (coproc.Verify and
// note.Open of the cosigned checkpoint) in the same run.
func Verify(ctx context.Context, cfg VerifyConfig) (*Report, error) {
	if cfg.Verifications < 1 {
		return nil, errors.New("verify: need Verifications ≥ 1")
	}
	cfg.Rounds = max(1, cfg.Rounds)
	dir, err := os.MkdirTemp(cfg.Dir, "vmledger-bench-verify-*")
	if err != nil {
		return nil, fmt.Errorf("verify: creating the cluster directory (pick another --dir): %w", err)
	}
	defer os.RemoveAll(dir)
	c, err := cluster.Start(ctx, cluster.Options{Dir: dir})
	if err != nil {
		return nil, fmt.Errorf("verify: starting the cluster: %w", err)
	}
	defer c.Close()
	mc, secret := benchVMConfig()
	res, err := c.Attest(ctx, "vm-bench", mc, secret)
	if err != nil {
		return nil, fmt.Errorf("verify: attesting: %w", err)
	}
	bd := res.Bundle
	exp := &client.Expected{VMID: "vm-bench", Config: mc, Secret: &secret}
	env, err := coproc.ParseEnvelope(bd.Entry)
	if err != nil {
		return nil, err
	}
	pub := c.CoProcessor.PublicKey()
	vs := []note.Verifier{c.Trust.Policy.Logs[0].Verifier}
	for _, w := range c.Trust.Policy.Witnesses {
		vs = append(vs, w.Verifier)
	}
	verifiers := note.VerifierList(vs...)
	n, err := note.Open(bd.Proof.Checkpoint, verifiers)
	if err != nil {
		return nil, err
	}
	sigs := len(n.Sigs)

	bundle := func() error {
		_, err := client.Verify(ctx, bd, c.Trust, exp, client.Options{})
		return err
	}
	signatures := func() error {
		if err := coproc.Verify(env, pub); err != nil {
			return err
		}
		n, err := note.Open(bd.Proof.Checkpoint, verifiers)
		if err == nil && len(n.Sigs) != sigs {
			err = fmt.Errorf("%d signatures, want %d", len(n.Sigs), sigs)
		}
		return err
	}
	var best [2]Row
	for r := range cfg.Rounds {
		for k, f := range []func() error{bundle, signatures} {
			lat := make([]time.Duration, 0, cfg.Verifications)
			m := startMeter()
			for range cfg.Verifications {
				t0 := time.Now()
				if err := f(); err != nil {
					return nil, fmt.Errorf("verify: %w", err)
				}
				lat = append(lat, time.Since(t0))
			}
			row := m.row("", cfg.Verifications, lat)
			if r == 0 || row.OpsPerSec > best[k].OpsPerSec {
				best[k] = row
			}
		}
	}
	best[0].Name = "client.Verify (bundle)"
	best[1].Name = fmt.Sprintf("signatures only (1 P-256 + %d Ed25519)", sigs)
	rep := &Report{Mode: "verify", Rows: best[:]}
	rep.Comparisons = append(rep.Comparisons, atMost("bundle time / signatures time", best[1].OpsPerSec/best[0].OpsPerSec, 1.25, "%.2f"))
	rep.Notes = append(rep.Notes, fmt.Sprintf("one goroutine; %d rounds of %d bundle verifications then %d signature sets, best round of each; the bundle is a real one from testing/cluster (2-of-3 witnesses); its configuration has %d parameters", cfg.Rounds, cfg.Verifications, cfg.Verifications, len(res.Measurement.Leaves)))
	return rep, nil
}

// benchVMConfig is a configuration like an operator's: two NICs, two
// disks, a kernel, and a few packages.
func benchVMConfig() (*measure.Config, measure.Secret) {
	cmdline := "console=ttyS0 root=/dev/vda1 ro"
	mc := &measure.Config{
		MemoryBytes: 8 << 30, CPUCount: 4, CPUAffinity: "0-3",
		NICs: []measure.NIC{
			{MAC: measure.MAC{0x52, 0x54, 0, 0x12, 0x34, 0x56}, VLAN: 100},
			{MAC: measure.MAC{0x52, 0x54, 0, 0x12, 0x34, 0x57}},
		},
		Disks: []measure.Disk{
			{Target: "vda", SHA256: &measure.Digest{1, 2, 3}},
			{Target: "vdb", SHA256: &measure.Digest{4, 5, 6}},
		},
		Kernel:        &measure.Digest{9},
		KernelCmdline: &cmdline,
		Packages: []measure.Package{
			{Name: "openssh-server", Version: "1:9.2p1-2", ManifestSHA256: measure.Digest{7}},
			{Name: "openssl", Version: "3.0.15-1", ManifestSHA256: measure.Digest{8}},
			{Name: "qemu-guest-agent", Version: "1:7.2+dfsg-7", ManifestSHA256: measure.Digest{10}},
		},
	}
	var secret measure.Secret
	copy(secret[:], bytes.Repeat([]byte{0x5a}, len(secret)))
	return mc, secret
}
