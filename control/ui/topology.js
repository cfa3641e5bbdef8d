// isthmus web UI: the Topology page (#/topology). SKELETON: filled by its own change.

import { $ } from "./core.js";

export const page = {
  name: "topology",
  match(path) {
    if (path === "/topology") return { view: "topology", section: "topology-view", title: "Topology" };
    return null;
  },
  enter() {},
  async load() {
    $("topology-loading").hidden = true;
  },
};
