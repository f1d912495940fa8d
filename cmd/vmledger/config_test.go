package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// configCommands are the commands with --config and the struct that
// documents each one's file.
var configCommands = []struct {
	path    []string
	schema  any
	example string
}{
	{[]string{"log", "serve"}, &LogServeConfig{}, logServeConfigExample},
	{[]string{"witness", "serve"}, &WitnessServeConfig{}, witnessServeConfigExample},
	{[]string{"monitor"}, &MonitorConfig{}, monitorConfigExample},
}

// TestConfigStructsMirrorFlags: every field of a config struct is a flag of
// its command and every flag of the command (but --config and --help) is a
// field, so the documentation cannot drift from the flags; the example in
// the command's help is a valid file.
func TestConfigStructsMirrorFlags(t *testing.T) {
	for _, cc := range configCommands {
		t.Run(strings.Join(cc.path, " "), func(t *testing.T) {
			cmd, _, err := newRootCmd().Find(cc.path)
			if err != nil {
				t.Fatal(err)
			}
			cmd.Flags().AddFlagSet(cmd.InheritedFlags()) // as cobra does before running it
			var tags []string
			st := reflect.TypeOf(cc.schema).Elem()
			for i := range st.NumField() {
				tag := st.Field(i).Tag.Get("json")
				tags = append(tags, tag)
				// flagText spells only these kinds as a command line would.
				switch k := st.Field(i).Type.Kind(); k {
				case reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64, reflect.String:
				default:
					t.Errorf("%s.%s is a %s: applyConfigFile cannot set a flag from it (extend flagText)", st.Name(), st.Field(i).Name, k)
				}
				if cmd.Flags().Lookup(tag) == nil {
					t.Errorf("%s has field %s (json %q) but the command has no --%s flag", st.Name(), st.Field(i).Name, tag, tag)
				}
			}
			cmd.Flags().VisitAll(func(f *pflag.Flag) {
				if f.Name != "config" && f.Name != "help" && !slices.Contains(tags, f.Name) {
					t.Errorf("--%s is not a field of %s: add it (json tag %q)", f.Name, st.Name(), f.Name)
				}
			})
			if !strings.Contains(cmd.Long, st.Name()) {
				t.Errorf("the help of %s does not name %s", cmd.CommandPath(), st.Name())
			}
			path := writeConfig(t, cc.example)
			if err := applyConfigFile(cmd, path, cc.schema); err != nil {
				t.Errorf("the example in the help: %v", err)
			}
		})
	}
}

// TestLogServeConfigFile starts log serve from a config file alone, then
// with a command-line flag that overrides the file.
func TestLogServeConfigFile(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "log.key")
	if _, err := runLogCmd(t.Context(), "keygen", "--name", "example.com/ledger", "--out", key); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	addr := freeAddr(t)
	cfg := writeConfig(t, `{"data": "`+data+`", "listen": "`+addr+`", "key": "`+key+`",
		"shutdown-timeout": "5s", "max-in-flight": 8, "allow-raw-entries": true, "log-level": "error"}`)

	t.Run("from the file", func(t *testing.T) {
		serveUntilHealthy(t, addr, "log", "serve", "--config", cfg)
		if _, err := os.Stat(filepath.Join(data, "engine")); err != nil {
			t.Errorf("the log's database is not in the file's data directory: %v", err)
		}
	})

	t.Run("command line wins", func(t *testing.T) {
		// The file's address is taken: the server can only come up if
		// --listen overrides it.
		busy, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		other := freeAddr(t)
		serveUntilHealthy(t, other, "log", "serve", "--config", cfg, "--listen", other)
	})
}

