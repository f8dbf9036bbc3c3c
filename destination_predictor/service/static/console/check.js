/*
 * check.js — the 文件检查 shown above the start button: what a run would make
 * of the chosen file, before any task exists.
 *
 * Why: a prediction is only as good as the export it reads. POST
 * /api/task/validate reads the file exactly as a run would (same header
 * recognition, same refusals) without creating a task or keeping the file,
 * and answers a report: students, skipped rows, plan coverage per major,
 * warnings, and the problems a real run would refuse. Showing it when the file
 * is chosen lets staff see a wrong year, a wrong sheet or a missing column
 * before they trust the output. The check never blocks starting: the start
 * button stays usable, problems are only made prominent.
 *
 * Checks may overlap (a file chosen, then another, or the year changed while
 * the first check runs): each gets a number (state.checkSeq) and only the
 * latest one's answer is shown; a stale answer is dropped.
 *
 * Exports: runCheck(state, file, year, major), hideCheck(state).
 */

import { api } from "./api.js";
import { $, clear, codeNote, h, showMessage } from "./dom.js";

const FIELD_NAMES = Object.freeze([
  ["student_id", "学号"], ["major", "专业"], ["course", "课程名"], ["grade", "成绩"], ["attribute", "课程属性"]
]);

function box() { return $("check-report"); }

/* Forget any check in flight and hide the report (no file, or a file the page refuses). */
export function hideCheck(state) {
  state.checkSeq += 1;
  const node = box();
  node.hidden = true;
  node.className = "check";
  clear(node);
}

/* A note or a failed request: a plain message box, without the report's frame. */
function showNote(node, kind, text, code) {
  clear(node);
  node.className = "check check-note";
  const m = h("div");
  showMessage(m, kind, text, code);
  node.appendChild(m);
  node.hidden = false;
}

function checkForm(file, year, major) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("year", year);
  if (major) { form.append("major", major); }
  return form;
}

export function runCheck(state, file, year, major) {
  state.checkSeq += 1;
  const seq = state.checkSeq;
  const node = box();
  if (!year) { showNote(node, "info", "选择年级后会自动检查文件"); return Promise.resolve(); }
  showNote(node, "info", "正在检查 " + file.name + " …");
  return api(state, "POST", "/api/task/validate", { body: checkForm(file, year, major) }).then((report) => {
    if (seq !== state.checkSeq) { return; }  // the file, year or major changed meanwhile
    renderReport(node, report || {});
  }, (f) => {
    if (seq !== state.checkSeq) { return; }
    showNote(node, "error", "无法检查文件：" + f.message, f.code);
  });
}

/* ---------- the report --------------------------------------------------------- */

/* One major's line: who is in the file and how well its plan covers their courses. */
function majorLine(m, year, overallBest) {
  const name = h("strong", { text: m.major });
  const code = m.code ? "（" + m.code + "）" : "";
  if (!m.has_plan) {
    return h("li", { className: "check-major check-major-skipped" },
      [name, code + "：" + m.students + " 名学生，没有 " + year + " 级培养方案，不会预测"]);
  }
  if (!m.students) {
    return h("li", { className: "check-major check-major-skipped" }, [name, code + "：文件中没有该专业的学生，将跳过"]);
  }
  const bits = [m.students + " 名学生",
    "必修课 " + m.plan_courses_in_file + "/" + m.plan_courses + " 门有成绩",
    "文件中 " + m.file_courses_in_plan + "/" + m.file_courses + " 门课程属于该培养方案"];
  // Said once for the whole file (yearWarning); here only where a major differs.
  const best = m.best_year ? Number(m.best_year) : null;
  if (best && year && best !== Number(year) && best !== overallBest) {
    bits.push("与 " + best + " 级培养方案最吻合");
  }
  const unmapped = Array.isArray(m.unmapped_categories) ? m.unmapped_categories : [];
  if (unmapped.length) { bits.push("无法识别的课程类别：" + unmapped.join("、")); }
  return h("li", { className: "check-major", title: m.rows + " 行成绩计入" }, [name, code + "：" + bits.join(" · ")]);
}

function problemsBlock(problems) {
  const ul = h("ul");
  problems.forEach((p) => {
    ul.appendChild(h("li", null, [p.message || p.code, p.code ? codeNote(p.code) : null]));
  });
  return h("div", { className: "check-problems", role: "alert" }, [
    h("strong", { text: "无法预测：按这个文件启动，任务会失败" }), ul
  ]);
}

function listBlock(className, title, items) {
  const ul = h("ul");
  items.forEach((text) => { ul.appendChild(h("li", { text: text })); });
  return h("div", { className: className }, [h("strong", { text: title }), ul]);
}

function headerLine(header) {
  if (!header || !header.mapped) { return null; }
  const cols = FIELD_NAMES.map(([key, label]) => {
    const found = header.mapped[key];
    return label + " = " + (found ? "“" + String(found).trim() + "”" : "（无）");
  });
  const where = (header.sheet ? "工作表“" + header.sheet + "”" : "") + "第 " + header.row + " 行";
  return h("div", { className: "check-header muted small", text: "表头：" + where + "；" + cols.join("，") });
}

/*
 * The wrong year is the commonest slip and a run would not refuse it: the
 * courses in the file match another year's plans better than the chosen one's.
 */
function yearWarning(report) {
  const best = report.best_year ? Number(report.best_year) : null;
  if (!best || !report.year || best === Number(report.year)) { return []; }
  return ["所选年级为 " + report.year + " 级，但文件中的课程与 " + best + " 级培养方案最吻合，请确认年级是否选对"];
}

function renderReport(node, report) {
  clear(node);
  const problems = Array.isArray(report.problems) ? report.problems : [];
  const warnings = yearWarning(report).concat(Array.isArray(report.warnings) ? report.warnings : []);
  const majors = Array.isArray(report.majors) ? report.majors : [];
  const bad = report.ok === false || problems.length > 0;
  node.className = "check " + (bad ? "check-bad" : warnings.length ? "check-warn" : "check-ok");
  node.appendChild(h("div", { className: "check-title" }, [
    h("span", { className: "check-label", text: "文件检查" }),
    h("span", { className: "check-file", text: report.file_name || "" })
  ]));
  if (bad) {
    node.appendChild(problemsBlock(problems.length ? problems : [{ message: report.summary || "文件无法预测" }]));
  } else {
    node.appendChild(h("div", { className: "check-summary", text: report.summary || "" }));
  }
  if (majors.length) {
    const ul = h("ul", { className: "check-majors" });
    const overallBest = report.best_year ? Number(report.best_year) : null;
    majors.forEach((m) => { ul.appendChild(majorLine(m, report.year, overallBest)); });
    node.appendChild(ul);
  }
  if (warnings.length) { node.appendChild(listBlock("check-warnings", "警告（" + warnings.length + "）", warnings)); }
  const header = headerLine(report.header);
  if (header) { node.appendChild(header); }
  node.hidden = false;
}
