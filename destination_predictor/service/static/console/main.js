/*
 * main.js — the console's entry point: the one module with effects at load.
 *
 * Why: the page is native ES modules served by the service itself, with no
 * library and no build step, so it works straight from the package and makes
 * no request outside this service (the page's CSP, script-src 'self', allows
 * exactly that). This module creates the page's only mutable state — the
 * `state` object below — and passes it explicitly to every function that
 * needs it, wires the page's controls and starts the first loads.
 *
 * Exports: nothing.
 */

import { readToken } from "./api.js";
import { refreshDeliveries } from "./deliveries.js";
import { $ } from "./dom.js";
import { loadHealth, refreshMonitor } from "./monitor.js";
import { loadMajors, setupStartForm } from "./start.js";
import { refreshTasks } from "./tasks.js";

const state = {
  token: readToken(),
  majors: null,            // year -> [{name, code}], from /api/majors
  tasks: [],               // the task list, newest first
  cards: {},               // task id -> {root, parts..., status, resultsBuilt}
  maxUploadMb: null,
  importEnabled: false,
  pollTimer: null,
  tickTimer: null,
  monitorTimer: null,
  deliveriesTimer: null,   // the 完成通知 section's next refresh
  loadingTasks: null,       // the task-list request in flight, if any
  tasksAgain: false,       // a refresh was asked for meanwhile: fetch once more after it
  checkSeq: 0,             // numbers the file checks; only the latest one's answer is shown
  tokenPrompt: null,       // pending promise while the token form is open
  firstListDone: false
};

function init() {
  setupStartForm(state);
  $("refresh-button").addEventListener("click", () => {
    refreshTasks(state);
    refreshMonitor(state);
    refreshDeliveries(state);
    loadHealth(state);
  });
  loadHealth(state);
  // Sequential on purpose: with a token required the first call opens the
  // token form and the others then reuse the token instead of asking again.
  loadMajors(state).then(() => refreshTasks(state)).then(() => refreshMonitor(state))
    .then(() => refreshDeliveries(state));
}

if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); }
else { init(); }
