package main

// The read-only lookups a customer or an auditor makes against a log:
// vmledger lookup, vmledger bundle and vmledger log keys. They use only the
// log's public endpoints (GET /v1/vms/<id>/attestations, /v1/attestations,
// /v1/vms/<id>/bundle, /v1/bundles/<index>, /v1/coprocessors) and need no
// token.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/log/admission"
	"github.com/vmledger/vmledger/log/bundle"
	"github.com/vmledger/vmledger/log/tlog"
)

// notFoundError marks an answer "the log has nothing of that" (exit code 5):
// no attestation of that VM, config root or key; no published bundle.
type notFoundError struct{ err error }

func (e notFoundError) Error() string { return e.err.Error() }
func (e notFoundError) Unwrap() error { return e.err }

// maxLookupBody bounds the answers the lookups read: a page of MaxLimit
// search results or a key list is far smaller.
const maxLookupBody = 8 << 20

// logReader reads a log's public endpoints.
type logReader struct {
	base string // without a trailing slash
	http *http.Client
}

// newLogReader checks the --log URL.
func newLogReader(logURL string, timeout time.Duration) (*logReader, error) {
	u, err := url.Parse(logURL)
	if logURL == "" {
		return nil, usagef("--log URL is required: the log's base URL, e.g. https://log.example.com or http://127.0.0.1:8080")
	}
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.RawQuery != "" || u.Fragment != "" {
		return nil, usagef("--log %q: want the log's base URL, https://HOST[:PORT][/PATH] or http://HOST:PORT", logURL)
	}
	if timeout <= 0 {
		return nil, usagef("--timeout %v: want a positive duration", timeout)
	}
	return &logReader{base: strings.TrimSuffix(logURL, "/"), http: &http.Client{Timeout: timeout}}, nil
}

// get fetches path and decodes a JSON answer into out, or returns the raw
// body when out is nil. A 404 with the log's not-found reason is a
// notFoundError; an answer that is not from a vmledger log says so.
func (r *logReader) get(ctx context.Context, path string, out any) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s%s: %w", r.base, path, err)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		// Unreachable or too slow: no answer, retry later (exit 4).
		return nil, incompleteError{fmt.Errorf("cannot reach the log at %s (check --log): %w", r.base, err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxLookupBody+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s%s: reading the answer: %w", r.base, path, err)
	}
	if len(b) > maxLookupBody {
		return nil, fmt.Errorf("GET %s%s: answer above %d bytes", r.base, path, maxLookupBody)
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Reason string }
		if ct != "application/json" || json.Unmarshal(b, &e) != nil || e.Reason == "" {
			return nil, fmt.Errorf("GET %s%s answered %s (%s), not like a vmledger log: check --log", r.base, path, resp.Status, describeType(ct))
		}
		err := fmt.Errorf("the log at %s: %s (%s)", r.base, e.Error, e.Reason)
		if e.Reason == "not-found" {
			return nil, notFoundError{err}
		}
		if resp.StatusCode == http.StatusBadRequest {
			return nil, usageError{err}
		}
		if resp.StatusCode >= 500 {
			return nil, incompleteError{err} // the log failed or shed load: retry later
		}
		return nil, err
	}
	if ct != "application/json" {
		return nil, fmt.Errorf("GET %s%s answered %s, not JSON: is --log a vmledger log?", r.base, path, describeType(ct))
	}
	if out == nil {
		return b, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return nil, fmt.Errorf("GET %s%s: not the answer of a vmledger log (%v): check --log", r.base, path, err)
	}
	return b, nil
}

func describeType(ct string) string {
	if ct == "" {
		return "no Content-Type"
	}
	return ct
}

// bundleURL is where the offline bundle of the entry at index is served.
func (r *logReader) bundleURL(index uint64) string {
	return r.base + "/v1/bundles/" + strconv.FormatUint(index, 10)
}

// checkVMID accepts what the log accepts as a VM id: 1..255 bytes of
// printable UTF-8 without spaces.
func checkVMID(id string) error {
	if id == "" || len(id) > coproc.MaxNameLen || !utf8.ValidString(id) {
		return usagef("--vm %q: want a VM id of 1..%d bytes of UTF-8", id, coproc.MaxNameLen)
	}
	for _, c := range id {
		if !unicode.IsPrint(c) || unicode.IsSpace(c) {
			return usagef("--vm %q: character %U is not allowed in a VM id (printable, no spaces)", id, c)
		}
	}
	return nil
}

