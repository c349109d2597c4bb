// What every page shares: HTTP with the session's CSRF token, DOM helpers, permissions, and the
// live stream's listeners (decision 0020).

const main = document.getElementById("main");
const notice = document.getElementById("notice");
// The signed-in caller ({ user, roles, admin, csrf }), or null.
export const state = { session: null };
let stream = null;           // EventSource on /ui/stream
export const listeners = new Set(); // (kind, data) => void, for the page on show
// What happens when the server says the session is over (the sign-in page).
let signedOut = () => {};
export function onSignedOut(handler) { signedOut = handler; }

// ---------------------------------------------------------------- HTTP

export class APIError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.session && state.session.csrf) headers["X-CSRF-Token"] = state.session.csrf;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = { message: text }; }
  if (!response.ok) throw new APIError(response.status, json);
  return json;
}

// ---------------------------------------------------------------- DOM helpers

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "class") element.className = value;
    else element.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function status(value) {
  return h("span", { class: `status s-${value}` }, (value || "").replaceAll("_", " "));
}

export function when(value) {
  if (!value) return "—";
  const date = new Date(value);
  return date.toLocaleString();
}

export function took(start, end) {
  if (!start) return "";
  const ms = (end ? new Date(end) : new Date()) - new Date(start);
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function say(message, isError = false) {
  notice.hidden = !message;
  notice.textContent = message || "";
  notice.classList.toggle("error", isError);
}

export function failure(error) {
  if (error instanceof APIError && error.status === 401) { state.session = null; signedOut(); return; }
  const problems = error.body && error.body.problems ? " " + error.body.problems.map((p) => `${p.path}: ${p.message}`).join("; ") : "";
  say(`${error.message}${problems}`, true);
}

let shownHash = null;
export function show(title, ...content) {
  listeners.clear();
  document.title = `${title} · Topsail`;
  const focused = document.activeElement && document.activeElement.id;
  main.replaceChildren(h("h1", {}, title), ...content.flat(Infinity).filter((part) => part !== null && part !== undefined && part !== false));
  // Focus moves to the content on navigation only; a live update's redraw keeps it where it was.
  if (shownHash !== location.hash) { shownHash = location.hash; main.focus(); }
  else if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
}

// ---------------------------------------------------------------- permissions

// Whether the signed-in caller holds `permission` on an application (its permissions document).
// The server decides in the end; this only keeps the page from offering what it would refuse.
export function may(application, permission) {
  const session = state.session;
  if (!session) return false;
  if (session.admin) return true;
  const permissions = application && application.permissions;
  if (!permissions || Object.keys(permissions).length === 0) return true;
  const wanted = permissions[permission];
  const roles = new Set(session.roles);
  const has = (list) => Array.isArray(list) && list.some((role) => roles.has(role));
  if (permission === "READ") return has(permissions.READ) || has(permissions.WRITE) || has(permissions.EXECUTE);
  if (permission === "EXECUTE" && !permissions.EXECUTE) return has(permissions.WRITE);
  return has(wanted);
}

export const applications = new Map();
export async function application(name) {
  if (!applications.has(name)) {
    try { applications.set(name, await api("GET", `/applications/${encodeURIComponent(name)}`)); } catch { applications.set(name, { name }); }
  }
  return applications.get(name);
}

// ---------------------------------------------------------------- live updates

export function follow() {
  if (stream) return;
  stream = new EventSource("/ui/stream", { withCredentials: true });
  for (const kind of ["execution", "cluster"]) {
    stream.addEventListener(kind, (event) => {
      const data = JSON.parse(event.data);
      for (const listener of listeners) listener(kind, data);
    });
  }
  // EventSource reconnects by itself and sends Last-Event-ID: the server resumes after it.
}

export function unfollow() {
  if (stream) { stream.close(); stream = null; }
}

// Calls `refresh` at once on the first event, then at most every 150 ms while events keep
// arriving, and once more a second after the last: lists come from read models, which may trail
// the log by a moment.
export function debounced(refresh) {
  let timer = null, pending = false, settle = null;
  const run = () => refresh().catch(failure);
  const cool = () => {
    timer = setTimeout(() => {
      timer = null;
      if (pending) { pending = false; run(); cool(); }
    }, 150);
  };
  return () => {
    clearTimeout(settle);
    settle = setTimeout(run, 1000);
    if (timer) { pending = true; return; }
    run();
    cool();
  };
}
