package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vmledger/vmledger/testing/mysqltest"
)

// repoRoot is the module's root directory (binarySources starts with its
// go.mod).
func repoRoot() string { return filepath.Dir(binarySources[0]) }

// installedBinary is where the units in dist/systemd expect vmledger.
const installedBinary = "/usr/local/bin/vmledger"

// analyzeUnit runs systemd-analyze verify and an offline security review
// on the unit file at path, and returns what they reported; "" means the
// unit passed both.
func analyzeUnit(t *testing.T, analyze, path string) string {
	t.Helper()
	var report strings.Builder
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		// verify exits 0 on warnings such as an unknown directive: any
		// output is a failure.
		fmt.Fprintf(&report, "systemd-analyze verify: %v\n%s", err, out)
	}
	// Exposure 0..100 (shown as 0.0..10.0); 20 is "OK" at worst.
	out, err = exec.Command(analyze, "security", "--offline=yes", "--threshold=20", path).CombinedOutput()
	if err != nil {
		fmt.Fprintf(&report, "systemd-analyze security --offline=yes --threshold=20: %v\n%s", err, out)
	}
	return report.String()
}

// TestSystemdUnits checks dist/systemd/*.service with Debian's
// systemd-analyze (no running systemd needed): verify must print nothing
// and the offline security review must rate the sandbox OK, and each unit
// must run as a user of its own with the sandboxing operations.md promises.
//
// verify checks that ExecStart's binary exists and is executable; the
// units name /usr/local/bin/vmledger, so the test verifies a copy in which
// that path is the vmledger binary it just built, changing nothing else.
// Without systemd-analyze (Debian package systemd) the test skips, and
// with CI=true it fails.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("systemd-analyze is missing (apt-get install systemd): %v", err)
		}
		t.Skipf("systemd-analyze is missing (Debian package systemd): %v", err)
	}
	units, err := filepath.Glob(filepath.Join(repoRoot(), "dist", "systemd", "*.service"))
	if err != nil || len(units) != 2 {
		t.Fatalf("dist/systemd/*.service = %v, %v; want the log's and the witness's", units, err)
	}
	dir := t.TempDir()
	users := sysusers(t, filepath.Join(repoRoot(), "dist", "systemd", "vmledger.sysusers"))
	for _, unit := range units {
		name := filepath.Base(unit)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(unit)
			if err != nil {
				t.Fatal(err)
			}
			text := string(b)
			directives := map[string][]string{}
			for line := range strings.Lines(text) {
				line = strings.TrimSpace(line)
				if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
					directives[k] = append(directives[k], v)
				}
			}
			for k, want := range map[string]string{
				"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
				"PrivateDevices": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "UMask": "0077",
				"CapabilityBoundingSet": "", "StateDirectoryMode": "0700",
			} {
				if got := directives[k]; len(got) != 1 || got[0] != want {
					t.Errorf("%s=%q, want %q", k, got, want)
				}
			}
			if u := directives["User"]; len(u) != 1 || !strings.HasPrefix(u[0], "vmledger-") || !users[u[0]] {
				t.Errorf("User=%q, want a vmledger-… user of its own that vmledger.sysusers creates (it creates %v)", u, users)
			}
			if s := directives["StateDirectory"]; len(s) != 1 || !strings.HasPrefix(s[0], "vmledger/") {
				t.Errorf("StateDirectory=%q, want vmledger/…", s)
			}
			exec := directives["ExecStart"]
			if len(exec) != 1 || !strings.HasPrefix(exec[0], installedBinary+" ") || !strings.Contains(exec[0], " --config /etc/vmledger/") {
				t.Fatalf("ExecStart=%q, want %s … --config /etc/vmledger/…", exec, installedBinary)
			}
			copyPath := filepath.Join(dir, name)
			writeFile(t, copyPath, []byte(strings.Replace(text, "ExecStart="+installedBinary+" ", "ExecStart="+vmledgerBin+" ", 1)), 0o644)
			if report := analyzeUnit(t, analyze, copyPath); report != "" {
				t.Errorf("%s:\n%s", name, report)
			}
		})
	}

	// The check itself: a misspelt directive, a bad value, a missing
	// binary and a weak sandbox are each reported.
	b, err := os.ReadFile(units[0])
	if err != nil {
		t.Fatal(err)
	}
	good := strings.Replace(string(b), "ExecStart="+installedBinary+" ", "ExecStart="+vmledgerBin+" ", 1)
	for _, tc := range []struct{ name, old, new string }{
		{"misspelt directive", "NoNewPrivileges=yes", "NoNewPrivilege=yes"},
		{"bad value", "ProtectSystem=strict", "ProtectSystem=strictly"},
		{"missing binary", "ExecStart=" + vmledgerBin, "ExecStart=" + filepath.Join(dir, "no-such-binary")},
		{"weak sandbox", "\n[Install]", "NoNewPrivileges=no\nProtectSystem=no\nProtectHome=no\nPrivateTmp=no\nPrivateDevices=no\nRestrictAddressFamilies=\nSystemCallFilter=\nCapabilityBoundingSet=~\nUser=root\n\n[Install]"},
	} {
		t.Run("catches a "+tc.name, func(t *testing.T) {
			if !strings.Contains(good, tc.old) {
				t.Fatalf("the unit has no %q", tc.old)
			}
			path := filepath.Join(t.TempDir(), filepath.Base(units[0]))
			writeFile(t, path, []byte(strings.Replace(good, tc.old, tc.new, 1)), 0o644)
			if analyzeUnit(t, analyze, path) == "" {
				t.Errorf("a unit with a %s passed", tc.name)
			}
		})
	}
}

