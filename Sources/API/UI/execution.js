// An execution: its stage graph, stage detail and controls, timeline and replay, live.

import { api, application, applications, debounced, failure, h, listeners, may, show, state, status, took, when } from "/ui/assets/common.js";
import { layout } from "/ui/assets/dag.js";

export async function showExecution(id) {
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
  // Events that came between the first fetch and the listener were not heard: look once more.
  live();

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
