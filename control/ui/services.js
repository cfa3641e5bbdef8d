// isthmus web UI: the Services page (#/services) and a service's detail
// (#/services/<name>, and #/services/<name>?peer=<peer> for a service
// imported from a peer).
//
// The list comes from /v1/internal/ui/services (one summary per service,
// imported ones with their PeerName); a service's detail from its
// /v1/health/service/<name>[?peer=], /v1/health/connect/<name> (its
// sidecars), the intentions matching it as destination and
// /v1/exported-services.

import { $, api, el, healthCounts, show } from "./core.js";

const KIND_LABELS = { "": "service", "connect-proxy": "connect-proxy", "mesh-gateway": "mesh-gateway" };
const HEALTH_TONES = { passing: "success", warning: "warning", critical: "critical" };

const encode = encodeURIComponent;
const healthPath = (name, peer) =>
  `/v1/health/service/${encode(name)}${peer ? `?peer=${encode(peer)}` : ""}`;
const detailHref = (name, peer) => `#/services/${encode(name)}${peer ? `?peer=${encode(peer)}` : ""}`;

/** An instance is as healthy as its worst check. */
function instanceHealth(entry) {
  const statuses = (entry.Checks ?? []).map((c) => c.Status);
  if (statuses.includes("critical")) return "critical";
  if (statuses.includes("warning")) return "warning";
  return "passing";
}

function badge(text, tone, testid) {
  return el("span", { class: `badge ${tone}`, text, testid, "data-state": text });
}

function countCell(counts, status) {
  return el(
    "td",
    { class: "num" },
    el("span", {
      class: counts[status] > 0 ? `count ${status}` : "count zero",
      text: String(counts[status]),
      testid: `health-${status}`,
    }),
  );
}

function tagList(tags, testid) {
  return el(
    "span",
    { class: "tags", testid },
    ...[...new Set(tags ?? [])].sort().map((t) => el("span", { class: "tag", text: t })),
  );
}

// ---------------------------------------------------------------- the list

let filterText = "";
let lastRows = [];

const filterInput = $("services-filter");
filterInput.addEventListener("input", () => {
  filterText = filterInput.value.trim().toLowerCase();
  renderList();
});

function matchesFilter(row) {
  if (!filterText) return true;
  return (
    row.name.toLowerCase().includes(filterText) ||
    row.tags.some((t) => t.toLowerCase().includes(filterText)) ||
    (row.peer ?? "").toLowerCase().includes(filterText)
  );
}

function renderList() {
  const table = $("services-table");
  const shown = lastRows.filter(matchesFilter);
  table.tBodies[0].replaceChildren(
    ...shown.map((row) => {
      const counts = row.counts;
      const link = el("a", { href: detailHref(row.name, row.peer), text: row.name, testid: "service-link" });
      return el(
        "tr",
        { testid: "service-row", "data-service": row.name, "data-peer": row.peer ?? "" },
        el(
          "td",
          { class: "name" },
          link,
          row.peer ? el("span", { class: "peer-mark", text: row.peer, testid: "service-peer", title: "Imported from this peer" }) : "",
          row.proxied ? el("span", { class: "in-mesh", text: "in mesh", testid: "service-proxied", title: "A sidecar proxy fronts it" }) : "",
        ),
        el("td", {}, badge(row.kind, row.kind === "service" ? "neutral" : "info", "service-kind")),
        el("td", {}, tagList(row.tags, "service-tags")),
        el("td", { class: "num", text: String(row.instances), testid: "service-instances" }),
        countCell(counts, "passing"),
        countCell(counts, "warning"),
        countCell(counts, "critical"),
      );
    }),
  );
  show($("services-loading"), false);
  show(table, shown.length > 0);
  show($("services-empty"), lastRows.length === 0);
  show($("services-no-match"), lastRows.length > 0 && shown.length === 0);
}

function kindOf(entries) {
  const kind = entries.find((e) => e.Service?.Kind)?.Service.Kind ?? "";
  return KIND_LABELS[kind] ?? kind;
}

