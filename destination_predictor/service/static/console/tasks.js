/*
 * tasks.js — the 任务列表: rendering, polling and cancelling tasks.
 *
 * Why: the list is the page's only polling loop (every 3 s while a task is
 * pending or running, stopped otherwise) and keeps one card per task, updated
 * in place so open results, charts and import answers survive each refresh.
 * Cards live in state.cards (task id -> card) and, in list order, in
 * #task-cards, which holds nothing else; the sorted list is in state.tasks.
 *
 * Exports: refreshTasks(state) (fetch the list, render it, schedule the next
 * poll).
 */

import { api } from "./api.js";
import { anyBatchActive, refreshBatches } from "./batches.js";
import { $, h, hideMessage, showMessage } from "./dom.js";
import { elapsedText, formatClock, isActive, parseTime, STATUS_TEXT } from "./format.js";
import { refreshMonitor } from "./monitor.js";
import { buildResults } from "./results.js";

const POLL_MS = 3000;          // the guide's promise: status every 3 s while work is active
const TASK_LIMIT = 30;

/* ---------- polling ----------------------------------------------------------- */

function anyActive(state) {
  return state.tasks.some((t) => isActive(t.status)) || anyBatchActive(state);
}

function schedulePoll(state) {
  if (state.pollTimer) { clearTimeout(state.pollTimer); state.pollTimer = null; }
  const active = anyActive(state);
  $("poll-state").textContent = active ? "每 3 秒自动刷新" : "没有进行中的任务，已暂停自动刷新";
  if (active) { state.pollTimer = setTimeout(() => refreshTasks(state), POLL_MS); }
  if (active && !state.tickTimer) { state.tickTimer = setInterval(() => tickElapsed(state), 1000); }
  if (!active && state.tickTimer) { clearInterval(state.tickTimer); state.tickTimer = null; }
}

/*
 * One request at a time. A refresh asked for while one is in flight (a task
 * just started during a poll) is not dropped: the in-flight answer may predate
 * the new task, so the list is fetched once more right after it.
 */
export function refreshTasks(state) {
  if (state.pollTimer) { clearTimeout(state.pollTimer); state.pollTimer = null; }
  if (state.loadingTasks) {
    state.tasksAgain = true;
    return state.loadingTasks;
  }
  const run = api(state, "GET", "/api/tasks?limit=" + TASK_LIMIT).then((data) => {
    const list = Array.isArray(data) ? data : (data && data.tasks) || [];
    hideMessage($("tasks-message"));
    // A batch's tasks are shown in its own card (batches.js), not one by one.
    renderTasks(state, list.filter((t) => !t.batch_id));
    return refreshBatches(state);
  }).catch((f) => {
    showMessage($("tasks-message"), "error", "无法获取任务列表：" + f.message, f.code);
    if (!state.tasks.length) { $("task-list-placeholder").textContent = "任务列表暂时无法加载，可点击“刷新状态”重试。"; }
  }).then(() => {
    state.loadingTasks = null;
    if (state.tasksAgain) {
      state.tasksAgain = false;
      return refreshTasks(state);
    }
    schedulePoll(state);
    return undefined;
  });
  state.loadingTasks = run;
  return run;
}

function tickElapsed(state) {
  state.tasks.forEach((t) => {
    const card = state.cards[t.id];
    if (card && isActive(t.status)) { card.elapsed.textContent = elapsedText(t); }
  });
}

/* ---------- the list ------------------------------------------------------------ */

function sortNewestFirst(list) {
  return list.slice().sort((a, b) => {
    const ta = parseTime(a.created_at) || 0;
    const tb = parseTime(b.created_at) || 0;
    return tb - ta;
  });
}

const EMPTY_TEXT = "暂无任务。选择成绩文件并启动预测后，任务会显示在这里。";

function dropVanished(state, seen) {
  Object.keys(state.cards).forEach((id) => {
    if (!seen[id]) {
      const gone = state.cards[id].root;
      if (gone.parentNode) { gone.parentNode.removeChild(gone); }
      delete state.cards[id];
    }
  });
}

/*
 * One card's update; a failure there (a task shape this page does not know)
 * is said on that card and must not take the whole list down with it.
 */
function updateOne(state, card, task, newestCompleted) {
  try {
    updateCard(state, card, task, newestCompleted);
  } catch (e) {
    console.error(e);
    showMessage(card.error, "error", "该任务的部分信息无法显示：" + (e && e.message ? e.message : String(e)));
  }
}

/*
 * Keyed by task id: #task-cards holds only the cards (state.cards[id].root),
 * in list order; the placeholder is its own element beside them
 * (#task-list-placeholder), shown only while the list is empty.
 */
function renderTasks(state, list) {
  const container = $("task-cards");
  const placeholder = $("task-list-placeholder");
  const tasks = sortNewestFirst(list);
  state.tasks = tasks;
  placeholder.textContent = EMPTY_TEXT;
  placeholder.hidden = tasks.length > 0;
  const seen = {};
  let changed = false;
  let firstCompleted = true;
  let previous = null;
  tasks.forEach((task) => {
    seen[task.id] = true;
    let card = state.cards[task.id];
    if (!card) {
      card = buildCard(state, task);
      state.cards[task.id] = card;
    }
    if (card.status !== task.status) { changed = true; }
    const newestCompleted = task.status === "completed" && firstCompleted;
    if (task.status === "completed") { firstCompleted = false; }
    updateOne(state, card, task, newestCompleted);
    const wanted = previous ? previous.nextSibling : container.firstChild;
    if (wanted !== card.root) { container.insertBefore(card.root, wanted); }
    previous = card.root;
  });
  dropVanished(state, seen);
  // A task started or finished: the monitoring panel's counts changed too.
  if (changed && state.firstListDone) { refreshMonitor(state); }
  state.firstListDone = true;
}

