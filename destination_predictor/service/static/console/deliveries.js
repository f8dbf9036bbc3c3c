/*
 * deliveries.js — the 完成通知 section: the newest webhook deliveries.
 *
 * Why: completion notifications are sent in the background and retried for
 * minutes (service/notifier.py); an administrator needs to see whether the
 * group robot or the school's system got each one, how many attempts it took,
 * and what the receiver answered last. GET /api/webhook-deliveries (every
 * 10 s) gives exactly that; the webhooks themselves are configured through
 * /api/webhooks (README 完成通知), not here.
 *
 * Exports: refreshDeliveries(state) (fetch, render, re-arm the 10 s timer).
 */

import { api } from "./api.js";
import { $, clear, h, showMessage } from "./dom.js";
import { formatClock } from "./format.js";

const DELIVERIES_MS = 10000;
const LIMIT = 20;

const STATE_TEXT = Object.freeze({ pending: "等待重试", delivered: "已送达", failed: "失败" });
const STATE_BADGE = Object.freeze({ pending: "badge-pending", delivered: "badge-completed", failed: "badge-failed" });
const EVENT_TEXT = Object.freeze({
  "task.completed": "任务完成", "task.failed": "任务失败", "task.cancelled": "任务取消",
  "batch.completed": "批量完成", "batch.partial": "批量部分完成", "batch.failed": "批量失败",
  "batch.cancelled": "批量取消", "webhook.test": "测试"
});

export function refreshDeliveries(state) {
  if (state.deliveriesTimer) { clearTimeout(state.deliveriesTimer); state.deliveriesTimer = null; }
  return api(state, "GET", "/api/webhook-deliveries?limit=" + LIMIT).then((data) => {
    renderDeliveries(data.deliveries || []);
  }).catch((f) => {
    const body = $("deliveries-body");
    clear(body);
    const m = h("div");
    showMessage(m, f.code === "FORBIDDEN" ? "info" : "error", "无法获取通知记录：" + f.message, f.code);
    body.appendChild(m);
  }).then(() => {
    if (state.deliveriesTimer) { clearTimeout(state.deliveriesTimer); }
    state.deliveriesTimer = setTimeout(() => refreshDeliveries(state), DELIVERIES_MS);
  });
}

/* The last answer: the HTTP status and the reason when it failed. */
function answerText(d) {
  const parts = [];
  const status = d.last_status !== null && d.last_status !== undefined ? "HTTP " + d.last_status : "";
  if (status && !(d.last_error && d.last_error.indexOf(status) >= 0)) { parts.push(status); }
  if (d.last_error) { parts.push(d.last_error); }
  return parts.length ? parts.join("，") : "—";
}

function row(d) {
  const when = d.state === "pending" && d.next_attempt_at ? "下次 " + formatClock(d.next_attempt_at) :
    formatClock(d.delivered_at || d.last_attempt_at || d.created_at);
  return h("tr", { "data-delivery": d.id, "data-state": d.state }, [
    h("td", { text: formatClock(d.created_at) }),
    h("td", { className: "ellipsis", title: d.webhook_name, text: d.webhook_name }),
    h("td", { text: EVENT_TEXT[d.event] || d.event }),
    h("td", { className: "ellipsis", title: d.message, text: d.message }),
    h("td", null, [h("span", { className: "badge " + (STATE_BADGE[d.state] || ""),
      text: STATE_TEXT[d.state] || d.state })]),
    h("td", { className: "num", text: d.attempts + "/" + d.max_attempts }),
    h("td", { className: "ellipsis delivery-answer", title: d.last_answer || "", text: answerText(d) }),
    h("td", { text: when })
  ]);
}

function renderDeliveries(list) {
  const body = $("deliveries-body");
  clear(body);
  if (!list.length) {
    body.appendChild(h("p", { className: "muted small", id: "deliveries-empty",
      text: "暂无通知。管理员通过 /api/webhooks 配置接收方（钉钉、企业微信、飞书机器人或通用 Webhook）后，" +
        "每个任务或批量结束时的投递会列在这里。" }));
  } else {
    const tb = h("tbody", null, list.map(row));
    body.appendChild(h("table", { className: "deliveries-table" }, [
      h("thead", null, [h("tr", null, ["创建", "接收方", "事件", "内容", "状态", "尝试", "最近应答", "时间"]
        .map((t) => h("th", { text: t })))]),
      tb
    ]));
  }
  $("deliveries-updated").textContent = "更新于 " + formatClock(new Date().toISOString()) + "，每 10 秒自动刷新";
}
