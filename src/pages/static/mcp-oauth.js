// mcp-oauth: the browser side of the consent, passkey registration and owner console pages.
//
// One static file for every page (the CSP allows no inline script); each page is recognised by its
// elements. It talks only to same-origin JSON endpoints, and writes to the page with textContent only.
"use strict";

(() => {
  const byId = (id) => document.getElementById(id);

  // ---- base64url <-> bytes (WebAuthn JSON carries every binary field as unpadded base64url) ----

  function fromBase64url(value) {
    if (typeof value !== "string") throw new Error("The server sent malformed passkey options.");
    const base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // ---- WebAuthn options (webauthn-rs JSON) to browser objects, and credentials back to JSON ----

  function publicKeyOf(options) {
    if (!options || typeof options.publicKey !== "object" || options.publicKey === null) {
      throw new Error("The server sent malformed passkey options.");
    }
    return options.publicKey;
  }

  function withIds(list) {
    return Array.isArray(list) ? list.map((item) => ({ ...item, id: fromBase64url(item.id) })) : list;
  }

  function requestOptions(options) {
    const publicKey = { ...publicKeyOf(options) };
    publicKey.challenge = fromBase64url(publicKey.challenge);
    publicKey.allowCredentials = withIds(publicKey.allowCredentials);
    return publicKey;
  }

  function creationOptions(options) {
    const publicKey = { ...publicKeyOf(options) };
    publicKey.challenge = fromBase64url(publicKey.challenge);
    publicKey.user = { ...publicKey.user, id: fromBase64url(publicKey.user && publicKey.user.id) };
    publicKey.excludeCredentials = withIds(publicKey.excludeCredentials);
    return publicKey;
  }

  function assertionJson(credential) {
    const response = credential.response;
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: {
        authenticatorData: toBase64url(response.authenticatorData),
        clientDataJSON: toBase64url(response.clientDataJSON),
        signature: toBase64url(response.signature),
        userHandle: response.userHandle ? toBase64url(response.userHandle) : null,
      },
      extensions: {},
    };
  }

  function attestationJson(credential) {
    const response = credential.response;
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: {
        attestationObject: toBase64url(response.attestationObject),
        clientDataJSON: toBase64url(response.clientDataJSON),
        transports: typeof response.getTransports === "function" ? response.getTransports() : undefined,
      },
      extensions: {},
    };
  }

  function passkeysAvailable() {
    return (
      window.isSecureContext !== false &&
      typeof window.PublicKeyCredential === "function" &&
      !!navigator.credentials
    );
  }

  // A WebAuthn failure, in words a person can act on.
  function passkeyError(error, creating) {
    switch (error && error.name) {
      case "NotAllowedError":
        return creating
          ? "The passkey prompt was closed or timed out, so no passkey was created. You can try again."
          : "The passkey prompt was closed or timed out, so nothing was approved. You can try again.";
      case "InvalidStateError":
        return creating
          ? "This authenticator already holds a passkey for this server. Use that one, or choose another authenticator."
          : "This passkey can’t be used here. Try another one.";
      case "SecurityError":
        return "The browser refused to use a passkey for this address. Passkeys only work over https or on localhost, at the address the server is configured with.";
      case "AbortError":
        return "The passkey request was interrupted. You can try again.";
      case "NotSupportedError":
        return "This authenticator doesn’t support the kind of passkey this server asks for.";
      case "ConstraintError":
        return "This authenticator can’t meet the server’s requirements (for example, user verification).";
      default:
        return (error && error.message) || "The passkey request failed. You can try again.";
    }
  }

  async function getPasskey(options) {
    let credential;
    try {
      credential = await navigator.credentials.get({ publicKey: requestOptions(options) });
    } catch (error) {
      throw new Error(passkeyError(error, false));
    }
    if (!credential) throw new Error("No passkey was selected. You can try again.");
    return credential;
  }

  async function createPasskey(options) {
    let credential;
    try {
      credential = await navigator.credentials.create({ publicKey: creationOptions(options) });
    } catch (error) {
      const failure = new Error(passkeyError(error, true));
      failure.cancelled = !!error && error.name === "NotAllowedError";
      throw failure;
    }
    if (!credential) throw new Error("No passkey was created. You can try again.");
    return credential;
  }

  // ---- the server's JSON endpoints ----

  // Server descriptions are lower-case protocol fragments; the page shows sentences.
  function asSentence(text) {
    const sentence = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?]$/.test(sentence) ? sentence : sentence + ".";
  }

  function httpFailure(status, body, retryAfter) {
    if (body && typeof body.error_description === "string" && body.error_description) {
      return asSentence(body.error_description);
    }
    if (status === 429) {
      const seconds = Number.parseInt(retryAfter || "", 10);
      return Number.isFinite(seconds) && seconds > 0
        ? `Too many attempts. Try again in ${seconds} second${seconds === 1 ? "" : "s"}.`
        : "Too many attempts. Wait a moment and try again.";
    }
    if (body && typeof body.error === "string") return `The server refused the request (${body.error}).`;
    if (status >= 500) return `The server ran into a problem (HTTP ${status}). Try again in a moment.`;
    return `The request failed (HTTP ${status}).`;
  }

  async function postJson(path, body, extraHeaders) {
    let response;
    try {
      response = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json", ...(extraHeaders || {}) },
        credentials: "same-origin",
        cache: "no-store",
        body: JSON.stringify(body),
      });
    } catch {
      throw new Error("Couldn’t reach the server. Check your connection and try again.");
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const failure = new Error(httpFailure(response.status, data, response.headers.get("Retry-After")));
      failure.status = response.status;
      throw failure;
    }
    if (!data || typeof data !== "object") throw new Error("The server sent an answer this page can’t read.");
    return data;
  }

  // ---- page state ----

  function setStatus(kind, text) {
    const status = byId("status");
    if (!status) return;
    status.dataset.kind = kind;
    status.textContent = text;
    // On a phone the status line can sit below the fold; an error must not go unseen.
    if (kind === "error" && typeof status.scrollIntoView === "function") {
      const calm = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      status.scrollIntoView({ block: "nearest", behavior: calm ? "auto" : "smooth" });
    }
  }

  // Disables the buttons while a request runs; buttons the page rendered disabled stay disabled.
  function buttonGroup(buttons) {
    const locked = new Set(buttons.filter((button) => button.disabled));
    return {
      busy(active, current) {
        for (const button of buttons) {
          button.disabled = active || locked.has(button);
          if (active && button === current) button.setAttribute("aria-busy", "true");
          else button.removeAttribute("aria-busy");
        }
      },
      lock(button) {
        locked.add(button);
        button.disabled = true;
      },
    };
  }

  function originOf(url, fallback) {
    try {
      return new URL(url, window.location.href).origin;
    } catch {
      return fallback || url;
    }
  }

  function showUnsupported() {
    const notice = byId("unsupported");
    if (notice) notice.hidden = false;
  }

  // ---- consent page ----

  function initConsent(root, approve, deny) {
    const requestId = root.dataset.requestId || "";
    const fallbackOrigin = root.dataset.redirectOrigin || "";
    const group = buttonGroup([approve, deny]);

    if (root.dataset.hasPasskeys === "true" && !passkeysAvailable()) {
      group.lock(approve);
      showUnsupported();
    }

    function leave(answer, kind, verb) {
      const target = answer && answer.redirect_to;
      if (typeof target !== "string" || !target) throw new Error("The server didn’t say where to go next.");
      setStatus(kind, `${verb} — returning to ${originOf(target, fallbackOrigin)}…`);
      window.location.assign(target);
    }

    approve.addEventListener("click", async () => {
      group.busy(true, approve);
      try {
        setStatus("progress", "Waiting for your passkey…");
        const challenge = await postJson("/authorize/challenge", { request_id: requestId });
        const credential = await getPasskey(challenge.options);
        setStatus("progress", "Checking your passkey…");
        const answer = await postJson("/authorize/approve", {
          request_id: requestId,
          ceremony_id: challenge.ceremony_id,
          credential: assertionJson(credential),
        });
        leave(answer, "success", "Approved");
      } catch (error) {
        setStatus("error", error.message);
        group.busy(false);
      }
    });

    deny.addEventListener("click", async () => {
      group.busy(true, deny);
      try {
        setStatus("progress", "Denying access…");
        leave(await postJson("/authorize/deny", { request_id: requestId }), "info", "Denied");
      } catch (error) {
        setStatus("error", error.message);
        group.busy(false);
      }
    });
  }

  // ---- registration page ----

  function initRegister(root, register) {
    const tokenInput = byId("setup_token");
    const labelInput = byId("label");
    const group = buttonGroup([register]);
    const idleText = register.textContent;
    // Options from /passkey/register/start whose create() was cancelled. Some browsers (Safari) allow
    // one passkey prompt per click, so after an approval prompt the new passkey may need a second click;
    // keeping the ceremony lets that click go straight to the prompt.
    let pending = null;

    // The server's setup link carries the token in the fragment (never sent to the server or logged);
    // take it, then drop it from the address bar and history. Opening the link in a tab that already
    // shows this page changes only the fragment, hence the hashchange listener.
    function takeTokenFromFragment() {
      const fragment = new URLSearchParams(window.location.hash.replace(/^#/, ""));
      if (!tokenInput || !fragment.has("setup_token")) return;
      tokenInput.value = (fragment.get("setup_token") || "").trim();
      tokenInput.removeAttribute("aria-invalid");
      history.replaceState(history.state, "", window.location.pathname + window.location.search);
      if (pending) reset();
      if (tokenInput.value) {
        setStatus("info", "Setup token filled in from the link. Name the passkey if you like, then register.");
      }
    }
    takeTokenFromFragment();
    window.addEventListener("hashchange", takeTokenFromFragment);

    if (!passkeysAvailable()) {
      group.lock(register);
      showUnsupported();
      return;
    }

    function reset() {
      pending = null;
      register.textContent = idleText;
    }

    for (const input of [tokenInput, labelInput]) {
      if (!input) continue;
      input.addEventListener("input", () => {
        input.removeAttribute("aria-invalid");
        if (pending) reset();
      });
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !register.disabled) {
          event.preventDefault();
          register.click();
        }
      });
    }

    async function start(token, label) {
      if (token) return postJson("/passkey/register/start", { setup_token: token, label });
      setStatus("progress", "Approve with one of your existing passkeys…");
      const approval = await postJson("/passkey/register/approval", {});
      const credential = await getPasskey(approval.options);
      setStatus("progress", "Approved. Preparing the new passkey…");
      return postJson("/passkey/register/start", {
        approval: { ceremony_id: approval.ceremony_id, credential: assertionJson(credential) },
        label,
      });
    }

    register.addEventListener("click", async () => {
      const token = tokenInput ? tokenInput.value.trim() : "";
      const label = (labelInput && labelInput.value.trim()) || null;
      const hasPasskeys = root.dataset.hasPasskeys === "true";
      if (!pending && !token && !hasPasskeys) {
        setStatus("error", "Enter the setup token printed by the server.");
        if (tokenInput) {
          tokenInput.setAttribute("aria-invalid", "true");
          tokenInput.focus();
        }
        return;
      }

      group.busy(true, register);
      let started = pending;
      try {
        if (!started) {
          setStatus("progress", "Contacting the server…");
          started = await start(token, label);
        }
        setStatus("progress", "Create the passkey when your browser asks…");
        let created;
        try {
          created = await createPasskey(started.options);
        } catch (error) {
          if (error.cancelled) {
            pending = started;
            register.textContent = "Create passkey";
          } else {
            reset();
          }
          throw error;
        }
        reset();
        setStatus("progress", "Saving your passkey…");
        const done = await postJson("/passkey/register/finish", {
          ceremony_id: started.ceremony_id,
          credential: attestationJson(created),
        });
        if (tokenInput) tokenInput.value = "";
        if (labelInput) labelInput.value = "";
        root.dataset.hasPasskeys = "true";
        const name = typeof done.label === "string" && done.label ? `“${done.label}” ` : "";
        setStatus("success", `Passkey ${name}registered. You can now approve clients with it.`);
      } catch (error) {
        setStatus("error", error.message);
      } finally {
        group.busy(false);
      }
    });
  }

  // ---- owner console ----

  // Times are rendered in UTC by the server; show them in the reader's own time zone.
  function localTimes() {
    for (const time of document.querySelectorAll("time[datetime]")) {
      const value = time.getAttribute("datetime");
      if (!value) continue;
      const date = new Date(value);
      if (Number.isNaN(date.getTime())) continue;
      time.title = time.textContent;
      time.textContent = date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    }
  }

  function initConsoleLogin(signIn) {
    const group = buttonGroup([signIn]);
    if (!passkeysAvailable()) {
      group.lock(signIn);
      showUnsupported();
      return;
    }
    signIn.addEventListener("click", async () => {
      group.busy(true, signIn);
      try {
        setStatus("progress", "Waiting for your passkey…");
        const challenge = await postJson("/oauth/console/signin/start", {});
        const credential = await getPasskey(challenge.options);
        setStatus("progress", "Checking your passkey…");
        await postJson("/oauth/console/signin/finish", {
          ceremony_id: challenge.ceremony_id,
          credential: assertionJson(credential),
        });
        setStatus("success", "Signed in.");
        window.location.reload();
      } catch (error) {
        setStatus("error", error.message);
        group.busy(false);
      }
    });
  }

  function initConsole(root) {
    const csrf = { "X-CSRF-Token": root.dataset.csrf || "" };
    const buttons = Array.from(root.querySelectorAll("button"));
    const group = buttonGroup(buttons);

    // Runs one console action; an expired sign-in reloads to the sign-in view.
    async function act(button, progress, work, success) {
      group.busy(true, button);
      try {
        setStatus("progress", progress);
        await work();
        setStatus("success", success);
        window.setTimeout(() => window.location.reload(), 600);
      } catch (error) {
        if (error.status === 401) {
          setStatus("error", "Your sign-in has expired. Sign in again.");
          window.setTimeout(() => window.location.reload(), 1200);
          return;
        }
        setStatus("error", error.message);
        group.busy(false);
      }
    }

    const rowOf = (button, selector) => button.closest(selector);

    for (const button of root.querySelectorAll(".revoke-grant")) {
      const row = rowOf(button, "tr");
      button.addEventListener("click", () =>
        act(button, "Revoking…", () => postJson("/oauth/console/grants/revoke", { grant_id: row.dataset.grantId }, csrf),
          "Access revoked: its tokens no longer work."));
    }
    for (const button of root.querySelectorAll(".delete-client")) {
      const row = rowOf(button, "tr");
      button.addEventListener("click", () =>
        act(button, "Deleting the client…", () => postJson("/oauth/console/clients/delete", { client_id: row.dataset.clientId }, csrf),
          "Client deleted, and its access revoked."));
    }
    const removeUnapproved = root.querySelector("#remove-unapproved");
    if (removeUnapproved) {
      removeUnapproved.addEventListener("click", () =>
        act(removeUnapproved, "Removing never-approved clients…",
          () => postJson("/oauth/console/clients/remove-unapproved", {}, csrf),
          "Never-approved clients removed."));
    }
    for (const button of root.querySelectorAll(".rename-passkey")) {
      const row = rowOf(button, "tr");
      const input = row.querySelector(".passkey-label");
      button.addEventListener("click", () =>
        act(button, "Renaming…", () =>
          postJson("/oauth/console/passkeys/rename", { credential_id: row.dataset.credentialId, label: input ? input.value : "" }, csrf),
          "Passkey renamed."));
    }
    for (const button of root.querySelectorAll(".remove-passkey")) {
      const row = rowOf(button, "tr");
      button.addEventListener("click", () =>
        act(button, "Removing the passkey…", () => postJson("/oauth/console/passkeys/remove", { credential_id: row.dataset.credentialId }, csrf),
          "Passkey removed."));
    }

    const add = byId("add-passkey");
    if (add) {
      if (!passkeysAvailable()) group.lock(add);
      add.addEventListener("click", () => {
        const labelInput = byId("new-passkey-label");
        const label = (labelInput && labelInput.value.trim()) || null;
        act(add, "Contacting the server…", async () => {
          const started = await postJson("/oauth/console/passkeys/add/start", { label }, csrf);
          setStatus("progress", "Create the passkey when your browser asks…");
          const created = await createPasskey(started.options);
          setStatus("progress", "Saving your passkey…");
          await postJson("/oauth/console/passkeys/add/finish", {
            ceremony_id: started.ceremony_id,
            credential: attestationJson(created),
          }, csrf);
        }, "Passkey added.");
      });
    }

    const signOut = byId("console-signout");
    if (signOut) {
      signOut.addEventListener("click", () =>
        act(signOut, "Signing out…", () => postSignOut(csrf), "Signed out."));
    }
  }

  async function postSignOut(headers) {
    const response = await fetch("/oauth/console/signout", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...headers },
      credentials: "same-origin",
      body: "{}",
    });
    if (!response.ok) throw new Error(`Signing out failed (HTTP ${response.status}).`);
  }

  function init() {
    const approve = byId("approve");
    const deny = byId("deny");
    const consent = byId("consent");
    if (approve && deny && consent) initConsent(consent, approve, deny);

    const register = byId("register");
    const registration = byId("registration");
    if (register && registration) initRegister(registration, register);

    const signIn = byId("console-signin");
    if (signIn && byId("console-login")) initConsoleLogin(signIn);
    const consoleRoot = byId("console");
    if (consoleRoot) initConsole(consoleRoot);
    if (consoleRoot || byId("console-login")) localTimes();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
