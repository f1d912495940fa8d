package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/coproc/tpm/swtpmtest"
	"github.com/vmledger/vmledger/testing/mysqltest"
)

// origin is the log's origin in every deployment.
const origin = "e2e.vmledger.test/log"

// deployment is a vmledger deployment of separate processes: three
// witnesses, the log with a 2-of-3 witness policy, and a swtpm whose key is
// enrolled with the log.
type deployment struct {
	t   *testing.T
	dir string

	logURL    string
	logVKey   string
	log       *proc
	witnesses []*proc
	// witnessLines are the witness, group and quorum lines of the
	// customer's trust file.
	witnessLines string

	tpm        *swtpmtest.Swtpm
	adminToken string // path of the admin token file
	tpmKeyID   string
	tpmPEM     string // path of the TPM key's PEM

	// trust is the customer's trust file (also the agent's).
	trust string

	// engineArgs are log serve's engine flags (none: the default badger
	// engine).
	engineArgs []string
	// policyFile is the log's --witness-policy file.
	policyFile string
}

// coproc is the co-processor SPEC of the swtpm (its address changes when
// it restarts).
func (d *deployment) coproc() string { return "swtpm:" + d.tpm.Addr }

// deploy starts a deployment in a new temporary directory, with the log on
// its default (badger) engine. Every process is killed when the test ends.
func deploy(t *testing.T) *deployment {
	t.Helper()
	return deployWith(t, nil)
}

// deployTessera starts a deployment whose log runs on the Tessera engine
// (log serve --engine tessera) with a database of its own on the MariaDB
// that .ci/run starts; it skips, or fails with VMLEDGER_REQUIRE_MYSQL=1,
// without one.
func deployTessera(t *testing.T) *deployment {
	t.Helper()
	return deployWith(t, []string{"--engine", "tessera", "--mysql-dsn", mysqltest.NewDatabase(t)})
}

