// isthmus web UI: the Intentions page (#/intentions).
//
// Lists every intention (GET /v1/connect/intentions, highest precedence
// first); creates, edits and deletes them by rewriting the destination's
// `service-intentions` config entry with a check-and-set on its
// ModifyIndex (so a source from a peer can be edited too, and a concurrent
// change is never overwritten); answers "would X be allowed to call Y?"
// with /v1/connect/intentions/check. Errors are the API's own texts.

import { $, api, busy, el, refresh, setActionError, setNotice, show } from "./core.js";

const encode = encodeURIComponent;
const entryPath = (destination) => `/v1/config/service-intentions/${encode(destination)}`;
const PATH_KINDS = { exact: "PathExact", prefix: "PathPrefix", regex: "PathRegex" };
const HEADER_KINDS = ["Present", "Exact", "Prefix", "Regex"];

let defaultPolicy = null; // "allow" | "deny" once /v1/agent/self answered
let confirming = false; // a row asks "Confirm delete": the list is not redrawn under it

function sourceLabel(name, peer) {
  return peer ? `${name} (peer ${peer})` : name;
}

function actionOf(intention) {
  return intention.Permissions?.length ? "L7 permissions" : intention.Action;
}

function badge(text, testid) {
  const tone = text === "allow" ? "success" : text === "deny" ? "critical" : "info";
  return el("span", { class: `badge ${tone}`, text, testid, "data-state": text });
}

/** One line per L7 permission, e.g. "allow GET,POST path prefix /api". */
function describePermission(p) {
  const http = p.HTTP ?? {};
  const parts = [p.Action];
  if (http.Methods?.length) parts.push(http.Methods.join(","));
  for (const [kind, key] of Object.entries(PATH_KINDS)) {
    if (http[key]) parts.push(`path ${kind} ${http[key]}`);
  }
  for (const h of http.Header ?? []) {
    const kind = HEADER_KINDS.find((k) => h[k] !== undefined && h[k] !== false);
    parts.push(`header ${h.Name}${kind === "Present" ? " present" : kind ? ` ${kind.toLowerCase()} ${h[kind]}` : ""}`);
  }
  if (parts.length === 1) parts.push("any request");
  return parts.join(" ");
}

// ---------------------------------------------------------------- the list

function intentionRow(intention) {
  const remove = el("button", { type: "button", class: "danger subtle", text: "Delete", testid: "intention-delete" });
  const edit = el("button", { type: "button", class: "subtle", text: "Edit", testid: "intention-edit" });
  const actions = el("td", { class: "actions" }, edit, " ", remove);
  edit.addEventListener("click", () => openForm(intention));
  remove.addEventListener("click", () => {
    // Confirm in place: the second button deletes.
    const confirm = el("button", { type: "button", class: "danger", text: "Confirm delete", testid: "intention-delete-confirm" });
    const cancel = el("button", { type: "button", class: "subtle", text: "Cancel", testid: "intention-delete-cancel" });
    cancel.addEventListener("click", () => {
      confirming = false;
      actions.replaceChildren(edit, " ", remove);
    });
    confirm.addEventListener("click", () => busy(confirm, () => deleteIntention(intention)));
    actions.replaceChildren(confirm, " ", cancel);
    confirming = true;
  });
  const permissions = intention.Permissions ?? [];
  return el(
    "tr",
    {
      testid: "intention-row",
      "data-source": intention.SourceName,
      "data-source-peer": intention.SourcePeer ?? "",
      "data-destination": intention.DestinationName,
    },
    el("td", { class: "name", text: sourceLabel(intention.SourceName, intention.SourcePeer), testid: "intention-source" }),
    el("td", { class: "arrow", text: "→" }),
    el("td", { class: "name", testid: "intention-destination" },
      el("a", { href: `#/services/${encode(intention.DestinationName)}`, text: intention.DestinationName })),
    el(
      "td",
      {},
      badge(actionOf(intention), "intention-action"),
      ...permissions.map((p) => el("div", { class: "permission-line mono", text: describePermission(p), testid: "intention-permission" })),
    ),
    el("td", { class: "num", text: String(intention.Precedence), testid: "intention-precedence" }),
    el("td", { class: "muted", text: intention.Description ?? "", testid: "intention-description" }),
    actions,
  );
}