// distConfig returns the example config file dist/config/name with its
// /etc/vmledger and /var/lib/vmledger paths moved under dir and the fields
// in set replaced, written to dir/name.
func distConfig(t *testing.T, dir, name string, set map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "dist", "config", name))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("dist/config/%s: %v", name, err)
	}
	for k, v := range cfg {
		if s, ok := v.(string); ok {
			s = strings.Replace(s, "/etc/vmledger/", filepath.Join(dir, "etc")+"/", 1)
			s = strings.Replace(s, "/var/lib/vmledger/", filepath.Join(dir, "var")+"/", 1)
			cfg[k] = s
		}
	}
	for k, v := range set {
		if _, ok := cfg[k]; !ok {
			t.Fatalf("dist/config/%s has no %q", name, k)
		}
		cfg[k] = v
	}
	out, _ := json.Marshal(cfg)
	return writeFile(t, filepath.Join(dir, name), out, 0o600)
}

// TestDistConfigs runs a witness and a log from the example config files
// in dist/config, as the units do (--config only), with their paths moved
// into a temporary directory and their ports chosen free: the log must
// publish a checkpoint the witness cosigned. The Tessera example runs on
// the test MariaDB when there is one.
func TestDistConfigs(t *testing.T) {
	statSources()
	for _, tc := range []struct{ name, config string }{
		{"badger", "log.json"},
		{"tessera", "log-tessera.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := map[string]string{}
			if tc.name == "tessera" {
				set["mysql-dsn"] = mysqltest.NewDatabase(t) // skips without MariaDB unless required
			}
			dir := t.TempDir()
			for _, d := range []string{"etc", "var"} {
				if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			etc := func(name string) string { return filepath.Join(dir, "etc", name) }
			logVKey := strings.TrimSpace(mustRun(t, "keygen", "--name", "dist.e2e.vmledger.test/log", "--out", etc("log.key")).stdout)
			wVKey := strings.TrimSpace(mustRun(t, "keygen", "--name", "witness.dist.e2e.vmledger.test", "--out", etc("witness.key")).stdout)
			writeFile(t, etc("admin.token"), []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
			logURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
			writeFile(t, etc("logs.txt"), []byte("log "+logVKey+" "+logURL+"\n"), 0o644)

			wcfg := distConfig(t, dir, "witness.json", map[string]string{"listen": "127.0.0.1:0"})
			w := startProc(t, dir, "witness", "witness", "serve", "--config", wcfg)
			waddr, err := w.listenAddr("witness serving")
			if err != nil {
				t.Fatalf("witness from dist/config/witness.json: %v\n%s", err, w.output())
			}
			writeFile(t, etc("witnesses.txt"), []byte("witness w1 "+wVKey+" http://"+waddr+"\nquorum w1\n"), 0o644)

			set["listen"] = strings.TrimPrefix(logURL, "http://")
			lcfg := distConfig(t, dir, tc.config, set)
			l := startProc(t, dir, "log", "log", "serve", "--config", lcfg)
			if _, err := l.listenAddr("log serving"); err != nil {
				t.Fatalf("log from dist/config/%s: %v\n%s", tc.config, err, l.output())
			}
			l.waitHTTP(logURL + "/checkpoint")
			if _, err := os.Stat(filepath.Join(dir, "var", "log")); err != nil {
				t.Errorf("the log's data directory from the config: %v", err)
			}
			// Published only once the witness cosigned: the checkpoint
			// carries the witness's signature line.
			resp, err := http.Get(logURL + "/checkpoint")
			if err != nil {
				t.Fatal(err)
			}
			cp, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(cp), "\n— witness.dist.e2e.vmledger.test ") {
				t.Errorf("GET /checkpoint = %q, want it cosigned by the witness", cp)
			}
			r := mustRun(t, "log", "keys", "--log", logURL, "--json")
			if !strings.Contains(r.stdout, `"keys": []`) {
				t.Errorf("log keys --json on the new log = %s, want no keys", r.stdout)
			}

			// One refused admission, so that the admission metrics exist;
			// then every metric both servers export must be in the example
			// alerting rules, and every metric the rules name must exist.
			resp, err = http.Post(logURL+"/v1/attestations", "application/json", strings.NewReader("not an envelope"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("POST /v1/attestations of junk = %s, want 400", resp.Status)
			}
			exported := metricFamilies(t, logURL+"/metrics")
			for name, typ := range metricFamilies(t, "http://"+waddr+"/metrics") {
				exported[name] = typ
			}
			checkAlertRules(t, exported, tc.name == "badger")
		})
	}
}

// metricFamilies returns the metric families url exports (Prometheus text
// format), by name, with their types.
func metricFamilies(t *testing.T, url string) map[string]string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]string{}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = f[3]
		}
	}
	if len(out) == 0 {
		t.Fatalf("GET %s: no metrics\n%s", url, b)
	}
	return out
}

