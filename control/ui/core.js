// isthmus web UI: what every page shares.
//
// Plain JavaScript modules, no build step. Pages talk only to the agent's
// JSON API on the same origin. Text from the API is only ever put into the
// page with textContent (never innerHTML), and API errors are shown as the
// API wrote them. With ACLs on, a 403 brings up a prompt for a token, kept
// for the browser session only.

/** How often the current page reloads its data. */
export const POLL_MS = 2000;


// ---------------------------------------------------------------- helpers

export const $ = (testid, root = document) => root.querySelector(`[data-testid="${testid}"]`);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "testid") node.dataset.testid = value;
    else if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

export function show(node, visible) {
  node.hidden = !visible;
}

/** An error carrying the API's own message (its plain-text body). */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// ---------------------------------------------------------------- ACL token
//
// With ACLs on, the API answers 403 to a request without a suitable token.
// The UI then asks for one and keeps it in sessionStorage: for this tab's
// session only, never written to disk by the page.

const TOKEN_KEY = "isthmus.acl.token";

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

export function storeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage refused (private mode): the token lives until the page reloads.
  }
  memoryToken = token;
  updateTokenButton();
}

let memoryToken = storedToken();
let tokenPrompt = null; // the open prompt, shared by concurrent requests
let tokenDeclined = false; // the user closed the prompt: ask again only on request

export function updateTokenButton() {
  const button = $("token-button");
  button.textContent = memoryToken ? "Forget token" : "Log in with token";
  button.dataset.state = memoryToken ? "set" : "unset";
}

/** Asks for a token; resolves with it, or null when the user cancels. */
export function askForToken(reason) {
  if (tokenPrompt) return tokenPrompt;
  tokenPrompt = new Promise((resolve) => {
    const dialog = $("token-dialog");
    const form = dialog.querySelector("form");
    const input = $("token-input");
    $("token-reason").textContent = reason;
    input.value = "";
    const finish = (token) => {
      form.onsubmit = null;
      $("token-cancel").onclick = null;
      if (dialog.open) dialog.close();
      tokenPrompt = null;
      resolve(token);
    };
    form.onsubmit = (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      tokenDeclined = false;
      storeToken(token);
      finish(token);
    };
    $("token-cancel").onclick = () => {
      tokenDeclined = true;
      finish(null);
    };
    dialog.addEventListener("cancel", () => {
      tokenDeclined = true;
      finish(null);
    }, { once: true });
    dialog.showModal();
    input.focus();
  });
  return tokenPrompt;
}

async function send(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (memoryToken) init.headers["X-Consul-Token"] = memoryToken;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  try {
    return await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `The agent could not be reached: ${e.message}`);
  }
}

export async function api(method, path, body, { prompt = true } = {}) {
  let response = await send(method, path, body);
  let text = await response.text();
  // Refused for want of a (better) token: ask once, then retry with it.
  if (response.status === 403 && prompt && !tokenDeclined) {
    const reason = text.trim() || "This request needs an ACL token.";
    if (await askForToken(reason)) {
      response = await send(method, path, body);
      text = await response.text();
    }
  }
  if (!response.ok) {
    const message = text.trim() || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  if (text === "") return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(response.status, `Unexpected answer from ${path}: ${text.slice(0, 200)}`);
  }
}

export function relativeTime(iso, now = Date.now()) {
  if (!iso) return "never";
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return iso;
  const seconds = Math.round((now - then) / 1000);
  if (seconds < 2) return "just now";
  if (seconds < 60) return `${seconds}s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h ago`;
  return `${Math.floor(hours / 24)}d ago`;
}

export function setTime(node, iso) {
  node.textContent = relativeTime(iso);
  node.title = iso ? new Date(iso).toLocaleString() : "";
}

/** A state badge; `tones` maps a state to its colour class (success, info, warning, critical, neutral). */
export function setBadge(node, state, tones = {}) {
  node.textContent = state;
  node.className = `badge ${tones[state] ?? "neutral"}`;
  node.dataset.state = state;
}

// ---------------------------------------------------------------- banners

const banners = {
  page: $("page-error"),
  action: document.querySelector(".action-error"),
  actionText: $("action-error"),
  notice: $("page-notice"),
};

export function setPageError(message) {
  banners.page.textContent = message ?? "";
  show(banners.page, Boolean(message));
}

export function setActionError(message) {
  banners.actionText.textContent = message ?? "";
  show(banners.action, Boolean(message));
  if (message) banners.notice.hidden = true;
}

let noticeTimer;
export function setNotice(message) {
  clearTimeout(noticeTimer);
  banners.notice.textContent = message;
  show(banners.notice, true);
  noticeTimer = setTimeout(() => show(banners.notice, false), 8000);
}

$("action-error-dismiss").addEventListener("click", () => setActionError(null));

export function tokenIsSet() {
  return Boolean(memoryToken);
}

export function allowTokenPrompt() {
  tokenDeclined = false;
}

// ---------------------------------------------------------------- the router's hooks
//
// Pages ask for a reload (after an action) and read the current route
// through these; app.js owns the router and registers itself here.

let refresher = () => {};
let routeNow = () => ({ view: "" });

export function setRouter(refresh, currentRoute) {
  refresher = refresh;
  routeNow = currentRoute;
}

/** Reloads the current page now (and restarts its polling). */
export function refresh() {
  refresher();
}

/** The route being shown: `{ page, view, ...params }`. */
export function currentRoute() {
  return routeNow();
}

/** Passing/warning/critical instance counts: an instance is as healthy as its worst check. */
export function healthCounts(entries) {
  const counts = { passing: 0, warning: 0, critical: 0 };
  for (const entry of entries ?? []) {
    const statuses = (entry.Checks ?? []).map((c) => c.Status);
    if (statuses.includes("critical")) counts.critical += 1;
    else if (statuses.includes("warning")) counts.warning += 1;
    else counts.passing += 1;
  }
  return counts;
}

/** Runs `work` with `button` disabled and marked busy. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}
