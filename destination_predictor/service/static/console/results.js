/*
 * results.js — the results block of a completed task card.
 *
 * Why: a completed task offers downloads (one workbook per major, or all as a
 * zip), its warnings, the charts (drawn by charts.js when first opened) and
 * the 导入数据库 button; that is a page section of its own, apart from the
 * list that polls. Downloads go through api() so the token is sent and a
 * refusal (404, 410 expired) is shown on the page instead of replacing it.
 *
 * Exports: buildResults(state, card, task, open) fills card.results;
 * updateImportVisibility(state, card) shows the import button only when
 * state.importEnabled; download(state, url, fallbackName, messageNode) saves
 * one authorised download (batches.js uses it for a batch's zip).
 */

import { api } from "./api.js";
import * as Charts from "./charts.js";
import { clear, h, hideMessage, showMessage } from "./dom.js";

/* ---------- file names and URLs -------------------------------------------- */

function displayName(taskId, file) {
  const prefix = taskId + "_";
  return file.indexOf(prefix) === 0 ? file.slice(prefix.length) : file;
}

/* Which major a result workbook belongs to (…_Predictions_<code>.xlsx). */
function majorOfFile(file, majors) {
  const m = /_Predictions_([^.]+)\.xlsx?$/i.exec(file);
  if (!m) { return null; }
  if (m[1] === "All") { return "全部专业汇总"; }
  for (let i = 0; i < majors.length; i++) {
    if (String(majors[i].code) === m[1]) { return majors[i].major; }
  }
  return null;
}

function resultUrl(taskId, file) {
  return "/api/task/result/" + encodeURIComponent(taskId) + "/" + encodeURIComponent(file);
}

function zipUrl(taskId) {
  return "/api/task/" + encodeURIComponent(taskId) + "/results.zip";
}

function filenameFrom(resp, fallback) {
  const cd = resp.headers.get("Content-Disposition") || "";
  const star = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(cd);
  if (star) {
    try { return decodeURIComponent(star[1].replace(/"/g, "")); } catch (e) { /* fall through */ }
  }
  const plain = /filename\s*=\s*"?([^";]+)"?/i.exec(cd);
  return plain ? plain[1] : fallback;
}

/* ---------- downloads ------------------------------------------------------ */

function saveBlob(resp, fallbackName) {
  return resp.blob().then((blob) => {
    const objectUrl = URL.createObjectURL(blob);
    const a = h("a", { href: objectUrl, download: filenameFrom(resp, fallbackName), hidden: true });
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(objectUrl); a.parentNode.removeChild(a); }, 60000);
  });
}

export function download(state, url, fallbackName, messageNode) {
  hideMessage(messageNode);
  return api(state, "GET", url, { raw: true }).then((resp) => saveBlob(resp, fallbackName)).catch((f) => {
    showMessage(messageNode, "error", "下载失败：" + f.message, f.code);
  });
}

function downloadLink(state, label, url, name, messageNode, extraClass) {
  const a = h("a", { href: url, className: "dl " + (extraClass || ""), "data-file": name, download: name }, [label]);
  a.addEventListener("click", (ev) => {
    ev.preventDefault();
    download(state, url, name, messageNode);
  });
  return a;
}

function downloadLinks(state, task, majors, dlMessage) {
  const files = task.result_files || [];
  const links = h("div", { className: "downloads" });
  links.appendChild(h("span", { className: "label", text: "下载结果：" }));
  if (files.length > 1) {
    links.appendChild(downloadLink(state, "全部结果（zip）", zipUrl(task.id),
      "Cohort" + (task.year || "") + "_Predictions.zip", dlMessage, "dl-zip"));
  }
  files.forEach((f) => {
    const shown = displayName(task.id, f);
    const major = majorOfFile(f, majors);
    links.appendChild(downloadLink(state, major ? major + " · " + shown : shown, resultUrl(task.id, f),
      shown, dlMessage, "dl-file"));
  });
  return links;
}

/* ---------- the results block ---------------------------------------------- */

