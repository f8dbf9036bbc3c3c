/*
 * student.js — one student's what-if (分数滑动) at /student.
 *
 * Why: an advisor picks a completed task and a student, sees the current
 * prediction, moves a slider per missing course (or one uniform slider) and
 * watches the probabilities and the reasons change. Every number comes from
 * the service (GET /api/task/<id>/student/<snh>, POST /api/whatif); this page
 * computes nothing on grades. At most one what-if request is in flight; moves
 * made meanwhile are sent as one request when it returns.
 *
 * Exports nothing; runs on load.
 */

import { api, readToken } from "./api.js";
import { $, clear, h, hideMessage, showMessage } from "./dom.js";

const DESTS = [["1", "保研"], ["2", "出国"], ["3", "就业"]];
const FEATURE_LABELS = Object.freeze({
  public: "公共基础课", political: "思政课", english: "英语", math_science: "数学与自然科学",
  basic_subject: "学科基础课", basic_major: "专业基础课", major: "专业课", practice: "实践课",
  innovation: "创新创业", AcademicStrength: "学业综合实力"
});
const SVG = "http://www.w3.org/2000/svg";

const state = { token: readToken(), view: null, assume: {}, busy: false, again: false, answers: 0 };

function fmtPct(p) { return (p * 100).toFixed(1) + "%"; }
function fmtNum(v, digits) { return v === null || v === undefined ? "—" : Number(v).toFixed(digits); }

function svgBar(value, scale, color) {
  const width = 160;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", "14");
  svg.setAttribute("class", "wi-svgbar");
  const mid = document.createElementNS(SVG, "line");
  [["x1", width / 2], ["x2", width / 2], ["y1", 0], ["y2", 14]].forEach(([k, v]) => mid.setAttribute(k, String(v)));
  mid.setAttribute("class", "wi-axis");
  const len = scale > 0 ? Math.min(1, Math.abs(value) / scale) * (width / 2) : 0;
  const rect = document.createElementNS(SVG, "rect");
  rect.setAttribute("x", String(value >= 0 ? width / 2 : width / 2 - len));
  rect.setAttribute("y", "2");
  rect.setAttribute("height", "10");
  rect.setAttribute("width", String(len));
  rect.setAttribute("class", value >= 0 ? "wi-pos " + color : "wi-neg " + color);
  svg.appendChild(rect);
  svg.appendChild(mid);
  return svg;
}

function renderProbs(a) {
  const box = $("probs");
  clear(box);
  DESTS.forEach(([k, label]) => {
    const p = a.probabilities[k];
    const meter = h("progress", { max: "1", value: String(p), "aria-label": label + "概率" });
    box.appendChild(h("div", { className: "wi-prob" + (a.predicted === Number(k) ? " wi-top" : "") }, [
      h("span", { className: "wi-prob-label", text: label }), meter,
      h("span", { id: "prob-" + k, className: "wi-prob-value", text: fmtPct(p) })
    ]));
  });
  $("predicted").textContent = "预测去向：" + a.predicted_label +
    (Object.keys(a.assumed).length ? "（含 " + Object.keys(a.assumed).length + " 门课程的假设成绩）" : "（按真实成绩）");
}

function reachText(flag, s) {
  if (flag === null) { return "无缺修课程"; }
  return flag ? "可达，缺修课程统一需要 " + fmtNum(s, 0) + " 分" : "不可达";
}

function renderThresholds(a) {
  const t = a.thresholds;
  const box = $("thresholds");
  clear(box);
  box.appendChild(h("div", { id: "reach-1", text: "保研：" + reachText(t.reachable_1, t.s1) }));
  box.appendChild(h("div", { id: "reach-2", text: "出国：" + reachText(t.reachable_2, t.s2) }));
  box.appendChild(h("div", { className: "muted", text: "搜索范围 " + t.search_min + "–" + t.search_max +
    " 分；尚缺学分 " + fmtNum(a.unknown_credits, 1) + "；按真实成绩计算，不随滑块变化" }));
}

function renderReasons(a) {
  const c = a.reasons.contributions;
  let scale = 0;
  Object.keys(c).forEach((f) => DESTS.forEach(([k]) => { scale = Math.max(scale, Math.abs(c[f][k])); }));
  const table = h("table", { className: "wi-reasons" });
  table.appendChild(h("thead", null, [h("tr", null, [h("th", { text: "特征" }), h("th", { text: "取值" }),
    ...DESTS.map(([, label]) => h("th", { text: "推向" + label }))])]));
  const body = h("tbody");
  Object.keys(FEATURE_LABELS).forEach((f) => {
    const v = a.features[f];
    body.appendChild(h("tr", null, [
      h("td", { text: FEATURE_LABELS[f] }),
      h("td", { text: v === null ? "无" : fmtNum(v, f === "AcademicStrength" ? 2 : 1) }),
      ...DESTS.map(([k]) => h("td", { title: c[f][k].toFixed(4) }, [svgBar(c[f][k], scale, "wi-c" + k),
        h("span", { className: "wi-shap", text: (c[f][k] >= 0 ? "+" : "") + c[f][k].toFixed(2) })]))
    ]));
  });
  table.appendChild(body);
  const box = $("reasons");
  clear(box);
  box.appendChild(table);
}

