// The pipeline editor: JSON or YAML, problems by field, history with a diff, stale saves refused.

import { api, APIError, application, applications, failure, h, say, show, state, when } from "/ui/assets/common.js";

export async function showEditor(appName, id) {
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
          headers: { "Content-Type": "application/yaml", Accept: "application/json", "X-CSRF-Token": state.session.csrf } });
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
