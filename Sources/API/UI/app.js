// Topsail's web UI: plain modules, no build step, no third-party code (decision 0020).
// Everything it shows comes from the HTTP API the CLI uses; live updates come from /ui/stream,
// the log as server-sent events, resumed after the last event seen when the connection drops.

import { api, APIError, application, applications, debounced, failure, follow, h, listeners, may, onSignedOut, say, show, state, status, took, unfollow, when } from "/ui/assets/common.js";
import { showExecution } from "/ui/assets/execution.js";
import { showClusters } from "/ui/assets/clusters.js";
import { showEditor } from "/ui/assets/editor.js";

// ---------------------------------------------------------------- sign in

function showSignIn() {
  unfollow();
  document.getElementById("who").textContent = "";
  document.getElementById("signout").hidden = true;
  const token = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true, "aria-describedby": "token-hint" });
  const form = h("form", { class: "panel", onsubmit: async (event) => {
    event.preventDefault();
    try {
      state.session = await api("POST", "/ui/session", { token: token.value });
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
  document.getElementById("who").textContent = `${state.session.user}${state.session.admin ? " (admin)" : ""}`;
  document.getElementById("signout").hidden = false;
  follow();
}

document.getElementById("signout").addEventListener("click", async () => {
  try { await api("DELETE", "/ui/session"); } catch (error) { if (!(error instanceof APIError && error.status === 401)) failure(error); }
  state.session = null;
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

async function showApplication(name, caughtUp = false) {
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
          canRun && !config.disabled ? h("button", { type: "button", onclick: () => { location.hash = `#/applications/${encoded}/run/${encodeURIComponent(config.id)}`; } }, `Run ${config.name}`) : null,
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
  const refreshApplication = debounced(async () => { if (location.hash === `#/applications/${encoded}`) await showApplication(name, true); });
  listeners.add((kind, data) => {
    if (kind === "execution" && data.application === name && ["execution.triggered", "execution.completed"].includes(data.type)) refreshApplication();
  });
  // Executions that started or ended between the first fetch and the listener were not heard.
  if (!caughtUp) setTimeout(() => { if (location.hash === `#/applications/${encoded}`) showApplication(name, true).catch(failure); }, 500);
}

// The trigger form, generated from the pipeline's parameterConfig.
// The trigger form, a page of its own (so that live updates of the application's page leave it be).
async function showTriggerPage(name, id) {
  const app = await application(name);
  const configs = await api("GET", `/applications/${encodeURIComponent(name)}/pipelineConfigs`);
  const config = configs.find((candidate) => candidate.id === id);
  if (!config) { show("Not found", h("p", {}, `Application ${name} has no pipeline ${id}.`)); return; }
  showTrigger(app, config);
}

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
  h("div", { class: "row" }, h("button", { type: "submit" }, "Start"), h("button", { type: "button", class: "quiet", onclick: () => { location.hash = `#/applications/${encodeURIComponent(app.name)}`; } }, "Back")));
  show(`Run ${config.name}`, form);
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
  if (!state.session) return showSignIn();
  const path = decodeURIComponent(location.hash.replace(/^#/, "").split("?")[0]) || "/";
  const parts = path.split("/").filter(Boolean);
  try {
    if (parts.length === 0) await showApplications();
    else if (parts[0] === "applications" && parts.length === 2) await showApplication(parts[1]);
    else if (parts[0] === "applications" && parts[2] === "clusters") await showClusters(parts[1]);
    else if (parts[0] === "applications" && parts[2] === "run" && parts[3]) await showTriggerPage(parts[1], parts[3]);
    else if (parts[0] === "applications" && parts[2] === "pipelines" && parts[4] === "edit") await showEditor(parts[1], parts[3]);
    else if (parts[0] === "executions" && parts[1]) await showExecution(parts[1]);
    else if (parts[0] === "audit") await showAudit();
    else show("Not found", h("p", {}, "There is no such page. ", h("a", { href: "#/" }, "Applications")));
  } catch (error) { failure(error); }
}

onSignedOut(showSignIn);
window.addEventListener("hashchange", () => { say(""); route(); });

(async () => {
  try {
    state.session = await api("GET", "/ui/session");
    if (!state.session.csrf) state.session = null; // a bearer token, not a browser session
  } catch { state.session = null; }
  if (state.session) signedIn();
  route();
})();
