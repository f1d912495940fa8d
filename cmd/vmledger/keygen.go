package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/internal/atomicfile"
	"github.com/vmledger/vmledger/log/tlog"
)

func newKeygenCmd() *cobra.Command {
	var name, out, vkeyOut string
	cmd := &cobra.Command{
		Use:   "keygen --name ORIGIN --out FILE [--vkey FILE]",
		Short: "Create an Ed25519 note key for a log or a witness; prints the verifier key",
		Long: `keygen creates an Ed25519 signed-note key named ORIGIN (for a log, its origin,
e.g. example.com/ledger; for a witness, its name). The private key is written to
FILE in the x/mod text form (PRIVATE+KEY+…), mode 0600; an existing file is never
overwritten. The verifier key (ORIGIN+<key id>+<base64>) is printed on stdout:
publish it, and give it to witnesses and customers. --vkey FILE also writes it to
FILE (mode 0644), which must not exist either; if either file exists, keygen
writes neither. Prefer --vkey to redirecting stdout: "keygen … > log.vkey"
empties log.vkey before keygen runs, even when keygen then refuses to overwrite
the key.`,
		Example: `  vmledger keygen --name example.com/ledger --out log.key --vkey log.vkey`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" || out == "" {
				return usagef("keygen needs --name ORIGIN and --out FILE")
			}
			if vkeyOut != "" && filepath.Clean(vkeyOut) == filepath.Clean(out) {
				return usagef("--vkey and --out name the same file %s", out)
			}
			skey, vkey, err := tlog.GenerateKey(rand.Reader, name)
			if err != nil {
				return usagef("--name: %v", err)
			}
			// Refuse before writing anything; writeNewFile refuses again
			// if a file appears in between.
			for flag, path := range map[string]string{"--out": out, "--vkey": vkeyOut} {
				if _, err := os.Lstat(path); path != "" && err == nil {
					return fmt.Errorf("%s %s already exists: refusing to overwrite a key; keygen wrote nothing (choose another %s, or start from an empty directory)", flag, path, flag)
				}
			}
			if err := writeNewFile(out, []byte(skey+"\n"), 0o600); err != nil {
				return err
			}
			if vkeyOut != "" {
				if err := writeNewFile(vkeyOut, []byte(vkey+"\n"), 0o644); err != nil {
					os.Remove(out) // new and unpublished: no key without its verifier key
					return err
				}
			}
			fmt.Fprintln(cmd.OutOrStdout(), vkey)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "key name: the log's origin or the witness's name")
	cmd.Flags().StringVar(&out, "out", "", "file to write the private key to (must not exist)")
	cmd.Flags().StringVar(&vkeyOut, "vkey", "", "file to write the verifier key to as well (must not exist)")
	return cmd
}

// writeNewFile creates path with data and mode perm, refusing to replace an
// existing file, and syncs it and its directory entry to disk.
func writeNewFile(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists: refusing to overwrite a key (choose another --out)", path)
	}
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	// The name survives a power cut only once its directory is synced.
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("syncing the directory of %s: %w", path, err)
	}
	return nil
}
