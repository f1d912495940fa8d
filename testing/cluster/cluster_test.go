package cluster

import (
	"context"
	"errors"
	"testing"

	"github.com/vmledger/vmledger/agent/attest"
	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/coproc/soft"
	"github.com/vmledger/vmledger/log/bundle"
	"github.com/vmledger/vmledger/testing/mysqltest"
)

func testConfig() *measure.Config {
	cmdline := "console=ttyS0 ro"
	return &measure.Config{
		MemoryBytes: 2 << 30, CPUCount: 2,
		NICs:          []measure.NIC{{MAC: measure.MAC{0x52, 0x54, 0, 1, 2, 3}, VLAN: 7}},
		Disks:         []measure.Disk{{Target: "vda", SHA256: &measure.Digest{0xd1}}},
		KernelCmdline: &cmdline,
		Packages:      []measure.Package{{Name: "nginx", Version: "1.22.1-9", ManifestSHA256: measure.Digest{0xaa}}},
	}
}

func secret(b byte) measure.Secret {
	var s measure.Secret
	for i := range s {
		s[i] = b
	}
	return s
}

// TestDeployment attests several VMs through the whole deployment, then
// stops every server and verifies the bundles offline.
func TestDeployment(t *testing.T) {
	testDeployment(t, Options{Dir: t.TempDir()})
}

// TestDeploymentTessera is TestDeployment with the log on Tessera and
// MariaDB: admission, witnesses and the client on the other engine.
func TestDeploymentTessera(t *testing.T) {
	testDeployment(t, Options{Dir: t.TempDir(), MySQLDSN: mysqltest.NewDatabase(t)})
}

func testDeployment(t *testing.T, o Options) {
	ctx := t.Context()
	c, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	type vm struct {
		id     string
		secret measure.Secret
		raw    []byte
	}
	var vms []vm
	for i, id := range []string{"web01", "web02", "db01"} {
		s := secret(byte(i + 1))
		r, err := c.Attest(ctx, id, testConfig(), s)
		if err != nil {
			t.Fatalf("Attest(%s): %v", id, err)
		}
		if len(r.Report.Cosigners) < 2 {
			t.Fatalf("Attest(%s): cosigned by %v, want at least 2", id, r.Report.Cosigners)
		}
		vms = append(vms, vm{id, s, r.BundleJSON})
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Offline: only the bundle and the trust file.
	trust, err := client.LoadTrust(c.TrustFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vms {
		b, err := bundle.Parse(v.raw)
		if err != nil {
			t.Fatal(err)
		}
		s := v.secret
		if _, err := client.Verify(ctx, b, trust, &client.Expected{VMID: v.id, Config: testConfig(), Secret: &s}, client.Options{}); err != nil {
			t.Errorf("offline Verify(%s) = %v", v.id, err)
		}
		// Another VM's secret gives another root: refused.
		other := secret(0x77)
		if _, err := client.Verify(ctx, b, trust, &client.Expected{VMID: v.id, Config: testConfig(), Secret: &other}, client.Options{}); !errors.Is(err, client.ErrConfiguration) {
			t.Errorf("Verify(%s) with the wrong secret = %v, want ErrConfiguration", v.id, err)
		}
	}
}

// TestLaunchRefusals breaks one link of the chain at a time; the flow must
// refuse with that link's error.
func TestLaunchRefusals(t *testing.T) {
	ctx := t.Context()
	c, err := Start(ctx, Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := testConfig()

	t.Run("ok", func(t *testing.T) {
		if _, err := c.Attest(ctx, "vm-ok", cfg, secret(1)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("wrong root", func(t *testing.T) {
		changed := *cfg
		changed.CPUCount = 32
		_, err := attest.Attest(ctx, c.Agent(), attest.Request{VMID: "vm-root", Config: &changed, Secret: secret(1), Expected: cfg})
		if !errors.Is(err, attest.ErrVerify) || !errors.Is(err, client.ErrConfiguration) {
			t.Fatalf("err = %v, want ErrVerify and ErrConfiguration", err)
		}
	})
	t.Run("unenrolled key", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := soft.Init(ctx, dir, soft.ECDSAP256); err != nil {
			t.Fatal(err)
		}
		cp, err := soft.Open(ctx, dir, soft.Options{})
		if err != nil {
			t.Fatal(err)
		}
		a := c.Agent()
		a.CoProcessor = cp
		var refused *attest.RefusedError
		_, err = attest.Attest(ctx, a, attest.Request{VMID: "vm-key", Config: cfg, Secret: secret(1)})
		if !errors.As(err, &refused) || refused.Status != 403 || refused.Reason != "unknown-key" {
			t.Fatalf("err = %v, want 403 unknown-key", err)
		}
	})
	t.Run("log unreachable", func(t *testing.T) {
		a := c.Agent()
		a.LogURL = "http://127.0.0.1:1"
		if _, err := attest.Attest(ctx, a, attest.Request{VMID: "vm-log", Config: cfg, Secret: secret(1)}); !errors.Is(err, attest.ErrLog) {
			t.Fatalf("err = %v, want ErrLog", err)
		}
	})
	t.Run("witness quorum missing", func(t *testing.T) {
		// Two of three witnesses down: no checkpoint can be published, so
		// the agent gives up at its deadline without a bundle.
		c.StopWitness(0)
		c.StopWitness(1)
		a := c.Agent()
		a.WaitTimeout = 2e9
		_, err := attest.Attest(ctx, a, attest.Request{VMID: "vm-quorum", Config: cfg, Secret: secret(1)})
		if !errors.Is(err, attest.ErrNotWitnessed) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want ErrNotWitnessed after the deadline", err)
		}
	})
}