async function loadList(current) {
  const [intentions, self] = await Promise.all([
    api("GET", "/v1/connect/intentions"),
    api("GET", "/v1/agent/self", undefined, { prompt: false }).catch(() => null),
  ]);
  if (!current()) return;
  defaultPolicy = self?.Isthmus?.DefaultIntentionPolicy ?? null;
  const list = intentions ?? [];
  const table = $("intentions-table");
  if (!confirming) table.tBodies[0].replaceChildren(...list.map(intentionRow));
  $("intentions-default").textContent = defaultPolicy
    ? `A call that no intention matches gets the default intention policy: ${defaultPolicy}.`
    : "A call that no intention matches gets the agent's default intention policy.";
  $("intentions-default").dataset.policy = defaultPolicy ?? "";
  show($("intentions-loading"), false);
  show(table, list.length > 0);
  show($("intentions-empty"), list.length === 0);
}

// ---------------------------------------------------------------- writing the config entry

/** The destination's entry (null when it has none), without its read-only fields. */
async function readEntry(destination) {
  try {
    const entry = await api("GET", entryPath(destination));
    const index = entry.ModifyIndex ?? 0;
    delete entry.CreateIndex;
    delete entry.ModifyIndex;
    return { entry, index };
  } catch (e) {
    if (e.status === 404) return { entry: null, index: 0 };
    throw e;
  }
}

const sameSource = (s, name, peer) => s.Name === name && (s.Peer ?? "") === (peer ?? "");

const CHANGED = "The intentions of this destination changed meanwhile: look at the list and try again.";

async function writeEntry(entry, index) {
  const written = await api("PUT", `/v1/config?cas=${index}`, entry);
  if (written !== true) throw new Error(CHANGED);
}

async function deleteIntention(intention) {
  setActionError(null);
  const destination = intention.DestinationName;
  const label = `${sourceLabel(intention.SourceName, intention.SourcePeer)} → ${destination}`;
  try {
    const { entry, index } = await readEntry(destination);
    const sources = (entry?.Sources ?? []).filter((s) => !sameSource(s, intention.SourceName, intention.SourcePeer));
    if (!entry) throw new Error(`The intention ${label} no longer exists.`);
    if (sources.length === 0) {
      const deleted = await api("DELETE", `${entryPath(destination)}?cas=${index}`);
      if (deleted !== true) throw new Error(CHANGED);
    } else {
      await writeEntry({ ...entry, Sources: sources }, index);
    }
    setNotice(`Intention ${label} deleted.`);
  } catch (e) {
    setActionError(`Could not delete the intention ${label}: ${e.message}`);
  } finally {
    confirming = false;
    refresh();
  }
}

// ---------------------------------------------------------------- the form (create and edit)

const form = $("intention-form");
const fields = {
  source: $("intention-source-name"),
  peer: $("intention-source-peer"),
  destination: $("intention-destination-name"),
  description: $("intention-description-input"),
  type: $("intention-type"),
};
let editing = null; // the intention being edited, or null when creating

function setFormError(message) {
  $("intention-form-error").textContent = message ?? "";
  show($("intention-form-error"), Boolean(message));
}