// deployWith starts a deployment whose log serve gets engineArgs.
func deployWith(t *testing.T, engineArgs []string) *deployment {
	t.Helper()
	statSources()
	tpm := swtpmtest.Start(t) // skips, or fails with VMLEDGER_REQUIRE_SWTPM=1, without swtpm
	d := &deployment{t: t, dir: t.TempDir(), tpm: tpm, engineArgs: engineArgs}

	d.logVKey = strings.TrimSpace(mustRun(t, "keygen", "--name", origin, "--out", d.path("log.key")).stdout)
	var wkeys, wvkeys []string
	for i := range 3 {
		name := fmt.Sprintf("w%d.e2e.vmledger.test", i+1)
		key := d.path(fmt.Sprintf("w%d.key", i+1))
		wvkeys = append(wvkeys, strings.TrimSpace(mustRun(t, "keygen", "--name", name, "--out", key).stdout))
		wkeys = append(wkeys, key)
	}
	token := make([]byte, 32)
	rand.Read(token)
	d.adminToken = writeFile(t, d.path("admin.token"), []byte(hex.EncodeToString(token)+"\n"), 0o600)

	// The witnesses need the log's URL and the log needs theirs: pick the
	// log's port first, start the witnesses on ports of their own choosing
	// (--listen 127.0.0.1:0, read back from their log line), then the log.
	// If someone took the log's port meanwhile, start over.
	for attempt := 1; ; attempt++ {
		err := d.startServers(attempt, wkeys, wvkeys)
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatalf("starting the log and the witnesses: %v", err)
		}
		t.Logf("attempt %d: %v; trying other ports", attempt, err)
	}

	// The log publishes a checkpoint only once 2 of the 3 witnesses
	// cosigned it; agents need one as their freshness anchor.
	d.log.waitHTTP(d.logURL + "/checkpoint")

	// The co-processor: a real swtpm.
	mustRun(t, "coproc", "init", "--coproc", d.coproc())
	var info struct {
		KeyID        string `json:"keyid"`
		PublicKeyPEM string `json:"publicKeyPEM"`
		Backend      string `json:"backend"`
	}
	r := mustRun(t, "coproc", "info", "--coproc", d.coproc(), "--json")
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
		t.Fatalf("coproc info --json: %v\n%s", err, r)
	}
	if info.Backend != "tpm" || info.KeyID == "" || info.PublicKeyPEM == "" {
		t.Fatalf("coproc info --json = backend %q, keyid %q, PEM %q; want a tpm key\n%s", info.Backend, info.KeyID, info.PublicKeyPEM, r)
	}
	d.tpmKeyID = info.KeyID
	d.tpmPEM = writeFile(t, d.path("tpm.pem"), []byte(info.PublicKeyPEM), 0o644)

	r = mustRun(t, "log", "enroll", "--log", d.logURL, "--admin-token-file", d.adminToken, "--key", d.tpmPEM, "--name", "host-a")
	var enrolled struct {
		KeyID string `json:"keyid"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &enrolled); err != nil {
		t.Fatalf("log enroll: %v\n%s", err, r)
	}
	if enrolled.KeyID != d.tpmKeyID {
		t.Fatalf("log enroll: enrolled key id %q, want the TPM's %q\n%s", enrolled.KeyID, d.tpmKeyID, r)
	}

	d.trust = d.writeTrust("trust.txt", d.logVKey, d.witnessLines, "coprocessor host-a "+d.tpmPEM)
	return d
}

// startServers starts the three witnesses (private keys wkeys, verifier keys
// wvkeys as keygen printed them) and the log, in directories of their own
// under attempt-N. It returns an error only if the log's port was taken; any
// other failure fails the test.
//
// The log's witness policy names each witness by the Ed25519 verifier key
// keygen printed (as the README does); the customer's trust file by the
// cosignature/v1 key witness serve prints. Both must work.
func (d *deployment) startServers(attempt int, wkeys, wvkeys []string) error {
	t := d.t
	dir := d.path(fmt.Sprintf("attempt-%d", attempt))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	logAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d.logURL = "http://" + logAddr
	logs := writeFile(t, filepath.Join(dir, "logs.txt"), []byte("log "+d.logVKey+" "+d.logURL+"\n"), 0o644)

	d.witnesses = nil
	var pol, trustPol strings.Builder
	for i, key := range wkeys {
		name := fmt.Sprintf("w%d", i+1)
		w := startProc(t, dir, "witness-"+name, "witness", "serve",
			"--data", filepath.Join(dir, name), "--listen", "127.0.0.1:0", "--key", key, "--logs", logs)
		addr, err := w.listenAddr("witness serving")
		if err != nil {
			t.Fatalf("witness %s: %v\n%s", name, err, w.output())
		}
		url := "http://" + addr
		w.waitHTTP(url + "/healthz")
		// witness serve prints its cosignature/v1 verifier key on stdout.
		out, err := os.ReadFile(w.stdout)
		if err != nil {
			t.Fatal(err)
		}
		vkey := strings.TrimSpace(string(out))
		if !strings.HasPrefix(vkey, fmt.Sprintf("w%d.e2e.vmledger.test+", i+1)) {
			t.Fatalf("witness %s printed %q on stdout, want its verifier key", name, out)
		}
		fmt.Fprintf(&pol, "witness %s %s %s\n", name, wvkeys[i], url)
		fmt.Fprintf(&trustPol, "witness %s %s %s\n", name, vkey, url)
		d.witnesses = append(d.witnesses, w)
	}
	const quorum = "group witnesses 2 w1 w2 w3\nquorum witnesses\n"
	pol.WriteString(quorum)
	trustPol.WriteString(quorum)
	d.witnessLines = trustPol.String()
	d.policyFile = writeFile(t, filepath.Join(dir, "witness-policy.txt"), []byte(pol.String()), 0o644)

	d.log = d.startLog(dir, "log", logAddr)
	if _, err := d.log.listenAddr("log serving"); err != nil {
		stderr, _ := os.ReadFile(d.log.stderr)
		if strings.Contains(string(stderr), "address already in use") {
			for _, w := range d.witnesses {
				w.kill()
			}
			return fmt.Errorf("log: %s is taken", logAddr)
		}
		t.Fatalf("log: %v\n%s", err, d.log.output())
	}
	d.log.waitHTTP(d.logURL + "/healthz")
	return nil
}

// startLog starts a log serve process called name listening on addr, with
// its data in dir/name and the deployment's key, witness policy, admin token
// and engine.
func (d *deployment) startLog(dir, name, addr string) *proc {
	return startProc(d.t, dir, name, append([]string{"log", "serve",
		"--data", filepath.Join(dir, name), "--listen", addr, "--key", d.path("log.key"),
		"--witness-policy", d.policyFile, "--admin-token-file", d.adminToken}, d.engineArgs...)...)
}

func (d *deployment) path(name string) string { return filepath.Join(d.dir, name) }

// writeTrust writes a trust file: the log line for logVKey (with the log's
// URL), the witness policy lines and the co-processor line.
func (d *deployment) writeTrust(name, logVKey, witnessLines, coprocLine string) string {
	text := "log " + logVKey + " " + d.logURL + "\n" + witnessLines + coprocLine + "\n"
	return writeFile(d.t, d.path(name), []byte(text), 0o644)
}

// softCoproc is a software co-processor key.
type softCoproc struct {
	spec  string // soft:DIR
	pem   string // path of its public key's PEM
	keyID string
}

// softKey makes a software co-processor key (ECDSA P-256, like a TPM's) in
// a new directory: a key the log has not enrolled.
func (d *deployment) softKey(name string) softCoproc {
	t := d.t
	k := softCoproc{spec: "soft:" + d.path(name)}
	mustRun(t, "coproc", "init", "--coproc", k.spec, "--soft-alg", "ecdsa-p256")
	r := mustRun(t, "coproc", "info", "--coproc", k.spec, "--json")
	var info struct {
		KeyID        string `json:"keyid"`
		PublicKeyPEM string `json:"publicKeyPEM"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil || info.PublicKeyPEM == "" || info.KeyID == "" {
		t.Fatalf("coproc info --json: no keyid or publicKeyPEM (%v)\n%s", err, r)
	}
	k.keyID = info.KeyID
	k.pem = writeFile(t, d.path(name+".pem"), []byte(info.PublicKeyPEM), 0o644)
	return k
}

