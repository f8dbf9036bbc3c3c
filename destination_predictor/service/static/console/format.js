/*
 * format.js — how the page writes times, durations, sizes and task states.
 *
 * Why: the task list, the results and the monitoring panel all show the same
 * kinds of values, and must show them the same way. Pure functions only.
 *
 * Exports: STATUS_TEXT (status -> Chinese name), isActive (pending/running),
 * parseTime, formatClock, formatDuration, formatBytes, elapsedText.
 */

export const STATUS_TEXT = Object.freeze({ pending: "等待中", running: "运行中", completed: "已完成", failed: "失败" });
const ACTIVE = Object.freeze({ pending: true, running: true });

export function isActive(status) { return !!ACTIVE[status]; }

export function parseTime(iso) {
  if (!iso) { return null; }
  const t = Date.parse(iso);
  return isNaN(t) ? null : t;
}

function pad(n) { return n < 10 ? "0" + n : String(n); }

export function formatClock(iso) {
  const t = parseTime(iso);
  if (t === null) { return "—"; }
  const d = new Date(t);
  return pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" +
    pad(d.getMinutes()) + ":" + pad(d.getSeconds());
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) { return "—"; }
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) { return s + " 秒"; }
  const m = Math.floor(s / 60);
  if (m < 60) { return m + " 分 " + pad(s % 60) + " 秒"; }
  return Math.floor(m / 60) + " 小时 " + pad(m % 60) + " 分";
}

export function formatBytes(n) {
  if (n === null || n === undefined || !isFinite(n)) { return "—"; }
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(v) : v.toFixed(v >= 100 ? 0 : 1)) + " " + units[i];
}

/* Elapsed time of a task as the operator thinks of it. */
export function elapsedText(task) {
  const now = Date.now();
  const created = parseTime(task.created_at);
  const started = parseTime(task.started_at);
  const finished = parseTime(task.finished_at);
  if (task.status === "pending") {
    return created === null ? "排队中" : "已等待 " + formatDuration((now - created) / 1000);
  }
  if (task.status === "running") {
    return started === null ? "运行中" : "已运行 " + formatDuration((now - started) / 1000);
  }
  if (typeof task.duration_s === "number") { return "用时 " + formatDuration(task.duration_s); }
  if (started !== null && finished !== null) { return "用时 " + formatDuration((finished - started) / 1000); }
  return "";
}
