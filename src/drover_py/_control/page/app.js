// drover-py status page: the masters and their workers, live from /events, and actions
// that go through the command API (POST /commands/NAME?master=M). No framework, no build.
"use strict";

// Sent with every request: the server refuses a cookie-authorized request that changes
// state without it (a cross-site form cannot send a header).
const CSRF = { "X-Drover-CSRF": "1" };
const EVENT_NAMES = ["worker-started", "worker-exit", "worker-retired", "status-changed", "restarts-exhausted"];
const MAX_EVENTS = 20;
const REFRESH_MS = 5000; // uptime and RSS move without events
// A browser opens at most 6 connections to a server over HTTP/1.1: event streams for the
// first masters only, leaving room for the page's requests; the others refresh on the timer.
const MAX_STREAMS = 4;
const COLUMNS = [
  ["id", "ID", (w) => String(w.id), "num"],
  ["slot", "Slot", (w) => String(w.slot), "num"],
  ["pid", "PID", (w) => (w.pid === null ? "—" : String(w.pid)), "num"],
  ["status", "Status", null, ""],
  ["uptime", "Uptime", (w) => (w.exit_reason === null ? formatUptime(w.uptime) : "—"), "num"],
  ["restarts", "Restarts", (w) => String(w.restarts), "num"],
  ["rss", "RSS", (w) => formatBytes(w.rss), "num"],
  ["exit_reason", "Last exit", (w) => w.exit_reason || "—", "exit"],
];

const byId = (id) => document.getElementById(id);
const masters = new Map(); // name -> {name, section, tbody, rows: Map(id -> tr), source, info, busy, again}
let timer = null;

class Unauthorized extends Error {}

const query = (name) => `?master=${encodeURIComponent(name)}`;

async function api(method, path, body) {
  const init = { method, headers: { ...CSRF }, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data;
  try {
    data = await response.json();
  } catch {
    data = { ok: false, error: `HTTP ${response.status}` };
  }
  if (response.status === 401) throw new Unauthorized(data.error || "unauthorized");
  return { status: response.status, data };
}

// -- signing in ---------------------------------------------------------------------------

async function login(key) {
  try {
    const response = await fetch("/login", {
      method: "POST",
      headers: { ...CSRF, "Content-Type": "application/json" },
      body: JSON.stringify({ key }),
      credentials: "same-origin",
      cache: "no-store",
    });
    return response.ok;
  } catch {
    return false;
  }
}

async function onLoginSubmit(event) {
  event.preventDefault();
  const input = byId("key");
  const ok = await login(input.value);
  input.value = "";
  if (ok) {
    byId("login-error").textContent = "";
    await load();
  } else {
    byId("login-error").textContent = "Wrong access key.";
    input.focus();
  }
}

async function logout() {
  try {
    await fetch("/logout", { method: "POST", headers: CSRF, credentials: "same-origin", cache: "no-store" });
  } finally {
    showLogin();
  }
}

function showLogin() {
  clearInterval(timer);
  timer = null;
  for (const master of [...masters.values()]) removeMaster(master);
  byId("events-section").hidden = true;
  byId("logout").hidden = true;
  byId("login").hidden = false;
  setConnection("Signed out", "down");
  byId("key").focus();
}

// -- the masters --------------------------------------------------------------------------

async function load() {
  let reply;
  try {
    reply = await api("GET", "/masters");
  } catch (error) {
    failed(error);
    return;
  }
  if (!reply.data.ok) {
    setConnection(`Error: ${reply.data.error}`, "down");
    return;
  }
  byId("login").hidden = true;
  byId("logout").hidden = false;
  sync(reply.data.result);
  if (timer === null) timer = setInterval(tick, REFRESH_MS);
}

function failed(error) {
  if (error instanceof Unauthorized) showLogin();
  else setConnection("Cannot reach the control server", "down");
}

async function tick() {
  try {
    const reply = await api("GET", "/masters");
    if (reply.data.ok) sync(reply.data.result);
  } catch (error) {
    failed(error);
  }
}

function sync(list) {
  const names = new Set(list.map((info) => info.name));
  for (const master of [...masters.values()]) if (!names.has(master.name)) removeMaster(master);
  for (const info of list) {
    const master = masters.get(info.name) || addMaster(info.name);
    master.info = info;
    showSummary(master);
    const streams = [...masters.values()].filter((m) => m.source !== null).length;
    if (master.source === null && streams < MAX_STREAMS) subscribe(master);
    refresh(master);
  }
}

function addMaster(name) {
  const section = byId("master-template").content.firstElementChild.cloneNode(true);
  const master = { name, section, tbody: section.querySelector("tbody"), rows: new Map(), source: null, info: null };
  section.dataset.master = name;
  section.querySelector(".master-name").textContent = name;
  section.querySelector("caption").textContent = `Workers of ${name}`;
  section.setAttribute("aria-label", `Master ${name}`);
  section.querySelector(".reload").addEventListener("click", () =>
    act(master, `Reload every worker of ${name}, slot by slot (restart all)?`, "restart", ["all"]),
  );
  section.querySelector(".scale-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const count = Number(section.querySelector(".scale-count").value);
    act(master, `Scale ${name} to ${count} worker${count === 1 ? "" : "s"}?`, "scale", [count]);
  });
  byId("masters").append(section);
  masters.set(name, master);
  return master;
}

