// An application's clusters: server groups with instance health, load balancers, security groups, actions.

import { api, application, applications, debounced, failure, h, listeners, may, say, show, status } from "/ui/assets/common.js";

// Desired capacities typed and not yet submitted, by server group.
const typed = new Map();

export async function showClusters(name, caughtUp = false) {
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
      // What the user typed survives the redraws live updates make.
      const desired = h("input", { id: resizeId, type: "number", min: "0", class: "narrow",
        value: typed.get(group.name) ?? String(group.capacity ? group.capacity.desired : 0),
        oninput: (event) => typed.set(group.name, event.target.value) });
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
            capacity: { min: Math.min(Number(desired.value), group.capacity ? group.capacity.min : 0), max: Math.max(Number(desired.value), group.capacity ? group.capacity.max : 0), desired: Number(desired.value) } }).then(() => typed.delete(group.name)) }, "Resize"),
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
  const live = debounced(async () => { if (location.hash === `#/applications/${encoded}/clusters`) await showClusters(name, true); });
  listeners.add((kind, data) => { if (kind === "cluster" && data.application === name) live(); });
  // Changes between the first fetch and the listener were not heard: look once more.
  if (!caughtUp) setTimeout(() => { if (location.hash === `#/applications/${encoded}/clusters`) showClusters(name, true).catch(failure); }, 500);
}