function warningsBox(warnings) {
  const wl = h("ul", { className: "warnings" });
  warnings.forEach((w) => { wl.appendChild(h("li", { text: w })); });
  return h("div", { className: "warnings-box" }, [
    h("div", { className: "label", text: "警告（" + warnings.length + "）" }), wl
  ]);
}

/* Charts are drawn when first opened: closed results of older tasks cost nothing. */
function chartsWhenOpen(majors, config) {
  const charts = h("div", { className: "charts" });
  const draw = () => {
    if (charts.getAttribute("data-drawn")) { return; }
    charts.setAttribute("data-drawn", "1");
    drawCharts(charts, majors, config);
  };
  return { node: charts, draw: draw };
}

export function buildResults(state, card, task, open) {
  const box = card.results;
  clear(box);
  card.resultsBuilt = true;
  card.expired = !!task.expired;
  const summary = task.summary || {};
  const majors = Array.isArray(summary.majors) ? summary.majors : [];
  const details = h("details", { className: "results" });
  if (open) { details.open = true; }
  const total = summary.students !== undefined ? "，共 " + summary.students + " 名学生" : "";
  details.appendChild(h("summary", { text: "预测结果：" + majors.length + " 个专业" + total }));
  const body = h("div", { className: "results-body" });
  details.appendChild(body);
  box.appendChild(details);

  if (task.expired) {
    body.appendChild(h("div", { className: "message message-warn", text: "结果文件已超过保留期限并被清理，无法再下载或导入。" }));
  } else {
    const dlMessage = h("div", { className: "message", hidden: true });
    body.appendChild(downloadLinks(state, task, majors, dlMessage));
    body.appendChild(dlMessage);
    body.appendChild(buildImport(state, card, task));
  }

  const warnings = task.warnings || [];
  if (warnings.length) { body.appendChild(warningsBox(warnings)); }

  if (majors.length) {
    const charts = chartsWhenOpen(majors, summary.config);
    body.appendChild(charts.node);
    if (details.open) { charts.draw(); }
    details.addEventListener("toggle", () => { if (details.open) { charts.draw(); } });
  } else {
    body.appendChild(h("p", { className: "muted", text: "该任务没有可显示的汇总数据。" }));
  }
}

/* ---------- charts ----------------------------------------------------------- */

function gradeRange(config) {
  return config && isFinite(config.min_grade) && isFinite(config.max_grade) ?
    [Number(config.min_grade), Number(config.max_grade)] : null;
}

function majorSelect(majors) {
  const select = h("select", { className: "hist-major", "aria-label": "选择专业" });
  select.appendChild(h("option", { value: "__all__", text: "全部专业（合计）" }));
  majors.forEach((m, i) => {
    select.appendChild(h("option", { value: String(i), text: m.major + (m.code ? "（" + m.code + "）" : "") }));
  });
  return select;
}

function histogramNote(chosen) {
  let students = 0, r1 = 0, r2 = 0, complete = 0;
  chosen.forEach((m) => {
    students += Number(m.students || 0);
    r1 += Number(m.reachable_1 || 0);
    r2 += Number(m.reachable_2 || 0);
    complete += Number(m.no_missing_courses || 0);
  });
  return "共 " + students + " 名学生，其中 " + complete +
    " 人已修完全部课程（无需计算最低分）；能够达到的：保研 " + r1 + " 人，出国 " + r2 +
    " 人。图中为这些学生的未修课程统一需要考到的最低分数。";
}

function showHistograms(grid, note, chosen, range) {
  const h1 = Charts.mergeHistograms(chosen.map((m) => m.histogram_1));
  const h2 = Charts.mergeHistograms(chosen.map((m) => m.histogram_2));
  note.textContent = histogramNote(chosen);
  clear(grid);
  grid.appendChild(h("div", { className: "chart-box" }, [
    Charts.histogram(h1, { title: "保研（去向 1）最低要求分数", color: Charts.DESTINATIONS[0].color, range: range })
  ]));
  grid.appendChild(h("div", { className: "chart-box" }, [
    Charts.histogram(h2, { title: "出国（去向 2）最低要求分数", color: Charts.DESTINATIONS[1].color, range: range })
  ]));
}

