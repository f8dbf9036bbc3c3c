/*
 * monitor.js — the 监控面板 and the service facts shown around the page.
 *
 * Why: GET /api/monitor (every 5 s) and GET /health describe the service, not
 * one task: counts, limits, recent work, disk use, the model version, the
 * upload size limit, whether the bundled demo model is loaded (the banner at
 * the top) and whether database import is configured. This module
 * renders the panel and copies those facts into state (maxUploadMb,
 * importEnabled) and the page.
 *
 * Exports: refreshMonitor(state) (fetch, render, re-arm the 5 s timer),
 * loadHealth(state) (the health badge), applyServiceInfo(state, data).
 */

import { api } from "./api.js";
import { $, clear, codeNote, h, showMessage } from "./dom.js";
import { formatBytes, formatClock, formatDuration, STATUS_TEXT } from "./format.js";
import { updateImportVisibility } from "./results.js";

const MONITOR_MS = 5000;

/* ---------- service facts (from /health or /api/monitor) ------------------- */

function setHealthBadge(ok, text) {
  const badge = $("health-badge");
  badge.textContent = text;
  badge.className = "pill " + (ok ? "pill-ok" : "pill-bad");
}

export function loadHealth(state) {
  return fetch("/health", { cache: "no-store" }).then((resp) => resp.json().then((body) => {
    const data = body && typeof body.success === "boolean" ? body.data : body;
    const ok = resp.ok && data && (data.status === "ok" || data.status === "healthy");
    setHealthBadge(ok, ok ? "服务正常" : "服务异常");
    if (data) { applyServiceInfo(state, data); }
  })).catch(() => {
    setHealthBadge(false, "无法连接服务");
  });
}

function importEnabledOf(data) {
  let imp = data.import_enabled;
  if (imp === undefined && data.database_configured !== undefined) { imp = data.database_configured; }
  if (imp === undefined && data["import"] && typeof data["import"] === "object") { imp = data["import"].enabled; }
  return imp;
}

/* Facts about the service that /health or /api/monitor may carry. */
export function applyServiceInfo(state, data) {
  // The bundled demo model (trained on synthetic data) predicts nobody real:
  // said at the top of the page for as long as the service says so.
  if (typeof data.demo_model === "boolean") { $("demo-banner").hidden = !data.demo_model; }
  const version = data.model_version || (data.model && data.model.version);
  if (version) { $("model-version").textContent = "模型版本 " + version; }
  const limit = data.max_upload_mb || (data.limits && data.limits.max_upload_mb);
  if (limit) {
    state.maxUploadMb = Number(limit);
    $("file-hint").textContent = "仅限 .xlsx 或 .xls，最大 " + state.maxUploadMb + " MB";
  }
  const imp = importEnabledOf(data);
  if (typeof imp === "boolean" && imp !== state.importEnabled) {
    state.importEnabled = imp;
    Object.keys(state.cards).forEach((id) => { updateImportVisibility(state, state.cards[id]); });
  }
}

/* ---------- the panel -------------------------------------------------------- */

export function refreshMonitor(state) {
  if (state.monitorTimer) { clearTimeout(state.monitorTimer); state.monitorTimer = null; }
  return api(state, "GET", "/api/monitor").then((data) => {
    applyServiceInfo(state, data);
    renderMonitor(data);
  }).catch((f) => {
    const body = $("monitor-body");
    clear(body);
    const m = h("div");
    showMessage(m, "error", "无法获取监控数据：" + f.message, f.code);
    body.appendChild(m);
  }).then(() => {
    // Two refreshes may overlap (a manual one during the timed one): keep one timer.
    if (state.monitorTimer) { clearTimeout(state.monitorTimer); }
    state.monitorTimer = setTimeout(() => refreshMonitor(state), MONITOR_MS);
  });
}

function stat(label, value, extra) {
  return h("div", { className: "stat " + (extra || "") }, [
    h("div", { className: "stat-value", text: value }),
    h("div", { className: "stat-label", text: label })
  ]);
}

function orDash(v) { return String(v !== undefined ? v : "—"); }

function monitorStats(d, w) {
  return h("div", { className: "stats" }, [
    stat("运行中", orDash(w.running), w.running ? "stat-active" : ""),
    stat("等待中", orDash(w.pending)),
    stat("并发上限", orDash(w.max)),
    stat("运行时长", formatDuration(d.uptime_s))
  ]);
}

