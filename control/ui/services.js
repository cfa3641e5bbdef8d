// isthmus web UI: the Services page (#/services). SKELETON: filled by its own change.

import { $ } from "./core.js";

export const page = {
  name: "services",
  match(path) {
    if (path === "/services") return { view: "services", section: "services-view", title: "Services" };
    return null;
  },
  enter() {},
  async load() {
    $("services-loading").hidden = true;
  },
};
