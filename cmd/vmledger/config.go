package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// Configuration files of the servers.
//
// `log serve`, `witness serve` and `monitor` take --config FILE: a JSON
// object whose keys are the command's flag names without the leading "--", with
// the values the flags would take (durations as strings such as "30s").
// The structs below document each command's file; a field's json tag is
// its flag's name. A flag given on the command line wins over the file;
// every value from the file goes through the flag's own parser and the
// command's checks, so a file can say nothing a command line could not.
// Paths are relative to the working directory, as on the command line.
// Unknown keys and values of the wrong JSON type are refused, naming the
// key and the file.

// LogServeConfig is the --config file of `vmledger log serve`:
//
//	{"data": "/var/lib/vmledger/log", "listen": "127.0.0.1:8080",
//	 "key": "/etc/vmledger/log.key", "admin-token-file": "/etc/vmledger/admin.token",
//	 "witness-policy": "/etc/vmledger/witnesses.txt", "log-format": "json"}
type LogServeConfig struct {
	// Data is --data: the directory of the log's database (created if missing).
	Data string `json:"data"`
	// Listen is --listen: the address to listen on, e.g. 127.0.0.1:8080.
	Listen string `json:"listen"`
	// Key is --key: the log's private key file (from vmledger keygen; mode 0600).
	Key string `json:"key"`
	// AllowRawEntries is --allow-raw-entries: enable POST /v1/entries (tests and benchmarks only).
	AllowRawEntries bool `json:"allow-raw-entries"`
	// BatchMaxAge is --batch-max-age: how long a batch waits for more entries after its first.
	BatchMaxAge string `json:"batch-max-age"`
	// BatchMaxSize is --batch-max-size: most entries per batch (0: the engine's default).
	BatchMaxSize int `json:"batch-max-size"`
	// ShutdownTimeout is --shutdown-timeout: how long to wait for requests in flight on shutdown.
	ShutdownTimeout string `json:"shutdown-timeout"`
	// MemoryLimitMiB is --memory-limit-mib: the Go heap's soft limit in MiB (0: none).
	MemoryLimitMiB int64 `json:"memory-limit-mib"`
	// TLSCert is --tls-cert: serve HTTPS with this PEM certificate (chain) file.
	TLSCert string `json:"tls-cert"`
	// TLSKey is --tls-key: the certificate's PEM private key file (mode 0600).
	TLSKey string `json:"tls-key"`
	// Engine is --engine: badger or tessera.
	Engine string `json:"engine"`
	// MySQLDSN is --mysql-dsn: with engine tessera, user:password@tcp(host:3306)/dbname.
	// A password here is at least not in the process list; keep the file 0600.
	MySQLDSN string `json:"mysql-dsn"`
	// CheckpointInterval is --checkpoint-interval: with engine tessera, how often a checkpoint is published.
	CheckpointInterval string `json:"checkpoint-interval"`
	// AdminTokenFile is --admin-token-file: the bearer token of the enrolment endpoints (mode 0600).
	AdminTokenFile string `json:"admin-token-file"`
	// FreshnessWindow is --freshness-window: how long a replaced checkpoint stays a valid freshness anchor.
	FreshnessWindow string `json:"freshness-window"`
	// MaxInFlight is --max-in-flight: admissions handled at once; above it, 429 with Retry-After.
	MaxInFlight int `json:"max-in-flight"`
	// WitnessPolicy is --witness-policy: the C2SP tlog-policy file of witnesses and quorum.
	WitnessPolicy string `json:"witness-policy"`
	// LogLevel is --log-level: debug, info, warn or error.
	LogLevel string `json:"log-level"`
	// LogFormat is --log-format: text or json.
	LogFormat string `json:"log-format"`
}

// WitnessServeConfig is the --config file of `vmledger witness serve`:
//
//	{"data": "/var/lib/vmledger/w1", "listen": "127.0.0.1:7001",
//	 "key": "/etc/vmledger/w1.key", "logs": "/etc/vmledger/logs.txt",
//	 "peers": "http://127.0.0.1:7002/,http://127.0.0.1:7003/"}
type WitnessServeConfig struct {
	// Data is --data: the directory of the witness's database (created if missing).
	Data string `json:"data"`
	// Listen is --listen: the address to listen on.
	Listen string `json:"listen"`
	// Key is --key: the witness's private key file (from vmledger keygen; mode 0600).
	Key string `json:"key"`
	// Logs is --logs: the file of "log <vkey> [<url>]" lines, one per witnessed log.
	Logs string `json:"logs"`
	// Peers is --peers: comma-separated base URLs of peer witnesses to gossip with.
	Peers string `json:"peers"`
	// GossipInterval is --gossip-interval: the time between gossip rounds.
	GossipInterval string `json:"gossip-interval"`
	// Rate is --rate: the request budget per second (0: unlimited).
	Rate float64 `json:"rate"`
	// Burst is --burst: the request budget's burst size.
	Burst int `json:"burst"`
	// TLSCert is --tls-cert: serve HTTPS with this PEM certificate (chain) file.
	TLSCert string `json:"tls-cert"`
	// TLSKey is --tls-key: the certificate's PEM private key file (mode 0600).
	TLSKey string `json:"tls-key"`
	// LogLevel is --log-level: debug, info, warn or error.
	LogLevel string `json:"log-level"`
	// LogFormat is --log-format: text or json.
	LogFormat string `json:"log-format"`
}