// metricName matches the metric names in a PromQL expression.
var metricName = regexp.MustCompile(`\b(?:vmledger|witness|promhttp)_[a-z0-9_]+\b`)

// checkAlertRules parses dist/prometheus/vmledger-alerts.yml and checks it
// against the metric families the servers exported: every name a rule uses
// is exported (histograms by their _bucket, _sum and _count series), and,
// if all is set, every exported family is used by some rule. With Debian's
// promtool (package prometheus) installed, promtool check rules must pass
// too.
func checkAlertRules(t *testing.T, exported map[string]string, all bool) {
	t.Helper()
	path := filepath.Join(repoRoot(), "dist", "prometheus", "vmledger-alerts.yml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Record, Expr, For string
				Labels, Annotations      map[string]string
			}
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	used := map[string]bool{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if (r.Alert == "") == (r.Record == "") || strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: group %s: a rule needs alert or record, and expr: %+v", path, g.Name, r)
			}
			for _, name := range metricName.FindAllString(r.Expr, -1) {
				family := name
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if base, ok := strings.CutSuffix(name, suffix); ok && exported[base] == "histogram" {
						family = base
					}
				}
				used[family] = true
				if _, ok := exported[family]; !ok && (all || !strings.HasPrefix(family, "vmledger_log_")) {
					t.Errorf("%s: rule %s%s uses %s, which neither server exports", path, r.Alert, r.Record, name)
				}
			}
		}
	}
	if all {
		for name := range exported {
			if metricName.MatchString(name) && !used[name] {
				t.Errorf("%s: no rule uses the exported metric %s", path, name)
			}
		}
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
			t.Errorf("promtool check rules %s: %v\n%s", path, err, out)
		}
	} else {
		t.Logf("promtool not installed (Debian package prometheus): the rules' PromQL is not checked")
	}
}

// sysusers checks a sysusers.d file with systemd-sysusers --dry-run on an
// empty root and returns the users it would create.
func sysusers(t *testing.T, path string) map[string]bool {
	t.Helper()
	bin, err := exec.LookPath("systemd-sysusers")
	if err != nil {
		t.Fatalf("systemd-analyze without systemd-sysusers: %v", err)
	}
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--dry-run", "--root="+root, path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-sysusers --dry-run %s: %v\n%s", path, err, out)
	}
	users := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(line, "Creating user '"); ok {
			name, _, _ := strings.Cut(rest, "'")
			users[name] = true
		}
	}
	return users
}