function permissionEditor(permission = { Action: "allow", HTTP: {} }) {
  const http = permission.HTTP ?? {};
  const pathKind = Object.keys(PATH_KINDS).find((k) => http[PATH_KINDS[k]]) ?? "any";
  const header = (http.Header ?? [])[0] ?? {};
  const headerKind = HEADER_KINDS.find((k) => header[k] !== undefined && header[k] !== false) ?? "Present";
  const select = (testid, options, value, label) =>
    el("select", { testid, ariaLabel: label }, ...options.map(([v, text]) => el("option", { value: v, text, selected: v === value })));
  const input = (testid, value, placeholder, label) =>
    el("input", { type: "text", spellcheck: false, testid, value: value ?? "", placeholder, ariaLabel: label });
  const row = el(
    "div",
    { class: "permission", testid: "permission" },
    select("permission-action", [["allow", "allow"], ["deny", "deny"]], permission.Action, "Action"),
    select("permission-path-kind", [["any", "any path"], ["exact", "path exact"], ["prefix", "path prefix"], ["regex", "path regex"]], pathKind, "Path match"),
    input("permission-path", pathKind === "any" ? "" : http[PATH_KINDS[pathKind]], "/api", "Path"),
    input("permission-methods", (http.Methods ?? []).join(" "), "GET POST (any if empty)", "Methods"),
    input("permission-header-name", header.Name, "header (optional)", "Header name"),
    select("permission-header-kind", HEADER_KINDS.map((k) => [k, k.toLowerCase()]), headerKind, "Header match"),
    input("permission-header-value", headerKind === "Present" ? "" : header[headerKind], "value", "Header value"),
    el("button", { type: "button", class: "icon", text: "×", testid: "permission-remove", ariaLabel: "Remove this permission" }),
  );
  // What the editor does not show (more headers, other matches) is kept as it was.
  row.original = permission;
  row.querySelector('[data-testid="permission-remove"]').addEventListener("click", () => row.remove());
  return row;
}

/** The permission a row describes; the API validates it. */
function permissionFrom(row) {
  const value = (testid) => row.querySelector(`[data-testid="${testid}"]`).value.trim();
  const http = { ...(row.original.HTTP ?? {}) };
  for (const key of [...Object.values(PATH_KINDS), "Methods", "Header"]) delete http[key];
  const pathKind = value("permission-path-kind");
  if (pathKind !== "any") http[PATH_KINDS[pathKind]] = value("permission-path");
  const methods = value("permission-methods").split(/[\s,]+/).filter(Boolean).map((m) => m.toUpperCase());
  if (methods.length) http.Methods = methods;
  const headers = (row.original.HTTP?.Header ?? []).slice(1);
  const headerName = value("permission-header-name");
  if (headerName) {
    const kind = value("permission-header-kind");
    headers.unshift({ Name: headerName, [kind]: kind === "Present" ? true : value("permission-header-value") });
  }
  if (headers.length) http.Header = headers;
  return { ...row.original, Action: value("permission-action"), HTTP: http };
}

function showPermissions() {
  show($("intention-permissions"), fields.type.value === "l7");
}

function openForm(intention = null) {
  editing = intention;
  setFormError(null);
  setActionError(null);
  form.reset();
  fields.source.value = intention?.SourceName ?? "";
  fields.peer.value = intention?.SourcePeer ?? "";
  fields.destination.value = intention?.DestinationName ?? "";
  fields.description.value = intention?.Description ?? "";
  for (const input of [fields.source, fields.peer, fields.destination]) input.disabled = Boolean(intention);
  const permissions = intention?.Permissions ?? [];
  fields.type.value = permissions.length ? "l7" : (intention?.Action ?? "allow");
  $("intention-permission-list").replaceChildren(...(permissions.length ? permissions : [undefined]).map((p) => permissionEditor(p)));
  showPermissions();
  $("intention-form-title").textContent = intention
    ? `Edit ${sourceLabel(intention.SourceName, intention.SourcePeer)} → ${intention.DestinationName}`
    : "New intention";
  $("intention-save").textContent = intention ? "Save" : "Create";
  show(form, true);
  show($("new-intention"), false);
  (intention ? fields.type : fields.source).focus();
}

