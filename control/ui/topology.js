// isthmus web UI: the Topology page (#/topology).
//
// GET /v1/internal/ui/topology, drawn as an SVG graph: one box for this
// cluster and one per peer, a node per service, an arrow per edge labelled
// with its live figures (req/s, success %, p99) when the agent's metrics
// provider has them, "no metrics" otherwise. Denied edges (a deny
// intention, or denials counted by the sidecars) are dashed red. The same
// edges are listed in a table below. SVG is built with createElementNS and
// attributes only (the CSP forbids inline styles); API text goes in through
// textContent.

import { $, api, el, show } from "./core.js";

const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 170;
const NODE_H = 44;
const NODE_GAP = 26;
const BOX_PAD = 22;
const BOX_HEAD = 26;
const COLUMN_GAP = 170;

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

const key = (end) => `${end.Peer}\u0000${end.Name}`;
const endName = (end) => (end.Peer ? `${end.Name} (${end.Peer})` : end.Name);

/** Whether an edge stands for refused calls. */
function isDenied(edge) {
  return edge.Intention === "deny" || (edge.Metrics?.DeniedRate ?? 0) > 0;
}

function rate(value) {
  if (value === null || value === undefined) return "—";
  if (value === 0) return "0 req/s";
  return value >= 10 ? `${value.toFixed(0)} req/s` : `${value.toPrecision(2)} req/s`;
}

function percent(value) {
  return value === null || value === undefined ? "—" : `${(value * 100).toFixed(1)}%`;
}

function latency(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  return seconds < 1 ? `${(seconds * 1000).toFixed(seconds < 0.01 ? 1 : 0)} ms` : `${seconds.toFixed(2)} s`;
}

/** The figures of an edge in one line, or "no metrics". */
export function edgeLabel(edge) {
  const m = edge.Metrics;
  if (!m) return "no metrics";
  const parts = [];
  if (m.RequestRate !== null && m.RequestRate !== undefined) parts.push(rate(m.RequestRate));
  if (m.SuccessRate !== null && m.SuccessRate !== undefined) parts.push(percent(m.SuccessRate));
  if (m.P99LatencySeconds !== null && m.P99LatencySeconds !== undefined) parts.push(`p99 ${latency(m.P99LatencySeconds)}`);
  if (m.DeniedRate) parts.push(`denied ${m.DeniedRate.toPrecision(2)}/s`);
  return parts.length ? parts.join(" · ") : "no metrics";
}

/** Groups: this cluster first, then each peer, each a column of nodes. */
function layout(topology) {
  const groups = new Map([["", []]]);
  for (const node of topology.Nodes) {
    if (!groups.has(node.Peer)) groups.set(node.Peer, []);
    groups.get(node.Peer).push(node);
  }
  const positions = new Map();
  const boxes = [];
  let x = 20;
  let height = 0;
  for (const [peer, nodes] of groups) {
    const boxH = BOX_HEAD + BOX_PAD * 2 + Math.max(1, nodes.length) * (NODE_H + NODE_GAP) - NODE_GAP;
    const boxW = NODE_W + BOX_PAD * 2;
    boxes.push({ peer, x, y: 20, w: boxW, h: boxH, empty: nodes.length === 0 });
    nodes.forEach((node, i) => {
      const nx = x + BOX_PAD;
      const ny = 20 + BOX_HEAD + BOX_PAD + i * (NODE_H + NODE_GAP);
      positions.set(key({ Name: node.Name, Peer: node.Peer }), { node, x: nx, y: ny });
    });
    height = Math.max(height, boxH + 40);
    x += boxW + COLUMN_GAP;
  }
  return { positions, boxes, width: x - COLUMN_GAP + 20, height };
}

