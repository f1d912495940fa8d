package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/log/admission"
)

// readAdminToken reads the admin bearer token from path: the file's content
// without surrounding whitespace. The file must not be accessible by group
// or others. Both `log serve --admin-token-file` and enroll/revoke use it.
func readAdminToken(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("admin token file %s has mode %04o: it must not be accessible by group or others (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	tok := bytes.TrimSpace(b)
	if len(tok) < 16 {
		return nil, fmt.Errorf("admin token file %s holds %d bytes: use at least 16 random characters (e.g. head -c 32 /dev/urandom | base64 > %s)", path, len(tok), path)
	}
	return tok, nil
}

// checkAdminURL refuses to send the admin token where it could be read on
// the way: logURL must be https://, or http:// to a loopback host
// (localhost, 127.0.0.0/8, ::1), or http:// anywhere with --insecure-http.
func checkAdminURL(logURL string, insecureHTTP bool) error {
	u, err := url.Parse(logURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return usagef("--log %q: want the log's base URL, https://HOST[:PORT] or http://127.0.0.1:PORT", logURL)
	}
	if u.Scheme == "https" || insecureHTTP {
		return nil
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return usagef("--log %s: refusing to send the admin token over plain HTTP to %s, where anyone on the path can read it: use https:// (log serve --tls-cert), or add --insecure-http if the network is yours", logURL, host)
}

// explainRefusal turns a refusal by the log into an error that says what
// to do.
func explainRefusal(what string, err error) error {
	var re *admission.RefusedError
	if !errors.As(err, &re) {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch re.Reason {
	case "unauthorized":
		return fmt.Errorf("%s: the log refused the admin token (%s); check --admin-token-file against the log's", what, re.Detail)
	case "bad-key":
		return fmt.Errorf("%s: %s (want the PEM public key that vmledger coproc info prints)", what, re.Detail)
	case "not-found":
		return fmt.Errorf("%s: %s (GET /v1/coprocessors lists the enrolled keys)", what, re.Detail)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func printKey(cmd *cobra.Command, k admission.Key) error {
	b, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
	return err
}

func newLogEnrollCmd() *cobra.Command {
	var logURL, tokenFile, keyFile, name string
	var insecureHTTP bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "enroll --log URL --admin-token-file F --key PEM [--name N]",
		Short: "Enrol a co-processor key with the log (recorded in the log)",
		Long: `enroll asks the log to accept attestations signed by the co-processor key in
PEM (the public key, as vmledger coproc info prints it; ECDSA P-256 or Ed25519).
For a TPM, give the whole PEM coproc info prints: the PUBLIC KEY block and the
VMLEDGER TPM IDENTITY block after it; the log then admits only attestations
whose TPM evidence verifies under that identity.
The log records the enrolment as an entry of its own, so auditors can see which
keys were valid when. Enrolling a key that is already enrolled changes nothing;
a revoked key cannot be enrolled again. Prints the key's record as JSON.

The admin token goes only to https:// or to a loopback http:// URL (localhost,
127.0.0.0/8, ::1); --insecure-http allows plain HTTP to any host.`,
		Example: `  vmledger log enroll --log http://127.0.0.1:8080 --admin-token-file admin.token --key host-a.pem --name host-a`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if logURL == "" || tokenFile == "" || keyFile == "" {
				return usagef("log enroll needs --log URL, --admin-token-file F and --key PEM")
			}
			if err := checkAdminURL(logURL, insecureHTTP); err != nil {
				return err
			}
			tok, err := readAdminToken(tokenFile)
			if err != nil {
				return err
			}
			pemBytes, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			c := &admission.EnrolClient{Base: logURL, Token: tok}
			k, created, err := c.Enrol(ctx, name, pemBytes)
			if err != nil {
				return explainRefusal("enrolling "+keyFile, err)
			}
			if !created {
				fmt.Fprintf(cmd.ErrOrStderr(), "key %s was already enrolled at index %d; nothing changed\n", k.KeyID, k.EnrolledIndex)
			}
			return printKey(cmd, k)
		},
	}
	cmd.Flags().StringVar(&logURL, "log", "", "the log's base URL, e.g. http://127.0.0.1:8080")
	cmd.Flags().StringVar(&tokenFile, "admin-token-file", "", "file holding the log's admin bearer token (mode 0600)")
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM file of the co-processor's public key")
	cmd.Flags().StringVar(&name, "name", "", "a name for the co-processor (no spaces), recorded with the key")
	cmd.Flags().BoolVar(&insecureHTTP, "insecure-http", false, "send the admin token over plain http:// to a host that is not loopback")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the log")
	return cmd
}

func newLogRevokeCmd() *cobra.Command {
	var logURL, tokenFile, keyFile, keyID string
	var insecureHTTP bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "revoke --log URL --admin-token-file F (--key PEM | --keyid ID)",
		Short: "Revoke a co-processor key (recorded in the log; final)",
		Long: `revoke asks the log to refuse every further attestation signed by the key,
named by its public key in PEM (--key, as for enroll) or by its key ID (--keyid:
lowercase hex SHA-256 of its DER public key, as vmledger coproc info prints it).
The log records the revocation as an entry of its own, after the attestations of
that key already being admitted. Revocation is final. Prints the key's record.
As for enroll, the admin token goes only to https:// or loopback http://
unless --insecure-http is given.`,
		Example: `  vmledger log revoke --log http://127.0.0.1:8080 --admin-token-file admin.token --key host-a.pem
  vmledger log revoke --log http://127.0.0.1:8080 --admin-token-file admin.token --keyid 8cef065b…`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if logURL == "" || tokenFile == "" || (keyFile == "") == (keyID == "") {
				return usagef("log revoke needs --log URL, --admin-token-file F and one of --key PEM or --keyid ID")
			}
			if err := checkAdminURL(logURL, insecureHTTP); err != nil {
				return err
			}
			if keyFile != "" {
				pemBytes, err := os.ReadFile(keyFile)
				if err != nil {
					return fmt.Errorf("--key: %w", err)
				}
				pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
				if err != nil {
					return usagef("--key %s: not a PEM public key: %v", keyFile, err)
				}
				if keyID, err = coproc.KeyID(pub); err != nil {
					return usagef("--key %s: %v", keyFile, err)
				}
			}
			tok, err := readAdminToken(tokenFile)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			c := &admission.EnrolClient{Base: logURL, Token: tok}
			k, err := c.Revoke(ctx, keyID)
			if err != nil {
				return explainRefusal("revoking "+keyID, err)
			}
			return printKey(cmd, k)
		},
	}
	cmd.Flags().StringVar(&logURL, "log", "", "the log's base URL, e.g. http://127.0.0.1:8080")
	cmd.Flags().StringVar(&tokenFile, "admin-token-file", "", "file holding the log's admin bearer token (mode 0600)")
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM file of the co-processor's public key to revoke")
	cmd.Flags().StringVar(&keyID, "keyid", "", "the key ID to revoke (64 lowercase hex digits), instead of --key")
	cmd.Flags().BoolVar(&insecureHTTP, "insecure-http", false, "send the admin token over plain http:// to a host that is not loopback")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the log")
	return cmd
}
