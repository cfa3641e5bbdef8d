// isthmus web UI: the Peers page.
//
// Plain JavaScript, no build step. Routes on the URL fragment (#/peers,
// #/peers/<name>) and talks only to the agent's JSON API on the same origin.
// Text from the API is only ever put into the page with textContent (never
// innerHTML), and API errors are shown as the API wrote them. With ACLs on,
// a 403 brings up a prompt for a token, kept for the browser session only.

const POLL_MS = 2000;

const STATE_TONES = {
  ACTIVE: "success",
  PENDING: "info",
  ESTABLISHING: "info",
  FAILING: "warning",
  DELETING: "critical",
  TERMINATED: "neutral",
};

// ---------------------------------------------------------------- helpers

const $ = (testid, root = document) => root.querySelector(`[data-testid="${testid}"]`);

function el(tag, props = {}, ...children) {
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

function show(node, visible) {
  node.hidden = !visible;
}

/** An error carrying the API's own message (its plain-text body). */
class ApiError extends Error {
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

function storeToken(token) {
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

function updateTokenButton() {
  const button = $("token-button");
  button.textContent = memoryToken ? "Forget token" : "Log in with token";
  button.dataset.state = memoryToken ? "set" : "unset";
}

/** Asks for a token; resolves with it, or null when the user cancels. */
function askForToken(reason) {
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

async function api(method, path, body, { prompt = true } = {}) {
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

const peerPath = (name) => `/v1/peering/${encodeURIComponent(name)}`;

function relativeTime(iso, now = Date.now()) {
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

function setTime(node, iso) {
  node.textContent = relativeTime(iso);
  node.title = iso ? new Date(iso).toLocaleString() : "";
}

function setBadge(node, state) {
  node.textContent = state;
  node.className = `badge ${STATE_TONES[state] ?? "neutral"}`;
  node.dataset.state = state;
}

// ---------------------------------------------------------------- banners

const banners = {
  page: $("page-error"),
  action: document.querySelector(".action-error"),
  actionText: $("action-error"),
  notice: $("page-notice"),
};

function setPageError(message) {
  banners.page.textContent = message ?? "";
  show(banners.page, Boolean(message));
}

function setActionError(message) {
  banners.actionText.textContent = message ?? "";
  show(banners.action, Boolean(message));
  if (message) banners.notice.hidden = true;
}

let noticeTimer;
function setNotice(message) {
  clearTimeout(noticeTimer);
  banners.notice.textContent = message;
  show(banners.notice, true);
  noticeTimer = setTimeout(() => show(banners.notice, false), 8000);
}

$("action-error-dismiss").addEventListener("click", () => setActionError(null));

updateTokenButton();
$("token-button").addEventListener("click", async () => {
  if (memoryToken) {
    storeToken("");
  } else {
    tokenDeclined = false;
    await askForToken("Enter an ACL token to use for this browser session.");
  }
  refresh();
});

// ---------------------------------------------------------------- routing and polling

let route = { view: "peers" };
let generation = 0;
let pollTimer;

function parseRoute() {
  const hash = location.hash.replace(/^#/, "");
  const match = hash.match(/^\/peers\/(.+)$/);
  if (match) return { view: "peer", name: decodeURIComponent(match[1]) };
  if (hash !== "/peers") history.replaceState(null, "", "#/peers");
  return { view: "peers" };
}

function onRoute() {
  route = parseRoute();
  setPageError(null);
  show(document.getElementById("peers-view"), route.view === "peers");
  show(document.getElementById("peer-view"), route.view === "peer");
  if (route.view === "peer") resetDetail(route.name);
  document.title = route.view === "peer" ? `${route.name} · Peers · isthmus` : "Peers · isthmus";
  refresh();
}

/** Loads the current view now, then every POLL_MS; a newer call supersedes. */
async function refresh() {
  clearTimeout(pollTimer);
  const mine = ++generation;
  const current = () => mine === generation;
  if (!clusterKnown) loadClusterName();
  try {
    if (route.view === "peers") await loadPeers(current);
    else await loadPeer(route.name, current);
    if (current()) setPageError(null);
  } catch (e) {
    if (current()) setPageError(e.message);
  } finally {
    if (current()) pollTimer = setTimeout(refresh, POLL_MS);
  }
}

// ---------------------------------------------------------------- the list

const deleting = new Set(); // names whose DELETE is in flight
const rows = new Map(); // name → { tr, cells }

function peerRow(name) {
  let row = rows.get(name);
  if (row) return row;
  const link = el("a", { href: `#/peers/${encodeURIComponent(name)}`, text: name, testid: "peer-link" });
  const badge = el("span", { testid: "peer-state" });
  const imported = el("td", { class: "num", testid: "peer-imported" });
  const exported = el("td", { class: "num", testid: "peer-exported" });
  const heartbeat = el("td", { testid: "peer-heartbeat" });
  const remove = el("button", { type: "button", class: "danger subtle", text: "Delete", testid: "delete-peer" });
  remove.addEventListener("click", () => confirmDelete(name));
  const tr = el(
    "tr",
    { testid: "peer-row", "data-peer": name },
    el("td", { class: "name" }, link),
    el("td", {}, badge),
    imported,
    exported,
    heartbeat,
    el("td", { class: "actions" }, remove),
  );
  row = { tr, badge, imported, exported, heartbeat, remove };
  rows.set(name, row);
  return row;
}

async function loadPeers(current) {
  const peerings = (await api("GET", "/v1/peerings")) ?? [];
  if (!current()) return;
  const table = $("peers-table");
  const body = table.tBodies[0];
  const seen = new Set();
  peerings.sort((a, b) => a.Name.localeCompare(b.Name));
  for (const p of peerings) {
    seen.add(p.Name);
    const row = peerRow(p.Name);
    const state = deleting.has(p.Name) ? "DELETING" : p.State;
    setBadge(row.badge, state);
    row.imported.textContent = String(p.StreamStatus?.ImportedServices?.length ?? 0);
    row.exported.textContent = String(p.StreamStatus?.ExportedServices?.length ?? 0);
    setTime(row.heartbeat, p.StreamStatus?.LastHeartbeat);
    row.remove.disabled = state === "DELETING";
    body.append(row.tr); // appending an attached node moves it: keeps the order, keeps the node
  }
  for (const [name, row] of rows) {
    if (!seen.has(name)) {
      row.tr.remove();
      rows.delete(name);
    }
  }
  show($("peers-loading"), false);
  show(table, peerings.length > 0);
  show($("peers-empty"), peerings.length === 0);
}

// ---------------------------------------------------------------- the detail view

const detail = {
  name: $("detail-name"),
  badge: $("detail-state-badge"),
  loading: $("detail-loading"),
  missing: $("detail-missing"),
  body: $("detail-body"),
  remove: $("detail-delete"),
};

function resetDetail(name) {
  detail.name.textContent = name;
  detail.badge.textContent = "";
  detail.badge.className = "badge";
  show(detail.loading, true);
  show(detail.missing, false);
  show(detail.body, false);
  detail.remove.disabled = false;
  $("imported-services").tBodies[0].replaceChildren();
  $("exported-services").replaceChildren();
}

detail.remove.addEventListener("click", () => confirmDelete(route.name));

/** Passing/warning/critical instance counts: an instance is as healthy as its worst check. */
function healthCounts(entries) {
  const counts = { passing: 0, warning: 0, critical: 0 };
  for (const entry of entries ?? []) {
    const statuses = (entry.Checks ?? []).map((c) => c.Status);
    if (statuses.includes("critical")) counts.critical += 1;
    else if (statuses.includes("warning")) counts.warning += 1;
    else counts.passing += 1;
  }
  return counts;
}

async function loadPeer(name, current) {
  let peering;
  try {
    peering = await api("GET", peerPath(name));
  } catch (e) {
    if (e.status !== 404) throw e;
    if (!current()) return;
    show(detail.loading, false);
    show(detail.body, false);
    detail.missing.textContent = `${e.message}. It may have been deleted.`;
    show(detail.missing, true);
    detail.remove.disabled = true;
    return;
  }
  const status = peering.StreamStatus ?? {};
  const importedNames = status.ImportedServices ?? [];
  const [health, exports] = await Promise.all([
    Promise.all(
      importedNames.map((svc) =>
        api("GET", `/v1/health/service/${encodeURIComponent(svc)}?peer=${encodeURIComponent(name)}`),
      ),
    ),
    api("GET", "/v1/exported-services"),
  ]);
  if (!current()) return;

  const state = deleting.has(name) ? "DELETING" : peering.State;
  setBadge(detail.badge, state);
  detail.remove.disabled = state === "DELETING";
  const stateBadge = el("span");
  setBadge(stateBadge, state);
  $("detail-state").replaceChildren(stateBadge);
  $("detail-peer-id").textContent = peering.PeerID || "—";
  $("detail-id").textContent = peering.ID || "—";
  $("detail-role").textContent =
    peering.Role === "acceptor"
      ? "Acceptor (this cluster generated the token)"
      : peering.Role === "dialer"
        ? "Dialer (this cluster established the peering)"
        : peering.Role || "—";
  $("detail-remote").textContent = peering.Remote?.Datacenter || "—";
  $("detail-server-name").textContent = peering.PeerServerName || "—";
  const addresses = peering.PeerServerAddresses ?? [];
  $("detail-addresses").replaceChildren(
    ...(addresses.length ? addresses.map((a) => el("div", { text: a, testid: "detail-address" })) : ["—"]),
  );
  setTime($("detail-heartbeat"), status.LastHeartbeat);
  setTime($("detail-receive"), status.LastReceive);
  setTime($("detail-send"), status.LastSend);

  const count = (counts, status) =>
    el(
      "td",
      { class: "num" },
      el("span", {
        class: counts[status] > 0 ? `count ${status}` : "count zero",
        text: String(counts[status]),
        testid: `health-${status}`,
      }),
    );
  const importedRows = importedNames.map((svc, i) => {
    const counts = healthCounts(health[i]);
    return el(
      "tr",
      { testid: "imported-service", "data-service": svc },
      el("td", { class: "name", text: svc }),
      count(counts, "passing"),
      count(counts, "warning"),
      count(counts, "critical"),
    );
  });
  $("imported-services").tBodies[0].replaceChildren(...importedRows);
  show($("imported-services"), importedRows.length > 0);
  show($("imported-empty"), importedRows.length === 0);

  // What the stream carries, plus what the config entry names for this peer
  // (which is not sent until the peering is established).
  const sent = new Set(status.ExportedServices ?? []);
  const configured = new Set(
    (exports ?? []).filter((e) => (e.Consumers?.Peers ?? []).includes(name)).map((e) => e.Service),
  );
  const exportedNames = [...new Set([...sent, ...configured])].sort();
  $("exported-services").replaceChildren(
    ...exportedNames.map((svc) =>
      el(
        "li",
        { testid: "exported-service", "data-service": svc },
        el("span", { class: "name", text: svc }),
        sent.has(svc) ? "" : el("span", { class: "muted", text: " not yet sent: the peering is not established" }),
      ),
    ),
  );
  show($("exported-services"), exportedNames.length > 0);
  show($("exported-empty"), exportedNames.length === 0);

  show(detail.loading, false);
  show(detail.missing, false);
  show(detail.body, true);
}

// ---------------------------------------------------------------- delete, with an in-page confirmation

const confirmDialog = $("confirm-dialog");
let pendingDelete = null;

function confirmDelete(name) {
  pendingDelete = name;
  $("confirm-message").textContent =
    `Delete the peering with “${name}”? This cluster stops importing its services and ` +
    `stops exporting to it, and the peer sees the peering as TERMINATED.`;
  confirmDialog.showModal();
}

$("confirm-cancel").addEventListener("click", () => confirmDialog.close());
confirmDialog.addEventListener("close", () => {
  pendingDelete = null;
});

$("confirm-delete").addEventListener("click", async () => {
  const name = pendingDelete;
  confirmDialog.close();
  if (!name) return;
  setActionError(null);
  deleting.add(name);
  const row = rows.get(name);
  if (row) {
    setBadge(row.badge, "DELETING");
    row.remove.disabled = true;
  }
  if (route.view === "peer" && route.name === name) {
    setBadge(detail.badge, "DELETING");
    detail.remove.disabled = true;
  }
  try {
    await api("DELETE", peerPath(name));
    setNotice(`Peering with “${name}” deleted.`);
    if (route.view === "peer" && route.name === name) location.hash = "#/peers";
  } catch (e) {
    setActionError(`Could not delete the peering with “${name}”: ${e.message}`);
  } finally {
    deleting.delete(name);
    refresh();
  }
});

// ---------------------------------------------------------------- "Add peer connection"

const addDialog = $("add-peer-dialog");
const generateForm = addDialog.querySelector('[data-panel="generate"]');
const establishForm = addDialog.querySelector('[data-panel="establish"]');

function setDialogError(message) {
  $("dialog-error").textContent = message ?? "";
  show($("dialog-error"), Boolean(message));
}

function selectTab(tab) {
  for (const button of addDialog.querySelectorAll('[role="tab"]')) {
    button.setAttribute("aria-selected", String(button.dataset.tab === tab));
  }
  show(generateForm, tab === "generate");
  show(establishForm, tab === "establish");
  setDialogError(null);
  (tab === "generate" ? $("generate-peer-name") : $("establish-peer-name")).focus();
}

function openAddDialog() {
  generateForm.reset();
  establishForm.reset();
  $("generated-token").value = "";
  $("copy-status").textContent = "";
  show($("token-output"), false);
  addDialog.showModal();
  selectTab("generate");
}

$("add-peer").addEventListener("click", openAddDialog);
$("add-peer-close").addEventListener("click", () => addDialog.close());
$("generate-done").addEventListener("click", () => addDialog.close());
for (const button of addDialog.querySelectorAll('[role="tab"]')) {
  button.addEventListener("click", () => selectTab(button.dataset.tab));
}

async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

generateForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const peerName = $("generate-peer-name").value.trim();
  setDialogError(null);
  busy($("generate-submit"), async () => {
    try {
      const answer = await api("POST", "/v1/peering/token", { PeerName: peerName });
      $("generated-token").value = answer?.PeeringToken ?? "";
      $("copy-status").textContent = "";
      show($("token-output"), true);
      refresh();
    } catch (e) {
      show($("token-output"), false);
      setDialogError(e.message);
    }
  });
});

$("generated-token").addEventListener("focus", (event) => event.target.select());

$("copy-token").addEventListener("click", async () => {
  const area = $("generated-token");
  try {
    if (!navigator.clipboard) throw new Error("no clipboard access");
    await navigator.clipboard.writeText(area.value);
    $("copy-status").textContent = "Copied to the clipboard.";
  } catch {
    // No clipboard (plain http from another host, or permission refused):
    // select the token so the user can copy it with the keyboard.
    area.focus();
    area.select();
    $("copy-status").textContent = "Selected: press Ctrl+C (⌘C) to copy.";
  }
});

establishForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const peerName = $("establish-peer-name").value.trim();
  const token = $("establish-token").value.trim();
  setDialogError(null);
  busy($("establish-submit"), async () => {
    try {
      await api("POST", "/v1/peering/establish", { PeerName: peerName, PeeringToken: token });
      addDialog.close();
      setNotice(`Peering with “${peerName}” established.`);
      if (route.view !== "peers") location.hash = "#/peers";
      else refresh();
    } catch (e) {
      setDialogError(e.message);
    }
  });
});

// ---------------------------------------------------------------- start

let clusterKnown = false;

/** Shows the cluster's name; retried on each refresh until it is known (a
 * token may arrive later), and never the reason to ask for a token. */
async function loadClusterName() {
  try {
    const self = await api("GET", "/v1/agent/self", undefined, { prompt: false });
    $("cluster-name").textContent = self?.Config?.Datacenter ?? "";
    clusterKnown = true;
  } catch {
    $("cluster-name").textContent = "unknown";
  }
}

window.addEventListener("hashchange", onRoute);
onRoute();
