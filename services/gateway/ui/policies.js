// The policies page and the policy editor. The editor is built from the
// policy's own JSON, one field a value, so that it has every field the
// API has; each validation problem the API reports ("full.hour: 25 is
// not an hour") is shown next to the field it names.
import { useEffect, useState } from "preact/hooks";
import { api, html, usePoll, can, Err, Table } from "./api.js";

const blank = {
  name: "", time_zone: "UTC", full: { frequency: "daily", hour: 1, minute: 0 }, log: { every: "15m" },
  retention: { full: "30d" }, compression: "zstd",
};
const sections = { differential: { days: [3], hour: 2, minute: 0 }, log: { every: "15m" } };

export function Policies({ me }) {
  const pols = usePoll("/api/v1/policies", 3000);
  return html`<h1>Policies</h1>
    ${can(me, "admin") ? html`<p><a href="#/policies/+new" id="new-policy">New policy</a></p>` : null}
    <${Err} error=${pols.error} />
    <${Table} id="policies" head=${["policy", "full", "differential", "log", "keep fulls", "time zone"]}>
      ${(pols.data || []).map((p) => html`<tr data-policy=${p.name}>
        <td><a href=${"#/policies/" + encodeURIComponent(p.name)}>${p.name}</a></td>
        <td>${p.full.frequency} at ${String(p.full.hour).padStart(2, "0")}:${String(p.full.minute).padStart(2, "0")}
          ${p.full.days && p.full.days.length ? " on days " + p.full.days.join(", ") : ""}</td>
        <td>${p.differential ? "days " + (p.differential.days || []).join(", ") : "none"}</td>
        <td>${p.log ? "every " + p.log.every : "none"}</td>
        <td>${p.retention && p.retention.full}</td><td>${p.time_zone || "UTC"}</td></tr>`)}
    <//>`;
}

// flatten lists an object's values, each with its dotted path.
function flatten(obj, prefix = "", out = []) {
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined) continue;
    const path = prefix ? prefix + "." + k : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, path, out);
    else out.push({ path, kind: Array.isArray(v) ? "list" : v === null ? "string" : typeof v });
  }
  return out;
}

