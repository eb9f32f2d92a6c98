// The dashboard's page: plain DOM, no build step, nothing fetched from elsewhere.
// Every text that came from a session goes in with textContent, never as HTML.
"use strict";
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
// The token: from the URL `claude-cage ui` printed, kept in this tab only (never a
// cookie, which every port of 127.0.0.1 would receive), and out of the address bar.
const TOKEN = (() => {
  const given = new URLSearchParams(location.search).get("token");
  if (given) {
    sessionStorage.setItem("cage-token", given);
    history.replaceState(null, "", "/" + location.hash);
  }
  return sessionStorage.getItem("cage-token") || "";
})();
const AUTH = { Authorization: "token " + TOKEN };
const main = document.getElementById("main");
let streams = [];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}
function flash(text, error = false) {
  const f = document.getElementById("flash");
  f.textContent = text; f.className = error ? "error" : "";
}
async function get(path) {
  const r = await fetch(path, { headers: AUTH });
  const body = await r.json();
  if (!r.ok) throw body;
  return body;
}
async function post(path, data) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF, ...AUTH },
    body: JSON.stringify(data),
  });
  const body = await r.json();
  if (!r.ok) throw body;
  return body;
}
function stream(path, onData) {
  const sep = path.includes("?") ? "&" : "?";
  const source = new EventSource(path + sep + "token=" + encodeURIComponent(TOKEN));
  source.onmessage = (m) => onData(JSON.parse(m.data), source);
  streams.push(source);
  return source;
}
function stopStreams() { streams.forEach((s) => s.close()); streams = []; }
function showError(e) { flash((e.error || String(e)) + (e.hint ? " (" + e.hint + ")" : ""), true); }
function age(iso) {
  if (!iso) return "";
  const s = (Date.now() - Date.parse(iso)) / 1000;
  return s < 3600 ? Math.round(s / 60) + "m" : s < 86400 ? Math.round(s / 3600) + "h" : Math.round(s / 86400) + "d";
}

async function act(name, action, extra = {}) {
  try {
    const r = await post("/api/action", { name, action, ...extra });
    flash(r.result);
    route();
  } catch (e) {
    if (e.confirm === "discard" && confirm(e.error + "\n\nDestroy anyway and lose that work?")) {
      return act(name, action, { ...extra, discard: true });
    }
    showError(e);
  }
}

async function sessionsPage() {
  const data = await get("/api/sessions");
  const rows = data.sessions.map((s) => el("tr", { "data-name": s.name },
    el("td", {}, el("a", { href: "#/session/" + s.name }, s.name)),
    el("td", { class: s.status }, s.status), el("td", {}, age(s.created)),
    el("td", {}, s.project || ""), el("td", {}, s.branch || ""), el("td", {}, s.engine),
    el("td", { class: "mem" }), el("td", { class: "cpu" })));
  const gone = data.destroyed.map((s) => el("tr", { "data-name": s.name },
    el("td", {}, el("a", { href: "#/session/" + s.name }, s.name)),
    el("td", { class: "destroyed" }, "destroyed"), el("td", {}, age(s.destroyed)),
    el("td"), el("td"), el("td"), el("td"), el("td")));
  main.replaceChildren(el("h2", {}, "Sessions"), el("table", { id: "sessions" },
    el("tr", {}, ...["name", "status", "age", "project", "branch", "engine", "memory", "CPU"].map((h) => el("th", {}, h))),
    ...rows, ...gone));
  const running = data.sessions.filter((s) => s.status === "running").map((s) => "name=" + encodeURIComponent(s.name));
  if (running.length) {
    const usage = (await get("/api/usage?" + running.join("&"))).usage;
    for (const [name, u] of Object.entries(usage)) {
      const row = main.querySelector(`tr[data-name="${CSS.escape(name)}"]`);
      const res = (u && u.resources) || {};
      if (row) {
        row.querySelector(".mem").textContent = res.memory_used != null ? (res.memory_used / 1048576).toFixed(0) + " MiB" + (res.memory_percent != null ? " (" + res.memory_percent + "%)" : "") : "";
        row.querySelector(".cpu").textContent = res.cpu_percent != null ? res.cpu_percent + "%" : "";
      }
    }
  }
}

