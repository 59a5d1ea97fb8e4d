// edge-depth console: shared helpers. No build step, no dependencies.
"use strict";

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : body;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = attrs.svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "svg" || value === undefined || value === null) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function points(polygon) {
  return polygon.map(([x, y]) => `${x},${y}`).join(" ");
}

function fmt(value, digits = 2, unit = "") {
  return value === null || value === undefined ? "–" : `${Number(value).toFixed(digits)}${unit}`;
}

function nav(here) {
  const links = [["/", "Dashboard"], ["/editor", "Zone editor"], ["/photo", "Try a photo"], ["/docs", "API"],
                 ["/metrics", "Metrics"]];
  const header = document.querySelector("header");
  header.append(el("h1", { text: "edge-depth" }));
  for (const [href, label] of links) header.append(el("a", { href, text: label, class: href === here ? "here" : "" }));
  const right = el("span", { class: "right", id: "daemon" });
  header.append(right);
  api("/api/status").then((s) => {
    const mqtt = s.mqtt && s.mqtt.connected ? "MQTT connected" : "MQTT not connected";
    right.textContent = `v${s.version} · ${s.model.name} ${s.model.precision} on ${s.model.devices.join(",") || "?"} · ${mqtt}`;
  }).catch(() => {});
}

function zoneLabels(view, polygons) {
  view.querySelectorAll(".label").forEach((n) => n.remove());
  for (const { polygon, text, on } of polygons) {
    const x = Math.min(...polygon.map((p) => p[0])), y = Math.min(...polygon.map((p) => p[1]));
    view.append(el("span", { class: on ? "label on" : "label", style: `left:${x * 100}%;top:${y * 100}%`, text }));
  }
}
