// Topsail's web UI: plain modules, no build step, no third-party code (decision 0020).
// Everything it shows comes from the HTTP API the CLI uses; live updates come from /ui/stream,
// the log as server-sent events, resumed after the last event seen when the connection drops.

import { layout } from "/ui/assets/dag.js";

const main = document.getElementById("main");
const notice = document.getElementById("notice");
let session = null;          // { user, roles, admin, csrf }
let stream = null;           // EventSource on /ui/stream
const listeners = new Set(); // (kind, data) => void, for the page on show

// ---------------------------------------------------------------- HTTP

class APIError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session && session.csrf) headers["X-CSRF-Token"] = session.csrf;
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

function h(tag, attributes = {}, ...children) {
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

function status(value) {
  return h("span", { class: `status s-${value}` }, (value || "").replaceAll("_", " "));
}

function when(value) {
  if (!value) return "—";
  const date = new Date(value);
  return date.toLocaleString();
}

function took(start, end) {
  if (!start) return "";
  const ms = (end ? new Date(end) : new Date()) - new Date(start);
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

function say(message, isError = false) {
  notice.hidden = !message;
  notice.textContent = message || "";
  notice.classList.toggle("error", isError);
}

function failure(error) {
  if (error instanceof APIError && error.status === 401) { session = null; showSignIn(); return; }
  const problems = error.body && error.body.problems ? " " + error.body.problems.map((p) => `${p.path}: ${p.message}`).join("; ") : "";
  say(`${error.message}${problems}`, true);
}

let shownHash = null;
function show(title, ...content) {
  listeners.clear();
  document.title = `${title} · Topsail`;
  main.replaceChildren(h("h1", {}, title), ...content.flat(Infinity).filter((part) => part !== null && part !== undefined && part !== false));
  // Focus moves to the content on navigation only, never when a live update redraws the page.
  if (shownHash !== location.hash) { shownHash = location.hash; main.focus(); }
}

// ---------------------------------------------------------------- permissions

// Whether the signed-in caller holds `permission` on an application (its permissions document).
// The server decides in the end; this only keeps the page from offering what it would refuse.
function may(application, permission) {
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

const applications = new Map();
async function application(name) {
  if (!applications.has(name)) {
    try { applications.set(name, await api("GET", `/applications/${encodeURIComponent(name)}`)); } catch { applications.set(name, { name }); }
  }
  return applications.get(name);
}

// ---------------------------------------------------------------- live updates

function follow() {
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

function unfollow() {
  if (stream) { stream.close(); stream = null; }
}

// Calls `refresh` at once on the first event, then at most every 150 ms while events keep
// arriving, and once more a second after the last: lists come from read models, which may trail
// the log by a moment.
function debounced(refresh) {
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

// ---------------------------------------------------------------- sign in

function showSignIn() {
  unfollow();
  document.getElementById("who").textContent = "";
  document.getElementById("signout").hidden = true;
  const token = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true, "aria-describedby": "token-hint" });
  const form = h("form", { class: "panel", onsubmit: async (event) => {
    event.preventDefault();
    try {
      session = await api("POST", "/ui/session", { token: token.value });
      token.value = "";
      say("");
      signedIn();
      route();
    } catch (error) { failure(error); }
  } },
  h("label", { for: "token" }, "API token"),
  token,
  h("p", { id: "token-hint", class: "hint" }, "A token from topsail tokens create, or a JWT from your OIDC provider. It becomes a browser session; signing out ends it."),
  h("button", { type: "submit" }, "Sign in"));
  const provider = h("p", { hidden: true }, h("a", { class: "button", href: "/ui/oidc/login" }, "Sign in with your organisation's account (OIDC)"));
  show("Sign in", provider, form);
  fetch("/ui/sign-in-options").then((r) => r.json()).then((options) => { provider.hidden = !options.oidc; }).catch(() => {});
}

function signedIn() {
  document.getElementById("who").textContent = `${session.user}${session.admin ? " (admin)" : ""}`;
  document.getElementById("signout").hidden = false;
  follow();
}

document.getElementById("signout").addEventListener("click", async () => {
  try { await api("DELETE", "/ui/session"); } catch (error) { if (!(error instanceof APIError && error.status === 401)) failure(error); }
  session = null;
  applications.clear();
  location.hash = "#/";
  showSignIn();
});

const themeButton = document.getElementById("theme");
function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  themeButton.setAttribute("aria-pressed", String(theme === "dark"));
  themeButton.textContent = theme === "dark" ? "Light theme" : "Dark theme";
}
themeButton.addEventListener("click", () => {
  const theme = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  localStorage.setItem("topsail-theme", theme);
  applyTheme(theme);
});
applyTheme(localStorage.getItem("topsail-theme") || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));

// ---------------------------------------------------------------- applications

async function showApplications() {
  const list = await api("GET", "/applications");
  const search = h("input", { id: "search", type: "search", placeholder: "name, email or description" });
  const body = h("tbody");
  const render = () => {
    const term = search.value.trim().toLowerCase();
    body.replaceChildren(...list
      .filter((app) => !term || JSON.stringify([app.name, app.email, app.description]).toLowerCase().includes(term))
      .map((app) => h("tr", {},
        h("td", {}, h("a", { href: `#/applications/${encodeURIComponent(app.name)}` }, app.name)),
        h("td", {}, app.email || ""),
        h("td", {}, app.description || ""))));
  };
  search.addEventListener("input", render);
  render();
  show("Applications",
    h("div", { class: "row" }, h("label", { for: "search" }, "Search applications"), search),
    h("table", {}, h("caption", { class: "sr-only" }, "Applications you may read"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Email"), h("th", { scope: "col" }, "Description"))), body));
}

async function showApplication(name) {
  const app = await application(name);
  const encoded = encodeURIComponent(name);
  const [configs, executions] = await Promise.all([
    api("GET", `/applications/${encoded}/pipelineConfigs`),
    api("GET", `/applications/${encoded}/pipelines?limit=50`),
  ]);
  const latest = new Map();
  for (const execution of executions) {
    const key = execution.pipelineConfigId || execution.name;
    if (!latest.has(key)) latest.set(key, execution);
  }
  const canRun = may(app, "EXECUTE");
  const pipelines = h("table", {},
    h("caption", { class: "sr-only" }, `Pipelines of ${name}`),
    h("thead", {}, h("tr", {}, ["Pipeline", "Triggers", "Latest execution", ""].map((label) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, configs.map((config) => {
      const run = latest.get(config.id) || latest.get(config.name);
      const triggers = (config.triggers || []).map((t) => `${t.type}${t.enabled === false ? " (off)" : ""}`).join(", ");
      return h("tr", {},
        h("td", {}, config.name, config.disabled ? h("span", { class: "hint" }, " (disabled)") : null),
        h("td", {}, triggers || h("span", { class: "hint" }, "manual only")),
        h("td", {}, run ? h("a", { href: `#/executions/${run.id}` }, status(run.status), " ", when(run.buildTime)) : "—"),
        h("td", { class: "row" },
          canRun && !config.disabled ? h("button", { type: "button", onclick: () => showTrigger(app, config) }, `Run ${config.name}`) : null,
          may(app, "WRITE") ? h("a", { class: "button quiet", href: `#/applications/${encoded}/pipelines/${encodeURIComponent(config.id)}/edit` }, "Edit") : null));
    })));
  const recent = h("table", {},
    h("caption", { class: "sr-only" }, `Recent executions of ${name}`),
    h("thead", {}, h("tr", {}, ["Status", "Pipeline", "Triggered", "By", "Took"].map((label) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, executions.slice(0, 25).map((execution) => h("tr", {},
      h("td", {}, h("a", { href: `#/executions/${execution.id}` }, status(execution.status))),
      h("td", {}, execution.name || ""), h("td", {}, when(execution.buildTime)),
      h("td", {}, execution.triggeredBy || execution.triggerType || ""), h("td", {}, took(execution.startTime, execution.endTime))))));
  show(name,
    h("p", {}, h("a", { href: `#/applications/${encoded}/clusters` }, "Clusters"), app.email ? ` · ${app.email}` : ""),
    h("h2", {}, "Pipelines"), pipelines, h("h2", {}, "Recent executions"), recent);
  const refreshApplication = debounced(async () => { if (location.hash === `#/applications/${encoded}`) await showApplication(name); });
  listeners.add((kind, data) => {
    if (kind === "execution" && data.application === name && ["execution.triggered", "execution.completed"].includes(data.type)) refreshApplication();
  });
}

// The trigger form, generated from the pipeline's parameterConfig.
function showTrigger(app, config) {
  const fields = (config.parameterConfig || []).map((parameter, index) => {
    const id = `parameter-${index}`;
    const options = parameter.hasOptions ? (parameter.options || []).map((option) => option.value) : [];
    const input = options.length
      ? h("select", { id, name: parameter.name, required: parameter.required }, (parameter.required ? [] : [h("option", { value: "" }, "—")]).concat(
        options.map((value) => h("option", { value: String(value), selected: String(value) === String(parameter.default ?? "") }, String(value)))))
      : h("input", { id, name: parameter.name, required: parameter.required, value: parameter.default ?? "" });
    return h("div", {},
      h("label", { for: id }, parameter.label || parameter.name, parameter.required ? " (required)" : ""),
      input, parameter.description ? h("p", { class: "hint" }, parameter.description) : null);
  });
  const form = h("form", { class: "panel", onsubmit: async (event) => {
    event.preventDefault();
    const parameters = {};
    for (const element of form.querySelectorAll("input[name], select[name]")) if (element.value !== "") parameters[element.name] = element.value;
    try {
      const started = await api("POST", `/pipelines/${encodeURIComponent(app.name)}/${encodeURIComponent(config.name)}`, { type: "manual", parameters });
      location.hash = `#/executions/${started.id}`;
    } catch (error) { failure(error); }
  } },
  fields.length ? fields : h("p", { class: "hint" }, "This pipeline takes no parameters."),
  h("div", { class: "row" }, h("button", { type: "submit" }, "Start"), h("button", { type: "button", class: "quiet", onclick: () => showApplication(app.name) }, "Back")));
  show(`Run ${config.name}`, form);
}

// ---------------------------------------------------------------- executions

async function showExecution(id) {
  let replayAt = null; // a version being replayed, or null for now
  let selected = null;
  const view = await api("GET", `/pipelines/${id}`);
  const app = await application(view.application);
  const canAct = may(app, "EXECUTE");
  const header = h("div", { class: "panel" });
  const graph = h("div");
  const detail = h("div", { class: "panel", "aria-live": "polite" });
  const timeline = h("div", { class: "panel" });
  const replay = h("div", { class: "panel" });
  show(`${view.pipeline || "Execution"}`, header, h("div", { class: "grid" }, h("div", {}, graph, replay, timeline), detail));

  let current = view;
  const render = (state) => {
    current = state;
    header.replaceChildren(
      h("div", { class: "row" }, status(state.status),
        h("a", { href: `#/applications/${encodeURIComponent(state.application || "")}` }, state.application || ""),
        h("span", {}, `started ${when(state.startTime || state.buildTime)}`),
        h("span", {}, took(state.startTime, state.endTime)),
        h("span", { class: "hint" }, `by ${(state.trigger && (state.trigger.user || state.trigger.type)) || "?"}`),
        replayAt ? h("strong", {}, `Replaying: after event ${replayAt} of ${view.version}`) : null),
      canAct && !replayAt ? h("div", { class: "row" },
        state.status === "RUNNING" ? h("button", { type: "button", onclick: () => act("PUT", `/pipelines/${id}/pause`) }, "Pause") : null,
        state.status === "PAUSED" ? h("button", { type: "button", onclick: () => act("PUT", `/pipelines/${id}/resume`) }, "Resume") : null,
        ["RUNNING", "PAUSED", "NOT_STARTED", "BUFFERED"].includes(state.status)
          ? h("button", { type: "button", class: "danger", onclick: () => act("PUT", `/pipelines/${id}/cancel`) }, "Cancel execution") : null) : null);
    graph.replaceChildren(dag(state.stages, selected, (ref) => { selected = ref; render(current); }));
    detail.replaceChildren(...[stageDetail(state, selected, canAct && !replayAt)].flat(Infinity).filter(Boolean));
  };
  const act = async (method, path, body) => {
    try { await api(method, path, body); await refresh(); } catch (error) { failure(error); }
  };
  // The timeline grows by the events after the last one shown (pages of 1000), however long.
  const events = [];
  const list = h("ol", { id: "timeline" });
  timeline.replaceChildren(h("h2", {}, "Events"), list);
  const newEvents = async () => {
    let fresh = [];
    for (;;) {
      const after = fresh.length ? fresh[fresh.length - 1].version : (events.length ? events[events.length - 1].version : 0);
      const page = await api("GET", `/pipelines/${id}/events?after=${after}&limit=1000`);
      fresh = fresh.concat(page.events);
      if (page.next === null || page.next === undefined) return fresh;
    }
  };
  const showEvents = (fresh) => {
    const known = events.length ? events[events.length - 1].version : 0;
    for (const event of fresh.filter((e) => e.version > known)) {
      events.push(event);
      list.append(h("li", {}, h("code", {}, event.type), " ", h("span", { class: "hint" }, `v${event.version} · ${when(event.time)} · ${event.actor || ""}`)));
    }
    view.version = Math.max(view.version || 0, events.length ? events[events.length - 1].version : 0);
    slider.max = String(view.version);
    if (!replayAt) slider.value = String(view.version);
  };
  const refresh = async () => {
    if (replayAt) return;
    const [state, fresh] = await Promise.all([api("GET", `/pipelines/${id}`), newEvents()]);
    render(state);
    showEvents(fresh);
  };
  const slider = h("input", { id: "replay", type: "range", min: "1", max: String(view.version || 1), value: String(view.version || 1) });
  const replayLabel = h("label", { for: "replay" }, "Replay: step through the execution event by event");
  slider.addEventListener("input", async () => {
    const at = Number(slider.value);
    replayAt = at >= view.version ? null : at;
    try { render(await api("GET", `/pipelines/${id}${replayAt ? `?version=${replayAt}` : ""}`)); } catch (error) { failure(error); }
  });
  replay.append(replayLabel, slider, h("p", { class: "hint" }, "Each position is the execution as it stood after that event, folded from the log."));
  render(view);
  showEvents(await newEvents());
  const live = debounced(refresh);
  listeners.add((kind, data) => { if (kind === "execution" && data.executionId === id) live(); });

  function stageDetail(state, ref, actions) {
    const stage = state.stages.find((s) => s.refId === ref);
    if (!stage) return h("p", { class: "hint" }, "Select a stage in the graph to see its context and outputs.");
    const parts = [h("h2", {}, stage.name), h("div", { class: "row" }, status(stage.status), h("span", {}, stage.type),
      h("span", { class: "hint" }, `attempt ${stage.attempt} · ${took(stage.startTime, stage.endTime)}`))];
    if (actions && stage.type === "manualJudgment" && stage.status === "RUNNING") {
      const inputs = (stage.context && stage.context.judgmentInputs || []).map((input) => input.value);
      const choice = inputs.length ? h("select", { id: "judgment-input" }, inputs.map((value) => h("option", { value }, value))) : null;
      parts.push(h("div", { class: "panel" }, h("h3", {}, stage.context && stage.context.instructions || "Judgment"),
        choice ? [h("label", { for: "judgment-input" }, "Input"), choice] : null,
        h("div", { class: "row" },
          h("button", { type: "button", onclick: () => act("PATCH", `/pipelines/${id}/stages/${ref}`, { judgmentStatus: "continue", judgmentInput: choice ? choice.value : undefined }) }, "Continue"),
          h("button", { type: "button", class: "danger", onclick: () => act("PATCH", `/pipelines/${id}/stages/${ref}`, { judgmentStatus: "stop", judgmentInput: choice ? choice.value : undefined }) }, "Stop"))));
    }
    if (actions && stage.type === "wait" && stage.status === "RUNNING") {
      parts.push(h("button", { type: "button", onclick: () => act("PATCH", `/pipelines/${id}/stages/${ref}`, { skipRemainingWait: true }) }, "Skip remaining wait"));
    }
    if (actions && ["SUCCEEDED", "TERMINAL", "STOPPED", "FAILED_CONTINUE", "CANCELED"].includes(stage.status) && state.status !== "RUNNING") {
      parts.push(h("button", { type: "button", class: "quiet", onclick: () => act("PUT", `/pipelines/${id}/stages/${ref}/restart`) }, "Restart stage"));
    }
    const outputs = { ...stage.outputs };
    const script = outputs.stdout !== undefined || outputs.stderr !== undefined;
    if (script) parts.push(h("h3", {}, "Script output"), h("pre", {}, `${outputs.stdout || ""}${outputs.stderr ? "\n--- stderr ---\n" + outputs.stderr : ""}`));
    if (outputs.expressionEvaluationSummary) parts.push(h("h3", {}, "Expression evaluation"), h("pre", {}, JSON.stringify(outputs.expressionEvaluationSummary, null, 2)));
    parts.push(h("h3", {}, "Outputs"), h("pre", {}, JSON.stringify(stage.outputs, null, 2)));
    parts.push(h("h3", {}, "Context"), h("pre", {}, JSON.stringify(stage.context, null, 2)));
    return parts;
  }
}

// The stage graph as SVG, laid out by dag.js; every node is a button (Tab, Enter or Space).
function dag(stages, selected, choose) {
  const { nodes, edges, width, height } = layout(stages.map((stage) => ({ id: stage.refId, after: stage.requisiteStageRefIds || [] })));
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "dag");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "group");
  svg.setAttribute("aria-label", "Stage graph");
  svg.style.maxHeight = `${Math.min(height, 900)}px`;
  const make = (tag, attributes, text) => {
    const element = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    if (text !== undefined) element.textContent = text;
    return element;
  };
  for (const edge of edges) {
    svg.append(make("path", { class: "edge", d: `M${edge.x1},${edge.y1} C${edge.x1 + 40},${edge.y1} ${edge.x2 - 40},${edge.y2} ${edge.x2},${edge.y2}` }));
  }
  const byRef = new Map(stages.map((stage) => [stage.refId, stage]));
  for (const node of nodes) {
    const stage = byRef.get(node.id);
    const group = make("g", { class: `node n-${stage.status}${node.id === selected ? " selected" : ""}`, transform: `translate(${node.x},${node.y})`,
      tabindex: "0", role: "button", "data-ref": node.id, "aria-pressed": String(node.id === selected),
      "aria-label": `${stage.name}, ${stage.type}, ${stage.status.replaceAll("_", " ").toLowerCase()}` });
    group.append(make("rect", { width: node.width, height: node.height }));
    group.append(make("text", { x: 8, y: 17 }, stage.name.length > 24 ? stage.name.slice(0, 23) + "…" : stage.name));
    group.append(make("text", { x: 8, y: 33, class: "meta" }, `${stage.status.replaceAll("_", " ")} · ${took(stage.startTime, stage.endTime) || stage.type}`));
    group.addEventListener("click", () => choose(node.id));
    group.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); choose(node.id); } });
    svg.append(group);
  }
  return svg;
}

// ---------------------------------------------------------------- clusters

async function showClusters(name) {
  const app = await application(name);
  const encoded = encodeURIComponent(name);
  const [groups, balancers, securityGroups] = await Promise.all([
    api("GET", `/applications/${encoded}/serverGroups`), api("GET", `/applications/${encoded}/loadBalancers`), api("GET", "/securityGroups"),
  ]);
  const canAct = may(app, "EXECUTE");
  const byCluster = new Map();
  for (const group of groups) {
    const key = `${group.account} · ${group.cluster} · ${group.region}`;
    if (!byCluster.has(key)) byCluster.set(key, []);
    byCluster.get(key).push(group);
  }
  const task = async (description, job) => {
    try {
      const started = await api("POST", `/applications/${encoded}/tasks`, { application: name, description, job: [job] });
      say(`${description}: task ${started.id || started.ref || ""} started`);
    } catch (error) { failure(error); }
  };
  const sections = [...byCluster.entries()].map(([key, list]) => h("section", { class: "panel" },
    h("h2", {}, key),
    list.map((group) => {
      const resizeId = `resize-${group.name}`;
      const desired = h("input", { id: resizeId, type: "number", min: "0", value: String(group.capacity ? group.capacity.desired : 0), class: "narrow" });
      const base = { credentials: group.account, region: group.region, serverGroupName: group.name, cloudProvider: "podman" };
      return h("div", {},
        h("h3", {}, group.name, " ", group.disabled ? h("span", { class: "status s-STOPPED" }, "disabled") : h("span", { class: "status s-SUCCEEDED" }, "enabled"),
          h("span", { class: "hint" }, ` ${group.image || ""}`)),
        h("ul", {}, (group.instances || []).map((instance) => h("li", { class: `health-${instance.health}`, "data-instance": instance.id, "data-health": instance.health },
          `${instance.id}: ${instance.health}${instance.address ? ` (${instance.address})` : ""}`))),
        canAct ? h("div", { class: "row" },
          group.disabled
            ? h("button", { type: "button", onclick: () => task(`Enable ${group.name}`, { type: "enableServerGroup", ...base }) }, "Enable")
            : h("button", { type: "button", onclick: () => task(`Disable ${group.name}`, { type: "disableServerGroup", ...base }) }, "Disable"),
          h("label", { for: resizeId }, "Desired"), desired,
          h("button", { type: "button", onclick: () => task(`Resize ${group.name}`, { type: "resizeServerGroup", ...base,
            capacity: { min: Math.min(Number(desired.value), group.capacity ? group.capacity.min : 0), max: Math.max(Number(desired.value), group.capacity ? group.capacity.max : 0), desired: Number(desired.value) } }) }, "Resize"),
          h("button", { type: "button", class: "quiet", onclick: () => task(`Roll back ${group.cluster}`, { type: "rollbackCluster", credentials: group.account, cluster: group.cluster, regions: [group.region] }) }, "Roll back cluster")) : null);
    })));
  // The security groups the application's load balancers name, by account.
  const named = new Set(balancers.flatMap((balancer) => (balancer.securityGroups || []).map((group) => `${balancer.account}/${group}`)));
  const rules = [];
  for (const [account, regions] of Object.entries(securityGroups || {})) {
    for (const list of Object.values(regions)) for (const group of list) if (named.has(`${account}/${group.name}`)) rules.push(group);
  }
  const loadBalancerTable = h("table", {},
    h("caption", { class: "sr-only" }, "Load balancers"),
    h("thead", {}, h("tr", {}, ["Load balancer", "Account", "Port", "Health check", "Security groups", "Server groups"].map((label) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, balancers.map((balancer) => h("tr", {},
      h("td", {}, balancer.name), h("td", {}, balancer.account), h("td", {}, balancer.port ?? ""), h("td", {}, balancer.healthCheck || ""),
      h("td", {}, (balancer.securityGroups || []).join(", ") || "open"),
      h("td", {}, (balancer.serverGroups || []).map((member) => `${member.name}${member.isDisabled ? " (disabled)" : ""}`).join(", "))))));
  const ruleTable = h("table", {},
    h("caption", { class: "sr-only" }, "Security groups"),
    h("thead", {}, h("tr", {}, ["Security group", "Account", "Ingress"].map((label) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, rules.map((group) => h("tr", {}, h("td", {}, group.name), h("td", {}, group.account),
      h("td", {}, (group.ipIngress || []).map((rule) => `${rule.cidr || ""} ${rule.startPort ?? ""}${rule.endPort && rule.endPort !== rule.startPort ? "–" + rule.endPort : ""}`.trim()).join("; "))))));
  show(`${name}: clusters`, sections.length ? sections : h("p", {}, "No server groups."),
    h("h2", {}, "Load balancers"), balancers.length ? loadBalancerTable : h("p", {}, "None."),
    h("h2", {}, "Security groups"), rules.length ? ruleTable : h("p", {}, "None named by these load balancers."));
  const live = debounced(async () => { if (location.hash === `#/applications/${encoded}/clusters`) await showClusters(name); });
  listeners.add((kind, data) => { if (kind === "cluster" && data.application === name) live(); });
}

// ---------------------------------------------------------------- pipeline editor

async function showEditor(appName, id) {
  const encoded = encodeURIComponent(appName);
  const history = await api("GET", `/pipelineConfigs/${encodeURIComponent(id)}/history?limit=50`);
  const newest = history[0];
  let basedOn = newest.version;
  let format = "json";
  let loaded = JSON.stringify(newest.document, null, 2);
  const text = h("textarea", { id: "pipeline-text", spellcheck: "false", "aria-describedby": "problems" }, loaded);
  const label = h("label", { for: "pipeline-text" }, "Pipeline (JSON)");
  const problems = h("ul", { id: "problems", class: "problems", "aria-live": "assertive" });
  // The saved pipeline in the other format, from the server (which reads and writes YAML as
  // `topsail apply` does); unsaved edits are kept only after asking.
  const switchTo = async (wanted) => {
    if (wanted === format) return;
    if (text.value !== loaded && !confirm("Switching formats reloads the saved pipeline; your unsaved changes are lost. Switch?")) {
      document.getElementById(`format-${format}`).checked = true;
      return;
    }
    const response = await fetch(`/applications/${encoded}/pipelineConfigs/${encodeURIComponent(id)}`,
      { headers: { Accept: wanted === "yaml" ? "application/yaml" : "application/json" }, credentials: "same-origin" });
    if (!response.ok) { failure(new APIError(response.status, await response.json().catch(() => null))); return; }
    const body = await response.text();
    loaded = wanted === "yaml" ? body : JSON.stringify(JSON.parse(body), null, 2);
    text.value = loaded;
    format = wanted;
    label.textContent = `Pipeline (${format.toUpperCase()})`;
    problems.replaceChildren();
  };
  const formats = h("fieldset", { class: "row" }, h("legend", {}, "Format"),
    ["json", "yaml"].map((value) => h("span", {},
      h("input", { type: "radio", name: "format", id: `format-${value}`, value, checked: value === "json", onchange: () => switchTo(value).catch(failure) }),
      h("label", { for: `format-${value}`, class: "inline" }, value.toUpperCase()))));
  const showProblems = (list) => {
    problems.replaceChildren(...list.map((problem) => h("li", { "data-path": problem.path || "" },
      problem.path ? h("code", {}, problem.path) : null, problem.path ? ": " : "", problem.message)));
    const first = list[0] && list[0].path ? fieldOffset(text.value, list[0].path, format) : -1;
    if (first >= 0) { text.focus(); text.setSelectionRange(first, first); }
  };
  const save = async () => {
    let saved;
    try {
      if (format === "json") {
        let json;
        try { json = JSON.parse(text.value); } catch (error) { showProblems([{ path: "", message: `not JSON: ${error.message}` }]); return; }
        saved = await api("POST", `/pipelines?basedOn=${basedOn}`, json);
      } else {
        const response = await fetch(`/pipelines?basedOn=${basedOn}`, { method: "POST", credentials: "same-origin", body: text.value,
          headers: { "Content-Type": "application/yaml", Accept: "application/json", "X-CSRF-Token": session.csrf } });
        const body = await response.json().catch(() => ({}));
        if (!response.ok) throw new APIError(response.status, body);
        saved = body;
      }
      basedOn = saved.version;
      loaded = text.value;
      problems.replaceChildren();
      say(`Saved version ${saved.version}`);
    } catch (error) {
      if (error instanceof APIError && error.status === 401) { failure(error); return; }
      showProblems(error.body && error.body.problems ? error.body.problems : [{ path: "", message: error.message }]);
    }
  };
  const versions = history.map((entry) => h("option", { value: String(entry.version) }, `v${entry.version} · ${when(entry.time || entry.recordedAt)} · ${entry.actor || ""}`));
  const from = h("select", { id: "diff-from" }, versions.map((option) => option.cloneNode(true)));
  const to = h("select", { id: "diff-to" }, versions);
  if (from.options.length > 1) from.selectedIndex = 1;
  const diffOut = h("pre", { class: "diff", "aria-live": "polite" });
  const showDiff = () => {
    const a = history.find((entry) => String(entry.version) === from.value);
    const b = history.find((entry) => String(entry.version) === to.value);
    diffOut.replaceChildren(...diff(JSON.stringify(a.document, null, 2).split("\n"), JSON.stringify(b.document, null, 2).split("\n")));
  };
  show(`Edit ${newest.document.name || id}`,
    h("p", {}, h("a", { href: `#/applications/${encoded}` }, `Back to ${appName}`)),
    formats, label, text, problems,
    h("div", { class: "row" }, h("button", { type: "button", onclick: save }, "Save"),
      h("span", { class: "hint" }, "Saved only if nobody saved a newer version meanwhile.")),
    h("h2", {}, "History"),
    h("div", { class: "row" }, h("label", { for: "diff-from" }, "From"), from, h("label", { for: "diff-to" }, "To"), to,
      h("button", { type: "button", onclick: showDiff }, "Compare")), diffOut);
}

// Where a problem's path (stages[2].waitTime) points in the text: the offset of its last named
// key after the place of the keys and list items before it, followed in order.
function fieldOffset(source, path, format = "json") {
  const steps = path.split(/[.[\]]/).filter(Boolean);
  let at = 0;
  for (const step of steps) {
    if (!isNaN(Number(step))) continue;
    const found = format === "json" ? source.indexOf(`"${step}"`, at) : source.slice(at).search(new RegExp(`(^|\\s|")${step}"?\\s*:`, "m"));
    if (found < 0) return at > 0 ? at : -1;
    at = format === "json" ? found : at + found;
  }
  return at > 0 || steps.length ? at : -1;
}

// A line diff (longest common subsequence).
function diff(a, b) {
  const n = a.length, m = b.length;
  const table = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) table[i][j] = a[i] === b[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
  const lines = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { lines.push(h("div", {}, "  " + a[i])); i++; j++; }
    else if (j < m && (i >= n || table[i][j + 1] >= table[i + 1][j])) { lines.push(h("div", { class: "add" }, "+ " + b[j])); j++; }
    else { lines.push(h("div", { class: "del" }, "- " + a[i])); i++; }
  }
  return lines;
}

// ---------------------------------------------------------------- audit

async function showAudit() {
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  const fields = ["actor", "application", "type", "since"];
  const inputs = Object.fromEntries(fields.map((field) => [field, h("input", { id: `audit-${field}`, name: field, value: query.get(field) || "",
    placeholder: field === "since" ? "2026-11-30T00:00:00Z" : "" })]));
  let entries = [];
  try {
    const params = new URLSearchParams();
    for (const field of fields) if (query.get(field)) params.set(field, query.get(field));
    const answer = await api("GET", `/audit?${params}`);
    entries = answer.entries || answer.events || answer;
  } catch (error) { failure(error); }
  const form = h("form", { class: "panel row", onsubmit: (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const field of fields) if (inputs[field].value) params.set(field, inputs[field].value);
    location.hash = `#/audit?${params}`;
  } }, fields.map((field) => h("div", {}, h("label", { for: `audit-${field}` }, field), inputs[field])), h("button", { type: "submit" }, "Filter"));
  const exportButton = h("button", { type: "button", class: "quiet", onclick: () => {
    const blob = new Blob([JSON.stringify(entries, null, 2)], { type: "application/json" });
    const link = h("a", { href: URL.createObjectURL(blob), download: "topsail-audit.json" });
    document.body.append(link); link.click(); link.remove();
  } }, "Export JSON");
  show("Audit", form, exportButton, h("table", {},
    h("caption", { class: "sr-only" }, "Audit entries"),
    h("thead", {}, h("tr", {}, ["Time", "Actor", "Type", "Stream"].map((label) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, (Array.isArray(entries) ? entries : []).map((entry) => h("tr", {},
      h("td", {}, when(entry.time)), h("td", {}, entry.actor || ""), h("td", {}, h("code", {}, entry.type)), h("td", {}, entry.stream || ""))))));
}

// ---------------------------------------------------------------- routing

async function route() {
  if (!session) return showSignIn();
  const path = decodeURIComponent(location.hash.replace(/^#/, "").split("?")[0]) || "/";
  const parts = path.split("/").filter(Boolean);
  try {
    if (parts.length === 0) await showApplications();
    else if (parts[0] === "applications" && parts.length === 2) await showApplication(parts[1]);
    else if (parts[0] === "applications" && parts[2] === "clusters") await showClusters(parts[1]);
    else if (parts[0] === "applications" && parts[2] === "pipelines" && parts[4] === "edit") await showEditor(parts[1], parts[3]);
    else if (parts[0] === "executions" && parts[1]) await showExecution(parts[1]);
    else if (parts[0] === "audit") await showAudit();
    else show("Not found", h("p", {}, "There is no such page. ", h("a", { href: "#/" }, "Applications")));
  } catch (error) { failure(error); }
}

window.addEventListener("hashchange", () => { say(""); route(); });

(async () => {
  try {
    session = await api("GET", "/ui/session");
    if (!session.csrf) session = null; // a bearer token, not a browser session
  } catch { session = null; }
  if (session) signedIn();
  route();
})();
