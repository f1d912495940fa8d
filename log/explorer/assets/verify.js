// In-browser verification: the Go verifier (package client) compiled to
// WebAssembly. The files the customer picks are read here and handed to it;
// nothing is sent anywhere. The only requests are for this page's own
// assets and, if no bundle file is picked, the entry's bundle.
"use strict";
(function () {
  const form = document.getElementById("verify-form");
  const out = document.getElementById("verify-result");
  if (!form) return;
  let ready = null;

  function loadVerifier() {
    if (!ready) {
      ready = (async () => {
        const go = new Go();
        const resp = await fetch("/assets/verify.wasm");
        if (!resp.ok) throw new Error("loading the verifier: HTTP " + resp.status);
        const { instance } = await WebAssembly.instantiateStreaming(resp, go.importObject);
        go.run(instance); // registers globalThis.vmledgerVerify, then waits
        if (typeof globalThis.vmledgerVerify !== "function") throw new Error("the verifier did not start");
      })();
      ready.catch(() => { ready = null; });
    }
    return ready;
  }

  async function bytesOf(input) {
    const f = input.files && input.files[0];
    if (!f) return null;
    return new Uint8Array(await f.arrayBuffer());
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  const marks = { "pass": "✓", "fail": "✗", "not run": "·", "not requested": "–" };

  function show(res) {
    out.replaceChildren();
    if (res.error) {
      const p = el("p", "verdict bad", "Cannot verify: " + res.error);
      p.id = "verdict";
      out.append(p);
      return;
    }
    const r = res.report;
    const v = el("p", "verdict " + (r.ok ? "ok" : "bad"));
    v.id = "verdict";
    if (r.ok) {
      v.textContent = "VERIFIED: VM " + r.vm_id + ", config root " + r.config_root + ", log " + r.log + " entry " + r.index +
        ", cosigned by " + ((r.cosigners && r.cosigners.length) ? r.cosigners.join(", ") : "no witness");
    } else {
      const failed = r.checks.filter(c => c.status === "fail").map(c => c.check);
      v.textContent = "REFUSED: failed " + failed.join(", ");
    }
    out.append(v);
    const ol = el("ol", "checks");
    ol.id = "checks";
    r.checks.forEach((c, i) => {
      const li = el("li", c.status.replace(" ", "-"));
      li.dataset.check = c.check;
      li.dataset.status = c.status;
      const m = el("span", "mark", marks[c.status] || "?");
      m.setAttribute("aria-hidden", "true");
      li.append(m, el("span", "name", (i + 1) + ". " + c.check), document.createTextNode(" — " + c.status), el("span", "detail", c.detail));
      ol.append(li);
    });
    out.append(ol);
    v.tabIndex = -1;
    v.focus();
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = document.getElementById("verify-button");
    button.disabled = true;
    out.replaceChildren(el("p", "", "Verifying…"));
    try {
      let bundle = await bytesOf(document.getElementById("bundle-file"));
      if (!bundle) {
        const url = form.dataset.bundle;
        if (!url) throw new Error("pick a bundle file");
        const resp = await fetch(url, { credentials: "omit" });
        if (!resp.ok) throw new Error("fetching the bundle: HTTP " + resp.status);
        bundle = new Uint8Array(await resp.arrayBuffer());
      }
      const trust = await bytesOf(document.getElementById("trust-file"));
      if (!trust) throw new Error("pick your trust file");
      const cfgInput = document.getElementById("config-file");
      const config = await bytesOf(cfgInput);
      const secret = await bytesOf(document.getElementById("secret-file"));
      await loadVerifier();
      const res = JSON.parse(globalThis.vmledgerVerify(bundle, trust, config, config ? cfgInput.files[0].name : "",
        secret, document.getElementById("vm-id-input").value.trim()));
      show(res);
    } catch (e) {
      show({ error: e.message || String(e) });
    } finally {
      button.disabled = false;
    }
  });
})();