// MonitorConfig is the --config file of `vmledger monitor`:
//
//	{"log": "http://127.0.0.1:8080", "trust": "/etc/vmledger/trust.txt",
//	 "watch": "/etc/vmledger/watch.json", "interval": "10s"}
type MonitorConfig struct {
	// Log is --log: the log's base URL (its tlog-tiles prefix).
	Log string `json:"log"`
	// Trust is --trust: the trust file (log key, witness policy, co-processor keys).
	Trust string `json:"trust"`
	// Watch is --watch: the watch file of VMs and their expected configurations.
	Watch string `json:"watch"`
	// State is --state: the state file (default: the watch file's path + .state).
	State string `json:"state"`
	// Interval is --interval: how often to poll the log.
	Interval string `json:"interval"`
	// Once is --once: run one round and exit (3 if there were alerts, 4 if
	// the round could not complete).
	Once bool `json:"once"`
	// JSON is --json: print alerts as JSON lines.
	JSON bool `json:"json"`
	// LogLevel is --log-level: debug, info, warn or error.
	LogLevel string `json:"log-level"`
	// LogFormat is --log-format: text or json.
	LogFormat string `json:"log-format"`
}

// The example --config files shown in the commands' help (a test decodes
// each against its struct).
const (
	logServeConfigExample = `{"data": "/var/lib/vmledger/log", "listen": "127.0.0.1:8080",
 "key": "/etc/vmledger/log.key", "admin-token-file": "/etc/vmledger/admin.token",
 "witness-policy": "/etc/vmledger/witnesses.txt", "log-format": "json"}`
	witnessServeConfigExample = `{"data": "/var/lib/vmledger/w1", "listen": "127.0.0.1:7001",
 "key": "/etc/vmledger/w1.key", "logs": "/etc/vmledger/logs.txt",
 "peers": "http://127.0.0.1:7002/,http://127.0.0.1:7003/"}`
	monitorConfigExample = `{"log": "http://127.0.0.1:8080", "trust": "/etc/vmledger/trust.txt",
 "watch": "/etc/vmledger/watch.json", "interval": "10s"}`
)

// configHelp is the paragraph a command with --config adds to its Long
// help: schema names the struct that documents the file.
func configHelp(schema any, example string) string {
	name := reflect.TypeOf(schema).Elem().Name()
	return fmt.Sprintf(`

--config FILE reads flags from a JSON object whose keys are the flag names without
the leading "--" (durations as strings, e.g. "30s"); a flag on the command line wins
over the file, unknown keys are refused, and every value is checked as the flag's would
be. Relative paths are relative to the working directory, as on the command line.
The fields are documented as the Go struct %s
(go doc -cmd github.com/vmledger/vmledger/cmd/vmledger %s). For example:

  %s`, name, name, strings.ReplaceAll(example, "\n", "\n  "))
}

// addConfigFlag gives cmd a --config FILE flag whose JSON object, described
// by the struct type of schema (a pointer to it), sets the flags the command
// line left unset. It runs as cmd's PreRunE: before cobra checks required
// flags and before RunE validates the values.
func addConfigFlag(cmd *cobra.Command, schema any) {
	var path string
	cmd.Flags().StringVar(&path, "config", "", "read flags from this JSON `FILE` (keys are flag names; the command line wins)")
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if path == "" {
			return nil
		}
		return applyConfigFile(cmd, path, schema)
	}
}

// applyConfigFile reads the JSON object in path, checks it against the
// struct schema points to, and sets every flag it names that the command
// line did not, through the flag's own parser.
func applyConfigFile(cmd *cobra.Command, path string, schema any) error {
	b, err := readSmallFile(path, 1<<20)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var present map[string]json.RawMessage
	if err := json.Unmarshal(b, &present); err != nil {
		return usagef("--config %s: want a JSON object of flag names and values: %v", path, err)
	}
	st := reflect.TypeOf(schema).Elem()
	fields := map[string]int{} // json tag → field index
	for i := range st.NumField() {
		fields[strings.Split(st.Field(i).Tag.Get("json"), ",")[0]] = i
	}
	names := make([]string, 0, len(present))
	for name := range present {
		names = append(names, name)
	}
	slices.Sort(names) // report the same key first every time
	for _, name := range names {
		if _, ok := fields[name]; !ok {
			return usagef("--config %s: unknown field %q: the fields are %s's flag names (see %s)", path, name, cmd.CommandPath(), st.Name())
		}
		if bytes.Equal(bytes.TrimSpace(present[name]), []byte("null")) {
			return usagef("--config %s: field %q is null: give it a value or leave it out", path, name)
		}
	}
	v := reflect.New(st)
	if err := json.Unmarshal(b, v.Interface()); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return usagef("--config %s: field %q: a JSON %s where a %s is wanted", path, te.Field, te.Value, jsonKind(te.Type))
		}
		return usagef("--config %s: %v", path, err)
	}
	for _, name := range names {
		fl := cmd.Flags().Lookup(name)
		if fl == nil {
			return fmt.Errorf("--config: %s documents field %q but %s has no --%s flag: this is a bug", st.Name(), name, cmd.CommandPath(), name)
		}
		if fl.Changed {
			continue // the command line wins
		}
		if err := cmd.Flags().Set(name, flagText(v.Elem().Field(fields[name]))); err != nil {
			return usagef("--config %s: field %q: %v", path, name, err)
		}
	}
	return nil
}

// flagText is a decoded field's value as a command line would spell it.
func flagText(f reflect.Value) string {
	switch f.Kind() {
	case reflect.Bool:
		return strconv.FormatBool(f.Bool())
	case reflect.Int, reflect.Int64:
		return strconv.FormatInt(f.Int(), 10)
	case reflect.Float64:
		return strconv.FormatFloat(f.Float(), 'g', -1, 64)
	default:
		return f.String()
	}
}

// jsonKind names the JSON type a Go field type decodes from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Int, reflect.Int64, reflect.Float64:
		return "number"
	default:
		return "string"
	}
}
