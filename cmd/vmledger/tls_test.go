package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and its key (0600).
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vmledger test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(priv)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestLogServeTLS: with --tls-cert/--tls-key the log serves HTTPS, and a
// key file others can read is refused.
func TestLogServeTLS(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "log.key")
	if _, err := runLogCmd(t.Context(), "keygen", "--name", "tls.test/log", "--out", key); err != nil {
		t.Fatal(err)
	}
	cert, tkey, pool := selfSigned(t, dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() {
		_, err := runLogCmd(ctx, "log", "serve", "--data", filepath.Join(dir, "data"), "--listen", addr, "--key", key,
			"--tls-cert", cert, "--tls-key", tkey, "--log-level", "error")
		served <- err
	}()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(30 * time.Second)
	var resp *http.Response
	for {
		resp, err = hc.Get("https://" + addr + "/healthz")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("GET https://%s/healthz: %v", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("healthz over TLS = %d (TLS %v), want 200 over TLS", resp.StatusCode, resp.TLS != nil)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("log serve: %v", err)
	}

	os.Chmod(tkey, 0o644)
	_, err = runLogCmd(t.Context(), "log", "serve", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--key", key,
		"--tls-cert", cert, "--tls-key", tkey)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("log serve with a readable TLS key = %v, want a refusal that says chmod 600", err)
	}
	if _, err := runLogCmd(t.Context(), "witness", "serve", "--data", dir, "--key", key, "--logs", key, "--tls-cert", cert); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("witness serve with --tls-cert alone = %v, want a usage error", err)
	}
}
