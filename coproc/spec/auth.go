package spec

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/vmledger/vmledger/coproc/tpm"
)

// AuthSize is the size of the authorization value Init writes: 32 random
// bytes, as long as a SHA-256 digest (a TPM accepts an auth value up to
// the size of its nameAlg's digest).
const AuthSize = 32

// ErrAuthFile: the authorization file is missing, unreadable, too open
// (readable or writable by group or others) or of the wrong size.
var ErrAuthFile = errors.New("co-processor authorization file")

// readAuth reads the authorization value from path, which must be a
// regular file of mode 0600 (or stricter) holding AuthSize bytes. With
// create, a missing file is made with fresh random bytes first.
func readAuth(path string, create bool) ([]byte, error) {
	if create {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		switch {
		case err == nil:
			b := newAuth()
			_, werr := f.Write(b)
			serr := f.Sync()
			cerr := f.Close()
			if err := errors.Join(werr, serr, cerr); err != nil {
				os.Remove(path)
				return nil, fmt.Errorf("%w %s: %w", ErrAuthFile, path, err)
			}
		case !errors.Is(err, fs.ErrExist):
			return nil, fmt.Errorf("%w %s: %w", ErrAuthFile, path, err)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrAuthFile, path, err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w %s: mode %v; it must be a regular file of mode 0600 (chmod 600 %s)", ErrAuthFile, path, st.Mode(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrAuthFile, path, err)
	}
	if len(b) != AuthSize {
		return nil, fmt.Errorf("%w %s: %d bytes, want %d", ErrAuthFile, path, len(b), AuthSize)
	}
	if err := tpm.CheckKeyAuth(b); err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrAuthFile, path, err)
	}
	return b, nil
}

// newAuth returns AuthSize random bytes, none of them zero (see
// tpm.CheckKeyAuth).
func newAuth() []byte {
	b := make([]byte, 0, AuthSize)
	var one [1]byte
	for len(b) < AuthSize {
		rand.Read(one[:])
		if one[0] != 0 {
			b = append(b, one[0])
		}
	}
	return b
}
