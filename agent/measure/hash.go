package measure

import (
	"crypto/sha256"
	"io"
)

// hashBufSize is the read size of HashImage: large enough that per-call
// overhead vanishes next to SHA-256, small enough to stay in cache.
const hashBufSize = 1 << 20

// HashImage returns the SHA-256 of everything r yields and its length,
// reading r exactly once, front to back. If progress is not nil it is called
// after every read with the number of bytes hashed so far. Cancellation is
// the reader's business (wrap it to check a context).
func HashImage(r io.Reader, progress func(done int64)) (Digest, int64, error) {
	h := sha256.New()
	buf := make([]byte, hashBufSize)
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			n += int64(k)
			if progress != nil {
				progress(n)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return Digest{}, n, err
		}
	}
	var d Digest
	h.Sum(d[:0])
	return d, n, nil
}
