package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/agent/attest"
	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/agent/vmconfig"
	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/testing/cluster"
)

//go:embed demodata/web01.json
var demoConfig []byte

// walkthrough is the demo's closing text: the same deployment as separate
// processes, with swtpm. README.md's walkthrough is this text verbatim, and
// testing/e2e runs it (TestDemoWalkthrough), so that what the demo tells
// people to type works.
//
//go:embed demodata/walkthrough.sh
var walkthrough string

func newDemoCmd() *cobra.Command {
	var (
		keep   bool
		coproc string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole trust chain in one process and tell the story as it happens",
		Long: `demo starts a complete deployment in a temporary directory — a badger log, three
witnesses with a 2-of-3 policy, a TPM 2.0 (the in-process simulator), the agent —
and walks through one VM: its configuration and root, the TPM's NV counter and
signature, the log entry and checkpoint, the witnesses' cosignatures, and the
customer's verification check by check. Then the host changes one parameter; the
attestation is refused with the reason, and the launch is aborted.`,
		Example: `  vmledger demo
  vmledger demo --coproc soft:/tmp/demo-key --keep`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), coproc, keep)
		},
	}
	cmd.Flags().StringVar(&coproc, "coproc", "sim", "co-processor SPEC for the demo host (sim, swtpm:HOST:PORT, soft:DIR)")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the temporary directory (keys, databases, trust file, bundles)")
	return cmd
}

func runDemo(ctx context.Context, w io.Writer, coproc string, keep bool) error {
	dir, err := os.MkdirTemp("", "vmledger-demo-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	say := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	head := func(n int, title string) {
		say("\n── %d. %s %s", n, title, strings.Repeat("─", max(0, 60-len(title))))
	}

	say("vmledger demo: one VM, from its configuration to a verified launch (in %s)", dir)
	head(1, "The deployment")
	start := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{Dir: dir, Coproc: coproc})
	if err != nil {
		return fmt.Errorf("starting the deployment: %w", err)
	}
	defer c.Close()
	say("log         %s   (badger engine; origin %s)", c.LogURL, strings.SplitN(c.LogVKey, "+", 2)[0])
	for i, u := range c.WitnessURLs {
		say("witness w%d  %s", i+1, u)
	}
	say("policy      2 of the 3 witnesses must cosign every published checkpoint")
	info, err := c.CoProcessor.Info(ctx)
	if err != nil {
		return err
	}
	say("TPM         %s (%s), key %s…, enrolled with the log", info.Device, info.Algorithm, info.KeyID[:16])
	say("started in %s", time.Since(start).Round(time.Millisecond))

	head(2, "The VM the customer ordered")
	vc, err := vmconfig.ParseJSON(demoConfig)
	if err != nil {
		return err
	}
	ordered, err := vc.Resolve(ctx, vmconfig.ResolveOptions{})
	if err != nil {
		return err
	}
	var secret measure.Secret
	if _, err := rand.Read(secret[:]); err != nil {
		return err
	}
	measured := *ordered
	measured.VMID = "web01" // schema v2 binds the VM id, as the agent measures it
	m, err := measure.Current.Measure(&measured, secret)
	if err != nil {
		return err
	}
	say("web01: %d MiB, %d vCPUs on host CPUs %s, NIC %s on VLAN %d, disk vda, %d packages",
		ordered.MemoryBytes>>20, ordered.CPUCount, ordered.CPUAffinity, ordered.NICs[0].MAC, ordered.NICs[0].VLAN, len(ordered.Packages))
	say("the customer and the provider share a 32-byte VM secret; every leaf is salted with it,")
	say("so the root reveals nothing, yet the customer can recompute it from what they ordered.")
	for _, name := range []string{"memory.bytes", "cpu.count", "net.0.mac", "kernel.cmdline", "packages.root"} {
		l, _ := m.Leaf(name)
		say("  leaf %-16s %-40s → %s…", name, abbrevValue(l.Display), l.Hash.String()[:16])
	}
	say("  … %d leaves in all (every registered parameter, absent ones included)", len(m.Leaves))
	say("config root %s", m.Root)

	head(3, "The host attests and launches it")
	r, err := c.Attest(ctx, "web01", ordered, secret)
	if err != nil {
		return fmt.Errorf("the honest attestation failed: %w", err)
	}
	st := r.Report.Statement
	say("TPM: root written to NV index 0x%08x, NV counter now %d, signed (%s)",
		st.Predicate.Coprocessor.RootNVIndex, st.Predicate.Coprocessor.Counter, info.Algorithm)
	say("     freshness anchor: log checkpoint of size %d (the statement was made after it)", r.Anchor.Size)
	say("log: entry %d, in checkpoint of tree size %d", r.Index, r.Report.TreeSize)
	say("witnesses: cosigned by %s", strings.Join(r.Report.Cosigners, " and "))
	for _, l := range strings.Split(strings.TrimSpace(string(r.Bundle.Proof.Checkpoint)), "\n") {
		say("     │ %s", abbrevValue(l))
	}
	say("agent: the bundle verifies → ✓ launch web01")

	head(4, "The customer verifies, offline")
	bundlePath := dir + "/web01.bundle.json"
	if err := os.WriteFile(bundlePath, r.BundleJSON, 0o644); err != nil {
		return err
	}
	rep, err := client.Verify(ctx, r.Bundle, c.Trust, &client.Expected{VMID: "web01", Config: ordered, Secret: &secret}, client.Options{})
	printReport(w, rep)
	if err != nil {
		return fmt.Errorf("the customer's verification failed: %w", err)
	}

	head(5, "The host changes one parameter")
	tampered := *ordered
	cmdline := *ordered.KernelCmdline + " init=/bin/sh"
	tampered.KernelCmdline = &cmdline
	say("kernel.cmdline: %q", cmdline)
	r2, err := attest.Attest(ctx, c.Agent(), attest.Request{VMID: "web01", Config: &tampered, Secret: secret, Expected: ordered})
	switch {
	case err == nil:
		return errors.New("the tampered configuration was accepted: this is a bug")
	case !errors.Is(err, client.ErrConfiguration):
		return fmt.Errorf("the tampered configuration failed for another reason than its configuration: %w", err)
	}
	say("TPM signed it (counter %d) and the log recorded it as entry %d — the log records", r2.Report.Counter, r2.Index)
	say("everything; it is the verification that refuses:")
	printReport(w, r2.Report)
	say("agent: attestation failed, launch aborted: %v", err)

	head(6, "Run the parts as separate processes")
	say("the same deployment with real processes and swtpm: the README's walkthrough (it needs")
	say("swtpm and curl; paste it into bash in the repository's root; /bin/echo stands in for qemu):\n")
	for _, l := range strings.Split(strings.TrimRight(walkthrough, "\n"), "\n") {
		if l == "" {
			say("")
		} else {
			say("  %s", l)
		}
	}
	if keep {
		say("\nkept: %s (trust.txt, web01.bundle.json, keys and databases)", dir)
	}
	return nil
}

func abbrevValue(s string) string {
	if len(s) > 60 {
		return s[:57] + "…"
	}
	return s
}