/* ---------- one card ------------------------------------------------------------ */

function buildCard(state, task) {
  const card = { status: null, resultsBuilt: false, task: task };
  card.name = h("span", { className: "task-file" });
  card.badge = h("span", { className: "badge" });
  card.demo = h("span", {
    className: "tag tag-demo", text: "演示模型", hidden: true,
    title: "由自带的演示模型（合成数据训练）预测，结果不代表真实学生"
  });
  card.meta = h("div", { className: "task-meta" });
  card.cancel = h("button", { type: "button", className: "btn btn-small btn-danger", text: "取消任务" });
  card.cancel.addEventListener("click", () => { cancelTask(state, card); });
  card.barFill = h("div", { className: "progress-fill" });
  card.bar = h("div", {
    className: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100"
  }, [card.barFill]);
  card.pct = h("span", { className: "progress-pct" });
  card.message = h("span", { className: "task-message" });
  card.elapsed = h("span", { className: "task-elapsed" });
  card.error = h("div", { className: "message message-error", hidden: true });
  card.note = h("div", { className: "message message-info", hidden: true });
  card.results = h("div", { className: "task-results", hidden: true });
  card.root = h("article", { className: "task", "data-task-id": task.id }, [
    h("div", { className: "task-head" }, [
      h("div", { className: "task-title" }, [card.badge, card.name, card.demo]),
      card.cancel
    ]),
    card.meta,
    h("div", { className: "progress-row" }, [card.bar, card.pct]),
    h("div", { className: "task-status-line" }, [card.message, card.elapsed]),
    card.note,
    card.error,
    card.results
  ]);
  return card;
}

function metaText(task) {
  const bits = [];
  if (task.year) { bits.push(task.year + " 级"); }
  bits.push(task.major ? task.major : "全部专业");
  if (task.priority === "high") { bits.push("高优先级"); }
  if (task.schedule_id) { bits.push("定时任务启动"); }
  bits.push("创建于 " + formatClock(task.created_at));
  if (task.status === "pending" && task.queue_position) { bits.push("排队第 " + task.queue_position + " 位"); }
  if (task.model_version) { bits.push("模型 " + task.model_version); }
  bits.push("编号 " + String(task.id).slice(0, 8));
  return bits.join(" · ");
}

function updateHead(card, task) {
  card.root.setAttribute("data-status", task.status);
  card.name.textContent = task.file_name || task.id;
  card.name.title = task.file_name || "";
  card.badge.textContent = STATUS_TEXT[task.status] || task.status;
  card.badge.className = "badge badge-" + task.status;
  card.demo.hidden = !task.demo_model;
  card.meta.textContent = metaText(task);
}

function updateProgress(card, task) {
  const progress = Math.max(0, Math.min(100, Number(task.progress) || 0));
  card.barFill.style.width = progress + "%";
  card.bar.setAttribute("aria-valuenow", String(progress));
  card.bar.className = "progress progress-" + task.status;
  card.pct.textContent = progress + "%";
  card.message.textContent = task.message || "";
  card.elapsed.textContent = elapsedText(task);
  card.cancel.hidden = !isActive(task.status) || !!task.cancel_requested;
}

function updateNotes(card, task) {
  if (task.status === "failed" && task.error && !task.cancelled) {
    showMessage(card.error, "error", (task.cancelled ? "" : "任务失败：") + task.error,
      task.error_code || null);
  } else {
    hideMessage(card.error);
  }
  if (task.status === "completed" && task.cached) {
    showMessage(card.note, "info", "相同文件、年级和参数的结果已存在，直接复用了缓存结果");
  } else {
    hideMessage(card.note);
  }
}

/*
 * Results open by themselves when the operator is there to see them: a task
 * that completed while the page watched, one that appeared already completed
 * (a cache hit), and on first load the newest completed task.
 */
function updateCard(state, card, task, newestCompleted) {
  const previous = card.status;
  const justCompleted = task.status === "completed" && (previous === null ?
    (state.firstListDone || newestCompleted) : previous !== "completed");
  card.task = task;
  card.status = task.status;
  updateHead(card, task);
  updateProgress(card, task);
  updateNotes(card, task);
  if (task.status === "completed" && (!card.resultsBuilt || card.expired !== !!task.expired)) {
    buildResults(state, card, task, justCompleted);
  }
  card.results.hidden = task.status !== "completed";
}

function cancelTask(state, card) {
  const task = card.task;
  if (!window.confirm("确定取消任务“" + (task.file_name || task.id) + "”吗？")) { return; }
  card.cancel.disabled = true;
  api(state, "POST", "/api/task/" + encodeURIComponent(task.id) + "/cancel").then(() => {
    showMessage(card.note, "info", "已请求取消任务");
    refreshTasks(state);
    refreshMonitor(state);
  }).catch((f) => {
    showMessage(card.error, "error", "取消失败：" + f.message, f.code);
  }).then(() => { card.cancel.disabled = false; });
}
