package explorer_test

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/agent/vmconfig"
	"github.com/vmledger/vmledger/coproc/soft"
	"github.com/vmledger/vmledger/log/admission"
	"github.com/vmledger/vmledger/log/explorer"
	"github.com/vmledger/vmledger/testing/cluster"
)

// fixture is a real deployment (log with admission, three witnesses, the
// TPM simulator as co-processor) with a few attestations, and an explorer
// of it reading only the log's public HTTP API, as `vmledger explore` runs.
type fixture struct {
	c           *cluster.Cluster
	url         string // the explorer
	configPath  string
	secretPath  string
	trustPath   string
	root        string // web01's config root, hex
	keyID       string // the TPM's key id
	revokedID   string // a key enrolled then revoked
	web01       uint64 // index of web01's latest attestation
	web01Bundle []byte
	secret      measure.Secret
	config      *measure.Config
}

const configFile = "../../cmd/vmledger/demodata/web01.json"

func startFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	c, err := cluster.Start(ctx, cluster.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	f := &fixture{c: c, trustPath: c.TrustFile, keyID: c.CoProcessor.KeyID(), configPath: configFile}

	data, err := os.ReadFile(configFile)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := vmconfig.ParseJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	if f.config, err = vc.Resolve(ctx, vmconfig.ResolveOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range f.secret {
		f.secret[i] = byte(0x40 + i)
	}
	f.secretPath = filepath.Join(dir, "web01.secret")
	if err := os.WriteFile(f.secretPath, []byte(fmt.Sprintf("%x\n", f.secret[:])), 0o600); err != nil {
		t.Fatal(err)
	}

	// A key enrolled, then revoked: the keys page must show both.
	sdir := filepath.Join(dir, "soft")
	if _, err := soft.Init(ctx, sdir, soft.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	sc, err := soft.Open(ctx, sdir, soft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Enroll(ctx, "spare-host", sc); err != nil {
		t.Fatal(err)
	}
	f.revokedID = sc.KeyID()
	token, err := os.ReadFile(c.AdminTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	ec := admission.EnrolClient{Base: c.LogURL, Token: []byte(strings.TrimSpace(string(token)))}
	if _, err := ec.Revoke(ctx, f.revokedID); err != nil {
		t.Fatal(err)
	}

	other := f.secret
	other[0] ^= 0xff
	for _, a := range []struct {
		vm     string
		secret measure.Secret
	}{{"web01", f.secret}, {"db01", other}, {"web01", f.secret}} {
		r, err := c.Attest(ctx, a.vm, f.config, a.secret)
		if err != nil {
			t.Fatalf("Attest(%s): %v", a.vm, err)
		}
		if a.vm == "web01" {
			f.web01, f.web01Bundle = r.Report.Index, r.BundleJSON
			f.root = r.Report.ConfigRoot
		}
	}

	ex, err := explorer.New(explorer.Config{LogURL: c.LogURL})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ex.Handler())
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}
