package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/vmledger/vmledger/log/tlog"
	"github.com/vmledger/vmledger/testing/mysqltest"
)

// TestWitnessKeyRotation follows docs/operations.md "Witness keys" with
// the real binary: a log with a one-witness policy; then the witness's old
// and new keys in a group of one-of-two in the log's policy and the
// customer's trust file; the witness restarted with the new key on its
// old state; then the old key dropped. Bundles cosigned by either key
// verify during the change, a bundle cosigned by the new key does not
// verify under the old trust file (the key really changed), and after the
// change an old attestation's bundle fetched again verifies under the new
// trust file.
func TestWitnessKeyRotation(t *testing.T) {
	statSources()
	d := &deployment{t: t, dir: t.TempDir()}
	logVKey := strings.TrimSpace(mustRun(t, "keygen", "--name", "ops.e2e.vmledger.test/log", "--out", d.path("log.key")).stdout)
	vkeyA := strings.TrimSpace(mustRun(t, "keygen", "--name", "w1.ops.e2e.vmledger.test", "--out", d.path("wa.key")).stdout)
	vkeyB := strings.TrimSpace(mustRun(t, "keygen", "--name", "w1.ops.e2e.vmledger.test/2", "--out", d.path("wb.key")).stdout)
	d.adminToken = writeFile(t, d.path("admin.token"), []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	logAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d.logURL = "http://" + logAddr
	logs := writeFile(t, d.path("logs.txt"), []byte("log "+logVKey+" "+d.logURL+"\n"), 0o644)

	witness := func(name, key, listen string) (*proc, string) {
		w := startProc(t, d.dir, name, "witness", "serve", "--data", d.path("witness-data"), "--listen", listen, "--key", key, "--logs", logs)
		addr, err := w.listenAddr("witness serving")
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, w.output())
		}
		w.waitHTTP("http://" + addr + "/healthz")
		return w, addr
	}
	w, waddr := witness("witness-a", d.path("wa.key"), "127.0.0.1:0")
	wURL := "http://" + waddr
	lineA := "witness w1 " + vkeyA + " " + wURL + "\n"
	lineB := "witness w1b " + vkeyB + " " + wURL + "\n"
	policies := map[string]string{
		"old":  lineA + "quorum w1\n",
		"both": lineA + lineB + "group w1-any 1 w1 w1b\nquorum w1-any\n",
		"new":  lineB + "quorum w1b\n",
	}
	startLog := func(name, policy string) *proc {
		pol := writeFile(t, d.path(name+".policy"), []byte(policies[policy]), 0o644)
		l := startProc(t, d.dir, name, "log", "serve", "--data", d.path("log-data"), "--listen", logAddr,
			"--key", d.path("log.key"), "--witness-policy", pol, "--admin-token-file", d.adminToken)
		if _, err := l.listenAddr("log serving"); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, l.output())
		}
		l.waitHTTP(d.logURL + "/checkpoint")
		return l
	}
	l := startLog("log-1", "old")

	host := d.softKey("host-a")
	mustRun(t, "log", "enroll", "--log", d.logURL, "--admin-token-file", d.adminToken, "--key", host.pem, "--name", "host-a")
	trust := map[string]string{}
	for name, pol := range policies {
		trust[name] = writeFile(t, d.path("trust-"+name+".txt"), []byte("log "+logVKey+" "+d.logURL+"\n"+pol+"coprocessor host-a "+host.pem+" software\n"), 0o644)
	}
	v := d.newVM("web01", "4GiB", 0x57)
	attest := func(name, trustName string) string {
		out := d.path(name)
		mustRun(t, "agent", "attest", "--vm", v.id, "--config", v.config, "--vm-secret", v.secret,
			"--coproc", host.spec, "--log", d.logURL, "--trust", trust[trustName], "--out", out)
		return out
	}
	verifies := func(bundle, trustName string) bool {
		t.Helper()
		r := vmledger(t, "verify", "--bundle", bundle, "--trust", trust[trustName], "--expected", v.config, "--vm-secret", v.secret, "--vm", v.id)
		if r.code != 0 && r.code != 3 {
			t.Fatalf("verify: exit %d\n%s", r.code, r)
		}
		return r.code == 0
	}
	oldBundle := attest("a.bundle.json", "old")

	// The change: both keys count as w1, the log restarted on that policy,
	// the witness restarted with the new key on its state.
	l.stop()
	l = startLog("log-2", "both")
	w.stop()
	w, _ = witness("witness-b", d.path("wb.key"), waddr)
	newBundle := attest("b.bundle.json", "both")
	for _, tc := range []struct {
		bundle, trust string
		want          bool
	}{
		{oldBundle, "both", true},
		{newBundle, "both", true},
		{newBundle, "old", false}, // cosigned by the new key only
		{newBundle, "new", true},
		{oldBundle, "new", false}, // cosigned by the old key only
	} {
		if got := verifies(tc.bundle, tc.trust); got != tc.want {
			t.Errorf("verify %s with the %q trust file = %v, want %v", tc.bundle, tc.trust, got, tc.want)
		}
	}

	// The old key dropped: the old attestation's bundle, fetched again,
	// is proved against a checkpoint the new key cosigned.
	l.stop()
	l = startLog("log-3", "new")
	newBundle2 := attest("c.bundle.json", "new")
	if !verifies(newBundle2, "new") {
		t.Errorf("after the old key was dropped, a new attestation does not verify")
	}
	r := mustRun(t, "lookup", "--log", d.logURL, "--vm", v.id, "--json")
	first := strings.Index(r.stdout, `"index": `)
	if first < 0 {
		t.Fatalf("lookup --json = %s", r.stdout)
	}
	index, err := strconv.ParseUint(strings.TrimRight(strings.Fields(r.stdout[first:])[1], ","), 10, 64)
	if err != nil {
		t.Fatalf("lookup --json = %s: %v", r.stdout, err)
	}
	resp, err := http.Get(fmt.Sprintf("%s/v1/bundles/%d", d.logURL, index))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	refetched := writeFile(t, d.path("a-again.bundle.json"), b, 0o644)
	if resp.StatusCode != http.StatusOK || !verifies(refetched, "new") {
		t.Errorf("the first attestation (index %d) fetched again = %s; does not verify under the new trust file", index, resp.Status)
	}
}

