/*
 * api.js — every request the console makes to this service's JSON API.
 *
 * Why: one place knows the envelope ({success, data} / {success: false, error,
 * code}), turns any refusal into an ApiFailure carrying the API's own Chinese
 * `error`, and handles the access token: a 401 opens the token form once
 * (concurrent 401s share it) and the request is repeated with the token. The
 * token lives in state.token and, for the browser session, in sessionStorage.
 *
 * Exports: api(state, method, path, opts) -> Promise of `data` (or the
 * Response itself with opts.raw; rejects with {status, code, message, body}), and
 * readToken() for the initial state.
 */

import { $, h, hideMessage, showMessage } from "./dom.js";

const TOKEN_KEY = "predictApiToken";

// Used only when an answer is not the API's JSON envelope (e.g. a proxy page).
const HTTP_FALLBACK = Object.freeze({
  0: "无法连接到预测服务，请检查网络或服务是否运行",
  400: "请求不正确",
  401: "需要有效的访问令牌",
  404: "请求的资源不存在",
  410: "结果文件已过期并被清理",
  413: "上传的文件过大",
  500: "服务器内部错误，请稍后重试",
  502: "网关错误，预测服务暂不可用",
  503: "服务繁忙（任务队列已满），请稍后再试",
  504: "网关超时，请稍后再试"
});

class ApiFailure {
  constructor(status, code, message, body) {
    this.status = status;
    this.code = code;
    this.message = message;
    this.body = body || null;  // the whole refusal, for pages that show more (a plan check's report)
  }
}

function failureFrom(status, body) {
  if (body && body.success === false && typeof body.error === "string") {
    return new ApiFailure(status, body.code || ("HTTP_" + status), body.error, body);
  }
  return new ApiFailure(status, "HTTP_" + status,
    HTTP_FALLBACK[status] || ("请求失败（HTTP " + status + "）"));
}

export function readToken() {
  try { return window.sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
}

function saveToken(state, token) {
  state.token = token || null;
  try {
    if (token) { window.sessionStorage.setItem(TOKEN_KEY, token); }
    else { window.sessionStorage.removeItem(TOKEN_KEY); }
  } catch (e) { /* storage disabled: keep it in memory for this page only */ }
}

function authHeaders(state) {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

function requestInit(state, method, opts) {
  const init = { method: method, headers: authHeaders(state), cache: "no-store", credentials: "same-origin" };
  if (opts.body !== undefined) { init.body = opts.body; }
  if (opts.contentType) { init.headers["Content-Type"] = opts.contentType; }
  return init;
}

/* A successful envelope gives its `data`; anything else throws an ApiFailure. */
function readEnvelope(resp) {
  return resp.text().then((text) => {
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
    if (!resp.ok || !body || body.success === false) { throw failureFrom(resp.status, body); }
    return body.data;
  });
}

/* A 401: ask for a token (saying why when the one sent was refused), then retry. */
function retryWithToken(state, resp, method, path, opts) {
  return resp.json().catch(() => null).then((body) => {
    const hadToken = !!state.token;
    const f = failureFrom(401, body);
    const why = hadToken ? f.message + "，请重新输入" : null;
    return askToken(state, why).then(() => api(state, method, path, opts));
  });
}

/*
 * One request. `opts.raw` returns the successful Response itself (downloads);
 * `opts.body` / `opts.contentType` are sent as given.
 */
export function api(state, method, path, opts) {
  opts = opts || {};
  return fetch(path, requestInit(state, method, opts)).then((resp) => {
    if (resp.status === 401 && !opts.noAuthRetry) { return retryWithToken(state, resp, method, path, opts); }
    if (opts.raw && resp.ok) { return resp; }
    return readEnvelope(resp);
  }, () => {
    throw new ApiFailure(0, "NETWORK_ERROR", HTTP_FALLBACK[0]);
  });
}

/*
 * The token form, built on first need (every page of the console shares it, so
 * it is written once, here, instead of in each page's HTML).
 */
function tokenOverlay() {
  const existing = $("token-overlay");
  if (existing) { return existing; }
  const code = (text) => h("code", { text });
  const overlay = h("div", { id: "token-overlay", className: "overlay", hidden: true }, [
    h("form", { id: "token-form", className: "dialog", autocomplete: "off" }, [
      h("h2", { text: "需要访问令牌" }),
      h("p", { text: "服务已启用访问令牌，请输入令牌；输入后在本次浏览器会话内有效。" }),
      h("p", { className: "token-where" }, [
        "令牌由管理员在部署时设置：用部署脚本部署的服务器上，令牌保存在部署目录的 ",
        code("shared/api_token"), " 文件中（如 ", code("/opt/prediction-service/shared/api_token"),
        "）；手动启动的服务则是环境变量 ", code("PREDICT_API_TOKEN"), " 的值。请向管理员索取。",
      ]),
      h("label", { for: "token-input", text: "访问令牌" }),
      h("input", { type: "password", id: "token-input", name: "token", required: true }),
      h("div", { id: "token-error", className: "message message-error", hidden: true }),
      h("div", { className: "actions" }, [
        h("button", { type: "submit", id: "token-submit", className: "btn btn-primary", text: "确定" }),
      ]),
    ]),
  ]);
  document.body.appendChild(overlay);
  return overlay;
}

/* The token form; concurrent 401s share one prompt (state.tokenPrompt). */
function askToken(state, reason) {
  if (state.tokenPrompt) { return state.tokenPrompt; }
  const overlay = tokenOverlay();
  const form = $("token-form");
  const input = $("token-input");
  const err = $("token-error");
  if (reason) { showMessage(err, "error", reason); } else { hideMessage(err); }
  input.value = "";
  overlay.hidden = false;
  setTimeout(() => { input.focus(); }, 0);
  state.tokenPrompt = new Promise((resolve) => {
    function onSubmit(ev) {
      ev.preventDefault();
      const value = input.value.trim();
      if (!value) { showMessage(err, "error", "请输入访问令牌"); return; }
      saveToken(state, value);
      form.removeEventListener("submit", onSubmit);
      overlay.hidden = true;
      state.tokenPrompt = null;
      resolve();
    }
    form.addEventListener("submit", onSubmit);
  });
  return state.tokenPrompt;
}
