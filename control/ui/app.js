// isthmus web UI: the router.
//
// Routes on the URL fragment. Each page module exports a `page` object:
//   name        the page's name (its nav link is `nav-<name>`)
//   match(path) the route for a fragment path such as "/peers/x", or null;
//               a route is `{ view, section, title, ...params }`, where
//               `section` is the id of the <section> to show
//   enter(route)          called when the route changes (reset the view)
//   load(route, current)  loads the data; `current()` turns false once a
//                         newer load has started (drop stale answers)
// The router shows the route's section, loads it now and every POLL_MS.

import {
  $,
  POLL_MS,
  allowTokenPrompt,
  api,
  askForToken,
  setPageError,
  setRouter,
  show,
  storeToken,
  tokenIsSet,
  updateTokenButton,
} from "./core.js";
import { page as peers } from "./peers.js";
import { page as services } from "./services.js";
import { page as intentions } from "./intentions.js";
import { page as topology } from "./topology.js";

const PAGES = [services, intentions, topology, peers];
const DEFAULT_FRAGMENT = "#/peers";

let route = null;
let generation = 0;
let pollTimer;

function parseRoute() {
  const path = location.hash.replace(/^#/, "");
  for (const page of PAGES) {
    const found = page.match(path);
    if (found) return { ...found, page };
  }
  history.replaceState(null, "", DEFAULT_FRAGMENT);
  return { ...peers.match("/peers"), page: peers };
}

function onRoute() {
  route = parseRoute();
  setPageError(null);
  for (const section of document.querySelectorAll("main > section")) {
    show(section, section.id === route.section);
  }
  for (const link of document.querySelectorAll(".sidenav a")) {
    link.classList.toggle("active", link.dataset.testid === `nav-${route.page.name}`);
  }
  route.page.enter(route);
  document.title = `${route.title} · isthmus`;
  refresh();
}

/** Loads the current view now, then every POLL_MS; a newer call supersedes. */
async function refresh() {
  clearTimeout(pollTimer);
  const mine = ++generation;
  const current = () => mine === generation;
  if (!clusterKnown) loadClusterName();
  try {
    await route.page.load(route, current);
    if (current()) setPageError(null);
  } catch (e) {
    if (current()) setPageError(e.message);
  } finally {
    if (current()) pollTimer = setTimeout(refresh, POLL_MS);
  }
}

setRouter(refresh, () => route);

// ---------------------------------------------------------------- the top bar

updateTokenButton();
$("token-button").addEventListener("click", async () => {
  if (tokenIsSet()) {
    storeToken("");
  } else {
    allowTokenPrompt();
    await askForToken("Enter an ACL token to use for this browser session.");
  }
  refresh();
});

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
