// isthmus web UI: the Peers page (#/peers) and a peer's detail (#/peers/<name>).

import {
  $,
  api,
  busy,
  currentRoute,
  el,
  healthCounts,
  refresh,
  setActionError,
  setBadge,
  setNotice,
  setTime,
  show,
} from "./core.js";

const STATE_TONES = {
  ACTIVE: "success",
  PENDING: "info",
  ESTABLISHING: "info",
  FAILING: "warning",
  DELETING: "critical",
  TERMINATED: "neutral",
};

const peerPath = (name) => `/v1/peering/${encodeURIComponent(name)}`;

// ---------------------------------------------------------------- gateway probes

const GATEWAYS_PATH = "/v1/internal/ui/peering-gateways";
const GATEWAY_TONES = { ALIVE: "success", DEAD: "critical", "NOT PROBED": "neutral" };

/**
 * The leader's probes of each peer's gateway, by peer name. Never fails the
 * page: unreadable (no leader right now, or the token may not read it; the
 * peerings' own request is the one that asks for a token) shows as not probed.
 */
async function loadGateways() {
  try {
    const gateways = (await api("GET", GATEWAYS_PATH, undefined, { prompt: false })) ?? [];
    return new Map(gateways.map((g) => [g.Peer, g]));
  } catch {
    return new Map();
  }
}

const gatewayState = (g) => (g?.Alive === true ? "ALIVE" : g?.Alive === false ? "DEAD" : "NOT PROBED");

/** `12ms`, `<1ms`, or "" when unknown or not alive (the CLI's LATENCY). */
function latencyText(g) {
  if (g?.Alive !== true || typeof g.LatencyMs !== "number") return "";
  return g.LatencyMs < 1 ? "<1ms" : `${Math.round(g.LatencyMs)}ms`;
}

/** Fills `cell` with the gateway badge and its latency. */
function showGateway(cell, g) {
  const badge = el("span", { testid: "gateway-state" });
  setBadge(badge, gatewayState(g), GATEWAY_TONES);
  const latency = latencyText(g);
  cell.replaceChildren(badge, latency ? el("span", { class: "latency", text: latency, testid: "gateway-latency" }) : "");
  cell.title = g?.LastError ? `Last probe failed: ${g.LastError}` : "";
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
  const gateway = el("td", { class: "gateway", testid: "peer-gateway" });
  const remove = el("button", { type: "button", class: "danger subtle", text: "Delete", testid: "delete-peer" });
  remove.addEventListener("click", () => confirmDelete(name));
  const tr = el(
    "tr",
    { testid: "peer-row", "data-peer": name },
    el("td", { class: "name" }, link),
    el("td", {}, badge),
    imported,
    exported,
    gateway,
    heartbeat,
    el("td", { class: "actions" }, remove),
  );
  row = { tr, badge, imported, exported, gateway, heartbeat, remove };
  rows.set(name, row);
  return row;
}

async function loadPeers(current) {
  const [listed, gateways] = await Promise.all([api("GET", "/v1/peerings"), loadGateways()]);
  const peerings = listed ?? [];
  if (!current()) return;
  const table = $("peers-table");
  const body = table.tBodies[0];
  const seen = new Set();
  peerings.sort((a, b) => a.Name.localeCompare(b.Name));
  for (const p of peerings) {
    seen.add(p.Name);
    const row = peerRow(p.Name);
    const state = deleting.has(p.Name) ? "DELETING" : p.State;
    setBadge(row.badge, state, STATE_TONES);
    row.imported.textContent = String(p.StreamStatus?.ImportedServices?.length ?? 0);
    row.exported.textContent = String(p.StreamStatus?.ExportedServices?.length ?? 0);
    showGateway(row.gateway, gateways.get(p.Name));
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

detail.remove.addEventListener("click", () => confirmDelete(currentRoute().name));


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
  const [health, exports, gateways] = await Promise.all([
    Promise.all(
      importedNames.map((svc) =>
        api("GET", `/v1/health/service/${encodeURIComponent(svc)}?peer=${encodeURIComponent(name)}`),
      ),
    ),
    api("GET", "/v1/exported-services"),
    loadGateways(),
  ]);
  if (!current()) return;

  const state = deleting.has(name) ? "DELETING" : peering.State;
  setBadge(detail.badge, state, STATE_TONES);
  detail.remove.disabled = state === "DELETING";
  const stateBadge = el("span");
  setBadge(stateBadge, state, STATE_TONES);
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
  const probe = gateways.get(name);
  showGateway($("detail-gateway"), probe);
  setTime($("detail-gateway-probe"), probe?.LastProbe);
  if (!probe?.LastProbe) $("detail-gateway-probe").textContent = "never";
  $("detail-gateway-error").textContent = probe?.LastError || "—";

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
    setBadge(row.badge, "DELETING", STATE_TONES);
    row.remove.disabled = true;
  }
  if (currentRoute().view === "peer" && currentRoute().name === name) {
    setBadge(detail.badge, "DELETING", STATE_TONES);
    detail.remove.disabled = true;
  }
  try {
    await api("DELETE", peerPath(name));
    setNotice(`Peering with “${name}” deleted.`);
    if (currentRoute().view === "peer" && currentRoute().name === name) location.hash = "#/peers";
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
      if (currentRoute().view !== "peers") location.hash = "#/peers";
      else refresh();
    } catch (e) {
      setDialogError(e.message);
    }
  });
});

// ---------------------------------------------------------------- the page

export const page = {
  name: "peers",
  match(path) {
    const detailMatch = path.match(/^\/peers\/(.+)$/);
    if (detailMatch) {
      const name = decodeURIComponent(detailMatch[1]);
      return { view: "peer", section: "peer-view", title: `${name} · Peers`, name };
    }
    if (path === "/peers") return { view: "peers", section: "peers-view", title: "Peers" };
    return null;
  },
  enter(route) {
    if (route.view === "peer") resetDetail(route.name);
  },
  load(route, current) {
    return route.view === "peers" ? loadPeers(current) : loadPeer(route.name, current);
  },
};
