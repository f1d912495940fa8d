package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/log/bundle"
	"github.com/vmledger/vmledger/witness"
)

// verifyFlags are the flags of `vmledger verify`.
type verifyFlags struct {
	bundle, trust, state, logURL string
	expected                     measureFlags
	manifest, disclosures, rules string
	vmID                         string
	evidence                     string
	asJSON                       bool
}

func newVerifyCmd() *cobra.Command {
	var f verifyFlags
	cmd := &cobra.Command{
		Use:   "verify --bundle FILE --trust FILE [--expected CONFIG --vm-secret FILE --vm ID] [--state FILE] [--json]",
		Short: "Verify an attestation bundle offline, check by check (the customer's check)",
		Long: `verify checks an attestation bundle without contacting anybody:

  1. envelope               the log entry is a canonical DSSE envelope
  2. coprocessor signature  signed by a co-processor key of the trust file
  3. statement              a well-formed vm-config/v1 statement for the VM --vm names
  4. inclusion              the entry is in the log under the bundle's checkpoint
  5. log signature          the checkpoint is signed by a trusted log
  6. witness quorum         its cosignatures satisfy the trust file's witness policy
  7. consistency            with --state, consistent with the checkpoint trusted before
  8. configuration          the attested root is the expected configuration's
  9. freshness              the statement's freshness anchor is a non-empty checkpoint
                            of the same log from before the entry, consistent with
                            the bundle's checkpoint

For step 8 give the configuration you ordered, the VM secret and the VM id
(--expected, --vm-secret, --vm; a libvirt --expected names its domain, which
is the VM id), or the provider's manifest (--manifest), or disclosed parameters
(--disclosures, the output of 'agent measure --disclose'); --rules adds
allowed values and ranges. When the expected configuration's root is not the
attested one, a manifest or disclosures also given name the parameters that
differ, with the expected and the attested values (--json: "differences").

With --state, a checkpoint of another size needs a consistency proof: --log
URL fetches it from the log's tiles. The inclusion proof proves the freshness
anchor offline when the entry directly follows it; otherwise --log URL proves
it (without --log the report says it is not proven).

Exit status: 0 when every check passes, 3 when any fails, 4 when it could
not complete (the only failure is a consistency proof that --log did not give:
nothing was proved wrong, retry later), 1 or 2 when the inputs cannot be read.`,
		Example: `  vmledger verify --bundle web01.bundle.json --trust trust.txt --expected web01.json --vm-secret web01.secret --vm web01
  vmledger verify --bundle b.json --trust trust.txt --manifest manifest.json --rules rules.json --json
  vmledger verify --bundle b.json --trust trust.txt --disclosures memory.json --state ~/.vmledger/state.json --log https://log.example
  curl -s http://witness.example/v1/evidence > evidence.json
  vmledger verify --evidence evidence.json --trust trust.txt   # exit 0: the log provably forked`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.bundle, "bundle", "", "the attestation bundle (JSON, as the log's /v1/bundles/<index> or 'agent attest' writes it)")
	fl.StringVar(&f.trust, "trust", "", "trust file: log key, witness policy, co-processor keys (see 'go doc github.com/vmledger/vmledger/client ParseTrust')")
	fl.StringVar(&f.expected.config, "expected", "", "the configuration you expect (JSON, YAML or libvirt XML)")
	fl.StringVar(&f.expected.format, "format", "", "format of --expected: json, yaml or libvirt (default: detect)")
	fl.StringVar(&f.expected.packages, "packages", "", "for a libvirt --expected: the packages file")
	fl.StringVar(&f.expected.vmSecret, "vm-secret", "", "the VM secret file (32 bytes raw or 64 hex), needed with --expected")
	fl.StringVar(&f.manifest, "manifest", "", "a full manifest ('agent measure --json' output) that must recompute to the attested root")
	fl.StringVar(&f.disclosures, "disclosures", "", "disclosed parameters ('agent measure --disclose' output)")
	fl.StringVar(&f.rules, "rules", "", "rules: allowed values and ranges (see 'go doc github.com/vmledger/vmledger/client Rules')")
	fl.StringVar(&f.vmID, "vm", "", "the VM id the attestation must be for (required with --expected, unless it is a libvirt domain XML, whose name is the VM id)")
	fl.StringVar(&f.state, "state", "", "state file: the last checkpoint trusted per log (created if missing)")
	fl.StringVar(&f.logURL, "log", "", "the log's base URL, to fetch consistency proofs (for --state, and for a freshness anchor the inclusion proof does not cover)")
	fl.StringVar(&f.evidence, "evidence", "", "instead of a bundle: check fork evidence (a witness's GET /v1/evidence JSON) against the trust file's log keys")
	fl.BoolVar(&f.asJSON, "json", false, "print the report as JSON")
	return cmd
}

