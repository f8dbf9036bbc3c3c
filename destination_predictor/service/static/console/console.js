/*
 * The operators' console: start a prediction, follow it, get its results.
 *
 * Plain ES5-style JavaScript with no library and no build step, so the page
 * works straight from the package and makes no request outside this service.
 * Every server answer is the API's JSON envelope; refusals show the API's own
 * Chinese `error`, and the page adds its own checks (type, size) only to save
 * a pointless upload.
 */
(function () {
  "use strict";

  var POLL_MS = 3000;          // the guide's promise: status every 3 s while work is active
  var MONITOR_MS = 5000;
  var TOKEN_KEY = "predictApiToken";
  var TASK_LIMIT = 30;
  var ALLOWED_EXT = [".xlsx", ".xls"];

  var STATUS_TEXT = { pending: "等待中", running: "运行中", completed: "已完成", failed: "失败" };
  var ACTIVE = { pending: true, running: true };

  // Used only when an answer is not the API's JSON envelope (e.g. a proxy page).
  var HTTP_FALLBACK = {
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
  };

  var state = {
    token: readToken(),
    tasks: [],
    cards: {},               // task id -> {root, parts..., status, resultsBuilt}
    maxUploadMb: null,
    importEnabled: false,
    pollTimer: null,
    tickTimer: null,
    monitorTimer: null,
    loadingTasks: false,
    tokenPrompt: null,       // pending promise while the token form is open
    firstListDone: false
  };

  /* ---------- small DOM helpers ------------------------------------------ */

  function $(id) { return document.getElementById(id); }

  function h(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) { return; }
        if (k === "text") { node.textContent = String(v); }
        else if (k === "className") { node.className = v; }
        else if (k.slice(0, 2) === "on" && typeof v === "function") { node.addEventListener(k.slice(2), v); }
        else { node.setAttribute(k, v === true ? "" : String(v)); }
      });
    }
    (children || []).forEach(function (c) {
      if (c === null || c === undefined || c === false) { return; }
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    });
    return node;
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  function showMessage(node, kind, text, code) {
    clear(node);
    node.className = "message message-" + kind;
    node.appendChild(document.createTextNode(text));
    if (code) { node.appendChild(h("span", { className: "code", text: code })); }
    node.hidden = false;
  }

  function hideMessage(node) { node.hidden = true; clear(node); }

  function readToken() {
    try { return window.sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }

  function saveToken(token) {
    state.token = token || null;
    try {
      if (token) { window.sessionStorage.setItem(TOKEN_KEY, token); }
      else { window.sessionStorage.removeItem(TOKEN_KEY); }
    } catch (e) { /* storage disabled: keep it in memory for this page only */ }
  }

  /* ---------- formatting -------------------------------------------------- */

  function parseTime(iso) {
    if (!iso) { return null; }
    var t = Date.parse(iso);
    return isNaN(t) ? null : t;
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function formatClock(iso) {
    var t = parseTime(iso);
    if (t === null) { return "—"; }
    var d = new Date(t);
    return pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" +
      pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) { return "—"; }
    var s = Math.max(0, Math.round(seconds));
    if (s < 60) { return s + " 秒"; }
    var m = Math.floor(s / 60);
    if (m < 60) { return m + " 分 " + pad(s % 60) + " 秒"; }
    return Math.floor(m / 60) + " 小时 " + pad(m % 60) + " 分";
  }

  function formatBytes(n) {
    if (n === null || n === undefined || !isFinite(n)) { return "—"; }
    var units = ["B", "KB", "MB", "GB", "TB"];
    var i = 0;
    var v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(v) : v.toFixed(v >= 100 ? 0 : 1)) + " " + units[i];
  }

  /* Elapsed time of a task as the operator thinks of it. */
  function elapsedText(task) {
    var now = Date.now();
    var created = parseTime(task.created_at);
    var started = parseTime(task.started_at);
    var finished = parseTime(task.finished_at);
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

  /* ---------- API access -------------------------------------------------- */

  function ApiFailure(status, code, message) {
    this.status = status;
    this.code = code;
    this.message = message;
  }

  function failureFrom(status, body) {
    if (body && body.success === false && typeof body.error === "string") {
      return new ApiFailure(status, body.code || ("HTTP_" + status), body.error);
    }
    return new ApiFailure(status, "HTTP_" + status,
      HTTP_FALLBACK[status] || ("请求失败（HTTP " + status + "）"));
  }

  function authHeaders() {
    return state.token ? { Authorization: "Bearer " + state.token } : {};
  }

  /*
   * One request. `raw` returns the successful Response itself (downloads).
   * A 401 opens the token form once; the request is repeated with the token.
   */
  function api(method, path, opts) {
    opts = opts || {};
    var init = { method: method, headers: authHeaders(), cache: "no-store", credentials: "same-origin" };
    if (opts.body !== undefined) { init.body = opts.body; }
    if (opts.contentType) { init.headers["Content-Type"] = opts.contentType; }
    return fetch(path, init).then(function (resp) {
      if (resp.status === 401 && !opts.noAuthRetry) {
        return resp.json().catch(function () { return null; }).then(function (body) {
          var hadToken = !!state.token;
          var f = failureFrom(401, body);
          var why = hadToken ? f.message + "，请重新输入" : null;
          return askToken(why).then(function () { return api(method, path, opts); });
        });
      }
      if (opts.raw && resp.ok) { return resp; }
      return resp.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
        if (!resp.ok || !body || body.success === false) { throw failureFrom(resp.status, body); }
        return body.data;
      });
    }, function () {
      throw new ApiFailure(0, "NETWORK_ERROR", HTTP_FALLBACK[0]);
    });
  }

  /* The token form; concurrent 401s share one prompt. */
  function askToken(reason) {
    if (state.tokenPrompt) { return state.tokenPrompt; }
    var overlay = $("token-overlay");
    var form = $("token-form");
    var input = $("token-input");
    var err = $("token-error");
    if (reason) { showMessage(err, "error", reason); } else { hideMessage(err); }
    input.value = "";
    overlay.hidden = false;
    setTimeout(function () { input.focus(); }, 0);
    state.tokenPrompt = new Promise(function (resolve) {
      function onSubmit(ev) {
        ev.preventDefault();
        var value = input.value.trim();
        if (!value) { showMessage(err, "error", "请输入访问令牌"); return; }
        saveToken(value);
        form.removeEventListener("submit", onSubmit);
        overlay.hidden = true;
        state.tokenPrompt = null;
        resolve();
      }
      form.addEventListener("submit", onSubmit);
    });
    return state.tokenPrompt;
  }

  /* ---------- health, majors ---------------------------------------------- */

  function loadHealth() {
    return fetch("/health", { cache: "no-store" }).then(function (resp) {
      return resp.json().then(function (body) {
        var data = body && typeof body.success === "boolean" ? body.data : body;
        var badge = $("health-badge");
        var ok = resp.ok && data && (data.status === "ok" || data.status === "healthy");
        badge.textContent = ok ? "服务正常" : "服务异常";
        badge.className = "pill " + (ok ? "pill-ok" : "pill-bad");
        if (data) { applyServiceInfo(data); }
      });
    }).catch(function () {
      var badge = $("health-badge");
      badge.textContent = "无法连接服务";
      badge.className = "pill pill-bad";
    });
  }

  /* Facts about the service that /health or /api/monitor may carry. */
  function applyServiceInfo(data) {
    var version = data.model_version || (data.model && data.model.version);
    if (version) { $("model-version").textContent = "模型版本 " + version; }
    var limit = data.max_upload_mb || (data.limits && data.limits.max_upload_mb);
    if (limit) {
      state.maxUploadMb = Number(limit);
      $("file-hint").textContent = "仅限 .xlsx 或 .xls，最大 " + state.maxUploadMb + " MB";
    }
    var imp = data.import_enabled;
    if (imp === undefined && data.database_configured !== undefined) { imp = data.database_configured; }
    if (imp === undefined && data["import"] && typeof data["import"] === "object") { imp = data["import"].enabled; }
    if (typeof imp === "boolean" && imp !== state.importEnabled) {
      state.importEnabled = imp;
      Object.keys(state.cards).forEach(function (id) { updateImportVisibility(state.cards[id]); });
    }
  }

  /* /api/majors answers per year; accept the shapes a Flask service would use. */
  function normaliseMajors(data) {
    var out = {};
    function names(list) {
      return (list || []).map(function (m) {
        if (typeof m === "string") { return { name: m, code: "" }; }
        return { name: m.name || m.major || m.code, code: m.code || "" };
      }).filter(function (m) { return !!m.name; });
    }
    if (Array.isArray(data)) {
      data.forEach(function (item) {
        if (item && item.year !== undefined) { out[String(item.year)] = names(item.majors); }
      });
      return out;
    }
    if (data && typeof data === "object") {
      // {"years": [2024, ...], "majors": {"2024": [...]}} is this service's shape.
      var keys = ["majors", "by_year", "years"];
      for (var i = 0; i < keys.length; i++) {
        var inner = data[keys[i]];
        if (inner && typeof inner === "object" && !Array.isArray(inner)) { return normaliseMajors(inner); }
        if (Array.isArray(inner) && inner.length && typeof inner[0] === "object") { return normaliseMajors(inner); }
      }
      Object.keys(data).forEach(function (k) {
        if (/^\d{4}$/.test(k) && Array.isArray(data[k])) { out[k] = names(data[k]); }
      });
    }
    return out;
  }

  function loadMajors() {
    var yearSel = $("year-select");
    var majorSel = $("major-select");
    return api("GET", "/api/majors").then(function (data) {
      state.majors = normaliseMajors(data);
      var years = Object.keys(state.majors).sort().reverse();
      clear(yearSel);
      if (!years.length) {
        yearSel.appendChild(h("option", { value: "", text: "没有可用的培养方案" }));
        return;
      }
      yearSel.appendChild(h("option", { value: "", text: "请选择年级" }));
      years.forEach(function (y) { yearSel.appendChild(h("option", { value: y, text: y + " 级" })); });
      yearSel.disabled = false;
      if (years.length === 1) { yearSel.value = years[0]; }
      fillMajors();
    }).catch(function (f) {
      clear(yearSel);
      yearSel.appendChild(h("option", { value: "", text: "无法加载年级" }));
      showMessage($("start-message"), "error", "无法加载年级和专业列表：" + f.message, f.code);
    });
  }

  function fillMajors() {
    var year = $("year-select").value;
    var majorSel = $("major-select");
    clear(majorSel);
    majorSel.appendChild(h("option", { value: "", text: "全部专业" }));
    var list = (state.majors && state.majors[year]) || [];
    list.forEach(function (m) {
      majorSel.appendChild(h("option", { value: m.name, text: m.code ? m.name + "（" + m.code + "）" : m.name }));
    });
    majorSel.disabled = !list.length;
  }

  /* ---------- start form --------------------------------------------------- */

  function extensionOf(name) {
    var i = name.lastIndexOf(".");
    return i < 0 ? "" : name.slice(i).toLowerCase();
  }

  /* The page's own checks; the server repeats them (and sniffs the content). */
  function checkFile(file) {
    if (!file) { return "请选择要上传的成绩文件（.xlsx 或 .xls）"; }
    var ext = extensionOf(file.name);
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
    var name = $("file-name");
    name.textContent = file ? file.name + "（" + formatBytes(file.size) + "）" : "未选择文件（也可以把文件拖到这里）";
    name.title = file ? file.name : "";
    name.className = "file-name " + (file ? "chosen" : "muted");
  }

  function onFileChange() {
    var file = $("file-input").files[0];
    var msg = $("start-message");
    showChosenFile(file);
    if (!file) { hideMessage(msg); return; }
    var problem = checkFile(file);
    if (problem) { showMessage(msg, "error", problem); } else { hideMessage(msg); }
  }

  /* Dropping a file on the picker is the same as choosing it. */
  function setupDrop() {
    var zone = $("file-drop");
    var input = $("file-input");
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (ev) {
        ev.preventDefault();
        zone.classList.add("dragging");
      });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (ev) {
      ev.preventDefault();
      if (!ev.dataTransfer || !ev.dataTransfer.files.length) { return; }
      try { input.files = ev.dataTransfer.files; } catch (e) { return; }
      onFileChange();
    });
  }

  function onStart(ev) {
    ev.preventDefault();
    var msg = $("start-message");
    var button = $("start-button");
    var file = $("file-input").files[0];
    var problem = checkFile(file);
    if (problem) { showMessage(msg, "error", problem); return; }
    var year = $("year-select").value;
    if (!year) { showMessage(msg, "error", "请选择年级"); return; }
    var form = new FormData();
    form.append("file", file, file.name);
    form.append("year", year);
    var major = $("major-select").value;
    if (major) { form.append("major", major); }
    var priority = $("priority-select").value;
    if (priority && priority !== "normal") { form.append("priority", priority); }
    button.disabled = true;
    showMessage(msg, "info", "正在上传 " + file.name + " …");
    api("POST", "/api/task/start", { body: form }).then(function (data) {
      showMessage(msg, "success", (data && data.message ? data.message : "预测任务已启动") +
        "（任务编号 " + (data && data.task_id ? data.task_id.slice(0, 8) : "") + "）");
      $("file-input").value = "";
      showChosenFile(null);
      refreshTasks();
      refreshMonitor();
    }).catch(function (f) {
      showMessage(msg, "error", "任务未启动：" + f.message, f.code);
    }).then(function () { button.disabled = false; });
  }

  /* ---------- task list ---------------------------------------------------- */

  function anyActive() {
    return state.tasks.some(function (t) { return ACTIVE[t.status]; });
  }

  function schedulePoll() {
    if (state.pollTimer) { clearTimeout(state.pollTimer); state.pollTimer = null; }
    var active = anyActive();
    $("poll-state").textContent = active ? "每 3 秒自动刷新" : "没有进行中的任务，已暂停自动刷新";
    if (active) { state.pollTimer = setTimeout(refreshTasks, POLL_MS); }
    if (active && !state.tickTimer) { state.tickTimer = setInterval(tickElapsed, 1000); }
    if (!active && state.tickTimer) { clearInterval(state.tickTimer); state.tickTimer = null; }
  }

  function refreshTasks() {
    if (state.pollTimer) { clearTimeout(state.pollTimer); state.pollTimer = null; }
    if (state.loadingTasks) { return Promise.resolve(); }
    state.loadingTasks = true;
    return api("GET", "/api/tasks?limit=" + TASK_LIMIT).then(function (data) {
      var list = Array.isArray(data) ? data : (data && data.tasks) || [];
      hideMessage($("tasks-message"));
      renderTasks(list);
    }).catch(function (f) {
      showMessage($("tasks-message"), "error", "无法获取任务列表：" + f.message, f.code);
    }).then(function () {
      state.loadingTasks = false;
      schedulePoll();
    });
  }

  function sortNewestFirst(list) {
    return list.slice().sort(function (a, b) {
      var ta = parseTime(a.created_at) || 0;
      var tb = parseTime(b.created_at) || 0;
      return tb - ta;
    });
  }

  function renderTasks(list) {
    var container = $("task-list");
    var tasks = sortNewestFirst(list);
    state.tasks = tasks;
    if (!tasks.length) {
      clear(container);
      state.cards = {};
      container.appendChild(h("p", { className: "muted empty", text: "暂无任务。选择成绩文件并启动预测后，任务会显示在这里。" }));
      return;
    }
    var seen = {};
    var changed = false;
    var firstCompleted = true;
    var placeholder = container.querySelector(".empty, p.muted");
    if (placeholder) { container.removeChild(placeholder); }
    tasks.forEach(function (task, index) {
      seen[task.id] = true;
      var card = state.cards[task.id];
      if (!card) {
        card = buildCard(task);
        state.cards[task.id] = card;
      }
      if (card.status !== task.status) { changed = true; }
      var newestCompleted = task.status === "completed" && firstCompleted;
      if (task.status === "completed") { firstCompleted = false; }
      updateCard(card, task, newestCompleted);
      var at = container.children[index];
      if (at !== card.root) { container.insertBefore(card.root, at || null); }
    });
    Object.keys(state.cards).forEach(function (id) {
      if (!seen[id]) {
        var gone = state.cards[id].root;
        if (gone.parentNode) { gone.parentNode.removeChild(gone); }
        delete state.cards[id];
      }
    });
    // A task started or finished: the monitoring panel's counts changed too.
    if (changed && state.firstListDone) { refreshMonitor(); }
    state.firstListDone = true;
  }

  function buildCard(task) {
    var card = { status: null, resultsBuilt: false, task: task };
    card.name = h("span", { className: "task-file" });
    card.badge = h("span", { className: "badge" });
    card.meta = h("div", { className: "task-meta" });
    card.cancel = h("button", { type: "button", className: "btn btn-small btn-danger", text: "取消任务" });
    card.cancel.addEventListener("click", function () { cancelTask(card); });
    card.barFill = h("div", { className: "progress-fill" });
    card.bar = h("div", {
      className: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100"
    }, [card.barFill]);
    card.pct = h("span", { className: "progress-pct" });
    card.message = h("span", { className: "task-message" });
    card.elapsed = h("span", { className: "task-elapsed" });
    card.error = h("div", { className: "message message-error", hidden: true });
    card.note = h("div", { className: "message message-info", hidden: true });
    card.results = h("div", { className: "task-results", hidden: true });
    card.root = h("article", { className: "task", "data-task-id": task.id }, [
      h("div", { className: "task-head" }, [
        h("div", { className: "task-title" }, [card.badge, card.name]),
        card.cancel
      ]),
      card.meta,
      h("div", { className: "progress-row" }, [card.bar, card.pct]),
      h("div", { className: "task-status-line" }, [card.message, card.elapsed]),
      card.note,
      card.error,
      card.results
    ]);
    return card;
  }

  /*
   * Results open by themselves when the operator is there to see them: a task
   * that completed while the page watched, one that appeared already completed
   * (a cache hit), and on first load the newest completed task.
   */
  function updateCard(card, task, newestCompleted) {
    var previous = card.status;
    var justCompleted = task.status === "completed" && (previous === null ?
      (state.firstListDone || newestCompleted) : previous !== "completed");
    card.task = task;
    card.status = task.status;
    card.root.setAttribute("data-status", task.status);
    card.name.textContent = task.file_name || task.id;
    card.name.title = task.file_name || "";
    card.badge.textContent = STATUS_TEXT[task.status] || task.status;
    card.badge.className = "badge badge-" + task.status;
    clear(card.meta);
    var bits = [];
    if (task.year) { bits.push(task.year + " 级"); }
    bits.push(task.major ? task.major : "全部专业");
    if (task.priority === "high") { bits.push("高优先级"); }
    bits.push("创建于 " + formatClock(task.created_at));
    if (task.status === "pending" && task.queue_position) { bits.push("排队第 " + task.queue_position + " 位"); }
    bits.push("编号 " + String(task.id).slice(0, 8));
    card.meta.textContent = bits.join(" · ");
    var progress = Math.max(0, Math.min(100, Number(task.progress) || 0));
    card.barFill.style.width = progress + "%";
    card.bar.setAttribute("aria-valuenow", String(progress));
    card.bar.className = "progress progress-" + task.status;
    card.pct.textContent = progress + "%";
    card.message.textContent = task.message || "";
    card.elapsed.textContent = elapsedText(task);
    card.cancel.hidden = !ACTIVE[task.status] || !!task.cancel_requested;
    if (task.status === "failed" && task.error && !task.cancelled) {
      showMessage(card.error, "error", (task.cancelled ? "" : "任务失败：") + task.error,
        task.error_code || null);
    } else {
      hideMessage(card.error);
    }
    if (task.status === "completed" && task.cached) {
      showMessage(card.note, "info", "相同文件、年级和参数的结果已存在，直接复用了缓存结果");
    } else {
      hideMessage(card.note);
    }
    if (task.status === "completed" && (!card.resultsBuilt || card.expired !== !!task.expired)) {
      buildResults(card, task, justCompleted);
    }
    card.results.hidden = task.status !== "completed";
  }

  function tickElapsed() {
    state.tasks.forEach(function (t) {
      var card = state.cards[t.id];
      if (card && ACTIVE[t.status]) { card.elapsed.textContent = elapsedText(t); }
    });
  }

  function cancelTask(card) {
    var task = card.task;
    if (!window.confirm("确定取消任务“" + (task.file_name || task.id) + "”吗？")) { return; }
    card.cancel.disabled = true;
    api("POST", "/api/task/" + encodeURIComponent(task.id) + "/cancel").then(function () {
      showMessage(card.note, "info", "已请求取消任务");
      refreshTasks();
      refreshMonitor();
    }).catch(function (f) {
      showMessage(card.error, "error", "取消失败：" + f.message, f.code);
    }).then(function () { card.cancel.disabled = false; });
  }

  /* ---------- results ------------------------------------------------------ */

  function displayName(taskId, file) {
    var prefix = taskId + "_";
    return file.indexOf(prefix) === 0 ? file.slice(prefix.length) : file;
  }

  /* Which major a result workbook belongs to (…_Predictions_<code>.xlsx). */
  function majorOfFile(file, majors) {
    var m = /_Predictions_([^.]+)\.xlsx?$/i.exec(file);
    if (!m) { return null; }
    if (m[1] === "All") { return "全部专业汇总"; }
    for (var i = 0; i < majors.length; i++) {
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
    var cd = resp.headers.get("Content-Disposition") || "";
    var star = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(cd);
    if (star) {
      try { return decodeURIComponent(star[1].replace(/"/g, "")); } catch (e) { /* fall through */ }
    }
    var plain = /filename\s*=\s*"?([^";]+)"?/i.exec(cd);
    return plain ? plain[1] : fallback;
  }

  /*
   * Downloads go through fetch so the token header is sent and a refusal
   * (404, 410 expired) is shown on the page instead of replacing it.
   */
  function download(url, fallbackName, messageNode) {
    hideMessage(messageNode);
    return api("GET", url, { raw: true }).then(function (resp) {
      return resp.blob().then(function (blob) {
        var objectUrl = URL.createObjectURL(blob);
        var a = h("a", { href: objectUrl, download: filenameFrom(resp, fallbackName), hidden: true });
        document.body.appendChild(a);
        a.click();
        setTimeout(function () { URL.revokeObjectURL(objectUrl); a.parentNode.removeChild(a); }, 60000);
      });
    }).catch(function (f) {
      showMessage(messageNode, "error", "下载失败：" + f.message, f.code);
    });
  }

  function downloadLink(label, url, name, messageNode, extraClass) {
    var a = h("a", { href: url, className: "dl " + (extraClass || ""), "data-file": name, download: name }, [label]);
    a.addEventListener("click", function (ev) {
      ev.preventDefault();
      download(url, name, messageNode);
    });
    return a;
  }

  function buildResults(card, task, open) {
    var box = card.results;
    clear(box);
    card.resultsBuilt = true;
    card.expired = !!task.expired;
    var summary = task.summary || {};
    var majors = Array.isArray(summary.majors) ? summary.majors : [];
    var details = h("details", { className: "results" });
    if (open) { details.open = true; }
    var total = summary.students !== undefined ? "，共 " + summary.students + " 名学生" : "";
    details.appendChild(h("summary", { text: "预测结果：" + majors.length + " 个专业" + total }));
    var body = h("div", { className: "results-body" });
    details.appendChild(body);
    box.appendChild(details);

    var dlMessage = h("div", { className: "message", hidden: true });
    if (task.expired) {
      body.appendChild(h("div", { className: "message message-warn", text: "结果文件已超过保留期限并被清理，无法再下载或导入。" }));
    } else {
      var files = task.result_files || [];
      var links = h("div", { className: "downloads" });
      links.appendChild(h("span", { className: "label", text: "下载结果：" }));
      if (files.length > 1) {
        links.appendChild(downloadLink("全部结果（zip）", zipUrl(task.id),
          "Cohort" + (task.year || "") + "_Predictions.zip", dlMessage, "dl-zip"));
      }
      files.forEach(function (f) {
        var shown = displayName(task.id, f);
        var major = majorOfFile(f, majors);
        links.appendChild(downloadLink(major ? major + " · " + shown : shown, resultUrl(task.id, f),
          shown, dlMessage, "dl-file"));
      });
      body.appendChild(links);
      body.appendChild(dlMessage);
      body.appendChild(buildImport(card, task));
    }

    var warnings = task.warnings || [];
    if (warnings.length) {
      var wl = h("ul", { className: "warnings" });
      warnings.forEach(function (w) { wl.appendChild(h("li", { text: w })); });
      body.appendChild(h("div", { className: "warnings-box" }, [
        h("div", { className: "label", text: "警告（" + warnings.length + "）" }), wl
      ]));
    }

    if (majors.length) {
      var charts = h("div", { className: "charts" });
      body.appendChild(charts);
      // Drawn when first opened: closed results of older tasks cost nothing.
      var draw = function () {
        if (charts.getAttribute("data-drawn")) { return; }
        charts.setAttribute("data-drawn", "1");
        drawCharts(charts, majors, summary.config);
      };
      if (details.open) { draw(); }
      details.addEventListener("toggle", function () { if (details.open) { draw(); } });
    } else {
      body.appendChild(h("p", { className: "muted", text: "该任务没有可显示的汇总数据。" }));
    }
  }

  function drawCharts(container, majors, config) {
    var range = config && isFinite(config.min_grade) && isFinite(config.max_grade) ?
      [Number(config.min_grade), Number(config.max_grade)] : null;
    container.appendChild(h("h3", { text: "各专业预测去向分布" }));
    container.appendChild(h("div", { className: "chart-box" }, [Charts.destinationBars(majors)]));

    var head = h("div", { className: "hist-head" });
    var select = h("select", { className: "hist-major", "aria-label": "选择专业" });
    select.appendChild(h("option", { value: "__all__", text: "全部专业（合计）" }));
    majors.forEach(function (m, i) {
      select.appendChild(h("option", { value: String(i), text: m.major + (m.code ? "（" + m.code + "）" : "") }));
    });
    head.appendChild(h("h3", { text: "最低要求分数分布" }));
    head.appendChild(select);
    container.appendChild(head);
    var note = h("p", { className: "muted small" });
    container.appendChild(note);
    var grid = h("div", { className: "hist-grid" });
    container.appendChild(grid);

    function show() {
      var chosen = select.value === "__all__" ? majors : [majors[Number(select.value)]];
      var h1 = Charts.mergeHistograms(chosen.map(function (m) { return m.histogram_1; }));
      var h2 = Charts.mergeHistograms(chosen.map(function (m) { return m.histogram_2; }));
      var students = 0, r1 = 0, r2 = 0, complete = 0;
      chosen.forEach(function (m) {
        students += Number(m.students || 0);
        r1 += Number(m.reachable_1 || 0);
        r2 += Number(m.reachable_2 || 0);
        complete += Number(m.no_missing_courses || 0);
      });
      note.textContent = "共 " + students + " 名学生，其中 " + complete +
        " 人已修完全部课程（无需计算最低分）；能够达到的：保研 " + r1 + " 人，出国 " + r2 +
        " 人。图中为这些学生的未修课程统一需要考到的最低分数。";
      clear(grid);
      grid.appendChild(h("div", { className: "chart-box" }, [
        Charts.histogram(h1, { title: "保研（去向 1）最低要求分数", color: Charts.DESTINATIONS[0].color, range: range })
      ]));
      grid.appendChild(h("div", { className: "chart-box" }, [
        Charts.histogram(h2, { title: "出国（去向 2）最低要求分数", color: Charts.DESTINATIONS[1].color, range: range })
      ]));
    }
    select.addEventListener("change", show);
    show();
  }

  /* ---------- database import ---------------------------------------------- */

  function buildImport(card, task) {
    var wrap = h("div", { className: "import" });
    var button = h("button", { type: "button", className: "btn btn-primary btn-small", text: "导入数据库" });
    var grades = h("input", { type: "checkbox", className: "import-grades" });
    var out = h("div", { className: "import-result" });
    button.addEventListener("click", function () {
      button.disabled = true;
      clear(out);
      out.appendChild(h("div", { className: "message message-info", text: "正在导入数据库…" }));
      var body = JSON.stringify({ grades: grades.checked });
      api("POST", "/api/task/" + encodeURIComponent(task.id) + "/import",
        { body: body, contentType: "application/json" }).then(function (data) {
        clear(out);
        out.appendChild(renderImport(data));
      }).catch(function (f) {
        clear(out);
        var m = h("div");
        showMessage(m, "error", "导入失败：" + f.message, f.code);
        out.appendChild(m);
      }).then(function () { button.disabled = false; });
    });
    wrap.appendChild(h("div", { className: "import-row" }, [
      button,
      h("label", { className: "small" }, [grades, " 同时导入成绩（academic_results）"])
    ]));
    wrap.appendChild(out);
    card.importWrap = wrap;
    updateImportVisibility(card);
    return wrap;
  }

  function updateImportVisibility(card) {
    if (card.importWrap) { card.importWrap.hidden = !state.importEnabled; }
  }

  /* The import answer: rows per major table, plus grades and warnings. */
  function renderImport(data) {
    data = data || {};
    var rows = [];
    (Array.isArray(data.majors) ? data.majors : []).forEach(function (item) {
      if (!item || typeof item !== "object") { return; }
      rows.push({ major: item.major || item.code || "", table: item.table || "", rows: item.rows });
    });
    var total = data.total_rows;
    if (typeof total !== "number") {
      total = 0;
      rows.forEach(function (r) { total += Number(r.rows || 0); });
    }
    var box = h("div", { className: "message message-success" });
    box.appendChild(h("div", { text: "导入完成：" + rows.length + " 个专业，共 " + total + " 行" +
      (data.backend ? "（" + data.backend + "）" : "") }));
    var table = h("table", { className: "import-table" }, [
      h("thead", null, [h("tr", null, [h("th", { text: "专业" }), h("th", { text: "数据表" }), h("th", { text: "行数" })])])
    ]);
    var tbody = h("tbody");
    rows.forEach(function (r) {
      tbody.appendChild(h("tr", null, [h("td", { text: r.major }), h("td", { text: r.table }),
        h("td", { className: "num", text: r.rows === undefined ? "—" : r.rows })]));
    });
    if (data.grades && typeof data.grades === "object") {
      tbody.appendChild(h("tr", null, [h("td", { text: "成绩（" + (data.grades.year || "") + " 级）" }),
        h("td", { text: data.grades.table || "" }), h("td", { className: "num", text: data.grades.rows })]));
    }
    table.appendChild(tbody);
    box.appendChild(table);
    (Array.isArray(data.warnings) ? data.warnings : []).forEach(function (w) {
      box.appendChild(h("div", { className: "small", text: "提示：" + w }));
    });
    return box;
  }

  /* ---------- monitoring panel --------------------------------------------- */

  function stat(label, value, extra) {
    return h("div", { className: "stat " + (extra || "") }, [
      h("div", { className: "stat-value", text: value }),
      h("div", { className: "stat-label", text: label })
    ]);
  }

  function refreshMonitor() {
    if (state.monitorTimer) { clearTimeout(state.monitorTimer); state.monitorTimer = null; }
    return api("GET", "/api/monitor").then(function (data) {
      applyServiceInfo(data);
      renderMonitor(data);
    }).catch(function (f) {
      var body = $("monitor-body");
      clear(body);
      var m = h("div");
      showMessage(m, "error", "无法获取监控数据：" + f.message, f.code);
      body.appendChild(m);
    }).then(function () {
      // Two refreshes may overlap (a manual one during the timed one): keep one timer.
      if (state.monitorTimer) { clearTimeout(state.monitorTimer); }
      state.monitorTimer = setTimeout(refreshMonitor, MONITOR_MS);
    });
  }

  function renderMonitor(d) {
    var body = $("monitor-body");
    clear(body);
    var w = d.workers || {};
    var disk = d.disk || {};
    body.appendChild(h("div", { className: "stats" }, [
      stat("运行中", String(w.running !== undefined ? w.running : "—"), w.running ? "stat-active" : ""),
      stat("等待中", String(w.pending !== undefined ? w.pending : "—")),
      stat("并发上限", String(w.max !== undefined ? w.max : "—")),
      stat("运行时长", formatDuration(d.uptime_s))
    ]));
    var facts = h("dl", { className: "facts" });
    function fact(k, v) { facts.appendChild(h("dt", { text: k })); facts.appendChild(h("dd", { text: v })); }
    fact("模型版本", d.model_version || "—");
    fact("上传目录", formatBytes(disk.uploads_bytes) + "（" + (disk.uploads_files || 0) + " 个文件）");
    fact("结果目录", formatBytes(disk.results_bytes) + "（" + (disk.results_files || 0) + " 个文件）");
    if (disk.free_bytes !== undefined) { fact("磁盘剩余", formatBytes(disk.free_bytes)); }
    if (w.max_pending !== undefined) { fact("排队上限", String(w.max_pending)); }
    if (d.counts) {
      fact("累计任务", "已完成 " + (d.counts.completed || 0) + " · 失败 " + (d.counts.failed || 0));
    }
    fact("数据库导入", d.import_enabled ? "已配置" : "未配置");
    body.appendChild(facts);

    var recent = d.recent_tasks || [];
    body.appendChild(h("h3", { text: "最近任务" }));
    if (!recent.length) {
      body.appendChild(h("p", { className: "muted small", text: "暂无任务" }));
    } else {
      var tb = h("tbody");
      recent.forEach(function (t) {
        tb.appendChild(h("tr", null, [
          h("td", { className: "ellipsis", title: t.file_name || "", text: t.file_name || t.id }),
          h("td", null, [h("span", { className: "badge badge-" + t.status, text: STATUS_TEXT[t.status] || t.status })]),
          h("td", { className: "num", text: t.duration_s !== null && t.duration_s !== undefined ? formatDuration(t.duration_s) : "—" })
        ]));
      });
      body.appendChild(h("table", { className: "mini-table" }, [
        h("thead", null, [h("tr", null, [h("th", { text: "文件" }), h("th", { text: "状态" }), h("th", { text: "用时" })])]),
        tb
      ]));
    }
    var failures = d.recent_failures || [];
    body.appendChild(h("h3", { text: "最近失败" }));
    if (!failures.length) {
      body.appendChild(h("p", { className: "muted small", text: "最近没有失败的任务" }));
    } else {
      var ul = h("ul", { className: "failures" });
      failures.forEach(function (f) {
        ul.appendChild(h("li", null, [
          h("span", { className: "muted small", text: formatClock(f.finished_at) + " " }),
          h("strong", { text: (f.file_name || f.id) + "：" }),
          h("span", { text: f.error || "未知错误" }),
          f.error_code ? h("span", { className: "code", text: f.error_code }) : null
        ]));
      });
      body.appendChild(ul);
    }
    $("monitor-updated").textContent = "更新于 " + formatClock(new Date().toISOString()) + "，每 5 秒自动刷新";
  }

  /* ---------- start-up ----------------------------------------------------- */

  function init() {
    $("start-form").addEventListener("submit", onStart);
    $("file-input").addEventListener("change", onFileChange);
    setupDrop();
    $("year-select").addEventListener("change", fillMajors);
    $("refresh-button").addEventListener("click", function () {
      refreshTasks();
      refreshMonitor();
      loadHealth();
    });
    loadHealth();
    // Sequential on purpose: with a token required the first call opens the
    // token form and the others then reuse the token instead of asking again.
    loadMajors().then(refreshTasks).then(refreshMonitor);
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); }
  else { init(); }
})();
