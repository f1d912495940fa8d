package crash

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func TestBundlePath(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		w    int
		want string
	}{
		{0, 256, "tile/entries/000"},
		{0, 5, "tile/entries/000.p/5"},
		{1234, 256, "tile/entries/x001/234"},
		{1234067, 1, "tile/entries/x001/x234/067.p/1"},
	} {
		if got := BundlePath(tc.n, tc.w); got != tc.want {
			t.Errorf("BundlePath(%d, %d) = %q, want %q", tc.n, tc.w, got, tc.want)
		}
	}
}

// TestCheckLogCatches shows that CheckLog fails on a lost or changed
// acknowledged entry, on a published checkpoint that is not a prefix of the
// log, and on a log that shrank.
func TestCheckLogCatches(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "vmledger.test/check")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	var entries [][]byte
	var tree Tree
	for i := range 600 {
		e := fmt.Appendf(nil, "entry %d", i)
		entries = append(entries, e)
		tree.Append(e)
	}
	sign := func(c Checkpoint) []byte {
		b, err := note.Sign(&note.Note{Text: c.Text()}, signer)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	at := func(size int64) []byte {
		root, err := tree.Root(size)
		if err != nil {
			t.Fatal(err)
		}
		return sign(Checkpoint{Origin: signer.Name(), Size: size, Root: root})
	}
	served := entries // what the fake log serves
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for n := int64(0); n*256 < int64(len(served)); n++ {
			for wd := 1; wd <= 256; wd++ {
				if "/"+BundlePath(n, wd) != r.URL.Path {
					continue
				}
				if int(n*256)+wd > len(served) {
					break
				}
				var b []byte
				for _, e := range served[n*256 : int(n*256)+wd] {
					b = append(b, byte(len(e)>>8), byte(len(e)))
					b = append(b, e...)
				}
				w.Write(b)
				return
			}
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	acked := map[int64][]byte{3: entries[3], 300: entries[300], 599: entries[599]}
	seen := [][]byte{at(1), at(256), at(257), at(513)}
	ctx := t.Context()

	if _, err := CheckLog(ctx, srv.Client(), srv.URL, verifier, at(600), seen, acked); err != nil {
		t.Fatalf("CheckLog of an intact log = %v, want nil", err)
	}

	var fork tlog.Hash
	rand.Read(fork[:])
	for _, tc := range []struct {
		name   string
		served [][]byte
		final  []byte
		seen   [][]byte
		want   string
	}{
		{"changed entry", append(append(append([][]byte{}, entries[:300]...), []byte("other")), entries[301:]...), nil, nil, "entry 300"},
		{"lost entries", entries[:599], at(599), nil, "beyond the log's size"},
		{"forked checkpoint", entries, nil, [][]byte{sign(Checkpoint{Origin: signer.Name(), Size: 100, Root: fork})}, "a fork"},
		{"log shrank", entries[:513], at(513), [][]byte{at(600)}, "went backwards"},
	} {
		served = tc.served
		final := tc.final
		if final == nil {
			final = at(600)
		}
		s := append(append([][]byte{}, seen...), tc.seen...)
		_, err := CheckLog(ctx, srv.Client(), srv.URL, verifier, final, s, acked)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: CheckLog = %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}