// TestRestoreFromOldBackup follows docs/operations.md "Restoring" for the
// embedded engine with the real binary: a cold copy of the log's data
// directory, more entries published after it, then the copy restored and
// served on another port. The check the guide gives — GET
// /v1/checkpoints/N for the newest size N the witness cosigned — answers
// 404, and the danger it guards against is real: the restored log, given
// different entries up to size N, is refused by the witness, which records
// fork evidence, and publishes nothing past the backup.
func TestRestoreFromOldBackup(t *testing.T) {
	statSources()
	d := &deployment{t: t, dir: t.TempDir()}
	const origin = "restore.e2e.vmledger.test/log"
	logVKey := strings.TrimSpace(mustRun(t, "keygen", "--name", origin, "--out", d.path("log.key")).stdout)
	wVKey := strings.TrimSpace(mustRun(t, "keygen", "--name", "w1.restore.e2e.vmledger.test", "--out", d.path("w.key")).stdout)
	logAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	logURL := "http://" + logAddr
	logs := writeFile(t, d.path("logs.txt"), []byte("log "+logVKey+" "+logURL+"\n"), 0o644)
	w := startProc(t, d.dir, "witness", "witness", "serve", "--data", d.path("witness-data"), "--listen", "127.0.0.1:0", "--key", d.path("w.key"), "--logs", logs)
	waddr, err := w.listenAddr("witness serving")
	if err != nil {
		t.Fatalf("witness: %v\n%s", err, w.output())
	}
	wURL := "http://" + waddr
	pol := writeFile(t, d.path("policy.txt"), []byte("witness w1 "+wVKey+" "+wURL+"\nquorum w1\n"), 0o644)
	startLog := func(name, data, addr string) *proc {
		l := startProc(t, d.dir, name, "log", "serve", "--data", data, "--listen", addr, "--key", d.path("log.key"),
			"--witness-policy", pol, "--allow-raw-entries")
		if _, err := l.listenAddr("log serving"); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, l.output())
		}
		return l
	}
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	appendEntries := func(base, prefix string, n int) {
		for i := range n {
			resp, err := http.Post(base+"/v1/entries", "application/octet-stream", strings.NewReader(fmt.Sprintf("%s-%d", prefix, i)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("POST /v1/entries = %s", resp.Status)
			}
		}
	}
	// witnessSize polls the witness's latest cosigned checkpoint until its
	// size is at least min, and returns the size.
	witnessURL := fmt.Sprintf("%s/%x/checkpoint", wURL, sha256.Sum256([]byte(origin)))
	witnessSize := func(min uint64) uint64 {
		for {
			if code, body := get(witnessURL); code == http.StatusOK {
				lines := strings.Split(body, "\n")
				if size, err := strconv.ParseUint(lines[1], 10, 64); err == nil && size >= min {
					return size
				}
			}
			select {
			case <-t.Context().Done():
				t.Fatalf("the witness never cosigned size %d", min)
			case <-time.After(pollInterval):
			}
		}
	}

	data := d.path("log-data")
	l := startLog("log-1", data, logAddr)
	appendEntries(logURL, "before", 3)
	witnessSize(3)
	l.stop()
	backup := d.path("backup")
	if out, err := exec.Command("cp", "-a", data, backup).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	l = startLog("log-2", data, logAddr)
	appendEntries(logURL, "after", 5)
	n := witnessSize(8)
	l.stop()

	// The restore, on another port, checked as the guide says.
	restoredAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	restoredURL := "http://" + restoredAddr
	l = startLog("log-restored", backup, restoredAddr)
	if code, body := get(fmt.Sprintf("%s/v1/checkpoints/%d", restoredURL, n)); code != http.StatusNotFound {
		t.Fatalf("restored log: GET /v1/checkpoints/%d = %d %q, want 404 (the backup is older)", n, code, body)
	}
	if code, _ := get(restoredURL + "/v1/checkpoints/3"); code != http.StatusOK {
		t.Errorf("restored log: GET /v1/checkpoints/3 = %d, want the backup's checkpoint", code)
	}

	// What the check prevents: other entries at the indexes the world saw.
	appendEntries(restoredURL, "forked", int(n)-3)
	for {
		if _, body := get(wURL + "/v1/evidence"); strings.Contains(body, origin) {
			break
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("the witness recorded no fork evidence against the restored log\n%s", l.output())
		case <-time.After(pollInterval):
		}
	}
	_, cp := get(restoredURL + "/checkpoint")
	if lines := strings.Split(cp, "\n"); len(lines) < 2 || lines[1] != "3" {
		t.Errorf("restored log publishes %q, want nothing past the backup's size 3", cp)
	}
}