function removeMaster(master) {
  if (master.source !== null) master.source.close();
  master.section.remove();
  masters.delete(master.name);
}

function showSummary(master) {
  const { started, count, script } = master.info;
  const file = String(script).split("/").pop();
  master.section.querySelector(".summary").textContent = `${started} of ${count} started · ${file}`;
  const input = master.section.querySelector(".scale-count");
  if (document.activeElement !== input) input.value = String(count);
}

// -- live updates -------------------------------------------------------------------------

function subscribe(master) {
  const source = new EventSource(`/events${query(master.name)}`); // the session cookie authorizes it
  master.source = source;
  source.addEventListener("open", () => setConnection("Live", "live"));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      master.source = null; // refused: signed out, or the master is gone
      load();
    } else {
      setConnection("Reconnecting…", "down");
    }
  });
  for (const name of EVENT_NAMES) source.addEventListener(name, (event) => onEvent(master, event));
}

function onEvent(master, event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return;
  }
  const args = data.args || [];
  if (event.type === "status-changed") showStatus(master.rows.get(args[0]), args[1]);
  addEvent(master.name, describe(event.type, args));
  refresh(master);
}

function describe(kind, args) {
  switch (kind) {
    case "worker-started":
      return `worker ${args[0]} started`;
    case "worker-exit":
      return `worker ${args[1]} exited: ${args[0]}`;
    case "worker-retired":
      return `worker ${args[1]} retired: ${args[0]}`;
    case "status-changed":
      return `worker ${args[0]} is ${args[1]}`;
    default:
      return `${kind}: ${args.join(", ")}`;
  }
}

function addEvent(name, text) {
  const list = byId("events");
  const item = document.createElement("li");
  const now = new Date();
  const time = document.createElement("time");
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString();
  item.append(time, masters.size > 1 ? `${name}: ${text}` : text);
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  byId("events-section").hidden = false;
}

// Fetch the workers of a master (and its count); events that come meanwhile ask for one more fetch.
async function refresh(master) {
  if (master.busy) {
    master.again = true;
    return;
  }
  master.busy = true;
  try {
    do {
      master.again = false;
      const [reply, listing] = await Promise.all([
        api("POST", `/commands/workers${query(master.name)}`, []),
        api("GET", "/masters"),
      ]);
      if (masters.get(master.name) !== master) break; // gone meanwhile
      if (reply.data.ok) showRows(master, reply.data.result);
      const info = listing.data.ok && listing.data.result.find((m) => m.name === master.name);
      if (info) {
        master.info = info;
        showSummary(master);
      }
    } while (master.again);
  } catch (error) {
    failed(error);
  } finally {
    master.busy = false;
  }
}

// -- the table ----------------------------------------------------------------------------

function showRows(master, workers) {
  const ids = new Set(workers.map((w) => w.id));
  for (const [id, row] of master.rows) {
    if (!ids.has(id)) {
      row.remove();
      master.rows.delete(id);
    }
  }
  const order = [];
  for (const worker of workers) {
    const row = master.rows.get(worker.id) || newRow(master, worker.id);
    fillRow(row, worker);
    order.push(row);
  }
  const current = [...master.tbody.children];
  if (order.length !== current.length || order.some((row, i) => row !== current[i])) master.tbody.append(...order);
}

