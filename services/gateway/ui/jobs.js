// The jobs page and one job's detail.
import { useState } from "preact/hooks";
import { html, usePoll, Err, Table, fmtTime, fmtBytes, stateClass } from "./api.js";

const states = ["", "queued", "running", "succeeded", "failed"];
// kinds are every job kind the API names (gateway's jobKinds)
const kinds = ["", "backup", "restore", "protect", "discover", "delete", "verify", "rebuild", "copy", "vault-create"];

export function Jobs() {
  const jobs = usePoll("/api/v1/jobs", 3000);
  const [state, setState] = useState("");
  const [kind, setKind] = useState("");
  const [db, setDb] = useState("");
  const f = db.toLowerCase();
  const rows = (jobs.data || []).filter((j) => (!state || j.state === state) && (!kind || j.kind === kind) &&
    (!f || ((j.instance || "") + "/" + (j.database || "") + " " + (j.target || "")).toLowerCase().includes(f)));
  const select = (id, value, set, options) => html`<select id=${id} value=${value} onChange=${(e) => set(e.target.value)}>
    ${options.map((o) => html`<option value=${o}>${o || "any"}</option>`)}</select>`;
  return html`<h1>Jobs</h1>
    <div class="box">
      <label>State${select("job-state", state, setState, states)}</label>
      <label>Kind${select("job-kind", kind, setKind, kinds)}</label>
      <label>Database<input id="job-db" type="search" placeholder="instance/database" value=${db} onInput=${(e) => setDb(e.target.value)} /></label>
    </div>
    <${Err} error=${jobs.error} />
    <${Table} id="jobs" head=${["job", "kind", "database", "state", "progress", "updated", "detail"]}>
      ${rows.slice(0, 200).map((j) => html`<tr data-job=${j.id}>
        <td><a href=${"#/jobs/" + encodeURIComponent(j.id)}>${j.id}</a></td>
        <td>${j.kind}${j.backup_type ? " " + j.backup_type : ""}</td>
        <td>${j.instance ? j.instance + "/" + j.database : ""}${j.target ? " → " + j.target : ""}</td>
        <td class=${stateClass(j.state)}>${j.state}</td>
        <td>${j.state === "running" ? Math.round(j.percent) + "% " + (j.step || "") : ""}</td>
        <td class="hide-narrow">${fmtTime(j.updated || j.created)}</td>
        <td class=${j.error ? "bad" : ""}>${j.error || j.detail || ""}</td></tr>`)}
    <//>
    <p class="muted">${rows.length} of ${(jobs.data || []).length} jobs${rows.length > 200 ? ", the newest 200 shown" : ""}.</p>`;
}

export function JobDetail({ id }) {
  const job = usePoll("/api/v1/jobs/" + encodeURIComponent(id), 1500);
  const j = job.data;
  const row = (k, v, cls) => (v || v === 0 ? html`<tr><th>${k}</th><td class=${cls || ""}>${v}</td></tr>` : null);
  return html`<h1>Job ${id}</h1><p><a href="#/jobs">All jobs</a></p>
    <${Err} error=${job.error} />
    ${j ? html`<div class="scroll"><table id="job">
      ${row("state", html`<span id="job-state-value" class=${stateClass(j.state)}>${j.state}</span>`)}
      ${row("kind", j.kind + (j.backup_type ? " " + j.backup_type : ""))}
      ${row("database", j.instance ? j.instance + "/" + j.database : "")}
      ${row("target", j.target)}
      ${row("step", j.step)}
      ${j.state === "running" ? row("progress", html`<progress max="100" value=${j.percent}></progress> ${Math.round(j.percent)}%`) : null}
      ${row("bytes", j.bytes ? fmtBytes(j.bytes) : "")}
      ${row("detail", j.detail)}
      ${row("error", j.error, "bad")}
      ${row("service", j.service)}
      ${row("recovery point", j.recovery_point)}
      ${row("trace id", j.trace_id)}
      ${row("created", fmtTime(j.created))}
      ${row("updated", fmtTime(j.updated))}
    </table></div>` : html`<p class="muted">Waiting for the job to be recorded…</p>`}`;
}