function render(a) {
  state.answers += 1;
  $("demo-banner").hidden = !a.demo_model;
  renderProbs(a);
  renderThresholds(a);
  renderReasons(a);
  document.body.setAttribute("data-answers", String(state.answers));
}

function ask() {
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  const v = state.view;
  const body = JSON.stringify({ year: v.year, major: v.major, grades: v.grades, assume: state.assume, config: v.config });
  api(state, "POST", "/api/whatif", { body: body, contentType: "application/json" }).then((a) => {
    hideMessage($("pick-message"));
    render(a);
  }, (f) => { showMessage($("pick-message"), "error", f.message, f.code); }).then(() => {
    state.busy = false;
    if (state.again) { state.again = false; ask(); }
  });
}

function slider(id, label, onInput) {
  const out = h("output", { className: "wi-value", text: "未假设" });
  const input = h("input", { type: "range", id: id, min: "0", max: "100", step: "1", value: "60",
    className: "wi-range", "aria-label": label });
  input.addEventListener("input", () => { out.textContent = input.value + " 分"; onInput(Number(input.value)); });
  return { row: h("div", { className: "wi-slider" }, [h("label", { for: id, text: label }), input, out]), input, out };
}

function renderSliders(view) {
  const courses = Array.from(new Set(view.missing));
  const box = $("sliders");
  clear(box);
  const rows = [];
  courses.forEach((course, i) => {
    const s = slider("course-slider-" + i, course, (value) => { state.assume[course] = value; ask(); });
    s.input.setAttribute("data-course", course);
    rows.push(s);
    box.appendChild(s.row);
  });
  const uniform = $("uniform-row");
  clear(uniform);
  if (!courses.length) {
    box.appendChild(h("p", { className: "muted", text: "该生没有缺修课程，预测不依赖假设成绩。" }));
    return;
  }
  const u = slider("uniform-slider", "全部缺修课程统一分数", (value) => {
    courses.forEach((c) => { state.assume[c] = value; });
    rows.forEach((s) => { s.input.value = String(value); s.out.textContent = value + " 分"; });
    ask();
  });
  uniform.appendChild(u.row);
  uniform.appendChild(h("button", { type: "button", id: "clear-assume", className: "btn", text: "清除假设",
    onclick: () => {
      state.assume = {};
      [u, ...rows].forEach((s) => { s.out.textContent = "未假设"; });
      ask();
    } }));
}

function pick(ev) {
  if (ev) { ev.preventDefault(); }
  const tid = $("task-select").value;
  const snh = $("snh-input").value.trim();
  if (!tid || !snh) { showMessage($("pick-message"), "error", "请选择任务并输入学号"); return; }
  api(state, "GET", "/api/task/" + encodeURIComponent(tid) + "/student/" + encodeURIComponent(snh)).then((view) => {
    state.view = view;
    state.assume = {};
    $("student-title").textContent = "学号 " + view.snh + " · " + view.year + " 级 " + view.major +
      " · 已修方案课程 " + Object.keys(view.grades).length + " 门，缺修 " + view.missing.length + " 门";
    $("student-area").hidden = false;
    renderSliders(view);
    ask();
  }, (f) => {
    $("student-area").hidden = true;
    showMessage($("pick-message"), "error", f.message, f.code);
  });
}

function loadTasks() {
  const params = new URLSearchParams(window.location.search);
  api(state, "GET", "/api/tasks?status=completed&limit=100").then((data) => {
    const sel = $("task-select");
    clear(sel);
    const usable = data.tasks.filter((t) => !t.expired);
    if (!usable.length) { sel.appendChild(h("option", { value: "", text: "没有已完成的任务" })); return; }
    usable.forEach((t) => {
      sel.appendChild(h("option", { value: t.id, text: t.file_name + " · " + t.year + " 级" +
        (t.major ? " · " + t.major : "") + " · " + t.id.slice(0, 8) }));
    });
    if (params.get("task")) { sel.value = params.get("task"); }
    if (params.get("snh")) { $("snh-input").value = params.get("snh"); pick(); }
  }, (f) => { showMessage($("pick-message"), "error", f.message, f.code); });
}

$("pick-form").addEventListener("submit", pick);
loadTasks();