function monitorFacts(d, w, disk) {
  const facts = h("dl", { className: "facts" });
  const fact = (k, v) => { facts.appendChild(h("dt", { text: k })); facts.appendChild(h("dd", { text: v })); };
  fact("模型版本", d.model_version || "—");
  fact("上传目录", formatBytes(disk.uploads_bytes) + "（" + (disk.uploads_files || 0) + " 个文件）");
  fact("结果目录", formatBytes(disk.results_bytes) + "（" + (disk.results_files || 0) + " 个文件）");
  if (disk.free_bytes !== undefined) { fact("磁盘剩余", formatBytes(disk.free_bytes)); }
  if (w.max_pending !== undefined) { fact("排队上限", String(w.max_pending)); }
  if (d.counts) {
    fact("累计任务", "已完成 " + (d.counts.completed || 0) + " · 失败 " + (d.counts.failed || 0));
  }
  fact("数据库导入", d.import_enabled ? "已配置" : "未配置");
  return facts;
}

function recentTable(recent) {
  const tb = h("tbody");
  recent.forEach((t) => {
    tb.appendChild(h("tr", null, [
      h("td", { className: "ellipsis", title: t.file_name || "", text: t.file_name || t.id }),
      h("td", null, [h("span", { className: "badge badge-" + t.status, text: STATUS_TEXT[t.status] || t.status })]),
      h("td", { className: "num", text: t.duration_s !== null && t.duration_s !== undefined ? formatDuration(t.duration_s) : "—" })
    ]));
  });
  return h("table", { className: "mini-table" }, [
    h("thead", null, [h("tr", null, [h("th", { text: "文件" }), h("th", { text: "状态" }), h("th", { text: "用时" })])]),
    tb
  ]);
}

const NODE_STATE = { idle: "空闲", busy: "运行中", started: "启动中", suspended: "已暂停" };

function nodesTable(nodes) {
  const tb = h("tbody");
  nodes.forEach((n) => {
    tb.appendChild(h("tr", { className: "node" }, [
      h("td", { className: "ellipsis", title: n.name || "", text: (n.hostname || "?") + " · " + orDash(n.pid) }),
      h("td", { text: NODE_STATE[n.state] || n.state }),
      h("td", { className: "ellipsis", title: n.task_id || "", text: n.task_id ? n.task_id.slice(0, 8) : "—" })
    ]));
  });
  return h("table", { className: "mini-table nodes" }, [
    h("thead", null, [h("tr", null, [h("th", { text: "主机 · 进程" }), h("th", { text: "状态" }), h("th", { text: "任务" })])]),
    tb
  ]);
}

function failuresList(failures) {
  const ul = h("ul", { className: "failures" });
  failures.forEach((f) => {
    ul.appendChild(h("li", null, [
      h("span", { className: "muted small", text: formatClock(f.finished_at) + " " }),
      h("strong", { text: (f.file_name || f.id) + "：" }),
      h("span", { text: f.error || "未知错误" }),
      f.error_code ? codeNote(f.error_code) : null
    ]));
  });
  return ul;
}

function renderMonitor(d) {
  const body = $("monitor-body");
  clear(body);
  const w = d.workers || {};
  const disk = d.disk || {};
  body.appendChild(monitorStats(d, w));
  body.appendChild(monitorFacts(d, w, disk));

  // Distributed mode: the RQ workers of every machine, as the service sees them.
  if (Array.isArray(w.nodes)) {
    body.appendChild(h("h3", { text: "执行机器（" + w.nodes.length + " 个 worker）" }));
    body.appendChild(w.nodes.length ? nodesTable(w.nodes) :
      h("p", { className: "muted small", text: "没有活着的 worker：任务会排队等待" }));
  }

  const recent = d.recent_tasks || [];
  body.appendChild(h("h3", { text: "最近任务" }));
  body.appendChild(recent.length ? recentTable(recent) : h("p", { className: "muted small", text: "暂无任务" }));

  const failures = d.recent_failures || [];
  body.appendChild(h("h3", { text: "最近失败" }));
  body.appendChild(failures.length ? failuresList(failures) :
    h("p", { className: "muted small", text: "最近没有失败的任务" }));
  $("monitor-updated").textContent = "更新于 " + formatClock(new Date().toISOString()) + "，每 5 秒自动刷新";
}