function newRow(master, id) {
  const row = document.createElement("tr");
  row.dataset.id = String(id);
  for (const [key, label, , kind] of COLUMNS) {
    const cell = document.createElement("td");
    cell.className = `col-${key} ${kind}`.trim();
    cell.dataset.label = label;
    if (key === "status") cell.append(document.createElement("span"));
    row.append(cell);
  }
  const actions = document.createElement("td");
  actions.className = "row-actions";
  const restart = button("Restart", `Restart worker ${id}`, "quiet", () =>
    act(master, `Restart worker ${id} of ${master.name}?`, "restart", [String(id)]),
  );
  const stop = button("Stop", `Stop worker ${id}`, "quiet", () =>
    act(master, `Stop worker ${id} of ${master.name}? Its slot stays empty until "Reload all".`, "shutdown", [
      String(id),
    ]),
  );
  actions.append(restart, stop);
  row.append(actions);
  master.rows.set(id, row);
  return row;
}

function button(text, label, kind, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = kind;
  element.textContent = text;
  element.setAttribute("aria-label", label);
  element.addEventListener("click", onClick);
  return element;
}

function fillRow(row, worker) {
  row.dataset.pid = worker.pid === null ? "" : String(worker.pid);
  COLUMNS.forEach(([key, , format], i) => {
    if (key === "status") showStatus(row, worker.status);
    else row.children[i].textContent = format(worker);
  });
  const running = worker.exit_reason === null;
  for (const element of row.querySelectorAll(".row-actions button")) element.disabled = !running && element.textContent === "Stop";
}

function showStatus(row, status) {
  if (row === undefined) return;
  const badge = row.querySelector(".col-status span");
  badge.textContent = status;
  badge.className = ["STARTED", "FAILED", "STARTING", "STOPPING", "STOPPED"].includes(status)
    ? `status ${status}`
    : "status other";
  row.dataset.status = status;
}

function formatUptime(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.floor(seconds);
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  if (days) return `${days}d ${hours}h`;
  if (hours) return `${hours}h ${pad(minutes)}m`;
  if (minutes) return `${minutes}m ${pad(s % 60)}s`;
  return `${s % 60}s`;
}

function formatBytes(bytes) {
  return bytes === null || bytes === undefined ? "—" : `${(bytes / 1048576).toFixed(1)} MiB`;
}

// -- actions ------------------------------------------------------------------------------

function confirmAction(text) {
  const dialog = byId("confirm");
  byId("confirm-text").textContent = text;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

async function act(master, question, command, args) {
  if (!(await confirmAction(question))) return;
  const buttons = master.section.querySelectorAll("button");
  for (const element of buttons) element.disabled = true;
  setMessage(`${command} ${args.join(" ")}…`, false);
  try {
    const reply = await api("POST", `/commands/${command}${query(master.name)}`, args);
    const result = reply.data.result;
    if (reply.data.ok) setMessage((result && result.message) || `${command} done`, false);
    else setMessage(`${command} failed: ${reply.data.error}`, true);
  } catch (error) {
    failed(error);
  } finally {
    for (const element of buttons) element.disabled = false;
    refresh(master);
  }
}

function setMessage(text, isError) {
  const element = byId("message");
  element.textContent = text;
  element.classList.toggle("error", isError);
}

function setConnection(text, state) {
  const element = byId("connection");
  element.textContent = text;
  element.className = `connection ${state}`;
}

// -- start --------------------------------------------------------------------------------

// `drover-py ctl open` hands over a one-time token in the fragment, which no server sees.
async function useLink() {
  const link = /^#login=([A-Za-z0-9_-]+)$/.exec(location.hash);
  let linkFailed = false;
  if (link) {
    history.replaceState(null, "", location.pathname + location.search);
    linkFailed = !(await login(link[1]));
  }
  await load();
  if (linkFailed && !byId("login").hidden) {
    byId("login-error").textContent = "The sign-in link was already used: run drover-py ctl open again.";
  }
}

byId("login-form").addEventListener("submit", onLoginSubmit);
byId("logout").addEventListener("click", logout);
window.addEventListener("hashchange", useLink); // a new link pasted into this tab
useLink();