function closeForm() {
  editing = null;
  show(form, false);
  show($("new-intention"), true);
}

$("new-intention").addEventListener("click", () => openForm());
$("intention-cancel").addEventListener("click", closeForm);
fields.type.addEventListener("change", showPermissions);
$("add-permission").addEventListener("click", () => $("intention-permission-list").append(permissionEditor()));

form.addEventListener("submit", (event) => {
  event.preventDefault();
  setFormError(null);
  const name = fields.source.value.trim();
  const peer = fields.peer.value.trim();
  const destination = fields.destination.value.trim();
  const source = { Name: name };
  if (peer) source.Peer = peer;
  const description = fields.description.value.trim();
  if (description) source.Description = description;
  if (fields.type.value === "l7") {
    source.Permissions = [...$("intention-permission-list").children].map(permissionFrom);
  } else {
    source.Action = fields.type.value;
  }
  busy($("intention-save"), async () => {
    try {
      if (!destination) throw new Error("The destination service is required.");
      const { entry, index } = await readEntry(destination);
      const sources = entry?.Sources ?? [];
      const at = sources.findIndex((s) => sameSource(s, name, peer));
      if (!editing && at >= 0) {
        throw new Error(`An intention from ${sourceLabel(name, peer)} to ${destination} already exists: edit it instead.`);
      }
      if (editing && at < 0) throw new Error(CHANGED);
      // Keep what the form does not show (a legacy ID, Type, ...) on an edited source.
      const next = at >= 0 ? { ...sources[at], ...source } : source;
      if (next.Permissions) delete next.Action;
      else delete next.Permissions;
      if (!description) delete next.Description;
      const updated = at >= 0 ? sources.map((s, i) => (i === at ? next : s)) : [...sources, next];
      const base = entry ?? { Kind: "service-intentions", Name: destination };
      await writeEntry({ ...base, Sources: updated }, index);
      setNotice(`Intention ${sourceLabel(name, peer)} → ${destination} ${editing ? "saved" : "created"}.`);
      closeForm();
      refresh();
    } catch (e) {
      setFormError(e.message);
    }
  });
});

// ---------------------------------------------------------------- "Would X be allowed to call Y?"

const checkForm = $("intention-check-form");
checkForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const source = $("check-source").value.trim();
  const peer = $("check-source-peer").value.trim();
  const destination = $("check-destination").value.trim();
  show($("check-answer"), false);
  busy($("check-submit"), async () => {
    const query = new URLSearchParams({ source, destination });
    if (peer) query.set("source-peer", peer);
    try {
      const answer = await api("GET", `/v1/connect/intentions/check?${query}`);
      const allowed = answer?.Allowed === true;
      const verdict = $("check-verdict");
      verdict.textContent = allowed ? "Allowed" : "Denied";
      verdict.className = `badge ${allowed ? "success" : "critical"}`;
      verdict.dataset.state = allowed ? "allowed" : "denied";
      let reason = answer?.Reason ?? "";
      if (reason === "Default intention policy" && defaultPolicy) {
        reason = `No intention matches: the default intention policy (${defaultPolicy}) decides.`;
      }
      $("check-reason").textContent = reason;
      $("check-question").textContent = `${sourceLabel(source, peer)} → ${destination}:`;
    } catch (e) {
      $("check-verdict").textContent = "Error";
      $("check-verdict").className = "badge warning";
      $("check-verdict").dataset.state = "error";
      $("check-question").textContent = "";
      $("check-reason").textContent = e.message;
    }
    show($("check-answer"), true);
  });
});

// ---------------------------------------------------------------- the page

export const page = {
  name: "intentions",
  match(path) {
    if (path === "/intentions") return { view: "intentions", section: "intentions-view", title: "Intentions" };
    return null;
  },
  enter() {
    confirming = false;
    closeForm();
  },
  load(_route, current) {
    return loadList(current);
  },
};