function drawGraph(topology) {
  const { positions, boxes, width, height } = layout(topology);
  const root = svg("svg", {
    viewBox: `0 0 ${Math.max(width, 300)} ${Math.max(height, 120)}`,
    width: Math.max(width, 300),
    height: Math.max(height, 120),
    role: "img",
    "aria-label": "Service topology",
    "data-testid": "topology-graph",
  });
  const defs = svg("defs");
  for (const [id, cls] of [["arrow", "arrowhead"], ["arrow-denied", "arrowhead denied"]]) {
    const marker = svg("marker", {
      id,
      viewBox: "0 0 10 10",
      refX: 10,
      refY: 5,
      markerWidth: 8,
      markerHeight: 8,
      orient: "auto-start-reverse",
    });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: cls }));
    defs.append(marker);
  }
  root.append(defs);

  for (const box of boxes) {
    const group = svg("g", { class: box.peer ? "cluster peer" : "cluster local" });
    group.append(svg("rect", { x: box.x, y: box.y, width: box.w, height: box.h, rx: 10 }));
    group.append(
      svg("text", { x: box.x + 12, y: box.y + 18, class: "cluster-name" },
        box.peer ? `peer ${box.peer}` : `${topology.Datacenter} (this cluster)`),
    );
    if (box.empty) {
      group.append(svg("text", { x: box.x + 12, y: box.y + 50, class: "muted" }, "no services"));
    }
    root.append(group);
  }

  // Several edges at one node end at spread-out points, not on one spot.
  const ports = new Map();
  const slot = (end, edge) => {
    const k = key(end);
    if (!ports.has(k)) ports.set(k, []);
    ports.get(k).push(edge);
  };
  for (const edge of topology.Edges) {
    slot(edge.Source, edge);
    slot(edge.Destination, edge);
  }
  const offset = (end, edge) => {
    const all = ports.get(key(end)) ?? [edge];
    const spacing = Math.min(10, (NODE_H - 8) / Math.max(1, all.length - 1));
    return (all.indexOf(edge) - (all.length - 1) / 2) * spacing;
  };

  const edgeLayer = svg("g", { class: "edges" });
  root.append(edgeLayer);
  for (const edge of topology.Edges) {
    const from = positions.get(key(edge.Source));
    const to = positions.get(key(edge.Destination));
    if (!from || !to) continue;
    const denied = isDenied(edge);
    const classes = ["edge"];
    if (denied) classes.push("denied");
    if (!edge.Metrics) classes.push("no-metrics");
    const group = svg("g", {
      class: classes.join(" "),
      "data-testid": `topology-edge-${endName(edge.Source)}->${endName(edge.Destination)}`,
    });
    // Between facing sides (the callee may sit left of its caller); within
    // one column, a bow on the right.
    const sameColumn = from.x === to.x;
    const rightward = to.x > from.x;
    const x1 = sameColumn || rightward ? from.x + NODE_W : from.x;
    const y1 = from.y + NODE_H / 2 + offset(edge.Source, edge);
    const x2 = sameColumn || !rightward ? to.x + NODE_W : to.x;
    const y2 = to.y + NODE_H / 2 + offset(edge.Destination, edge);
    let d;
    let lx;
    let ly;
    if (sameColumn) {
      const bow = 60 + Math.abs(y2 - y1) / 4;
      d = `M ${x1} ${y1} C ${x1 + bow} ${y1}, ${x2 + bow} ${y2}, ${x2} ${y2}`;
      lx = x1 + bow * 0.8;
      ly = (y1 + y2) / 2;
    } else {
      const mid = (x1 + x2) / 2;
      d = `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`;
      lx = mid;
      ly = (y1 + y2) / 2 - 6;
    }
    group.append(svg("path", { d, "marker-end": denied ? "url(#arrow-denied)" : "url(#arrow)" }));
    const label = denied && !edge.Metrics ? "denied · no metrics" : edgeLabel(edge);
    group.append(svg("text", { x: lx, y: ly, "text-anchor": "middle", class: "edge-label" }, label));
    const title = svg("title", {}, `${endName(edge.Source)} → ${endName(edge.Destination)}: ${label} (${edge.Reasons.join(", ")})`);
    group.append(title);
    edgeLayer.append(group);
  }

  for (const { node, x, y } of positions.values()) {
    const group = svg("g", {
      class: `service${node.Instances === 0 && !node.Sidecars ? " unregistered" : ""}`,
      "data-testid": `topology-node-${endName(node)}`,
    });
    group.append(svg("rect", { x, y, width: NODE_W, height: NODE_H, rx: 6 }));
    group.append(svg("text", { x: x + 10, y: y + 18, class: "service-name" }, node.Name));
    const details = [];
    if (node.Instances > 0) details.push(`${node.Instances} instance${node.Instances === 1 ? "" : "s"}`);
    else if (!node.Sidecars) details.push(node.Peer ? "not imported here" : "not registered");
    if (node.Sidecars) details.push(`${node.Sidecars} sidecar${node.Sidecars === 1 ? "" : "s"}`);
    if (node.Kind) details.push(node.Kind);
    group.append(svg("text", { x: x + 10, y: y + 35, class: "service-details" }, details.join(" · ")));
    root.append(group);
  }
  return root;
}

function edgeRow(edge) {
  const denied = isDenied(edge);
  const row = el("tr", { testid: "topology-edge-row", class: denied ? "denied" : "" });
  row.append(
    el("td", { text: endName(edge.Source) }),
    el("td", { text: endName(edge.Destination) }),
    el("td", { text: edge.Intention ?? "—" }),
    el("td", { text: edge.Reasons.join(", ") }),
    el("td", { text: edgeLabel(edge) }),
  );
  return row;
}

function render(topology) {
  const status = $("topology-metrics-status");
  if (topology.MetricsStatus === "ok") {
    status.textContent = `Live figures from ${topology.MetricsProvider} over the last minute.`;
    status.dataset.state = "ok";
  } else {
    status.textContent = `No metrics: ${topology.MetricsStatus}. Edges come from intentions and upstreams.`;
    status.dataset.state = "none";
  }
  const graph = $("topology-graph-box");
  graph.replaceChildren(drawGraph(topology));
  const rows = $("topology-edges");
  rows.replaceChildren(...topology.Edges.map(edgeRow));
  show($("topology-empty"), topology.Edges.length === 0 && topology.Nodes.length === 0);
}

export const page = {
  name: "topology",
  match(path) {
    if (path === "/topology") return { view: "topology", section: "topology-view", title: "Topology" };
    return null;
  },
  enter() {
    show($("topology-loading"), true);
  },
  async load(_route, current) {
    const topology = await api("GET", "/v1/internal/ui/topology");
    if (!current()) return;
    show($("topology-loading"), false);
    render(topology);
  },
};
