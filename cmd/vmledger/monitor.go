package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/internal/strictjson"
)

// watchFile is the --watch file of `vmledger monitor`:
//
//	{"vms": [{"vm": "web01", "config": "web01.json", "vm_secret": "web01.secret",
//	          "keys": ["<co-processor key id>", …], "expect_within": "24h"}]}
//
// config is a configuration file (JSON, YAML or libvirt XML; images given by
// digest or by a path that is hashed once at start) and vm_secret its VM
// secret; paths are relative to the watch file. The file is decoded
// strictly (package internal/strictjson): an unknown member, one in another
// case or a repeated one is an error. keys is optional: without it
// any co-processor of the trust file may attest the VM. expect_within is
// optional (client.Expectation.Within): the longest the VM may go without
// an attestation as expected in the log before the monitor reports it
// missing. manifests is optional: the provider's manifests ('agent measure
// --json' output, or the agent store's manifest.json) of attestations of the
// VM; an attestation of another root than expected whose manifest is among
// them is reported with each differing parameter's expected and attested
// value (a log entry holds the root and the parameter names, not the values).
type watchFile struct {
	VMs []struct {
		VM           string   `json:"vm"`
		Config       string   `json:"config"`
		Packages     string   `json:"packages,omitempty"`
		VMSecret     string   `json:"vm_secret"`
		Keys         []string `json:"keys,omitempty"`
		ExpectWithin string   `json:"expect_within,omitempty"`
		Manifests    []string `json:"manifests,omitempty"`
	} `json:"vms"`
}