// vm is one VM: its configuration file and its secret.
type vm struct {
	id     string
	config string // path of its vmledger/config/v1 JSON
	secret string // path of its 32-byte secret (0600)
}

// newVM writes a configuration (memory, e.g. "4GiB", and the last byte of
// the NIC's MAC vary) and a fresh secret for VM id.
func (d *deployment) newVM(id, memory string, macByte int) vm {
	return vm{
		id:     id,
		config: d.writeConfig(id+".json", memory, macByte),
		secret: d.newSecret(id + ".secret"),
	}
}

func (d *deployment) newSecret(name string) string {
	secret := make([]byte, 32)
	rand.Read(secret)
	return writeFile(d.t, d.path(name), secret, 0o600)
}

// writeConfig writes a configuration in the vmledger/config/v1 format
// (`go doc ./agent/vmconfig File`), shaped like cmd/vmledger/demodata.
func (d *deployment) writeConfig(name, memory string, macByte int) string {
	cfg := fmt.Sprintf(`{
  "schema": "vmledger/config/v1",
  "memory": %q,
  "cpu": {"count": 2, "affinity": "2-3"},
  "nics": [{"mac": "52:54:00:6b:3c:%02x", "vlan": 42}],
  "disks": [{"target": "vda", "sha256": "4f0e5dc7a3a35f29bd7b0f5b7b1c1e4c7d1d7e0e8b6b0f6a3c2b1a0f9e8d7c6b"}],
  "boot": {
    "loader": {"sha256": "9a6f3c2b1d0e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c"},
    "kernel": {"sha256": "1c2d3e4f5061728394a5b6c7d8e9f00112233445566778899aabbccddeeff001"},
    "cmdline": "console=ttyS0,115200n8 root=/dev/vda1 ro quiet"
  },
  "packages": [
    {"name": "nginx", "version": "1.22.1-9", "manifest_sha256": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}
  ]
}
`, memory, macByte)
	return writeFile(d.t, d.path(name), []byte(cfg), 0o644)
}
