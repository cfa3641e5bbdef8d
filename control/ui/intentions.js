// isthmus web UI: the Intentions page (#/intentions). SKELETON: filled by its own change.

import { $ } from "./core.js";

export const page = {
  name: "intentions",
  match(path) {
    if (path === "/intentions") return { view: "intentions", section: "intentions-view", title: "Intentions" };
    return null;
  },
  enter() {},
  async load() {
    $("intentions-loading").hidden = true;
  },
};