/** One call for the whole list: this cluster's services and every peer's imported ones. */
async function loadList(current) {
  const summaries = (await api("GET", "/v1/internal/ui/services")) ?? [];
  if (!current()) return;
  lastRows = summaries.map((s) => ({
    name: s.Name,
    peer: s.PeerName || null,
    kind: KIND_LABELS[s.Kind ?? ""] ?? s.Kind,
    tags: s.Tags ?? [],
    instances: s.InstanceCount ?? 0,
    counts: { passing: s.InstancesPassing ?? 0, warning: s.InstancesWarning ?? 0, critical: s.InstancesCritical ?? 0 },
    proxied: Boolean(s.ConnectedWithProxy),
  }));
  lastRows.sort((a, b) => a.name.localeCompare(b.name) || (a.peer ?? "").localeCompare(b.peer ?? ""));
  renderList();
}

// ---------------------------------------------------------------- the detail view

function resetDetail(route) {
  $("service-detail-name").textContent = route.name;
  $("service-detail-peer").textContent = route.peer ?? "";
  $("service-detail-peer").title = route.peer ? `Imported from the peer ${route.peer}` : "";
  show($("service-detail-peer"), Boolean(route.peer));
  $("service-detail-kind").textContent = "";
  show($("service-detail-loading"), true);
  show($("service-detail-body"), false);
  for (const id of ["service-instances-list", "service-sidecars", "service-intentions", "service-exports", "service-upstreams"]) {
    $(id).replaceChildren();
  }
}

function checkRow(check) {
  return el(
    "tr",
    { testid: "check", "data-check": check.CheckID },
    el("td", { class: "name", text: check.Name || check.CheckID, testid: "check-name" }),
    el("td", {}, badge(check.Status, HEALTH_TONES[check.Status] ?? "neutral", "check-status")),
    el("td", {}, el("pre", { class: "check-output", text: check.Output || "—", testid: "check-output" })),
  );
}

function instanceCard(entry) {
  const svc = entry.Service ?? {};
  const health = instanceHealth(entry);
  const address = `${svc.Address || entry.Node?.Address || "?"}:${svc.Port ?? 0}`;
  const checks = entry.Checks ?? [];
  return el(
    "div",
    { class: "instance", testid: "instance", "data-instance": svc.ID ?? "" },
    el(
      "div",
      { class: "instance-head" },
      el("span", { class: "name mono", text: svc.ID ?? "", testid: "instance-id" }),
      badge(health, HEALTH_TONES[health], "instance-health"),
      el("span", { class: "muted", text: `node ${entry.Node?.Node ?? "?"}` }),
      el("span", { class: "mono", text: address, testid: "instance-address" }),
      tagList(svc.Tags, "instance-tags"),
    ),
    checks.length
      ? el(
          "table",
          { class: "list compact checks" },
          el("thead", {}, el("tr", {}, el("th", { text: "Check" }), el("th", { text: "Status" }), el("th", { text: "Output" }))),
          el("tbody", {}, ...checks.map(checkRow)),
        )
      : el("p", { class: "muted", text: "No checks: counted as passing." }),
  );
}

function upstreamName(u) {
  return u.DestinationPeer ? `${u.DestinationName}@${u.DestinationPeer}` : u.DestinationName;
}

function sidecarItem(entry) {
  const svc = entry.Service ?? {};
  const health = instanceHealth(entry);
  const upstreams = svc.Proxy?.Upstreams ?? [];
  return el(
    "li",
    { testid: "sidecar", "data-sidecar": svc.ID ?? "" },
    el("span", { class: "name mono", text: svc.ID ?? "" }),
    " ",
    badge(health, HEALTH_TONES[health], "sidecar-health"),
    el("span", { class: "muted", text: ` at ${svc.Address || entry.Node?.Address || "?"}:${svc.Port ?? 0}` }),
    el(
      "div",
      { class: "muted", testid: "sidecar-upstreams" },
      upstreams.length
        ? `upstreams: ${upstreams.map((u) => `${upstreamName(u)} → ${u.LocalBindAddress || "127.0.0.1"}:${u.LocalBindPort}`).join(", ")}`
        : "no upstreams",
    ),
  );
}

function intentionSource(i) {
  return i.SourcePeer ? `${i.SourceName} (peer ${i.SourcePeer})` : i.SourceName;
}

function intentionRow(i) {
  const action = i.Permissions?.length ? "L7 permissions" : i.Action;
  const tone = action === "allow" ? "success" : action === "deny" ? "critical" : "info";
  return el(
    "tr",
    { testid: "service-intention", "data-source": i.SourceName, "data-source-peer": i.SourcePeer ?? "" },
    el("td", { class: "name", text: intentionSource(i), testid: "service-intention-source" }),
    el("td", {}, badge(action, tone, "service-intention-action")),
    el("td", { class: "num", text: String(i.Precedence), testid: "service-intention-precedence" }),
  );
}