func newMonitorCmd() *cobra.Command {
	var (
		logURL, trustPath, watchPath, statePath string
		interval                                time.Duration
		once, asJSON                            bool
	)
	cmd := &cobra.Command{
		Use:   "monitor --log URL --trust FILE --watch FILE",
		Short: "Follow a log and report attestations of your VMs that you did not expect",
		Long: `monitor follows a log: every --interval it fetches the log's checkpoint and
verifies it (log signature, witness policy), downloads the new entries and checks
that they hash to the checkpoint's root — which also proves the log consistent with
everything verified before — and reports every attestation of a watched VM whose
configuration root is not the expected one, or whose co-processor key is not
allowed (unexpected-config, unexpected-key, bad-signature); a revocation of a key
that attested a watched VM, or an attestation by a revoked key (revoked-key); and,
for a VM with "expect_within", no attestation as expected in the log for longer
than that window (missing), counted from when the monitor began watching it and
from its last such attestation: a host that starts the VM without the agent
leaves no record, and this is how you notice. An unexpected-config alert
names the parameters that differ, with expected and attested values, when the
watch file lists the provider's manifest of that attestation ("manifests"); a
log entry holds only the root and the parameter names, so otherwise it says
so. A log that rewrote its history is
reported and never followed past. After each round it prints one line saying what
it checked (entries, attestations of watched VMs) and that all was as expected,
or how many alerts it found (with --json, that line goes to the log on stderr).

The watch file (JSON, read strictly: an unknown or misspelled member is an
error) lists the VMs ("keys", "expect_within" and "manifests" are optional):

  {"vms": [{"vm": "web01", "config": "web01.json", "vm_secret": "web01.secret",
            "keys": ["<co-processor key id>"], "expect_within": "24h",
            "manifests": ["web01.manifest.json"]}]}

State (the last verified checkpoint and position) is kept in --state, so a
restarted monitor resumes where it stopped. Alerts go to stdout, one per line
(JSON with --json). With --once, it runs one round and exits 3 if it found any,
4 if the round could not complete (the log unreachable or failing: nothing was
checked, retry later).` +
			configHelp(&MonitorConfig{}, monitorConfigExample),
		Example: `  vmledger monitor --log http://127.0.0.1:8080 --trust trust.txt --watch watch.json
  vmledger monitor --log http://127.0.0.1:8080 --trust trust.txt --watch watch.json --once --json
  vmledger monitor --config monitor.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if logURL == "" || trustPath == "" || watchPath == "" {
				return usagef("--log URL, --trust FILE and --watch FILE are required")
			}
			if interval <= 0 {
				return usagef("--interval must be positive")
			}
			logger, err := newLogger(cmd.Context())
			if err != nil {
				return err
			}
			trust, err := client.LoadTrust(trustPath)
			if err != nil {
				return fmt.Errorf("--trust %s: %w", trustPath, err)
			}
			watch, err := loadWatch(cmd, watchPath)
			if err != nil {
				return fmt.Errorf("--watch %s: %w", watchPath, err)
			}
			if statePath == "" {
				statePath = watchPath + ".state"
			}
			m, err := client.NewMonitor(logURL, trust, watch, statePath, &http.Client{Timeout: 30 * time.Second})
			if err != nil {
				return err
			}
			logger.Info("monitoring", "log", logURL, "vms", len(watch), "state", statePath, "from_index", m.Next())
			out := cmd.OutOrStdout()
			total := 0
			for {
				var alerts []client.Alert
				round, err := m.Round(cmd.Context())
				if err != nil {
					logger.Warn("monitor round failed; will retry", "err", err)
				} else {
					alerts = round.Alerts
				}
				for _, a := range alerts {
					total++
					logger.Error("unexpected attestation", "kind", a.Kind, "vm", a.VMID, "index", a.Index, "detail", a.Detail)
					if asJSON {
						b, _ := json.Marshal(a)
						fmt.Fprintln(out, string(b))
					} else {
						fmt.Fprintf(out, "ALERT %s vm=%s index=%d: %s\n", a.Kind, a.VMID, a.Index, a.Detail)
					}
				}
				if round != nil {
					logger.Info("monitor round", "log", round.Origin, "size", round.TreeSize, "from", round.From, "to", round.To,
						"attestations", round.Attestations, "vms", round.VMs, "alerts", len(round.Alerts))
					if !asJSON {
						fmt.Fprintln(out, round)
					}
				}
				if once {
					if err != nil {
						return incompleteError{fmt.Errorf("the round could not complete: %w", err)}
					}
					if total > 0 {
						return refusedError{fmt.Errorf("%d alert(s)", total)}
					}
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(interval):
				}
			}
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&logURL, "log", "", "the log's base URL (its tlog-tiles prefix)")
	fl.StringVar(&trustPath, "trust", "", "trust file (log key, witness policy, co-processor keys)")
	fl.StringVar(&watchPath, "watch", "", "watch file: the VMs to watch and their expected configurations")
	fl.StringVar(&statePath, "state", "", "state file (default: the watch file's path + .state)")
	fl.DurationVar(&interval, "interval", 2*time.Second, "how often to poll the log")
	fl.BoolVar(&once, "once", false, "run one round and exit (3 if there were alerts, 4 if the round could not complete)")
	fl.BoolVar(&asJSON, "json", false, "print alerts as JSON lines")
	addConfigFlag(cmd, &MonitorConfig{})
	return cmd
}

// loadWatch reads the watch file and computes each VM's expected root.
func loadWatch(cmd *cobra.Command, path string) (map[string]client.Expectation, error) {
	// Strictly: a misspelled, case-variant or repeated member is an
	// error, not a silently ignored expectation.
	b, err := readSmallFile(path, 16<<20)
	if err != nil {
		return nil, err
	}
	var w watchFile
	if err := strictjson.Decode(b, &w); err != nil {
		return nil, fmt.Errorf("%w (the members are vms, and per VM: vm, config, packages, vm_secret, keys, expect_within, manifests)", err)
	}
	if len(w.VMs) == 0 {
		return nil, fmt.Errorf("no VMs to watch: want {\"vms\": [{\"vm\": …, \"config\": …, \"vm_secret\": …}]}")
	}
	dir := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	out := map[string]client.Expectation{}
	for i, v := range w.VMs {
		if v.VM == "" || v.Config == "" || v.VMSecret == "" {
			return nil, fmt.Errorf("vms[%d]: vm, config and vm_secret are required", i)
		}
		if _, dup := out[v.VM]; dup {
			return nil, fmt.Errorf("vms[%d]: VM %q listed twice", i, v.VM)
		}
		mf := measureFlags{config: rel(v.Config), packages: rel(v.Packages), vmSecret: rel(v.VMSecret)}
		secret, err := mf.secret(cmd.ErrOrStderr())
		if err != nil {
			return nil, fmt.Errorf("vms[%d] (%s): %w", i, v.VM, err)
		}
		cfg, err := mf.load(cmd)
		if err != nil {
			return nil, fmt.Errorf("vms[%d] (%s): %w", i, v.VM, err)
		}
		// The VM may be attested under either schema (v2 binds its id):
		// a root and a manifest for each, v1's only if the configuration
		// uses nothing that only v2 measures.
		if cfg.VMID != "" && cfg.VMID != v.VM {
			return nil, fmt.Errorf("vms[%d] (%s): the configuration is of VM %q", i, v.VM, cfg.VMID)
		}
		c2 := *cfg
		c2.VMID = v.VM
		exp := client.Expectation{Roots: map[string]measure.Digest{}, Manifests: map[string]*measure.Measurement{}, Keys: v.Keys}
		man, err := measure.V2.Measure(&c2, secret)
		if err != nil {
			return nil, fmt.Errorf("vms[%d] (%s): %w", i, v.VM, err)
		}
		exp.Roots[measure.SchemaV2], exp.Manifests[measure.SchemaV2] = man.Root, man
		if man, err := measure.V1.Measure(cfg, secret); err == nil {
			exp.Roots[measure.SchemaV1], exp.Manifests[measure.SchemaV1] = man.Root, man
		}
		for _, p := range v.Manifests {
			var am measure.Measurement
			if err := readJSONFile(rel(p), &am); err != nil {
				return nil, fmt.Errorf("vms[%d] (%s): manifests: %w", i, v.VM, err)
			}
			if err := am.Check(); err != nil {
				return nil, fmt.Errorf("vms[%d] (%s): manifests: %s: %w", i, v.VM, p, err)
			}
			exp.Attested = append(exp.Attested, &am)
		}
		if v.ExpectWithin != "" {
			if exp.Within, err = time.ParseDuration(v.ExpectWithin); err != nil || exp.Within <= 0 {
				return nil, fmt.Errorf("vms[%d] (%s): expect_within %q: want a positive duration such as \"24h\"", i, v.VM, v.ExpectWithin)
			}
		}
		out[v.VM] = exp
	}
	return out, nil
}