// TestWitnessServeConfigFile: the required flags of witness serve can come
// from the file.
func TestWitnessServeConfigFile(t *testing.T) {
	dir := t.TempDir()
	logKey, wkey := filepath.Join(dir, "log.key"), filepath.Join(dir, "w1.key")
	vkey, err := runLogCmd(t.Context(), "keygen", "--name", "example.com/ledger", "--out", logKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runLogCmd(t.Context(), "keygen", "--name", "w1.example", "--out", wkey); err != nil {
		t.Fatal(err)
	}
	logs := filepath.Join(dir, "logs.txt")
	if err := os.WriteFile(logs, []byte("log "+strings.TrimSpace(vkey)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cfg := writeConfig(t, `{"data": "`+filepath.Join(dir, "w1")+`", "listen": "`+addr+`", "key": "`+wkey+`",
		"logs": "`+logs+`", "rate": 0.5, "burst": 3, "log-level": "error"}`)
	serveUntilHealthy(t, addr, "witness", "serve", "--config", cfg)
}

// TestConfigFileRefusals: a file can say nothing a command line could not,
// and what is wrong with it is named.
func TestConfigFileRefusals(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "log.key")
	if _, err := runLogCmd(t.Context(), "keygen", "--name", "example.com/ledger", "--out", key); err != nil {
		t.Fatal(err)
	}
	base := `"data": "` + filepath.Join(dir, "data") + `", "listen": "127.0.0.1:0", "key": "` + key + `"`
	for _, tc := range []struct {
		name, cmd, file string
		want            []string // substrings of the error
	}{
		{"unknown field", "log serve", `{` + base + `, "lisen": "127.0.0.1:1"}`, []string{`unknown field "lisen"`, "LogServeConfig"}},
		{"wrong type", "log serve", `{` + base + `, "max-in-flight": "many"}`, []string{`"max-in-flight"`, "a JSON string where a number is wanted"}},
		{"wrong type bool", "log serve", `{` + base + `, "allow-raw-entries": "yes"}`, []string{`"allow-raw-entries"`, "boolean"}},
		{"null", "log serve", `{` + base + `, "engine": null}`, []string{`"engine" is null`}},
		{"not an object", "log serve", `["data"]`, []string{"want a JSON object"}},
		{"bad duration", "log serve", `{` + base + `, "batch-max-age": "soon"}`, []string{`"batch-max-age"`, "soon"}},
		// The command's own checks see the file's values.
		{"flag check", "log serve", `{` + base + `, "max-in-flight": 0}`, []string{"--max-in-flight must be ≥ 1"}},
		{"engine check", "log serve", `{` + base + `, "engine": "rocks"}`, []string{`--engine "rocks"`}},
		{"missing required", "log serve", `{"listen": "127.0.0.1:0"}`, []string{"needs --data DIR"}},
		{"witness unknown", "witness serve", `{"data": "d", "key": "k", "logs": "l", "peer": "x"}`, []string{`unknown field "peer"`, "WitnessServeConfig"}},
		{"witness required", "witness serve", `{"data": "d", "key": "k"}`, []string{`required flag(s) "logs" not set`}},
		{"monitor check", "monitor", `{"log": "http://127.0.0.1:1", "trust": "t", "watch": "w", "interval": "0s"}`, []string{"--interval must be positive"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.file)
			args := append(strings.Fields(tc.cmd), "--config", path)
			_, err := runLogCmd(t.Context(), args...)
			var ue usageError
			if !errors.As(err, &ue) && !isCobraUsageError(err) {
				t.Fatalf("%s with %s = %v, want a usage error", tc.cmd, tc.file, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s with %s = %q, want it to contain %q", tc.cmd, tc.file, err, w)
				}
			}
			if strings.Contains(tc.name, "field") || strings.Contains(tc.name, "type") {
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file %s", err, path)
				}
			}
		})
	}
	// And the process exits 2 on them.
	path := writeConfig(t, `{`+base+`, "lisen": "x"}`)
	if code := run(t.Context(), []string{"log", "serve", "--config", path}); code != exitUsage {
		t.Errorf("exit code = %d, want %d", code, exitUsage)
	}
	if _, err := runLogCmd(t.Context(), "log", "serve", "--config", filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("a missing config file = %v, want an error naming it", err)
	}
}

// TestConfigFileCommandLineWins checks the precedence on the flags
// themselves, for every kind of value.
func TestConfigFileCommandLineWins(t *testing.T) {
	path := writeConfig(t, `{"listen": "127.0.0.1:1", "rate": 2.5, "burst": 7, "gossip-interval": "1m", "log-level": "debug"}`)
	root := newRootCmd()
	cmd, _, _ := root.Find([]string{"witness", "serve"})
	cmd.Flags().AddFlagSet(cmd.InheritedFlags())
	if err := cmd.Flags().Parse([]string{"--burst", "9", "--log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(cmd, path, &WitnessServeConfig{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"listen": "127.0.0.1:1", "rate": "2.5", "burst": "9", "gossip-interval": "1m0s", "log-level": "warn", "peers": ""} {
		if got := cmd.Flags().Lookup(name).Value.String(); got != want {
			t.Errorf("--%s = %q, want %q", name, got, want)
		}
	}
}

// serveUntilHealthy runs the command, waits for GET /healthz on addr to
// answer 200, stops it as SIGTERM would and checks it exited cleanly.
func serveUntilHealthy(t *testing.T, addr string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() {
		_, err := runLogCmd(ctx, args...)
		served <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-served:
			t.Fatalf("%q exited before serving on %s: %v", args, addr, err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q: %s/healthz did not answer 200 within 30s", args, addr)
		}
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("%q after shutdown = %v", args, err)
	}
}

// freeAddr is a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
