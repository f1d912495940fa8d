package witness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// buildVMLedger builds the vmledger binary into a temp dir.
func buildVMLedger(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vmledger")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/vmledger/vmledger/cmd/vmledger")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/vmledger: %v\n%s", err, out)
	}
	return bin
}

// startWitness runs `vmledger witness serve args…` and returns once it logs
// that it is serving, with its base URL. The process is killed at cleanup.
func startWitness(t *testing.T, bin string, args ...string) (*exec.Cmd, *url.URL) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--log-format", "text", "witness", "serve"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	re := regexp.MustCompile(`msg="witness serving" addr=(\S+)`)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			go func() {
				for sc.Scan() {
					if testing.Verbose() { // not t.Log: this may outlive the test
						fmt.Fprintln(os.Stderr, sc.Text())
					}
				}
			}()
			u, _ := url.Parse("http://" + m[1] + "/")
			return cmd, u
		}
	}
	t.Fatalf("witness serve exited before serving: %v", sc.Err())
	return nil, nil
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestProcessesGossipFork runs two `vmledger witness serve` processes, each
// watching one branch of a forked log (two Tessera logs with one key) and
// each the other's --peers, and waits until both serve fork evidence that
// verifies offline.
func TestProcessesGossipFork(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Tessera logs")
	}
	bin := buildVMLedger(t)
	urlA, urlB, logA := forkedLogs(t, entries("common", 2), entries("a", 4), entries("b", 4))
	dir := t.TempDir()
	addrA, addrB := freeAddr(t), freeAddr(t)
	run := func(name string, seed byte, logURL *url.URL, listen, peer string) *url.URL {
		skey, _ := seededKey(t, seed, name+".example/w")
		keyFile := filepath.Join(dir, name+".key")
		logsFile := filepath.Join(dir, name+".logs")
		if err := os.WriteFile(keyFile, []byte(skey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(logsFile, []byte(fmt.Sprintf("# the log, as this witness sees it\nlog %s %s\n", logA.vkey, logURL)), 0o644); err != nil {
			t.Fatal(err)
		}
		_, u := startWitness(t, bin, "--data", filepath.Join(dir, name), "--listen", listen, "--key", keyFile,
			"--logs", logsFile, "--peers", "http://"+peer+"/", "--gossip-interval", "200ms")
		return u
	}
	wa := run("a", 0x31, urlA, addrA, addrB)
	wb := run("b", 0x32, urlB, addrB, addrA)

	for _, w := range []*url.URL{wa, wb} {
		for {
			r := get(t, w.JoinPath("v1", "evidence").String())
			var ev []*Evidence
			if err := json.Unmarshal([]byte(r.body), &ev); err != nil {
				t.Fatalf("GET %s/v1/evidence = %q: %v", w, r.body, err)
			}
			if len(ev) > 0 {
				for _, e := range ev {
					if err := VerifyEvidence(e, logA.verifier); err != nil {
						t.Errorf("%s: VerifyEvidence = %v", w, err)
					}
				}
				break
			}
			select {
			case <-t.Context().Done():
				t.Fatalf("%s recorded no fork evidence", w)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}
