// The status page's only script (served from the binary): every few seconds it reads the JSON
// API (/api/v1/containers, the page's incidents from /api/v1/incidents, /healthz) and the
// timeline drawn from the same incidents, and redraws the page in place. Values are set as
// text, never as markup.
"use strict";
(function () {
  var POLL_MS = 3000;
  var body = document.body;
  var live = document.getElementById("live");
  var table = document.querySelector("#containers tbody");
  if (!table) {
    if (live) live.textContent = "";
    return;
  }
  var since = body.dataset.since || "24h";
  // The page of incidents shown: the newest, or those older than `before`.
  var before = body.dataset.before || "";
  var limit = body.dataset.limit || "50";
  var last = {};

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function stateClass(s) {
    switch (s) {
      case "healthy": return "ok";
      case "starting": case "failing": case "restarting": case "backing_off": case "unhealthy":
        return "warn";
      case "quarantined": case "exited": case "ignored": return "bad";
      default: return "idle";
    }
  }
  function outcomeClass(o) {
    return o === "recovered" ? "ok" : o === "open" ? "warn" : "bad";
  }
  function badge(text, cls) { return el("span", "state " + cls, text); }
  function textOf(v) {
    if (v === undefined || v === null) return "";
    return typeof v === "string" ? v : JSON.stringify(v);
  }
  function incidentLink(id) {
    var a = el("a", null, "#" + id);
    a.href = "/incidents/" + encodeURIComponent(id);
    return a;
  }
  function names(list) {
    if (!Array.isArray(list)) return [];
    return list.map(function (d) {
      if (d && typeof d === "object" && "name" in d) {
        var via = textOf(d.via);
        return textOf(d.name) + (via ? " (" + via + ")" : "");
      }
      return textOf(d);
    });
  }
  function td(tr, children) {
    var cell = el("td");
    children.forEach(function (c) {
      if (c === null) return;
      cell.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    tr.appendChild(cell);
    return cell;
  }

  function containerRow(c) {
    var tr = el("tr");
    tr.dataset.name = c.name;
    td(tr, [c.name]);
    var st = [badge(c.state, stateClass(c.state))];
    if (c.restart_in_flight) st.push(" ", el("span", "muted", "(restart in flight)"));
    if (c.cannot_observe) st.push(" ", el("span", "muted", "cannot observe: " + c.cannot_observe));
    td(tr, st);
    td(tr, [textOf(c.docker_health)]);
    var used = c.restarts_in_window || 0;
    td(tr, [c.spec ? used + " of " + c.spec.restart_max + " in " + c.spec.restart_window : String(used)]);
    var i = c.last_incident;
    td(tr, i ? [incidentLink(i.id), " " + i.trigger + " ", badge(i.outcome, outcomeClass(i.outcome)),
      " " + i.detected] : []);
    td(tr, (c.label_errors || []).map(function (e) {
      var d = el("div", "label-error");
      d.appendChild(el("code", null, e.label + "=" + e.value));
      d.appendChild(document.createTextNode(": " + e.reason));
      return d;
    }));
    var deps = [];
    var after = names(c.depends_on);
    if (after.length) deps.push(el("div", null, "after: " + after.join(", ")));
    var dependents = names(c.dependents);
    if (dependents.length) deps.push(el("div", null, "dependents: " + dependents.join(", ")));
    if (textOf(c.waiting_on)) deps.push(el("div", null, "waiting on: " + textOf(c.waiting_on)));
    if (textOf(c.dependency_error)) deps.push(el("div", "label-error", textOf(c.dependency_error)));
    td(tr, deps);
    return tr;
  }

  function incidentRow(i) {
    var tr = el("tr");
    tr.dataset.incident = i.id;
    td(tr, [incidentLink(i.id)]);
    td(tr, [i.container]);
    td(tr, [i.trigger]);
    td(tr, [i.detected]);
    td(tr, [String(i.attempts)]);
    td(tr, [badge(i.outcome, outcomeClass(i.outcome))]);
    var ttr = i.time_to_recover_seconds;
    td(tr, [typeof ttr === "number" ? ttr.toFixed(2) + " s" : ""]);
    return tr;
  }

  function summary(containers) {
    var counts = {};
    containers.forEach(function (c) { counts[c.state] = (counts[c.state] || 0) + 1; });
    var parts = Object.keys(counts).sort().map(function (s) { return counts[s] + " " + s; });
    return containers.length + " containers: " + parts.join(", ");
  }

  function replaceRows(tbody, items, row) {
    var frag = document.createDocumentFragment();
    items.forEach(function (x) { frag.appendChild(row(x)); });
    tbody.replaceChildren(frag);
  }

  function changed(key, text) {
    if (last[key] === text) return false;
    last[key] = text;
    return true;
  }

  function fetchOk(url, accept) {
    return fetch(url, { headers: { Accept: accept || "application/json" }, cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) throw new Error("not authorised");
        if (!r.ok && r.status !== 503) throw new Error(url + ": HTTP " + r.status);
        return r;
      });
  }
  function get(url, accept) {
    return fetchOk(url, accept).then(function (r) { return r.text(); });
  }
  // The incidents of this page, and the cursor of the next one (X-Next-Before), or "".
  function getIncidents(url) {
    return fetchOk(url).then(function (r) {
      var next = r.headers.get("X-Next-Before") || "";
      return r.text().then(function (text) { return { text: text, next: next }; });
    });
  }
  function setOlder(next) {
    var older = document.getElementById("older");
    if (!older) return;
    older.hidden = !next;
    if (next) {
      older.href = "/?since=" + encodeURIComponent(since) + "&before=" + encodeURIComponent(next);
    }
  }

  function poll() {
    var q = "?since=" + encodeURIComponent(since) + (before ? "&before=" + encodeURIComponent(before) : "");
    Promise.all([
      get("/api/v1/containers"),
      getIncidents("/api/v1/incidents" + q + "&limit=" + encodeURIComponent(limit)),
      get("/healthz"),
      get("/status/timeline.svg" + q, "image/svg+xml"),
    ]).then(function (r) {
      if (changed("containers", r[0])) {
        var containers = JSON.parse(r[0]);
        replaceRows(table, containers, containerRow);
        document.getElementById("summary").textContent = summary(containers);
      }
      if (changed("incidents", r[1].text)) {
        replaceRows(document.querySelector("#incidents tbody"), JSON.parse(r[1].text), incidentRow);
      }
      setOlder(r[1].next);
      if (changed("healthz", r[2])) {
        var up = JSON.parse(r[2]).docker_up;
        document.getElementById("docker").replaceChildren(
          badge(up ? "reachable" : "unreachable", up ? "ok" : "bad"));
      }
      if (changed("timeline", r[3])) {
        var svg = new DOMParser().parseFromString(r[3], "image/svg+xml").documentElement;
        if (svg.nodeName === "svg") {
          document.getElementById("timeline").replaceChildren(document.importNode(svg, true));
        }
      }
      live.textContent = "live: updated " + new Date().toLocaleTimeString();
      live.className = "muted";
    }).catch(function (e) {
      live.textContent = "live updates paused: " + e.message;
      live.className = "error";
    }).then(function () {
      setTimeout(poll, POLL_MS);
    });
  }
  live.textContent = "live: updating every " + POLL_MS / 1000 + " s";
  poll();
})();
