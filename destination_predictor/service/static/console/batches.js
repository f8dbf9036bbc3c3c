/*
 * batches.js — the 批量 cards of the task list: several files started as one
 * batch (POST /api/batch/start) are shown as one card that expands to its tasks.
 *
 * Why: a batch of thirty class exports is one piece of work for the staff who
 * started it; thirty separate cards would bury everything else. The card
 * shows what GET /api/batches says (counts per state, overall progress, each
 * task's status and refusal reason) and offers the batch's own actions: the
 * one zip of every result (a folder per source file) and cancelling the
 * batch. Tasks of a batch are left out of the flat list (tasks.js).
 * Cards live in state.batchCards (batch id -> card), in #batch-cards.
 *
 * Exports: refreshBatches(state) (fetch and render; the task list's poll calls
 * it), anyBatchActive(state).
 */

import { api } from "./api.js";
import { $, clear, h, hideMessage, showMessage } from "./dom.js";
import { formatClock, STATUS_TEXT } from "./format.js";
import { download } from "./results.js";

const BATCH_LIMIT = 10;
const STATE_TEXT = Object.freeze({
  running: "进行中", completed: "全部完成", partial: "部分完成", failed: "全部失败", cancelled: "已取消"
});
const STATE_BADGE = Object.freeze({
  running: "running", completed: "completed", partial: "pending", failed: "failed", cancelled: "failed"
});

export function anyBatchActive(state) {
  return (state.batches || []).some((b) => b.state === "running");
}

export function refreshBatches(state) {
  return api(state, "GET", "/api/batches?limit=" + BATCH_LIMIT).then((data) => {
    state.batches = (data && data.batches) || [];
    render(state);
  }).catch((f) => {
    showMessage($("tasks-message"), "error", "无法获取批量任务：" + f.message, f.code);
  });
}

function render(state) {
  const container = $("batch-cards");
  state.batchCards = state.batchCards || {};
  const seen = {};
  let previous = null;
  state.batches.forEach((batch) => {
    seen[batch.batch_id] = true;
    let card = state.batchCards[batch.batch_id];
    if (!card) {
      card = build(state, batch);
      state.batchCards[batch.batch_id] = card;
    }
    update(card, batch);
    const wanted = previous ? previous.nextSibling : container.firstChild;
    if (wanted !== card.root) { container.insertBefore(card.root, wanted); }
    previous = card.root;
  });
  if (state.batches.length) { $("task-list-placeholder").hidden = true; }
  Object.keys(state.batchCards).forEach((id) => {
    if (!seen[id]) {
      const gone = state.batchCards[id].root;
      if (gone.parentNode) { gone.parentNode.removeChild(gone); }
      delete state.batchCards[id];
    }
  });
}

function build(state, batch) {
  const card = { batch: batch };
  card.badge = h("span", { className: "badge" });
  card.title = h("span", { className: "task-file" });
  card.meta = h("div", { className: "task-meta" });
  card.counts = h("span", { className: "task-message batch-counts" });
  card.barFill = h("div", { className: "progress-fill" });
  card.bar = h("div", { className: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" },
    [card.barFill]);
  card.pct = h("span", { className: "progress-pct" });
  card.message = h("div", { className: "message", hidden: true });
  card.cancel = h("button", { type: "button", className: "btn btn-small btn-danger batch-cancel", text: "取消批量" });
  card.cancel.addEventListener("click", () => cancel(state, card));
  card.zip = h("a", { href: "#", className: "dl batch-zip", text: "下载全部结果（zip，每个文件一个文件夹）", hidden: true });
  card.zip.addEventListener("click", (ev) => {
    ev.preventDefault();
    download(state, "/api/batch/result/" + encodeURIComponent(card.batch.batch_id),
      "batch_" + card.batch.batch_id + "_results.zip", card.message);
  });
  card.rows = h("tbody");
  card.details = h("details", { className: "batch-tasks" }, [
    h("summary", { text: "展开各文件的任务" }),
    h("table", { className: "batch-table" }, [
      h("thead", null, [h("tr", null, ["文件", "状态", "进度", "说明"].map((t) => h("th", { text: t })))]),
      card.rows
    ])
  ]);
  card.root = h("article", { className: "task batch", "data-batch-id": batch.batch_id }, [
    h("div", { className: "task-head" }, [h("div", { className: "task-title" }, [card.badge, card.title]), card.cancel]),
    card.meta,
    h("div", { className: "progress-row" }, [card.bar, card.pct]),
    h("div", { className: "task-status-line" }, [card.counts]),
    card.zip,
    card.message,
    card.details
  ]);
  return card;
}

function countsText(counts) {
  const parts = [];
  [["completed", "完成"], ["running", "运行中"], ["pending", "等待中"], ["failed", "失败"], ["cancelled", "已取消"]]
    .forEach((pair) => { if (counts[pair[0]]) { parts.push(pair[1] + " " + counts[pair[0]]); } });
  return parts.join(" · ");
}

function update(card, batch) {
  card.batch = batch;
  card.root.setAttribute("data-state", batch.state);
  card.badge.textContent = STATE_TEXT[batch.state] || batch.state;
  card.badge.className = "badge badge-" + (STATE_BADGE[batch.state] || "pending");
  card.title.textContent = "批量预测 · " + batch.total + " 个文件";
  const meta = [];
  if (batch.year) { meta.push(batch.year + " 级"); }
  meta.push(batch.major ? batch.major : "全部专业");
  meta.push("创建于 " + formatClock(batch.created_at));
  if (batch.finished_at) { meta.push("结束于 " + formatClock(batch.finished_at)); }
  meta.push("批量编号 " + String(batch.batch_id).slice(0, 8));
  card.meta.textContent = meta.join(" · ");
  const pct = Math.max(0, Math.min(100, Number(batch.progress) || 0));
  card.barFill.style.width = pct + "%";
  card.bar.setAttribute("aria-valuenow", String(pct));
  card.bar.className = "progress progress-" + (STATE_BADGE[batch.state] || "running");
  card.pct.textContent = pct + "%";
  card.counts.textContent = countsText(batch.counts || {});
  card.cancel.hidden = batch.state !== "running" || !!batch.cancel_requested;
  card.zip.hidden = batch.state === "running" || !(batch.counts && batch.counts.completed);
  clear(card.rows);
  (batch.tasks || []).forEach((t) => {
    const status = t.cancelled ? "已取消" : (STATUS_TEXT[t.status] || t.status);
    const note = t.status === "failed" && !t.cancelled ? (t.error || "") : (t.message || "");
    card.rows.appendChild(h("tr", { "data-status": t.status, "data-task-id": t.id || "" }, [
      h("td", { text: t.source_file || t.file_name || "" }),
      h("td", null, [h("span", { className: "badge badge-" + (t.cancelled ? "failed" : t.status), text: status })]),
      h("td", { text: (Number(t.progress) || 0) + "%" }),
      h("td", { className: t.status === "failed" && !t.cancelled ? "batch-error" : "", text: note })
    ]));
  });
}

function cancel(state, card) {
  if (!window.confirm("确定取消这一批中尚未结束的任务吗？")) { return; }
  card.cancel.disabled = true;
  hideMessage(card.message);
  api(state, "POST", "/api/batch/" + encodeURIComponent(card.batch.batch_id) + "/cancel").then((data) => {
    showMessage(card.message, "info", (data && data.message) || "已取消");
    return refreshBatches(state);
  }).catch((f) => {
    showMessage(card.message, "error", "取消失败：" + f.message, f.code);
  }).then(() => { card.cancel.disabled = false; });
}