// runVerifyEvidence checks fork evidence offline: each record must show two
// checkpoints, both signed by a log of the trust file, that cannot both be
// true. Exit 0 means the log provably forked.
func runVerifyEvidence(cmd *cobra.Command, f *verifyFlags) error {
	trust, err := client.LoadTrust(f.trust)
	if err != nil {
		return fmt.Errorf("--trust %s: %w", f.trust, err)
	}
	raw, err := readSmallFile(f.evidence, 16<<20)
	if err != nil {
		return fmt.Errorf("--evidence: %w", err)
	}
	var list []*witness.Evidence
	if err := json.Unmarshal(raw, &list); err != nil {
		var one witness.Evidence
		if err2 := json.Unmarshal(raw, &one); err2 != nil {
			return fmt.Errorf("--evidence %s: neither a list of evidence records nor one: %w", f.evidence, err)
		}
		list = []*witness.Evidence{&one}
	}
	if len(list) == 0 {
		return refusedError{fmt.Errorf("--evidence %s holds no evidence records", f.evidence)}
	}
	out := cmd.OutOrStdout()
	bad := 0
	for i, e := range list {
		l := trust.Policy.Log(e.Origin)
		switch {
		case l == nil:
			bad++
			fmt.Fprintf(out, "✗ %d. %s: not a log of the trust file\n", i+1, e.Origin)
		default:
			if err := witness.VerifyEvidence(e, l.Verifier); err != nil {
				bad++
				fmt.Fprintf(out, "✗ %d. %s (%s): %v\n", i+1, e.Origin, e.Kind, err)
			} else {
				fmt.Fprintf(out, "✓ %d. %s (%s): the log signed two checkpoints that cannot both be true\n", i+1, e.Origin, e.Kind)
			}
		}
	}
	if bad > 0 {
		return refusedError{fmt.Errorf("%d of %d evidence records do not prove a fork", bad, len(list))}
	}
	return nil
}

