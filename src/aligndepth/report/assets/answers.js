// aligndepth report: the answers table of each experiment (no network, no library).
// Each <div class="answers"> holds its records as JSON: {experiment, records, setting,
// axes, prompts, rows: [id, prompt index, outcome, setting, answer, judge, ...axes],
// page_size}. Rows are filtered by verdict, by each axis and by a search, then shown a
// page at a time.
(function () {
  "use strict";
  var ID = 0, PROMPT = 1, OUTCOME = 2, SETTING = 3, ANSWER = 4, JUDGE = 5, AXES = 6;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }

  function isNumber(v) { return v !== "" && !isNaN(Number(v)); }

  function natural(values) {  // numbers in numeric order, then the rest alphabetically
    return values.sort(function (a, b) {
      var na = isNumber(a), nb = isNumber(b);
      if (na && nb) return Number(a) - Number(b);
      if (na !== nb) return na ? -1 : 1;
      return a < b ? -1 : a > b ? 1 : 0;
    });
  }

  function counts(rows, index) {
    var seen = {};
    rows.forEach(function (r) { seen[r[index]] = (seen[r[index]] || 0) + 1; });
    return seen;
  }

  function select(label, cls, index, rows, axis) {
    var seen = counts(rows, index);
    var s = el("select", {"class": cls, "data-axis": axis});
    s.appendChild(el("option", {value: "", text: "all"}));
    natural(Object.keys(seen)).forEach(function (v) {
      s.appendChild(el("option", {value: v, text: (v === "" ? "(none)" : v) + " (" + seen[v] + ")"}));
    });
    return [el("label", {text: label}, [s]), s];
  }

  function highlighted(text, query) {  // text nodes, with <mark> around each match
    var cell = el("div", {"class": "cell"});
    if (!query) { cell.textContent = text; return cell; }
    var lower = text.toLowerCase(), at = 0, i;
    while ((i = lower.indexOf(query, at)) !== -1) {
      cell.appendChild(document.createTextNode(text.slice(at, i)));
      cell.appendChild(el("mark", {text: text.slice(i, i + query.length)}));
      at = i + query.length;
    }
    cell.appendChild(document.createTextNode(text.slice(at)));
    return cell;
  }

  function build(root) {
    var data = JSON.parse(root.querySelector("script[type='application/json']").textContent);
    var rows = data.rows, prompts = data.prompts, size = data.page_size || 25;
    var state = {page: 0, matches: rows, haystack: null};
    var controls = el("div", {"class": "answers-controls"});
    var verdict = select("verdict", "answers-verdict", OUTCOME, rows, "verdict");
    controls.appendChild(verdict[0]);
    var axes = data.axes.map(function (name, j) {
      var made = select(name, "answers-axis", AXES + j, rows, name);
      controls.appendChild(made[0]);
      return made[1];
    });
    var search = el("input", {"class": "answers-search", type: "search",
                              placeholder: "search prompts, answers, judge"});
    controls.appendChild(el("label", {text: "search"}, [search]));
    var count = el("div", {"class": "answers-count"});
    var head = ["prompt id", "prompt"].concat(data.axes, [data.setting, "answer", "verdict", "judge"]);
    var widths = ["col-id", "col-prompt"].concat(data.axes.map(function () { return "col-axis"; }),
                                               ["col-setting", "col-answer", "col-verdict", "col-judge"]);
    var table = el("table", {"class": "answers-table"}, [
      el("thead", {}, [el("tr", {}, head.map(function (h, i) {
        return el("th", {"class": widths[i], text: h});
      }))]), el("tbody")]);
    var pager = el("div", {"class": "answers-pager"});
    var first = el("button", {type: "button", text: "« first"}),
        prev = el("button", {type: "button", text: "‹ previous"}),
        next = el("button", {type: "button", text: "next ›"}),
        last = el("button", {type: "button", text: "last »"}),
        where = el("span", {"class": "answers-page"});
    [first, prev, where, next, last].forEach(function (b) { pager.appendChild(b); });
    root.appendChild(controls);
    root.appendChild(count);
    root.appendChild(table);
    root.appendChild(pager);

    function haystack() {  // built on the first search only
      if (!state.haystack) {
        state.haystack = rows.map(function (r) {
          return [r[ID], prompts[r[PROMPT]], r[SETTING], r[ANSWER], r[JUDGE]].join("\n").toLowerCase();
        });
      }
      return state.haystack;
    }

    function filter() {
      var want = verdict[1].value, query = search.value.trim().toLowerCase();
      var wanted = axes.map(function (s) { return s.value; });
      var hay = query ? haystack() : null;
      state.matches = rows.filter(function (r, i) {
        if (want && r[OUTCOME] !== want) return false;
        for (var j = 0; j < wanted.length; j++) {
          if (wanted[j] && r[AXES + j] !== wanted[j]) return false;
        }
        return !hay || hay[i].indexOf(query) !== -1;
      });
      state.page = 0;
      render();
    }

    function render() {
      var pages = Math.max(1, Math.ceil(state.matches.length / size));
      state.page = Math.min(Math.max(0, state.page), pages - 1);
      var start = state.page * size, shown = state.matches.slice(start, start + size);
      var query = search.value.trim().toLowerCase();
      var body = el("tbody");
      shown.forEach(function (r) {
        var cells = [r[ID], prompts[r[PROMPT]]].concat(r.slice(AXES), [r[SETTING], r[ANSWER]]);
        var tr = el("tr");
        cells.forEach(function (c) { tr.appendChild(el("td", {}, [highlighted(String(c), query)])); });
        tr.appendChild(el("td", {"class": "v-" + r[OUTCOME], text: r[OUTCOME].replace("_", " ")}));
        tr.appendChild(el("td", {}, [highlighted(r[JUDGE], query)]));
        body.appendChild(tr);
      });
      table.replaceChild(body, table.tBodies[0]);
      var n = state.matches.length;
      count.setAttribute("data-count", String(n));
      count.textContent = n ? "records " + (start + 1) + "–" + (start + shown.length) + " of " + n
        + " matching (" + rows.length + " in all)" : "no record matches (" + rows.length + " in all)";
      where.textContent = "page " + (state.page + 1) + " of " + pages;
      first.disabled = prev.disabled = state.page === 0;
      next.disabled = last.disabled = state.page >= pages - 1;
    }

    var timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(filter, 150);
    });
    verdict[1].addEventListener("change", filter);
    axes.forEach(function (s) { s.addEventListener("change", filter); });
    first.addEventListener("click", function () { state.page = 0; render(); });
    prev.addEventListener("click", function () { state.page -= 1; render(); });
    next.addEventListener("click", function () { state.page += 1; render(); });
    last.addEventListener("click", function () { state.page = Infinity; render(); });
    render();
    root.setAttribute("data-ready", "1");
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("div.answers"), build);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