function drawCharts(container, majors, config) {
  const range = gradeRange(config);
  container.appendChild(h("h3", { text: "各专业预测去向分布" }));
  container.appendChild(h("div", { className: "chart-box" }, [Charts.destinationBars(majors)]));

  const head = h("div", { className: "hist-head" });
  const select = majorSelect(majors);
  head.appendChild(h("h3", { text: "最低要求分数分布" }));
  head.appendChild(select);
  container.appendChild(head);
  const note = h("p", { className: "muted small" });
  container.appendChild(note);
  const grid = h("div", { className: "hist-grid" });
  container.appendChild(grid);

  const show = () => {
    const chosen = select.value === "__all__" ? majors : [majors[Number(select.value)]];
    showHistograms(grid, note, chosen, range);
  };
  select.addEventListener("change", show);
  show();
}

/* ---------- database import -------------------------------------------------- */

function runImport(state, task, button, grades, out) {
  button.disabled = true;
  clear(out);
  out.appendChild(h("div", { className: "message message-info", text: "正在导入数据库…" }));
  const body = JSON.stringify({ grades: grades.checked });
  api(state, "POST", "/api/task/" + encodeURIComponent(task.id) + "/import",
    { body: body, contentType: "application/json" }).then((data) => {
    clear(out);
    out.appendChild(renderImport(data));
  }).catch((f) => {
    clear(out);
    const m = h("div");
    showMessage(m, "error", "导入失败：" + f.message, f.code);
    out.appendChild(m);
  }).then(() => { button.disabled = false; });
}

function buildImport(state, card, task) {
  const wrap = h("div", { className: "import" });
  const button = h("button", { type: "button", className: "btn btn-primary btn-small", text: "导入数据库" });
  const grades = h("input", { type: "checkbox", className: "import-grades" });
  const out = h("div", { className: "import-result" });
  button.addEventListener("click", () => { runImport(state, task, button, grades, out); });
  wrap.appendChild(h("div", { className: "import-row" }, [
    button,
    h("label", { className: "small" }, [grades, " 同时导入成绩（academic_results）"])
  ]));
  wrap.appendChild(out);
  card.importWrap = wrap;
  updateImportVisibility(state, card);
  return wrap;
}

export function updateImportVisibility(state, card) {
  if (card.importWrap) { card.importWrap.hidden = !state.importEnabled; }
}

function importRows(data) {
  const rows = [];
  (Array.isArray(data.majors) ? data.majors : []).forEach((item) => {
    if (!item || typeof item !== "object") { return; }
    rows.push({ major: item.major || item.code || "", table: item.table || "", rows: item.rows });
  });
  return rows;
}

function importTable(rows, grades) {
  const table = h("table", { className: "import-table" }, [
    h("thead", null, [h("tr", null, [h("th", { text: "专业" }), h("th", { text: "数据表" }), h("th", { text: "行数" })])])
  ]);
  const tbody = h("tbody");
  rows.forEach((r) => {
    tbody.appendChild(h("tr", null, [h("td", { text: r.major }), h("td", { text: r.table }),
      h("td", { className: "num", text: r.rows === undefined ? "—" : r.rows })]));
  });
  if (grades && typeof grades === "object") {
    tbody.appendChild(h("tr", null, [h("td", { text: "成绩（" + (grades.year || "") + " 级）" }),
      h("td", { text: grades.table || "" }), h("td", { className: "num", text: grades.rows })]));
  }
  table.appendChild(tbody);
  return table;
}

/* The import answer: rows per major table, plus grades and warnings. */
function renderImport(data) {
  data = data || {};
  const rows = importRows(data);
  let total = data.total_rows;
  if (typeof total !== "number") {
    total = 0;
    rows.forEach((r) => { total += Number(r.rows || 0); });
  }
  const box = h("div", { className: "message message-success" });
  box.appendChild(h("div", { text: "导入完成：" + rows.length + " 个专业，共 " + total + " 行" +
    (data.backend ? "（" + data.backend + "）" : "") }));
  box.appendChild(importTable(rows, data.grades));
  (Array.isArray(data.warnings) ? data.warnings : []).forEach((w) => {
    box.appendChild(h("div", { className: "small", text: "提示：" + w }));
  });
  return box;
}
