/*
 * charts.js — inline SVG charts for the console (an ES module).
 *
 * Why hand-drawn SVG: the page must make no request outside this service and
 * needs no build step, so there is no charting library; two chart kinds are
 * all it needs. Each function returns a detached <svg> element sized by its
 * viewBox so it scales with the card it is put in.
 *
 * Exports: DESTINATIONS (codes, names, colours), destinationBars(majors),
 * histogram(hist, opts), mergeHistograms(list). Used by results.js.
 */
const SVG_NS = "http://www.w3.org/2000/svg";

/* Destination codes of the engine summary and how the page names them. */
export const DESTINATIONS = Object.freeze([
  { key: "1", label: "保研", color: "#2f6fde" },
  { key: "2", label: "出国", color: "#e8893a" },
  { key: "3", label: "就业", color: "#3aa675" }
].map(Object.freeze));

function el(name, attrs, text) {
  var node = document.createElementNS(SVG_NS, name);
  if (attrs) {
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
  }
  if (text !== undefined && text !== null) { node.textContent = String(text); }
  return node;
}

function svgRoot(width, height, label, kind) {
  var svg = el("svg", {
    viewBox: "0 0 " + width + " " + height,
    width: "100%",
    role: "img",
    "aria-label": label,
    "class": "chart chart-" + kind,
    "data-chart": kind,
    preserveAspectRatio: "xMinYMin meet"
  });
  svg.appendChild(el("title", null, label));
  return svg;
}

/* Rough display width of a label: CJK glyphs are about twice a Latin one. */
function textWidth(s, size) {
  var w = 0;
  for (var i = 0; i < s.length; i++) { w += s.charCodeAt(i) > 0x2e80 ? size : size * 0.6; }
  return w;
}

function shorten(s, size, max) {
  if (textWidth(s, size) <= max) { return s; }
  var out = s;
  while (out.length > 1 && textWidth(out + "…", size) > max) { out = out.slice(0, -1); }
  return out + "…";
}

/* "Nice" tick step so an axis shows 3-6 round numbers. */
function niceStep(maxValue, wanted) {
  if (maxValue <= 0) { return 1; }
  var raw = maxValue / wanted;
  var mag = Math.pow(10, Math.floor(Math.log10(raw)));
  var norm = raw / mag;
  var step = norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10;
  return Math.max(1, step * mag);
}

function legend(svg, x, y) {
  var cx = x;
  DESTINATIONS.forEach(function (d) {
    svg.appendChild(el("rect", { x: cx, y: y - 10, width: 12, height: 12, rx: 2, fill: d.color }));
    svg.appendChild(el("text", { x: cx + 17, y: y, "class": "chart-legend" }, d.label));
    cx += 17 + textWidth(d.label, 13) + 22;
  });
}

/*
 * Per major, one horizontal bar split into 保研 / 出国 / 就业. Bar length is
 * proportional to the major's student count so sizes compare across majors;
 * each segment is labelled with its count when it is wide enough.
 */
export function destinationBars(majors) {
  var rowH = 30;
  var labelW = 150;
  var width = 680;
  var right = 56;
  var top = 34;
  var height = top + majors.length * rowH + 10;
  var svg = svgRoot(width, height, "各专业预测去向分布", "destinations");
  legend(svg, labelW, 18);
  var maxStudents = 1;
  majors.forEach(function (m) { maxStudents = Math.max(maxStudents, totalOf(m)); });
  var barMax = width - labelW - right;
  majors.forEach(function (m, i) {
    var y = top + i * rowH;
    var name = m.major || m.code || "";
    var label = el("text", { x: labelW - 8, y: y + 17, "text-anchor": "end", "class": "chart-label" },
      shorten(name, 13, labelW - 12));
    label.appendChild(el("title", null, name));
    svg.appendChild(label);
    var total = totalOf(m);
    var x = labelW;
    DESTINATIONS.forEach(function (d) {
      var n = Number((m.destinations || {})[d.key] || 0);
      if (n <= 0) { return; }
      var w = barMax * n / maxStudents;
      var rect = el("rect", {
        x: x.toFixed(2), y: y + 4, width: Math.max(w, 1).toFixed(2), height: rowH - 10,
        fill: d.color, "class": "bar", "data-destination": d.key, "data-count": n
      });
      var pct = total ? " (" + (100 * n / total).toFixed(1) + "%)" : "";
      rect.appendChild(el("title", null, name + " · " + d.label + "：" + n + " 人" + pct));
      svg.appendChild(rect);
      if (w >= textWidth(String(n), 11) + 6) {
        svg.appendChild(el("text", {
          x: (x + w / 2).toFixed(2), y: y + 18, "text-anchor": "middle", "class": "chart-bar-text"
        }, n));
      }
      x += w;
    });
    svg.appendChild(el("text", { x: (x + 6).toFixed(2), y: y + 18, "class": "chart-total" }, total + " 人"));
  });
  return svg;
}

