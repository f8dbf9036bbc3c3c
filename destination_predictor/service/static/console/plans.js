/*
 * plans.js — the education plans the service uses, at /plans.
 *
 * Why: plans are the engine's input and the service owns them (versions in
 * the data dir, never in the release folder). Staff upload a plan, read the
 * check report when it is refused, see which version each (year, major) uses,
 * roll back to an older version or delete one. Every fact comes from
 * /api/plans; nothing is decided here.
 *
 * Exports nothing; runs on load.
 */

import { api, readToken } from "./api.js";
import { $, clear, h, showMessage } from "./dom.js";

const state = { token: readToken(), open: {} };
const SOURCES = Object.freeze({ managed: "上传", bundled: "自带" });

function when(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : "—"; }

function checkText(check) {
  if (!check) { return "—"; }
  const parts = [check.ok ? "通过" : "未通过"];
  if (check.warnings && check.warnings.length) { parts.push(check.warnings.length + " 条提醒"); }
  return parts.join("，");
}

/* The check's report as a list: problems refuse the plan, warnings do not. */
function renderReport(report) {
  const box = $("plan-report");
  clear(box);
  if (!report) { box.hidden = true; return; }
  const items = [];
  (report.problems || []).forEach((p) => items.push(h("li", { className: "problem", text: p })));
  (report.warnings || []).forEach((w) => items.push(h("li", { className: "warning", text: "提醒：" + w })));
  box.appendChild(h("p", { text: "检查报告：必修课程 " + report.courses + " 门（" + report.required_rows +
    " 行），学分合计 " + report.credits }));
  if (items.length) { box.appendChild(h("ul", { id: "report-items" }, items)); }
  box.hidden = false;
}

function versionsRow(plan) {
  const list = h("ul", { className: "versions-list" });
  plan.versions.slice().reverse().forEach((v) => {
    const label = "v" + v.version + " · " + when(v.uploaded_at) + " · " + v.file_name + " · 必修 " +
      (v.courses === null ? "—" : v.courses) + " 门" + (v.in_use ? "（使用中）" : "");
    const rollback = v.in_use ? null : h("button", { type: "button", className: "btn btn-small",
      "data-rollback": plan.year + "/" + plan.code + "/" + v.version, text: "改用此版本",
      onclick: () => change("POST", plan, "/rollback", JSON.stringify({ version: v.version })) });
    list.appendChild(h("li", null, [label, " ", rollback]));
  });
  if (!plan.versions.length) { list.appendChild(h("li", { className: "muted", text: "没有上传过的版本（使用自带方案）" })); }
  return h("tr", { className: "versions" }, [h("td", { colspan: "9" }, [list])]);
}

function planRow(plan) {
  const key = plan.year + "/" + plan.major;
  const inUse = plan.version !== null;
  const actions = h("div", { className: "plan-actions" }, [
    h("button", { type: "button", className: "btn btn-small", "data-versions": key,
      text: state.open[key] ? "收起版本" : "版本（" + plan.versions.length + "）",
      onclick: () => { state.open[key] = !state.open[key]; load(); } }),
    inUse ? h("button", { type: "button", className: "btn btn-small btn-danger", "data-delete": key, text: "删除",
      onclick: () => {
        const what = plan.source === "bundled" ? "停用自带的" : "删除上传的";
        if (!window.confirm("确定" + what + " " + plan.year + " 级" + plan.major + "培养方案吗？（历史版本保留，可回滚恢复）")) { return; }
        change("DELETE", plan, "", undefined);
      } }) : null,
  ]);
  const version = inUse ? (plan.version === "bundled" ? "自带" : plan.version) : "未使用";
  return h("tr", { className: inUse ? "" : "plan-gone", "data-plan": key }, [
    h("td", { text: String(plan.year) }), h("td", { text: plan.major }), h("td", { text: plan.code }),
    h("td", { className: "plan-version", text: version }),
    h("td", { text: plan.source ? SOURCES[plan.source] : "—" }),
    h("td", { text: when(plan.uploaded_at) }),
    h("td", { text: plan.courses === null || plan.courses === undefined ? "—" : String(plan.courses) }),
    h("td", { text: checkText(plan.check) }), h("td", null, [actions]),
  ]);
}

function render(plans) {
  const body = $("plans-body");
  clear(body);
  if (!plans.length) { body.appendChild(h("tr", null, [h("td", { colspan: "9", className: "muted", text: "没有培养方案" })])); }
  plans.forEach((plan) => {
    body.appendChild(planRow(plan));
    if (state.open[plan.year + "/" + plan.major]) { body.appendChild(versionsRow(plan)); }
  });
  document.body.setAttribute("data-loaded", String(Number(document.body.getAttribute("data-loaded") || 0) + 1));
}

function load() {
  // The message box keeps the last change's outcome; only a failed listing replaces it.
  return api(state, "GET", "/api/plans").then((data) => { render(data.plans); },
    (f) => { showMessage($("list-message"), "error", f.message, f.code); });
}

function change(method, plan, suffix, body) {
  const path = "/api/plans/" + plan.year + "/" + encodeURIComponent(plan.major) + suffix;
  const opts = body === undefined ? {} : { body: body, contentType: "application/json" };
  api(state, method, path, opts).then((data) => {
    const p = data.plan || data;
    showMessage($("list-message"), "success", data.message || p.message || "已更新");
    return load();
  }, (f) => { showMessage($("list-message"), "error", f.message, f.code); });
}

function upload(ev) {
  ev.preventDefault();
  const file = $("plan-file").files[0];
  const year = $("plan-year").value.trim();
  const major = $("plan-major").value.trim();
  if (!file || !year || !major) { showMessage($("plan-message"), "error", "请选择文件并填写年级和专业名称"); return; }
  const form = new FormData();
  form.append("file", file);
  form.append("year", year);
  form.append("major", major);
  if ($("plan-code").value.trim()) { form.append("code", $("plan-code").value.trim()); }
  const button = $("plan-upload");
  button.disabled = true;
  showMessage($("plan-message"), "info", "正在检查培养方案…");
  api(state, "POST", "/api/plans", { body: form }).then((data) => {
    showMessage($("plan-message"), "success", data.message);
    renderReport(data.plan.check);
    return load();
  }, (f) => {
    showMessage($("plan-message"), "error", f.message, f.code);
    renderReport(f.body && f.body.report);
  }).then(() => { button.disabled = false; });
}

$("plan-form").addEventListener("submit", upload);
load();