// hex32 checks a 32-byte hex value (either case) and returns it in
// lowercase, as the log wants it.
func hex32(flag, what, v string) (string, error) {
	raw, err := hex.DecodeString(v)
	if err != nil || len(raw) != 32 {
		return "", usagef("--%s %q: want %s, 64 hex digits (32 bytes)", flag, v, what)
	}
	return hex.EncodeToString(raw), nil
}

// LookupResult is the --json output of vmledger lookup.
type LookupResult struct {
	Log   string            `json:"log"`
	Query map[string]string `json:"query"`
	// Attestations are in log order; each carries the URL of its bundle.
	Attestations []LookupAttestation `json:"attestations"`
	// NextAfter, when present, is the --after value that continues the list.
	NextAfter *uint64 `json:"next_after,omitempty"`
}

// LookupAttestation is one attestation found.
type LookupAttestation struct {
	admission.Attestation
	Bundle string `json:"bundle"`
}

func newLookupCmd() *cobra.Command {
	var logURL, vm, root, key string
	var asJSON bool
	var limit int
	var after uint64
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "lookup --log URL (--vm ID | --root HEX | --key KEYID) [--json]",
		Short: "Find the attestations in a log of a VM, a configuration root or a co-processor key",
		Long: `lookup asks the log's search index for the attestations of one VM (--vm), of one
configuration root (--root, the 64 hex digits vmledger agent measure prints) or
signed by one co-processor key (--key, the key ID vmledger coproc info prints),
and lists them in log order: index, VM, counter, time, config root and key ID,
with the URL of each one's offline bundle.

The answer is what the log says; it proves nothing by itself. To check an
attestation, fetch its bundle (vmledger bundle, or the URL listed) and run
vmledger verify on it; to be sure the log shows you everything about your VMs,
run vmledger monitor.

Results come --limit at a time (default 100; the log serves pages of at most
1000); when there are more, the last line (or next_after in --json) gives the
--after value to continue with.

Exit codes: 0 found; 5 the log has no attestation matching the query; 2 a bad
flag (e.g. --root that is not 64 hex digits); 4 the log was unreachable or
failed (retry later); 1 the answer was not a vmledger log's (check --log).`,
		Example: `  vmledger lookup --log http://127.0.0.1:8080 --vm web01
  vmledger lookup --log http://127.0.0.1:8080 --root 3f5a…(64 hex digits) --json
  vmledger lookup --log http://127.0.0.1:8080 --key 8cef065b…(64 hex digits) --limit 1000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			n := 0
			for _, v := range []string{vm, root, key} {
				if v != "" {
					n++
				}
			}
			if n != 1 {
				return usagef("lookup needs exactly one of --vm ID, --root HEX or --key KEYID")
			}
			if limit < 1 {
				return usagef("--limit %d: want 1 or more", limit)
			}
			lr, err := newLogReader(logURL, timeout)
			if err != nil {
				return err
			}
			var path, what string
			q := url.Values{}
			res := LookupResult{Log: lr.base, Query: map[string]string{}, Attestations: []LookupAttestation{}}
			switch {
			case vm != "":
				if err := checkVMID(vm); err != nil {
					return err
				}
				path, what = "/v1/vms/"+url.PathEscape(vm)+"/attestations", fmt.Sprintf("VM %q", vm)
				res.Query["vm"] = vm
			case root != "":
				if root, err = hex32("root", "a configuration root", root); err != nil {
					return err
				}
				path, what = "/v1/attestations", "config root "+root
				q.Set("root", root)
				res.Query["root"] = root
			default:
				if key, err = hex32("key", "a co-processor key ID", key); err != nil {
					return err
				}
				path, what = "/v1/attestations", "key "+key
				q.Set("key", key)
				res.Query["key"] = key
			}
			hasAfter := cmd.Flags().Changed("after")
			cursor := after
			for len(res.Attestations) < limit {
				page := min(limit-len(res.Attestations), admission.MaxLimit)
				q.Set("limit", strconv.Itoa(page))
				if hasAfter {
					q.Set("after", strconv.FormatUint(cursor, 10))
				}
				var sr admission.SearchResponse
				if _, err := lr.get(cmd.Context(), path+"?"+q.Encode(), &sr); err != nil {
					return err
				}
				for _, a := range sr.Attestations {
					res.Attestations = append(res.Attestations, LookupAttestation{a, lr.bundleURL(a.Index)})
				}
				res.NextAfter = sr.NextAfter
				if sr.NextAfter == nil {
					break
				}
				cursor, hasAfter = *sr.NextAfter, true
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else if len(res.Attestations) > 0 {
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "INDEX\tVM\tCOUNTER\tTIME\tCONFIG ROOT\tKEY ID")
				for _, a := range res.Attestations {
					fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", a.Index, a.VMID, a.Counter, a.Time, a.ConfigRoot, a.KeyID)
				}
				tw.Flush()
				if res.NextAfter != nil {
					fmt.Fprintf(out, "more: add --after %d\n", *res.NextAfter)
				}
				fmt.Fprintf(out, "bundles: %s/v1/bundles/INDEX (vmledger bundle --vm ID fetches the latest of a VM)\n", lr.base)
			}
			if len(res.Attestations) == 0 {
				if cmd.Flags().Changed("after") {
					return notFoundError{fmt.Errorf("the log at %s has no attestation of %s after index %d", lr.base, what, after)}
				}
				return notFoundError{fmt.Errorf("the log at %s has no attestation of %s", lr.base, what)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&logURL, "log", "", "the log's base URL, e.g. http://127.0.0.1:8080")
	cmd.Flags().StringVar(&vm, "vm", "", "list the attestations of this VM id")
	cmd.Flags().StringVar(&root, "root", "", "list the attestations of this configuration root (64 hex digits)")
	cmd.Flags().StringVar(&key, "key", "", "list the attestations signed by this co-processor key ID (64 hex digits)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().IntVar(&limit, "limit", admission.DefaultLimit, "list at most this many attestations")
	cmd.Flags().Uint64Var(&after, "after", 0, "list only attestations with an index above this one (the next_after of a previous run)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for each answer of the log")
	return cmd
}

func newBundleCmd() *cobra.Command {
	var logURL, vm, outPath string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "bundle --log URL --vm ID --out FILE",
		Short: "Download the offline bundle of a VM's latest published attestation",
		Long: `bundle downloads from the log (GET /v1/vms/<id>/bundle) the offline bundle of the
VM's latest attestation that a published checkpoint includes, and writes it to
FILE (- for stdout).

bundle checks only that the answer is a well-formed bundle (log/bundle format)
whose entry is an attestation of that VM and whose inclusion proof leads to its
checkpoint's root; it checks no signature, so it does NOT verify the bundle. The
check is vmledger verify --bundle FILE --trust TRUST (log signature, witnesses,
inclusion, co-processor key, and with --expected your configuration), which
needs no network.

Exit codes: 0 written; 5 the log has no published attestation of the VM (none,
or the newest is not yet in a published checkpoint: try again after the next
one); 2 a bad flag; 4 the log was unreachable or failed (retry later); 1 the
answer was not a bundle of that VM (nothing is written then).`,
		Example: `  vmledger bundle --log http://127.0.0.1:8080 --vm web01 --out web01.bundle.json
  vmledger verify --bundle web01.bundle.json --trust trust.txt --expected web01.json --vm-secret web01.secret`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if outPath == "" {
				return usagef("bundle needs --out FILE (- for stdout)")
			}
			if vm == "" {
				return usagef("bundle needs --vm ID")
			}
			if err := checkVMID(vm); err != nil {
				return err
			}
			lr, err := newLogReader(logURL, timeout)
			if err != nil {
				return err
			}
			b, err := lr.get(cmd.Context(), "/v1/vms/"+url.PathEscape(vm)+"/bundle", nil)
			if err != nil {
				return err
			}
			index, size, err := checkVMBundle(b, vm)
			if err != nil {
				return fmt.Errorf("the log at %s answered something that is not a bundle of VM %q: %w", lr.base, vm, err)
			}
			if outPath == "-" {
				_, err := cmd.OutOrStdout().Write(b)
				return err
			}
			if err := writeFileAtomic(outPath, b, 0o644); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: VM %s, log index %d, checkpoint of size %d (not verified: run vmledger verify --bundle %s --trust TRUST)\n",
				outPath, vm, index, size, outPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&logURL, "log", "", "the log's base URL, e.g. http://127.0.0.1:8080")
	cmd.Flags().StringVar(&vm, "vm", "", "the VM id")
	cmd.Flags().StringVar(&outPath, "out", "", "write the bundle to this file (- for stdout); an existing file is replaced")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the log")
	return cmd
}

// Why checkVMBundle refuses a bundle.
var (
	errWrongVM  = errors.New("the attestation is of another VM")
	errBadProof = errors.New("proof")
)

// checkVMBundle decodes b as a bundle and checks that its entry is an
// attestation of vm whose inclusion proof leads to the checkpoint's root. It
// returns the entry's index and the checkpoint's size. It checks no
// signature: that is vmledger verify's job.
func checkVMBundle(b []byte, vm string) (index, size uint64, err error) {
	bd, err := bundle.Parse(b)
	if err != nil {
		return 0, 0, err
	}
	env, err := coproc.ParseEnvelope(bd.Entry)
	if err != nil {
		return 0, 0, fmt.Errorf("entry: %w", err)
	}
	st, err := env.Statement()
	if err != nil {
		return 0, 0, fmt.Errorf("entry: %w", err)
	}
	if st.VMID() != vm {
		return 0, 0, fmt.Errorf("%w: %q", errWrongVM, st.VMID())
	}
	signed := bd.Proof.Checkpoint
	i := bytes.Index(signed, []byte("\n\n"))
	if i < 0 {
		return 0, 0, fmt.Errorf("proof: the checkpoint is not a signed note")
	}
	cp, err := tlog.ParseCheckpoint(signed[:i+1])
	if err != nil {
		return 0, 0, fmt.Errorf("proof: %w", err)
	}
	// The proof's arithmetic only, so that a damaged download is caught
	// here; whose checkpoint it is, is for vmledger verify to check.
	if tlog.VerifyInclusion(bd.Proof.Index, cp.Size, tlog.LeafHash(bd.Entry), bd.Proof.HashSlices(), cp.Root) != nil {
		return 0, 0, fmt.Errorf("%w: the inclusion proof of entry %d does not lead to the root of its checkpoint (size %d)", errBadProof, bd.Proof.Index, cp.Size)
	}
	return bd.Proof.Index, cp.Size, nil
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory, so that path holds either the old or the new content.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// KeysResult is the --json output of vmledger log keys.
type KeysResult struct {
	Log  string      `json:"log"`
	Keys []LoggedKey `json:"keys"`
}

// LoggedKey is an enrolled (possibly revoked) key with the URLs of the
// bundles of the log entries that enrolled and revoked it.
type LoggedKey struct {
	admission.Key
	EnrolledEntry string `json:"enrolled_entry"`
	RevokedEntry  string `json:"revoked_entry,omitempty"`
}

func newLogKeysCmd() *cobra.Command {
	var logURL string
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "keys --log URL [--json]",
		Short: "List the co-processor keys enrolled in a log, revoked ones included",
		Long: `keys lists the co-processor keys the log has enrolled (GET /v1/coprocessors), in
enrolment order: key ID, name, the index and time of the log entry that enrolled
it, the index and time of the entry that revoked it (if revoked), and the highest
counter the log admitted for it. Enrolments and revocations are entries of the
log itself; the bundle of each (GET /v1/bundles/<index>, listed with --json)
proves it is in the log, once a published checkpoint includes it (a revocation
just made may wait for the next one).

An empty list is not an error (exit 0); an unreachable or failing log is exit 4.`,
		Example: `  vmledger log keys --log http://127.0.0.1:8080
  vmledger log keys --log http://127.0.0.1:8080 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			lr, err := newLogReader(logURL, timeout)
			if err != nil {
				return err
			}
			var cr admission.CoprocessorsResponse
			if _, err := lr.get(cmd.Context(), "/v1/coprocessors", &cr); err != nil {
				return err
			}
			res := KeysResult{Log: lr.base, Keys: []LoggedKey{}}
			for _, k := range cr.Coprocessors {
				lk := LoggedKey{Key: k, EnrolledEntry: lr.bundleURL(k.EnrolledIndex)}
				if k.RevokedIndex != nil {
					lk.RevokedEntry = lr.bundleURL(*k.RevokedIndex)
				}
				res.Keys = append(res.Keys, lk)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				return enc.Encode(res)
			}
			if len(res.Keys) == 0 {
				fmt.Fprintf(out, "the log at %s has no enrolled co-processor key\n", lr.base)
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY ID\tNAME\tENROLLED (INDEX TIME)\tREVOKED (INDEX TIME)\tCOUNTER")
			for _, k := range res.Keys {
				name, revoked := k.Name, "-"
				if name == "" {
					name = "-"
				}
				if k.RevokedIndex != nil {
					revoked = fmt.Sprintf("%d %s", *k.RevokedIndex, k.RevokedAt)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d %s\t%s\t%d\n", k.KeyID, name, k.EnrolledIndex, k.EnrolledAt, revoked, k.Counter)
			}
			tw.Flush()
			fmt.Fprintf(out, "entries: %s/v1/bundles/INDEX\n", lr.base)
			return nil
		},
	}
	cmd.Flags().StringVar(&logURL, "log", "", "the log's base URL, e.g. http://127.0.0.1:8080")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the log")
	return cmd
}