func runVerify(cmd *cobra.Command, f *verifyFlags) error {
	if f.evidence != "" {
		if f.bundle != "" || f.trust == "" {
			return usagef("--evidence FILE goes with --trust FILE and without --bundle")
		}
		return runVerifyEvidence(cmd, f)
	}
	if f.bundle == "" || f.trust == "" {
		return usagef("--bundle FILE and --trust FILE are required")
	}
	if f.expected.config != "" {
		if err := f.expectedVM(); err != nil {
			return err
		}
	}
	raw, err := readSmallFile(f.bundle, bundle.MaxSize)
	if err != nil {
		return fmt.Errorf("--bundle: %w", err)
	}
	b, err := bundle.Parse(raw)
	if err != nil {
		// A malformed bundle is a failed verification, not an unreadable
		// input: it gets a report (envelope check failed, the rest not run)
		// like any other bad bundle, so a --json consumer always has one.
		err = fmt.Errorf("--bundle %s: %w", f.bundle, err)
		if perr := printVerifyReport(cmd.OutOrStdout(), f.asJSON, client.UndecodableReport(err)); perr != nil {
			return perr
		}
		return refusedError{err}
	}
	trust, err := client.LoadTrust(f.trust)
	if err != nil {
		return fmt.Errorf("--trust %s: %w", f.trust, err)
	}
	exp := &client.Expected{VMID: f.vmID}
	if f.expected.config != "" {
		secret, err := f.expected.secret(cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		cfg, err := f.expected.load(cmd)
		if err != nil {
			return fmt.Errorf("--expected: %w", err)
		}
		exp.Config, exp.Secret = cfg, &secret
	} else if f.expected.vmSecret != "" {
		return usagef("--vm-secret goes with --expected CONFIG")
	}
	if f.manifest != "" {
		var m measure.Measurement
		if err := readJSONFile(f.manifest, &m); err != nil {
			return fmt.Errorf("--manifest: %w", err)
		}
		exp.Manifest = &m
	}
	if f.disclosures != "" {
		var d struct {
			Disclosures []json.RawMessage `json:"disclosures"`
		}
		if err := readJSONFile(f.disclosures, &d); err != nil {
			return fmt.Errorf("--disclosures: %w", err)
		}
		for i, raw := range d.Disclosures {
			var probe struct {
				Package *json.RawMessage `json:"package"`
			}
			_ = json.Unmarshal(raw, &probe)
			if probe.Package != nil {
				var pd measure.PackageDisclosure
				if err := json.Unmarshal(raw, &pd); err != nil {
					return fmt.Errorf("--disclosures: item %d: %w", i, err)
				}
				exp.PackageDisclosures = append(exp.PackageDisclosures, pd)
				continue
			}
			var dd measure.Disclosure
			if err := json.Unmarshal(raw, &dd); err != nil {
				return fmt.Errorf("--disclosures: item %d: %w", i, err)
			}
			exp.Disclosures = append(exp.Disclosures, dd)
		}
	}
	if f.rules != "" {
		raw, err := readSmallFile(f.rules, 1<<20)
		if err != nil {
			return fmt.Errorf("--rules: %w", err)
		}
		if exp.Rules, err = client.ParseRules(raw); err != nil {
			return fmt.Errorf("--rules %s: %w", f.rules, err)
		}
	}
	opts := client.Options{}
	if f.state != "" {
		if opts.State, err = client.OpenState(f.state); err != nil {
			return fmt.Errorf("--state: %w", err)
		}
	}
	if f.logURL != "" {
		p, err := client.NewTileProver(f.logURL, &http.Client{Timeout: 30 * time.Second})
		if err != nil {
			return usagef("--log: %v", err)
		}
		opts.Prover = p
	}
	report, verr := client.Verify(cmd.Context(), b, trust, exp, opts)
	if err := printVerifyReport(cmd.OutOrStdout(), f.asJSON, report); err != nil {
		return err
	}
	if verr != nil {
		if report.Incomplete() {
			return incompleteError{verr}
		}
		return refusedError{verr}
	}
	return nil
}

// expectedVM settles the VM id an expected configuration is for: --vm, or
// the domain name of a libvirt --expected (the VM id `agent hook` uses). The
// attested root binds the configuration and the VM secret, not the VM, so
// without the id another VM's attestation with the same configuration and
// secret would pass.
func (f *verifyFlags) expectedVM() error {
	raw, err := readSmallFile(f.expected.config, 16<<20)
	if err != nil {
		return fmt.Errorf("--expected: %w", err)
	}
	var dom struct {
		XMLName xml.Name
		Name    string `xml:"name"`
	}
	name := ""
	if f.expected.format != "json" && f.expected.format != "yaml" && bytes.HasPrefix(bytes.TrimSpace(raw), []byte("<")) &&
		xml.Unmarshal(raw, &dom) == nil && dom.XMLName.Local == "domain" {
		name = strings.TrimSpace(dom.Name)
	}
	switch {
	case f.vmID == "" && name == "":
		return usagef("--expected needs --vm ID: the attested root binds the configuration and the VM secret, not the VM, so without the VM id an attestation of another VM with the same configuration and secret would pass")
	case f.vmID == "":
		f.vmID = name
	case name != "" && name != f.vmID:
		return usagef("--vm %q, but --expected %s is the libvirt domain %q", f.vmID, f.expected.config, name)
	}
	return nil
}

// printVerifyReport writes r as JSON or as the human summary.
func printVerifyReport(w io.Writer, asJSON bool, r *client.Report) error {
	if asJSON {
		return writeJSON(w, r)
	}
	printReport(w, r)
	return nil
}

// printReport writes the human summary of a verification.
func printReport(w io.Writer, r *client.Report) {
	for i, c := range r.Results {
		mark := "✓"
		switch c.Status {
		case client.Fail:
			mark = "✗"
		case client.NotRun:
			mark = "·"
		case client.NotRequested:
			mark = "–"
		}
		fmt.Fprintf(w, "%s %d. %-22s %s\n", mark, i+1, c.Check, c.Detail)
		if c.Check == client.CheckConfiguration && len(r.Differences) > 0 {
			fmt.Fprintln(w, "     parameters that differ:")
			for _, d := range r.Differences {
				fmt.Fprintf(w, "       %-24s expected %s, attested %s\n", d.Name, d.Expected, d.Attested)
			}
		}
	}
	if r.OK {
		fmt.Fprintf(w, "VERIFIED: VM %s, config root %s, log %s entry %d, cosigned by %s\n",
			r.VMID, r.ConfigRoot, r.Origin, r.Index, joinOr(r.Cosigners, "no witness"))
	} else {
		fmt.Fprintln(w, "REFUSED: see the failed checks above")
	}
}

func joinOr(s []string, none string) string {
	if len(s) == 0 {
		return none
	}
	out := s[0]
	for _, x := range s[1:] {
		out += ", " + x
	}
	return out
}

// readSmallFile reads a file of at most max bytes.
func readSmallFile(path string, max int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, nil
}

// readJSONFile decodes a JSON file of at most 16 MiB into v.
func readJSONFile(path string, v any) error {
	b, err := readSmallFile(path, 16<<20)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("%s: not valid JSON at byte %d: %w", path, se.Offset, err)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