// TestRestoreTesseraDump follows docs/operations.md "The log on Tessera":
// mariadb-dump --single-transaction of the log's database while a front-end
// appends, loaded into another database, serves a log whose checkpoint is
// consistent with the original's (a prefix of the same tree), proved with
// the original's consistency proof.
func TestRestoreTesseraDump(t *testing.T) {
	statSources()
	dump, err := exec.LookPath("mariadb-dump")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mariadb-dump is missing (Debian package mariadb-client): %v", err)
		}
		t.Skipf("mariadb-dump is missing (Debian package mariadb-client): %v", err)
	}
	client, err := exec.LookPath("mariadb")
	if err != nil {
		t.Fatalf("mariadb-dump without the mariadb client: %v", err)
	}
	dsn1, dsn2 := mysqltest.NewDatabase(t), mysqltest.NewDatabase(t) // skip without MariaDB unless required
	d := &deployment{t: t, dir: t.TempDir()}
	mustRun(t, "keygen", "--name", "dump.e2e.vmledger.test/log", "--out", d.path("log.key"))
	startLog := func(name, dsn string) (*proc, string) {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		l := startProc(t, d.dir, name, "log", "serve", "--data", d.path(name), "--listen", addr, "--key", d.path("log.key"),
			"--engine", "tessera", "--mysql-dsn", dsn, "--allow-raw-entries")
		if _, err := l.listenAddr("log serving"); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, l.output())
		}
		l.waitHTTP("http://" + addr + "/checkpoint")
		return l, "http://" + addr
	}
	_, url1 := startLog("log-1", dsn1)

	// Writers append while the dump runs.
	stop := make(chan struct{})
	done := make(chan int)
	for w := range 4 {
		go func() {
			n := 0
			for i := 0; ; i++ {
				select {
				case <-stop:
					done <- n
					return
				default:
				}
				resp, err := http.Post(url1+"/v1/entries", "application/octet-stream", strings.NewReader(fmt.Sprintf("w%d-%d", w, i)))
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						n++
					}
				}
			}
		}()
	}
	size := func(url string) uint64 {
		t.Helper()
		resp, err := http.Get(url + "/checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lines := strings.Split(string(b), "\n")
		if len(lines) < 3 {
			t.Fatalf("GET %s/checkpoint = %q", url, b)
		}
		n, err := strconv.ParseUint(lines[1], 10, 64)
		if err != nil {
			t.Fatalf("GET %s/checkpoint = %q", url, b)
		}
		return n
	}
	waitSize := func(url string, min uint64) {
		for size(url) < min {
			select {
			case <-t.Context().Done():
				t.Fatalf("%s never reached size %d", url, min)
			case <-time.After(pollInterval):
			}
		}
	}
	waitSize(url1, 8)
	args := func(dsn string) []string {
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		host, port, _ := strings.Cut(cfg.Addr, ":")
		return []string{"-h", host, "-P", port, "-u", cfg.User, "-p" + cfg.Passwd, cfg.DBName}
	}
	sqlPath := d.path("dump.sql")
	out, err := exec.Command(dump, append([]string{"--no-defaults", "--single-transaction", "--quick", "--result-file", sqlPath}, args(dsn1)...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("mariadb-dump: %v\n%s", err, out)
	}
	waitSize(url1, 16) // the log went on after the dump
	close(stop)
	for range 4 {
		<-done
	}
	load := exec.Command(client, append([]string{"--no-defaults"}, args(dsn2)...)...)
	f, err := os.Open(sqlPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	load.Stdin = f
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("mariadb < dump.sql: %v\n%s", err, out)
	}

	_, url2 := startLog("log-restored", dsn2)
	resp, err := http.Get(url2 + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	restored, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s2 := size(url2)
	s1 := size(url1)
	if s2 == 0 || s2 > s1 {
		t.Fatalf("restored size %d, original %d: want 0 < restored ≤ original", s2, s1)
	}
	root := func(cp []byte) tlog.Hash {
		c, err := tlog.ParseCheckpoint(cp[:bytes.Index(cp, []byte("\n\n"))+1])
		if err != nil {
			t.Fatalf("checkpoint %q: %v", cp, err)
		}
		return c.Root
	}
	resp, err = http.Get(url1 + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	original, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s1 = size(url1)
	resp, err = http.Get(fmt.Sprintf("%s/v1/proof/consistency?old=%d&new=%d", url1, s2, s1))
	if err != nil {
		t.Fatal(err)
	}
	var proof struct{ Hashes [][]byte }
	err = json.NewDecoder(resp.Body).Decode(&proof)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.VerifyConsistency(s2, s1, proof.Hashes, root(restored), root(original)); err != nil {
		t.Errorf("the restored log (size %d) is not a prefix of the original (size %d): %v", s2, s1, err)
	}
}
