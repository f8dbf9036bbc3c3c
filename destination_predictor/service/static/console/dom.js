/*
 * dom.js — small element helpers shared by every console module.
 *
 * Why: the page builds its markup by hand (no framework, no build step); these
 * few helpers keep that short and uniform. They hold no state of their own.
 *
 * Exports: $ (element by id), h (create an element with attributes and
 * children), clear (empty a node), showMessage / hideMessage (message boxes),
 * codeNote (an API error code, shown as secondary).
 */

export function $(id) { return document.getElementById(id); }

function isAbsent(v) { return v === null || v === undefined || v === false; }

function setAttr(node, k, v) {
  if (isAbsent(v)) { return; }
  if (k === "text") { node.textContent = String(v); }
  else if (k === "className") { node.className = v; }
  else if (k.slice(0, 2) === "on" && typeof v === "function") { node.addEventListener(k.slice(2), v); }
  else { node.setAttribute(k, v === true ? "" : String(v)); }
}

function toNode(c) {
  return typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c;
}

/* h("div", {className: "x", text: "…"}, [child, "text", …]) */
export function h(tag, attrs, children) {
  const node = document.createElement(tag);
  if (attrs) { Object.keys(attrs).forEach((k) => setAttr(node, k, attrs[k])); }
  (children || []).forEach((c) => {
    if (!isAbsent(c)) { node.appendChild(toNode(c)); }
  });
  return node;
}

export function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

/*
 * The API's machine code (QUEUE_FULL, …) after a Chinese message: kept for the
 * administrator, but secondary for staff (smaller and grey, see .code).
 */
export function codeNote(code) {
  return h("span", { className: "code", "data-code": code, title: "错误代码（联系管理员时请提供）",
    text: "（代码：" + code + "）" });
}

/*
 * kind: "error" | "info" | "success" | "warn"; code: the API's error code, if
 * any (only a string: a script error's numeric DOMException code is no API code).
 */
export function showMessage(node, kind, text, code) {
  clear(node);
  node.className = "message message-" + kind;
  node.appendChild(document.createTextNode(text));
  if (typeof code === "string" && code) { node.appendChild(codeNote(code)); }
  node.hidden = false;
}

export function hideMessage(node) { node.hidden = true; clear(node); }