async function sessionPage(name) {
  const s = (await get("/api/session?name=" + encodeURIComponent(name))).session;
  const lines = el("div", { class: "lines", id: "transcript" });
  const egress = el("table", { id: "egress" }, el("tr", {}, ...["time", "host", "port", "result", "reason", ""].map((h) => el("th", {}, h))));
  const buttons = s.status === "destroyed" ? [] : [
    el("button", { onclick: () => act(name, "stop") }, "stop"),
    el("button", { onclick: () => act(name, "start") }, "start"),
    el("button", { onclick: () => act(name, "destroy") }, "destroy"),
  ];
  if (s.repo) buttons.push(el("a", { href: "#/review/" + name }, "review"));
  const checks = ((s.sandbox && s.sandbox.checks) || []).map((c) =>
    el("tr", {}, el("td", { class: c.ok ? "ok" : "bad" }, c.ok ? "ok" : "FAIL"), el("td", {}, c.name || c.check || ""), el("td", {}, c.detail || "")));
  main.replaceChildren(
    el("h2", {}, name + " ", el("span", { class: s.status, id: "status" }, s.status)),
    el("p", {}, ...buttons),
    el("section", {}, el("h3", {}, "Transcript"), lines),
    el("section", {}, el("h3", {}, "Egress"), egress),
    el("section", {}, el("h3", {}, "Sandbox checks"), el("table", { id: "checks" }, ...checks)));
  if (s.mode === "desktop" && s.status === "running") {
    const d = await get("/api/desktop?name=" + encodeURIComponent(name));
    if (d.url) main.append(el("section", {}, el("h3", {}, "Desktop"), el("iframe", { src: d.url, title: "desktop" })));
  }
  stream("/api/stream/transcript?name=" + encodeURIComponent(name), (d) => {
    if (d.error) showError(d);
    for (const line of d.lines || []) lines.append(line + "\n");
    lines.scrollTop = lines.scrollHeight;
  });
  stream("/api/stream/egress?name=" + encodeURIComponent(name), (d, src) => {
    if (d.error) showError(d);
    if (d.end || d.destroyed) src.close();
    for (const r of d.requests || []) {
      const refused = !r.allowed;
      const allow = refused ? el("button", { class: "allow", onclick: async () => {
        try { flash((await post("/api/allow", { name, host: r.host, port: r.port, result: r.result })).result); }
        catch (e) { showError(e); }
      } }, "Allow") : "";
      egress.append(el("tr", { class: refused ? "blocked" : "", "data-host": r.host },
        el("td", {}, r.time), el("td", {}, r.host), el("td", {}, r.port ?? ""),
        el("td", {}, r.result), el("td", {}, r.reason || ""), el("td", {}, s.status === "destroyed" ? "" : allow)));
    }
  });
}

async function reviewPage(name) {
  const out = el("div", { id: "diff" });
  const act1 = (what) => el("button", { onclick: async () => {
    try { flash((await post("/api/action", { name, action: what })).result); reviewPage(name); }
    catch (e) { showError(e); }
  } }, what);
  main.replaceChildren(el("h2", {}, "Review " + name), el("p", {}, act1("fetch"), act1("merge"), act1("apply")), out);
  const d = await get("/api/diff?name=" + encodeURIComponent(name));
  if (!d.files.length) out.append(el("p", {}, "no change"));
  for (const f of d.files) {
    const pre = el("pre");
    for (const line of f.text.split("\n")) {
      const cls = line.startsWith("+") && !line.startsWith("+++") ? "diff-add" : line.startsWith("-") && !line.startsWith("---") ? "diff-del" : "";
      pre.append(el("span", { class: cls }, line + "\n"));
    }
    out.append(el("details", { open: "" }, el("summary", {}, f.path), pre));
  }
}

async function eventsPage(params) {
  const session = el("input", { placeholder: "session", value: params.get("session") || "" });
  const type = el("input", { placeholder: "type", value: params.get("type") || "" });
  const table = el("table", { id: "events" }, el("tr", {}, ...["time", "type", "key", "status", "value"].map((h) => el("th", {}, h))));
  const apply = () => { location.hash = "#/events?" + new URLSearchParams({ session: session.value, type: type.value }); };
  main.replaceChildren(el("h2", {}, "Events"), el("p", {}, session, type, el("button", { onclick: apply }, "filter")), table);
  const q = new URLSearchParams();
  if (params.get("session")) q.set("session", params.get("session"));
  if (params.get("type")) q.set("type", params.get("type"));
  stream("/api/stream/events?" + q, (d) => {
    if (d.error) return showError(d);
    const e = d.event, v = { ...e.value }, status = v.status || ""; delete v.status;
    table.append(el("tr", {}, el("td", {}, e._ts.slice(0, 19) + "Z"), el("td", {}, e.type), el("td", {}, e.key), el("td", {}, status), el("td", {}, JSON.stringify(v))));
  });
}

async function route() {
  stopStreams();
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  try {
    if (parts[0] === "session") await sessionPage(decodeURIComponent(parts[1]));
    else if (parts[0] === "review") await reviewPage(decodeURIComponent(parts[1]));
    else if (parts[0] === "events") await eventsPage(params);
    else await sessionsPage();
  } catch (e) { showError(e); }
}
window.addEventListener("hashchange", () => { flash(""); route(); });
route();
