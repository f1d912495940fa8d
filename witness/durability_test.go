package witness

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vmledger/vmledger/witness/policy"
)

// TestConcurrentNeverRollsBack: many clients race add-checkpoint requests
// for one origin, each from the size it last heard of. The stored size never
// decreases (sampled throughout), and no old size is ever accepted twice for
// two different new sizes (the compare-and-swap holds).
func TestConcurrentNeverRollsBack(t *testing.T) {
	const final = 64
	l := newTestLog(t, final)
	dir := t.TempDir()
	tw := newTestWitness(t, witnessOpts{dir: dir, logs: []*policy.Log{l.policyLog(t, "")}})

	// Pre-sign every checkpoint and proof: the test log is not concurrency-safe.
	cps := make([][]byte, final+1)
	proofs := map[[2]uint64][][]byte{}
	for n := uint64(0); n <= final; n++ {
		cps[n] = l.checkpoint(n)
		for o := uint64(1); o <= n; o++ {
			proofs[[2]uint64{o, n}] = l.proof(o, n)
		}
	}

	var mu sync.Mutex
	advancedFrom := map[uint64]uint64{} // old → new size of each 200 with new > old
	var violations []string

	done := make(chan struct{})
	sampled := make(chan []uint64)
	go func() { // sampler
		var sizes []uint64
		for {
			select {
			case <-done:
				sampled <- sizes
				return
			default:
			}
			st, err := tw.store.Latest(t.Context(), testOrigin)
			if err != nil {
				panic(err)
			}
			if st != nil {
				sizes = append(sizes, st.Size)
			}
		}
	}()

	var wg sync.WaitGroup
	for worker := range 12 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(worker), 1))
			var old uint64
			for old < final {
				size := old + rng.Uint64N(final-old+1)
				if rng.IntN(4) == 0 {
					size = old // re-submit: a fresh cosignature
				}
				r := post(t, tw.url, MarshalAddCheckpoint(old, proofs[[2]uint64{old, size}], cps[size]))
				switch r.code {
				case 200:
					if size > old {
						mu.Lock()
						if prev, ok := advancedFrom[old]; ok && prev != size {
							violations = append(violations, fmt.Sprintf("old %d accepted for %d and %d", old, prev, size))
						}
						advancedFrom[old] = size
						mu.Unlock()
					}
					old = size
				case 409:
					n, err := strconv.ParseUint(strings.TrimSpace(r.body), 10, 64)
					// old was the stored size at some earlier moment, so a
					// later answer can only be larger or equal.
					if err != nil || n < old {
						mu.Lock()
						violations = append(violations, fmt.Sprintf("409 %q after the witness had size %d", r.body, old))
						mu.Unlock()
					}
					old = n
				default:
					mu.Lock()
					violations = append(violations, fmt.Sprintf("old %d size %d: %d %q", old, size, r.code, r.body))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	sizes := <-sampled
	for _, v := range violations {
		t.Error(v)
	}
	for i := 1; i < len(sizes); i++ {
		if sizes[i] < sizes[i-1] {
			t.Fatalf("stored size went from %d to %d", sizes[i-1], sizes[i])
		}
	}
	st, err := tw.store.Latest(t.Context(), testOrigin)
	if err != nil || st.Size != final {
		t.Fatalf("final state = %+v, %v; want size %d", st, err, final)
	}
	want := string(st.Note)

	// Restart: close the DB and reopen it in the same directory.
	tw.close()
	tw2 := newTestWitness(t, witnessOpts{dir: dir, logs: []*policy.Log{l.policyLog(t, "")}})
	r := get(t, tw2.url.JoinPath(OriginID(testOrigin), "checkpoint").String())
	if r.body != want {
		t.Errorf("after restart, monitoring = %q, want %q", r.body, want)
	}
	if r := post(t, tw2.url, l.body(0, final)); r.code != 409 || r.body != "64\n" {
		t.Errorf("after restart, old 0 = %d %q, want 409 \"64\\n\"", r.code, r.body)
	}
	t.Logf("%d samples of the stored size, all non-decreasing", len(sizes))
}

// TestKill9LosesNothing builds the vmledger binary, runs `witness serve`,
// has it cosign, kills it with SIGKILL right after a 200, restarts it on
// the same data directory, and checks that the cosigned state survived.
func TestKill9LosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the vmledger binary")
	}
	dir := t.TempDir()
	bin := buildVMLedger(t)
	skey, _ := seededKey(t, 0x01, "witness.example/w1")
	keyFile := filepath.Join(dir, "w1.key")
	if err := os.WriteFile(keyFile, []byte(skey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := newTestLog(t, 8)
	logsFile := filepath.Join(dir, "logs")
	if err := os.WriteFile(logsFile, []byte("log "+l.vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")

	// A private key that others can read is refused.
	loose := filepath.Join(dir, "loose.key")
	if err := os.WriteFile(loose, []byte(skey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "witness", "serve", "--data", data, "--listen", "127.0.0.1:0", "--key", loose, "--logs", logsFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "chmod 600") {
		t.Errorf("witness serve with a 0644 key = %v %q, want a refusal naming chmod 600", err, out)
	}

	// Usage errors exit with code 2 and say what is wrong.
	for _, args := range [][]string{
		{"--peers", "ftp://peer.example/"},
		{"--gossip-interval", "0s"},
		{"--no-such-flag"},
	} {
		cmd := exec.Command(bin, append([]string{"witness", "serve", "--data", data, "--key", keyFile, "--logs", logsFile}, args...)...)
		out, err := cmd.CombinedOutput()
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 2 {
			t.Errorf("witness serve %v = %v %q, want exit code 2", args, err, out)
		}
	}

	start := func() (*exec.Cmd, *url.URL) {
		t.Helper()
		return startWitness(t, bin, "--data", data, "--listen", "127.0.0.1:0", "--key", keyFile, "--logs", logsFile)
	}

	cmd, u := start()
	mustCosign(t, u, l.body(0, 5))
	line := mustCosign(t, u, l.body(5, 8))
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	_, u = start()
	r := get(t, u.JoinPath(OriginID(testOrigin), "checkpoint").String())
	if want := string(l.checkpoint(8)) + line; r.code != 200 || r.body != want {
		t.Errorf("after kill -9, monitoring = %d %q, want %q", r.code, r.body, want)
	}
	if r := post(t, u, l.body(0, 8)); r.code != 409 || r.body != "8\n" {
		t.Errorf("after kill -9, old 0 = %d %q, want 409 \"8\\n\"", r.code, r.body)
	}
	if r := post(t, u, l.body(5, 8)); r.code != 409 {
		t.Errorf("after kill -9, replayed 5→8 = %d, want 409", r.code)
	}
}

// TestRacingSameOld: in each round, many requests with the same old size and
// different new sizes are released at once; exactly one may win, the others
// must get 409 with the winner's size. Without the compare-and-swap several
// would "win" and the state would move backwards.
func TestRacingSameOld(t *testing.T) {
	const racers, rounds = 8, 12
	final := uint64(racers * rounds)
	l := newTestLog(t, int(final))
	tw := newTestWitness(t, witnessOpts{logs: []*policy.Log{l.policyLog(t, "")}})
	var old uint64
	for round := range rounds {
		bodies := make([][]byte, racers)
		for i := range racers {
			size := old + uint64(i) + 1
			bodies[i] = MarshalAddCheckpoint(old, l.proof(old, size), l.checkpoint(size))
		}
		// Hold the first racers transactions open until all of them have
		// read the state and decided, so that they really overlap.
		var mu sync.Mutex
		arrived := 0
		together := make(chan struct{})
		tw.store.testHookUpdated = func() {
			mu.Lock()
			arrived++
			first := arrived <= racers
			if arrived == racers {
				close(together)
			}
			mu.Unlock()
			if first {
				<-together
			}
		}
		start := make(chan struct{})
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i := range racers {
			wg.Go(func() {
				<-start
				_, errs[i] = tw.w.AddCheckpoint(t.Context(), bodies[i])
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			if err == nil {
				if winner >= 0 {
					t.Fatalf("round %d: old %d accepted for sizes %d and %d", round, old, old+uint64(winner)+1, old+uint64(i)+1)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no request won: %v", round, errs)
		}
		won := old + uint64(winner) + 1
		for i, err := range errs {
			var ce *ConflictError
			if i != winner && (!errors.As(err, &ce) || ce.Size != won) {
				t.Errorf("round %d: loser %d got %v, want a 409 with size %d", round, i, err, won)
			}
		}
		st, _ := tw.store.Latest(t.Context(), testOrigin)
		if st.Size != won {
			t.Fatalf("round %d: stored size %d, want the winner's %d", round, st.Size, won)
		}
		old = won
	}
}
