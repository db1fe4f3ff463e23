// logscan report: the filterable completions table. Model text is untrusted, so every cell is
// built with createElement + textContent (never parsed as HTML), and the page's CSP allows only this
// script (by hash).
(function () {
  "use strict";
  var dataEl = document.getElementById("completions-data");
  if (!dataEl) { return; }
  var payload = JSON.parse(dataEl.textContent || "{\"rows\":[]}");
  var rows = payload.rows || [];
  var PAGE = 100;
  var shown = PAGE;
  var body = document.getElementById("completions-body");
  var countEl = document.getElementById("row-count");
  var moreBtn = document.getElementById("more-rows");
  var f = {
    text: document.getElementById("f-text"),
    split: document.getElementById("f-split"),
    stepMin: document.getElementById("f-step-min"),
    stepMax: document.getElementById("f-step-max"),
    rewardMin: document.getElementById("f-reward-min"),
    rewardMax: document.getElementById("f-reward-max"),
    alert: document.getElementById("f-alert")
  };

  function addOptions(select, values) {
    values.forEach(function (v) {
      var o = document.createElement("option");
      o.value = v;
      o.textContent = v;
      select.appendChild(o);
    });
  }
  var splits = {}, kinds = {};
  rows.forEach(function (r) {
    splits[r.split] = true;
    (r.al || []).forEach(function (k) { kinds[k] = true; });
    // Lower-cased haystack computed once: filtering stays instant on thousands of rows.
    r._hay = [r.qid, r.q, r.out, r.ans, r.gt].join("\u0001").toLowerCase();
  });
  addOptions(f.split, Object.keys(splits).sort());
  addOptions(f.alert, Object.keys(kinds).sort());

  function num(el) {
    var v = el.value.trim();
    return v === "" ? null : Number(v);
  }
  function fmt(x) {
    if (x === null || x === undefined) { return "—"; }
    return Math.abs(x) >= 1000 || x === Math.round(x) ? String(x) : x.toPrecision(3).replace(/\.?0+$/, "");
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function matches(r) {
    var q = f.text.value.trim().toLowerCase();
    if (q) {
      var ids = q.split(/[\s,#]+/).filter(Boolean);
      if (q.charAt(0) === "#" && ids.every(function (x) { return /^\d+$/.test(x); })) {
        if (ids.indexOf(String(r.id)) < 0) { return false; }
      } else if (r._hay.indexOf(q) < 0) { return false; }
    }
    if (f.split.value && r.split !== f.split.value) { return false; }
    var s0 = num(f.stepMin), s1 = num(f.stepMax), r0 = num(f.rewardMin), r1 = num(f.rewardMax);
    if (s0 !== null && (r.step === null || r.step < s0)) { return false; }
    if (s1 !== null && (r.step === null || r.step > s1)) { return false; }
    if (r0 !== null && (r.r === null || r.r < r0)) { return false; }
    if (r1 !== null && (r.r === null || r.r > r1)) { return false; }
    var a = f.alert.value;
    if (a === "*" && !(r.al && r.al.length)) { return false; }
    if (a && a !== "*" && (r.al || []).indexOf(a) < 0) { return false; }
    return true;
  }

  function rowFor(r) {
    var tr = el("tr", r.al && r.al.length ? "linked" : "");
    tr.id = "sample-" + r.id;
    tr.appendChild(el("td", "num", r.id));
    tr.appendChild(el("td", "num", r.step === null ? "—" : r.step));
    tr.appendChild(el("td", "", r.split));
    var rc = el("td", "num", fmt(r.r));
    var names = Object.keys(r.rw || {});
    if (names.length) {
      rc.appendChild(el("br"));
      names.forEach(function (n) { rc.appendChild(el("div", "rw", n + " " + fmt(r.rw[n]))); });
    }
    tr.appendChild(rc);
    var qc = el("td", "q", r.q);
    if (r.qid) { qc.title = "question " + r.qid; }
    tr.appendChild(qc);
    var tc = el("td", "text");
    var clip = el("div", "clip", r.out);
    clip.title = "click to expand";
    clip.addEventListener("click", function () { clip.classList.toggle("open"); });
    tc.appendChild(clip);
    if (r.cut) { tc.appendChild(el("div", "cut", "(cut for the report)")); }
    tr.appendChild(tc);
    var ac = el("td", "");
    ac.appendChild(el("div", "", r.ans === null || r.ans === undefined ? "—" : r.ans));
    if (r.gt !== null && r.gt !== undefined) { ac.appendChild(el("div", "rw", "truth: " + r.gt)); }
    tr.appendChild(ac);
    var alc = el("td", "");
    (r.al || []).forEach(function (k) { alc.appendChild(el("span", "alert-tag", k)); });
    tr.appendChild(alc);
    return tr;
  }

  function render() {
    var hits = rows.filter(matches);
    while (body.firstChild) { body.removeChild(body.firstChild); }
    var frag = document.createDocumentFragment();
    hits.slice(0, shown).forEach(function (r) { frag.appendChild(rowFor(r)); });
    body.appendChild(frag);
    var n = Math.min(shown, hits.length);
    countEl.textContent = hits.length + " of " + rows.length + " completions match" +
      (hits.length > n ? " (showing the first " + n + ")" : "");
    countEl.setAttribute("data-count", String(hits.length));
    moreBtn.hidden = hits.length <= n;
  }

  var timer = null;
  function schedule() {
    shown = PAGE;
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(render, 80);
  }
  Object.keys(f).forEach(function (k) {
    f[k].addEventListener("input", schedule);
    f[k].addEventListener("change", schedule);
  });
  document.getElementById("filters").addEventListener("reset", function () { setTimeout(schedule, 0); });
  document.getElementById("filters").addEventListener("submit", function (e) { e.preventDefault(); });
  moreBtn.addEventListener("click", function () { shown += PAGE * 5; render(); });
  Array.prototype.forEach.call(document.querySelectorAll("button.show-samples"), function (b) {
    b.addEventListener("click", function () {
      var ids = (b.getAttribute("data-ids") || "").split(",").filter(Boolean);
      f.text.value = "#" + ids.join(",#");
      f.alert.value = "";
      render();
      document.getElementById("completions").scrollIntoView();
    });
  });
  render();
})();
