//go:build js && wasm

// Command wasm is the explorer's in-browser verifier (package inbrowser)
// compiled to WebAssembly; go generate ./log/explorer builds it into the
// explorer's assets. It defines one JavaScript function:
//
//	vmledgerVerify(bundle, trust, config, configName, secret, vmID) → JSON
//
// where bundle, trust, config and secret are Uint8Arrays (config and secret
// may be null), and the JSON is an inbrowser.Output.
package main

import (
	"context"
	"encoding/json"
	"syscall/js"

	"github.com/vmledger/vmledger/log/explorer/inbrowser"
)

func bytesOf(v js.Value) []byte {
	if v.IsNull() || v.IsUndefined() {
		return nil
	}
	b := make([]byte, v.Get("length").Int())
	js.CopyBytesToGo(b, v)
	return b
}

func verify(this js.Value, args []js.Value) any {
	if len(args) != 6 {
		return `{"error":"vmledgerVerify takes 6 arguments"}`
	}
	out := inbrowser.Verify(context.Background(), inbrowser.Input{
		Bundle:     bytesOf(args[0]),
		Trust:      bytesOf(args[1]),
		Config:     bytesOf(args[2]),
		ConfigName: args[3].String(),
		Secret:     bytesOf(args[4]),
		VMID:       args[5].String(),
	})
	b, err := json.Marshal(out)
	if err != nil {
		return `{"error":"encoding the report"}`
	}
	return string(b)
}

func main() {
	js.Global().Set("vmledgerVerify", js.FuncOf(verify))
	select {}
}
