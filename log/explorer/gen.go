//go:build ignore

// gen builds the in-browser verifier: assets/verify.wasm (./wasm for
// GOOS=js GOARCH=wasm, reproducible with -trimpath) and assets/wasm_exec.js,
// the loader of the same Go toolchain. Run it with go generate.
package main

import (
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

func main() {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		log.Fatalf("go env GOROOT: %v", err)
	}
	goroot := strings.TrimSpace(string(out))
	js, err := os.ReadFile(filepath.Join(goroot, "lib", "wasm", "wasm_exec.js"))
	if err != nil {
		// Go before 1.24 kept it in misc/wasm.
		if js, err = os.ReadFile(filepath.Join(goroot, "misc", "wasm", "wasm_exec.js")); err != nil {
			log.Fatalf("wasm_exec.js: %v", err)
		}
	}
	if err := os.WriteFile(filepath.Join("assets", "wasm_exec.js"), js, 0o644); err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w",
		"-o", filepath.Join("assets", "verify.wasm"), "./wasm")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm", "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		log.Fatalf("building the verifier: %v", err)
	}
}