function totalOf(m) {
  var d = m.destinations || {};
  var sum = 0;
  DESTINATIONS.forEach(function (x) { sum += Number(d[x.key] || 0); });
  return sum || Number(m.students || 0);
}

/* Add histograms key by key (used for the all-majors view). */
export function mergeHistograms(list) {
  var out = {};
  list.forEach(function (h) {
    Object.keys(h || {}).forEach(function (k) { out[k] = (out[k] || 0) + Number(h[k] || 0); });
  });
  return out;
}

/*
 * Histogram of minimum required scores ({"score": count}). Every score of
 * the range gets a slot (empty slots show gaps honestly); wide ranges are
 * grouped into bins of equal width so bars stay readable.
 */
export function histogram(hist, opts) {
  opts = opts || {};
  var title = opts.title || "最低要求分数分布";
  var color = opts.color || "#2f6fde";
  var width = 420;
  var height = 230;
  var left = 40;
  var bottom = 36;
  var top = 28;
  var right = 10;
  var svg = svgRoot(width, height, title, "histogram");
  svg.appendChild(el("text", { x: left, y: 16, "class": "chart-title" }, title));
  var scores = Object.keys(hist || {}).map(Number).filter(function (v) { return isFinite(v); });
  var total = 0;
  scores.forEach(function (s) { total += Number(hist[String(s)] || 0); });
  if (!scores.length || total === 0) {
    svg.appendChild(el("text", {
      x: width / 2, y: height / 2, "text-anchor": "middle", "class": "chart-empty"
    }, "无可达学生"));
    return svg;
  }
  var lo = Math.min.apply(null, scores);
  var hi = Math.max.apply(null, scores);
  // The whole searched range (min_grade..max_grade) as the axis, so charts
  // of different majors and destinations line up and compare at a glance.
  if (opts.range && isFinite(opts.range[0]) && isFinite(opts.range[1])) {
    lo = Math.min(lo, Number(opts.range[0]));
    hi = Math.max(hi, Number(opts.range[1]));
  }
  var binW = Math.max(1, Math.ceil((hi - lo + 1) / 32));
  var bins = [];
  for (var start = lo; start <= hi; start += binW) { bins.push({ lo: start, hi: start + binW - 1, n: 0 }); }
  scores.forEach(function (s) {
    bins[Math.floor((s - lo) / binW)].n += Number(hist[String(s)] || 0);
  });
  var maxN = 1;
  bins.forEach(function (b) { maxN = Math.max(maxN, b.n); });
  var step = niceStep(maxN, 4);
  var yMax = Math.ceil(maxN / step) * step;
  var plotW = width - left - right;
  var plotH = height - top - bottom;
  for (var t = 0; t <= yMax; t += step) {
    var ty = top + plotH - plotH * t / yMax;
    svg.appendChild(el("line", { x1: left, x2: width - right, y1: ty, y2: ty, "class": "chart-grid" }));
    svg.appendChild(el("text", { x: left - 5, y: ty + 4, "text-anchor": "end", "class": "chart-axis" }, t));
  }
  var slot = plotW / bins.length;
  var gap = slot > 6 ? 1.5 : 0.5;
  var labelEvery = Math.max(1, Math.ceil(bins.length / 8));
  bins.forEach(function (b, i) {
    var x = left + i * slot;
    var h = plotH * b.n / yMax;
    var name = binW === 1 ? b.lo + " 分" : b.lo + "–" + b.hi + " 分";
    if (b.n > 0) {
      var rect = el("rect", {
        x: (x + gap / 2).toFixed(2), y: (top + plotH - h).toFixed(2),
        width: Math.max(slot - gap, 0.5).toFixed(2), height: h.toFixed(2),
        fill: color, "class": "bar", "data-score": b.lo, "data-count": b.n
      });
      rect.appendChild(el("title", null, name + "：" + b.n + " 人"));
      svg.appendChild(rect);
    }
    if (i % labelEvery === 0 || i === bins.length - 1 && bins.length <= 8) {
      svg.appendChild(el("text", {
        x: (x + slot / 2).toFixed(2), y: top + plotH + 15, "text-anchor": "middle", "class": "chart-axis"
      }, b.lo));
    }
  });
  svg.appendChild(el("line", {
    x1: left, x2: width - right, y1: top + plotH, y2: top + plotH, "class": "chart-baseline"
  }));
  svg.appendChild(el("text", {
    x: left + plotW / 2, y: height - 4, "text-anchor": "middle", "class": "chart-axis-title"
  }, "最低要求分数（共 " + total + " 人）"));
  return svg;
}
