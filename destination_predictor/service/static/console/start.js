/*
 * start.js — the 启动预测任务 form: year/major choices, the file picker, the
 * check before running, upload.
 *
 * Why: starting a task is the page's one form. It loads the years and majors
 * the service has plans for, checks the chosen file itself (type, size) only
 * to save a pointless upload — the server repeats every check — and shows the
 * API's own Chinese error when the server refuses. Whenever the file, year or
 * major changes it asks POST /api/task/validate what a run would make of the
 * file and shows that report above the start button (see check.js), so staff
 * know the input before trusting the output; starting never waits for it.
 *
 * Several files (chosen or dropped), or one .zip of workbooks, are started as
 * one batch (POST /api/batch/start, see batches.js); the page does not check
 * them one by one: the server fails a bad file's own task with its reason.
 *
 * Exports: setupStartForm(state) (attach the form's listeners),
 * loadMajors(state) (fill the year select from GET /api/majors).
 */

import { api } from "./api.js";
import { hideCheck, runCheck } from "./check.js";
import { $, clear, h, hideMessage, showMessage } from "./dom.js";
import { formatBytes } from "./format.js";
import { refreshMonitor } from "./monitor.js";
import { refreshTasks } from "./tasks.js";

const ALLOWED_EXT = Object.freeze([".xlsx", ".xls"]);
const NO_FILE_TEXT = "未选择文件（也可以把文件拖到这里）";

/* ---------- years and majors ---------------------------------------------------- */

function majorNames(list) {
  return (list || []).map((m) => {
    if (typeof m === "string") { return { name: m, code: "" }; }
    return { name: m.name || m.major || m.code, code: m.code || "" };
  }).filter((m) => !!m.name);
}

/* /api/majors answers per year; accept the shapes a Flask service would use. */
function normaliseMajors(data) {
  const out = {};
  if (Array.isArray(data)) {
    data.forEach((item) => {
      if (item && item.year !== undefined) { out[String(item.year)] = majorNames(item.majors); }
    });
    return out;
  }
  if (data && typeof data === "object") {
    // {"years": [2024, ...], "majors": {"2024": [...]}} is this service's shape.
    const keys = ["majors", "by_year", "years"];
    for (let i = 0; i < keys.length; i++) {
      const inner = data[keys[i]];
      if (inner && typeof inner === "object" && !Array.isArray(inner)) { return normaliseMajors(inner); }
      if (Array.isArray(inner) && inner.length && typeof inner[0] === "object") { return normaliseMajors(inner); }
    }
    Object.keys(data).forEach((k) => {
      if (/^\d{4}$/.test(k) && Array.isArray(data[k])) { out[k] = majorNames(data[k]); }
    });
  }
  return out;
}

function fillYears(state, yearSel) {
  const years = Object.keys(state.majors).sort().reverse();
  clear(yearSel);
  if (!years.length) {
    yearSel.appendChild(h("option", { value: "", text: "没有可用的培养方案" }));
    return;
  }
  yearSel.appendChild(h("option", { value: "", text: "请选择年级" }));
  years.forEach((y) => { yearSel.appendChild(h("option", { value: y, text: y + " 级" })); });
  yearSel.disabled = false;
  if (years.length === 1) { yearSel.value = years[0]; }
  fillMajors(state);
}

export function loadMajors(state) {
  const yearSel = $("year-select");
  return api(state, "GET", "/api/majors").then((data) => {
    state.majors = normaliseMajors(data);
    fillYears(state, yearSel);
  }).catch((f) => {
    clear(yearSel);
    yearSel.appendChild(h("option", { value: "", text: "无法加载年级" }));
    showMessage($("start-message"), "error", "无法加载年级和专业列表：" + f.message, f.code);
  });
}

function fillMajors(state) {
  const year = $("year-select").value;
  const majorSel = $("major-select");
  clear(majorSel);
  majorSel.appendChild(h("option", { value: "", text: "全部专业" }));
  const list = (state.majors && state.majors[year]) || [];
  list.forEach((m) => {
    majorSel.appendChild(h("option", { value: m.name, text: m.code ? m.name + "（" + m.code + "）" : m.name }));
  });
  majorSel.disabled = !list.length;
}

/* ---------- the file --------------------------------------------------------------- */

function extensionOf(name) {
  const i = name.lastIndexOf(".");
  return i < 0 ? "" : name.slice(i).toLowerCase();
}

/* Several files, or one zip of workbooks: started as one batch. */
function isBatch(files) {
  return files.length > 1 || (files.length === 1 && extensionOf(files[0].name) === ".zip");
}

function chosenFiles() { return Array.prototype.slice.call($("file-input").files || []); }

/* The page's own checks; the server repeats them (and sniffs the content). */
function checkFile(state, file) {
  if (!file) { return "请选择要上传的成绩文件（.xlsx 或 .xls）"; }
  const ext = extensionOf(file.name);
  if (ALLOWED_EXT.indexOf(ext) < 0) {
    return "文件类型不支持：" + file.name + "。只支持 .xlsx 或 .xls 格式的 Excel 文件";
  }
  if (file.size === 0) { return "所选文件是空的：" + file.name; }
  if (state.maxUploadMb && file.size > state.maxUploadMb * 1024 * 1024) {
    return "文件过大：" + formatBytes(file.size) + "，最大允许 " + state.maxUploadMb + " MB";
  }
  return null;
}