function setList(id, emptyId, items) {
  $(id).replaceChildren(...items);
  show($(id), items.length > 0);
  show($(emptyId), items.length === 0);
}

async function loadDetail(route, current) {
  const { name, peer } = route;
  if (peer) {
    const entries = (await api("GET", healthPath(name, peer))) ?? [];
    if (!current()) return;
    renderHeader(entries);
    renderInstances(entries);
    show($("service-local-panels"), false);
    show($("service-imported-note"), true);
    $("service-imported-note").textContent =
      `Imported from the peer ${peer}: its sidecars, the intentions that admit callers and its exports ` +
      `are managed in that cluster. Callers here reach it through an upstream such as ${name}@${peer}.`;
    finishDetail();
    return;
  }
  const [entries, connect, matched, exports, self] = await Promise.all([
    api("GET", healthPath(name)),
    api("GET", `/v1/health/connect/${encode(name)}`),
    api("GET", `/v1/connect/intentions/match?by=destination&name=${encode(name)}`),
    api("GET", "/v1/exported-services"),
    api("GET", "/v1/agent/self", undefined, { prompt: false }).catch(() => null),
  ]);
  if (!current()) return;
  renderHeader(entries ?? []);
  renderInstances(entries ?? []);
  show($("service-local-panels"), true);
  show($("service-imported-note"), false);

  const sidecars = (connect ?? []).filter((e) => e.Service?.Kind === "connect-proxy");
  setList("service-sidecars", "service-sidecars-empty", sidecars.map(sidecarItem));

  const upstreams = [...new Set(sidecars.flatMap((e) => (e.Service?.Proxy?.Upstreams ?? []).map(upstreamName)))].sort();
  setList(
    "service-upstreams",
    "service-upstreams-empty",
    upstreams.map((u) => el("li", { testid: "upstream", "data-upstream": u, text: u })),
  );

  // The match endpoint answers highest precedence first: the order in which they are tried.
  const intentions = matched?.[name] ?? [];
  $("service-intentions").replaceChildren(...intentions.map(intentionRow));
  show($("service-intentions-table"), intentions.length > 0);
  const policy = self?.Isthmus?.DefaultIntentionPolicy;
  $("service-default-policy").textContent = policy
    ? `${intentions.length ? "A caller no intention above matches" : "No intention names this service: every caller"} ` +
      `gets the default intention policy, ${policy}.`
    : "Callers no intention matches get the agent's default intention policy (unknown: this token cannot read the agent).";
  $("service-default-policy").dataset.policy = policy ?? "";

  const peers = (exports ?? []).find((e) => e.Service === name)?.Consumers?.Peers ?? [];
  setList(
    "service-exports",
    "service-exports-empty",
    [...peers].sort().map((p) => el("li", { testid: "exported-to", "data-peer": p }, el("a", { href: `#/peers/${encode(p)}`, text: p }))),
  );
  finishDetail();
}

function renderHeader(entries) {
  const kind = kindOf(entries);
  $("service-detail-kind").textContent = entries.length ? kind : "";
  $("service-detail-kind").className = `badge ${kind === "service" ? "neutral" : "info"}`;
}

function renderInstances(entries) {
  const counts = healthCounts(entries);
  $("service-detail-counts").textContent =
    `${entries.length} instance${entries.length === 1 ? "" : "s"}: ` +
    `${counts.passing} passing, ${counts.warning} warning, ${counts.critical} critical`;
  setList("service-instances-list", "service-instances-empty", entries.map(instanceCard));
}

function finishDetail() {
  show($("service-detail-loading"), false);
  show($("service-detail-body"), true);
}

// ---------------------------------------------------------------- the page

export const page = {
  name: "services",
  match(path) {
    if (path === "/services") return { view: "services", section: "services-view", title: "Services" };
    const found = path.match(/^\/services\/([^?]+)(?:\?(.*))?$/);
    if (!found) return null;
    const name = decodeURIComponent(found[1]);
    const peer = new URLSearchParams(found[2] ?? "").get("peer") || null;
    return {
      view: "service",
      section: "service-view",
      title: `${name}${peer ? ` (${peer})` : ""} · Services`,
      name,
      peer,
    };
  },
  enter(route) {
    if (route.view === "service") resetDetail(route);
    else filterInput.value = filterText;
  },
  load(route, current) {
    return route.view === "services" ? loadList(current) : loadDetail(route, current);
  },
};
