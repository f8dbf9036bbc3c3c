/*
 * schedules.js — scheduled runs (定时任务), at /schedules.
 *
 * Why: an administrator sets up "every weekday at 7:00, predict the newest
 * export in this folder" once and then only checks that it ran. The page
 * creates, pauses, resumes and deletes schedules and shows, per schedule, the
 * next run and its run history (started with its task, skipped because there
 * was nothing new, failed with the reason, missed while the service was down),
 * all from /api/schedules; the rules (cron, the source folder under the
 * configured root) are the server's and its Chinese refusals are shown as they are.
 *
 * Exports nothing; runs on load.
 */

import { api, readToken } from "./api.js";
import { $, clear, h, showMessage } from "./dom.js";

const state = { token: readToken(), majors: {}, open: {} };
const RUN_TEXT = Object.freeze({
  started: "已启动", skipped: "跳过", failed: "失败", missed: "错过", claimed: "运行中"
});
const REFRESH_MS = 30000;

function when(iso) { return iso ? iso.replace("T", " ").slice(0, 16) : "—"; }

function runLine(run) {
  if (!run) { return "尚未运行"; }
  const bits = [when(run.scheduled_for), RUN_TEXT[run.status] || run.status];
  if (run.file_name) { bits.push(run.file_name); }
  return bits.join(" · ");
}

function historyRow(schedule) {
  const rows = schedule.runs.map((r) => h("tr", { "data-run-status": r.status }, [
    h("td", { text: when(r.scheduled_for) }),
    h("td", { text: RUN_TEXT[r.status] || r.status }),
    h("td", { text: r.file_name || "—" }),
    h("td", { text: r.task_id ? r.task_id.slice(0, 8) : "—" }),
    h("td", { text: (r.message || "") + (r.code ? "（" + r.code + "）" : "") })
  ]));
  if (!rows.length) { rows.push(h("tr", null, [h("td", { colspan: "5", className: "muted", text: "还没有运行记录" })])); }
  const table = h("table", { className: "plans-table runs-table" }, [
    h("thead", null, [h("tr", null, ["计划时间", "结果", "文件", "任务", "说明"].map((t) => h("th", { text: t })))]),
    h("tbody", null, rows)
  ]);
  return h("tr", { className: "versions" }, [h("td", { colspan: "8" }, [table])]);
}

function scheduleRow(schedule) {
  const id = schedule.schedule_id;
  const actions = h("div", { className: "plan-actions" }, [
    h("button", { type: "button", className: "btn btn-small", "data-history": id,
      text: state.open[id] ? "收起记录" : "运行记录",
      onclick: () => { state.open[id] = !state.open[id]; load(); } }),
    h("button", { type: "button", className: "btn btn-small", "data-toggle": id,
      text: schedule.paused ? "恢复" : "暂停",
      onclick: () => change("POST", id, schedule.paused ? "/resume" : "/pause") }),
    h("button", { type: "button", className: "btn btn-small btn-danger", "data-delete": id, text: "删除",
      onclick: () => {
        if (window.confirm("确定删除定时任务“" + schedule.name + "”及其运行记录吗？")) { change("DELETE", id, ""); }
      } })
  ]);
  return h("tr", { "data-schedule-id": id }, [
    h("td", { text: schedule.name }),
    h("td", null, [h("code", { text: schedule.cron }), " ", h("span", { className: "muted small", text: schedule.timezone })]),
    h("td", { text: schedule.year + " 级 · " + (schedule.major || "全部专业") }),
    h("td", { className: "small", text: schedule.source_dir }),
    h("td", { className: "schedule-state", text: schedule.paused ? "已暂停" : "启用" }),
    h("td", { className: "next-run", text: schedule.paused ? "—" : when(schedule.next_run_at) }),
    h("td", { className: "small", text: runLine(schedule.runs[0]) }),
    h("td", null, [actions])
  ]);
}

function render(schedules) {
  const body = $("schedules-body");
  clear(body);
  if (!schedules.length) {
    body.appendChild(h("tr", null, [h("td", { colspan: "8", className: "muted", text: "还没有定时任务" })]));
    return;
  }
  schedules.forEach((s) => {
    body.appendChild(scheduleRow(s));
    if (state.open[s.schedule_id]) { body.appendChild(historyRow(s)); }
  });
}

function load() {
  return api(state, "GET", "/api/schedules").then((data) => {
    render(data.schedules || []);
  }).catch((f) => showMessage($("list-message"), "error", "无法加载定时任务：" + f.message, f.code));
}

function change(method, id, suffix) {
  api(state, method, "/api/schedules/" + encodeURIComponent(id) + suffix).then((data) => {
    showMessage($("list-message"), "success", (data && data.message) || "已更新");
    return load();
  }).catch((f) => showMessage($("list-message"), "error", "操作失败：" + f.message, f.code));
}

function fillMajors() {
  const sel = $("schedule-major");
  clear(sel);
  sel.appendChild(h("option", { value: "", text: "全部专业" }));
  (state.majors[$("schedule-year").value] || []).forEach((m) => {
    sel.appendChild(h("option", { value: m.name, text: m.code ? m.name + "（" + m.code + "）" : m.name }));
  });
}

function loadMajors() {
  return api(state, "GET", "/api/majors").then((data) => {
    state.majors = (data && data.majors) || {};
    const sel = $("schedule-year");
    clear(sel);
    Object.keys(state.majors).sort().reverse().forEach((y) => sel.appendChild(h("option", { value: y, text: y + " 级" })));
    fillMajors();
  }).catch((f) => showMessage($("schedule-message"), "error", "无法加载年级：" + f.message, f.code));
}

function onCreate(ev) {
  ev.preventDefault();
  const body = {
    name: $("schedule-name").value.trim() || null,
    cron: $("schedule-cron").value.trim(),
    year: $("schedule-year").value,
    major: $("schedule-major").value || null,
    source_dir: $("schedule-source").value.trim(),
    timezone: $("schedule-timezone").value.trim() || null
  };
  const button = $("schedule-create");
  button.disabled = true;
  api(state, "POST", "/api/schedules", { body: JSON.stringify(body), contentType: "application/json" }).then((data) => {
    showMessage($("schedule-message"), "success", data.message + "，下次运行 " + when(data.schedule.next_run_at));
    return load();
  }).catch((f) => {
    showMessage($("schedule-message"), "error", "未能创建：" + f.message, f.code);
  }).then(() => { button.disabled = false; });
}

function init() {
  $("schedule-form").addEventListener("submit", onCreate);
  $("schedule-year").addEventListener("change", fillMajors);
  loadMajors().then(load);
  setInterval(load, REFRESH_MS);
}

if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); }
else { init(); }