function get(obj, path) {
  return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

function set(obj, path, value) {
  const out = structuredClone(obj);
  const keys = path.split(".");
  let o = out;
  for (const k of keys.slice(0, -1)) o = o[k];
  o[keys[keys.length - 1]] = value;
  return out;
}

// problems splits the API's "invalid policy" message into one problem a
// field: {field: [messages]}, and the rest under "".
function problems(message) {
  const out = {};
  const lines = String(message).split("\n");
  for (const line of lines.length > 1 ? lines.slice(1) : lines) {
    const m = /^([A-Za-z_][\w.[\]]*): (.*)$/.exec(line.trim());
    const k = m ? m[1].replace(/\[\d+\]/g, "") : "";
    (out[k] = out[k] || []).push(m ? m[2] : line);
  }
  return out;
}

export function PolicyEdit({ me, name }) {
  const creating = name === "+new";
  const [policy, setPolicy] = useState(creating ? blank : null);
  const [texts, setTexts] = useState({});
  const [errors, setErrors] = useState({});
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState(null);
  const [json, setJSON] = useState(null);
  const admin = can(me, "admin");
  useEffect(() => {
    if (!creating) api("GET", "/api/v1/policies/" + encodeURIComponent(name)).then(setPolicy, setError);
  }, [name]);
  if (!policy) return html`<h1>Policy ${name}</h1><${Err} error=${error} />`;
  const fields = flatten(policy);
  const text = (f) => (f.path in texts ? texts[f.path] : f.kind === "list" ? (get(policy, f.path) || []).join(", ") : String(get(policy, f.path) ?? ""));
  const edit = (f, raw) => {
    setTexts({ ...texts, [f.path]: raw });
    setSaved(null);
  };
  // value reads a field's text as its kind, or throws why it cannot
  const value = (f, raw) => {
    if (f.kind === "number") {
      if (!/^-?\d+(\.\d+)?$/.test(raw.trim())) throw new Error("give a number");
      return Number(raw);
    }
    if (f.kind === "list") return raw.split(",").map((s) => s.trim()).filter(Boolean).map((s) => (/^-?\d+$/.test(s) ? Number(s) : s));
    return raw;
  };
  const save = async (e) => {
    e.preventDefault();
    setError(null);
    setSaved(null);
    let doc = policy;
    const local = {};
    if (json !== null) {
      try { doc = JSON.parse(json); } catch (err) { setErrors({ "": ["the JSON does not parse: " + err.message] }); return; }
    } else {
      for (const f of fields) {
        if (f.kind === "boolean" || !(f.path in texts)) continue;
        try { doc = set(doc, f.path, value(f, texts[f.path])); } catch (err) { local[f.path] = [err.message]; }
      }
    }
    setErrors(local);
    if (Object.keys(local).length) return;
    try {
      const out = await api("PUT", "/api/v1/policies/" + encodeURIComponent(doc.name || "-"), doc);
      setPolicy(out);
      setTexts({});
      setJSON(null);
      setSaved(`Policy ${out.name} saved.`);
      // the scheduler stores a new policy a moment later: the list shows it then
      if (creating) location.hash = "#/policies";
    } catch (err) {
      if (err.status === 400) setErrors(problems(err.message)); else setError(err);
    }
  };
  const groupOf = (path) => (path.includes(".") ? path.split(".")[0] : "");
  const groups = [...new Set(fields.map((f) => groupOf(f.path)))];
  const matched = (p) => fields.some((f) => f.path === p) || groups.includes(p);
  const orphan = Object.entries(errors).filter(([k]) => !k || !matched(k)).flatMap(([k, v]) => v.map((m) => (k ? k + ": " + m : m)));
  const fieldErrors = (p) => (errors[p] || []).map((m) => html`<span class="field-error" data-field=${p}>${m}</span>`);
  const input = (f) => {
    const id = "policy-" + f.path.replace(/\./g, "-");
    const label = f.path.split(".").pop().replace(/_/g, " ");
    const bad = errors[f.path] ? "invalid" : "";
    if (f.kind === "boolean") {
      return html`<label class="check"><input id=${id} type="checkbox" disabled=${!admin} checked=${!!get(policy, f.path)}
        onChange=${(e) => { setPolicy(set(policy, f.path, e.target.checked)); setSaved(null); }} />${label}${fieldErrors(f.path)}</label>`;
    }
    return html`<label>${label}${f.kind === "list" ? " (comma-separated)" : ""}
      <input id=${id} class=${bad} readonly=${!admin || (f.path === "name" && !creating)} value=${text(f)}
        onInput=${(e) => edit(f, e.target.value)} aria-invalid=${bad ? "true" : "false"} />${fieldErrors(f.path)}</label>`;
  };
  const toggleSection = (k) => { setPolicy(set(policy, k, policy[k] ? undefined : structuredClone(sections[k]))); setTexts({}); };
  return html`<h1>${creating ? "New policy" : "Policy " + policy.name}</h1><p><a href="#/policies">All policies</a></p>
    <form class="box" id="policy-form" onSubmit=${save} novalidate>
      ${orphan.length ? html`<div class="error" id="policy-errors" role="alert">${orphan.map((m) => html`<div>${m}</div>`)}</div>` : null}
      ${json !== null ? html`<label>Policy as JSON<textarea id="policy-json" rows="20" cols="70" value=${json}
          onInput=${(e) => setJSON(e.target.value)}></textarea></label>`
        : groups.map((g) => (g ? html`<fieldset class="box" data-group=${g}><legend>${g}
            ${admin && sections[g] ? html` <button type="button" class="plain" onClick=${() => toggleSection(g)}>remove</button>` : null}</legend>
            ${fieldErrors(g)}${fields.filter((f) => groupOf(f.path) === g).map(input)}</fieldset>`
          : html`<div>${fields.filter((f) => !groupOf(f.path)).map(input)}</div>`))}
      ${admin ? html`<div>
        ${json === null ? Object.keys(sections).filter((k) => !policy[k]).map((k) => html`<button type="button" class="plain" onClick=${() => toggleSection(k)}>Add ${k}</button>`) : null}
        <button type="button" class="plain" onClick=${() => setJSON(json === null ? JSON.stringify(policy, null, 2) : null)}>${json === null ? "Edit as JSON" : "Edit as a form"}</button>
        <button type="submit" id="policy-save">Save</button></div>` : html`<p class="muted">Only an admin may change a policy.</p>`}
      <${Err} error=${error} />${saved ? html`<p class="notice" id="policy-saved">${saved}</p>` : null}
    </form>
    <p class="muted">The fields are those of the API's policy document: docs/policies.md explains each.</p>`;
}