function showChosenFile(file) {
  const name = $("file-name");
  const files = chosenFiles();
  if (file && isBatch(files)) {
    const total = files.reduce((n, f) => n + f.size, 0);
    const names = files.map((f) => f.name).join("、");
    name.textContent = "批量：" + files.length + " 个文件（共 " + formatBytes(total) + "）：" + names;
    name.title = names;
    name.className = "file-name chosen";
    return;
  }
  name.textContent = file ? file.name + "（" + formatBytes(file.size) + "）" : NO_FILE_TEXT;
  name.title = file ? file.name : "";
  name.className = "file-name " + (file ? "chosen" : "muted");
}

/* The server's check of the chosen file for the chosen year and major. */
function checkChosen(state) {
  const file = $("file-input").files[0];
  if (!file || isBatch(chosenFiles()) || checkFile(state, file)) { hideCheck(state); return; }
  runCheck(state, file, $("year-select").value, $("major-select").value);
}

function onFileChange(state) {
  const file = $("file-input").files[0];
  const msg = $("start-message");
  showChosenFile(file);
  const problem = file && !isBatch(chosenFiles()) ? checkFile(state, file) : null;
  if (problem) { showMessage(msg, "error", problem); } else { hideMessage(msg); }
  checkChosen(state);
}

/* Dropping a file on the picker is the same as choosing it. */
function setupDrop(state) {
  const zone = $("file-drop");
  const input = $("file-input");
  ["dragenter", "dragover"].forEach((type) => {
    zone.addEventListener(type, (ev) => {
      ev.preventDefault();
      zone.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach((type) => {
    zone.addEventListener(type, () => { zone.classList.remove("dragging"); });
  });
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    if (!ev.dataTransfer || !ev.dataTransfer.files.length) { return; }
    try { input.files = ev.dataTransfer.files; } catch (e) { return; }
    onFileChange(state);
  });
}

/* ---------- submit ------------------------------------------------------------------ */

/* The year and the choices of the form, the same for one file and for a batch. */
function withChoices(form, year) {
  form.append("year", year);
  const major = $("major-select").value;
  if (major) { form.append("major", major); }
  const priority = $("priority-select").value;
  if (priority && priority !== "normal") { form.append("priority", priority); }
  return form;
}

function startForm(file, year) {
  const form = new FormData();
  form.append("file", file, file.name);
  return withChoices(form, year);
}

function batchForm(files, year) {
  const form = new FormData();
  files.forEach((f) => form.append("files", f, f.name));
  return withChoices(form, year);
}

/*
 * Send one start request (a task or a batch) and report it: the success
 * message with the new id, or the refusal; the form is cleared on success.
 */
function submitStart(state, path, form, what) {
  const msg = $("start-message");
  const button = $("start-button");
  button.disabled = true;
  api(state, "POST", path, { body: form }).then((data) => {
    const id = data && data[what.idKey] ? data[what.idKey].slice(0, 8) : "";
    showMessage(msg, "success", (data && data.message ? data.message : what.started) +
      "（" + what.idLabel + " " + id + "）");
    $("file-input").value = "";
    showChosenFile(null);
    hideCheck(state);
    refreshTasks(state);
    refreshMonitor(state);
  }).catch((f) => {
    showMessage(msg, "error", what.refused + f.message, f.code);
  }).then(() => { button.disabled = false; });
}

function onStartBatch(state, files, year) {
  showMessage($("start-message"), "info", "正在上传 " + files.length + " 个文件（批量）…");
  submitStart(state, "/api/batch/start", batchForm(files, year),
    { idKey: "batch_id", idLabel: "批量编号", started: "批量预测已启动", refused: "批量未启动：" });
}

function onStart(state, ev) {
  ev.preventDefault();
  const msg = $("start-message");
  const file = $("file-input").files[0];
  const files = chosenFiles();
  if (isBatch(files)) {
    if (!$("year-select").value) { showMessage(msg, "error", "请选择年级"); return; }
    onStartBatch(state, files, $("year-select").value);
    return;
  }
  const problem = checkFile(state, file);
  if (problem) { showMessage(msg, "error", problem); return; }
  const year = $("year-select").value;
  if (!year) { showMessage(msg, "error", "请选择年级"); return; }
  showMessage(msg, "info", "正在上传 " + file.name + " …");
  submitStart(state, "/api/task/start", startForm(file, year),
    { idKey: "task_id", idLabel: "任务编号", started: "预测任务已启动", refused: "任务未启动：" });
}

export function setupStartForm(state) {
  $("start-form").addEventListener("submit", (ev) => onStart(state, ev));
  $("file-input").addEventListener("change", () => onFileChange(state));
  setupDrop(state);
  $("year-select").addEventListener("change", () => {
    fillMajors(state);
    checkChosen(state);
  });
  $("major-select").addEventListener("change", () => checkChosen(state));
}
