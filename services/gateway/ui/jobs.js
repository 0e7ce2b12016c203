// The jobs page and one job's detail.
import { useState } from "preact/hooks";
import { html, api, can, usePoll, Err, Table, fmtTime, fmtBytes, stateClass } from "./api.js";

const states = ["", "queued", "running", "succeeded", "failed", "cancelled"];
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

// fmtSeconds says a duration in seconds shortly: 950 ms, 42 s, 3 min 5 s.
function fmtSeconds(s) {
  if (s < 1) return Math.round(s * 1000) + " ms";
  if (s < 60) return (Math.round(s * 10) / 10) + " s";
  return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
}

// cancellable are the kinds of job the API cancels (gateway's cancellable).
const cancellable = ["backup", "restore", "verify", "copy"];

export function JobDetail({ id, me }) {
  const job = usePoll("/api/v1/jobs/" + encodeURIComponent(id), 1500);
  const [cancelError, setCancelError] = useState(null);
  const [confirming, setConfirming] = useState(false);
  const j = job.data;
  const row = (k, v, cls) => (v || v === 0 ? html`<tr><th>${k}</th><td class=${cls || ""}>${v}</td></tr>` : null);
  const cancel = async () => {
    setConfirming(false);
    setCancelError(null);
    try {
      await api("POST", "/api/v1/jobs/" + encodeURIComponent(id) + "/cancel");
    } catch (e) {
      setCancelError(e);
    }
    job.reload();
  };
  const open = j && (j.state === "queued" || j.state === "running") && cancellable.includes(j.kind);
  return html`<h1>Job ${id}</h1><p><a href="#/jobs">All jobs</a></p>
    <${Err} error=${job.error} />
    ${j && open && can(me, "operator") ? html`<p>
      <button id="job-cancel" class="danger" onClick=${() => setConfirming(true)} disabled=${!!j.cancel_requested_by || !!j.no_cancel}
        title=${j.no_cancel || ""}>${j.cancel_requested_by ? "Cancelling…" : "Cancel"}</button></p>
      ${confirming ? html`<div class="notice" id="job-cancel-confirm">
        Cancel job ${id}? A backup records nothing; a restore to a new name leaves its database RESTORING.
        <div><button class="danger" id="job-cancel-yes" onClick=${cancel}>Cancel the job</button>
          <button class="plain" onClick=${() => setConfirming(false)}>Keep it running</button></div></div>` : null}` : null}
    <${Err} error=${cancelError} />
    ${j ? html`<div class="scroll"><table id="job">
      ${row("state", html`<span id="job-state-value" class=${stateClass(j.state)}>${j.state}</span>`)}
      ${row("kind", j.kind + (j.backup_type ? " " + j.backup_type : ""))}
      ${row("database", j.instance ? j.instance + "/" + j.database : "")}
      ${row("target", j.target)}
      ${row("step", j.step)}
      ${j.state === "running" ? row("progress", html`<progress max="100" value=${j.percent}></progress> ${Math.round(j.percent)}%`) : null}
      ${row("bytes", j.bytes ? fmtBytes(j.bytes) : "")}
      ${row("detail", j.detail)}
      ${row("error", j.error, j.state === "cancelled" ? "warn" : "bad")}
      ${row("service", j.service)}
      ${row("cancel asked by", j.cancel_requested_by)}
      ${row("cancelled by", j.cancelled_by)}
      ${row("no cancel", j.no_cancel)}
      ${row("recovery point", j.recovery_point)}
      ${row("trace id", j.trace_id)}
      ${row("created", fmtTime(j.created))}
      ${row("updated", fmtTime(j.updated))}
    </table></div>
    <h2>Steps</h2>
    ${j.steps && j.steps.length ? html`<${Table} id="job-steps" head=${["step", "began", "ended", "took", "outcome"]}>
      ${j.steps.map((st) => html`<tr>
        <td>${st.name}</td><td>${fmtTime(st.began)}</td><td>${st.ended ? fmtTime(st.ended) : "running"}</td>
        <td>${fmtSeconds(st.seconds)}</td><td class=${stateClass(st.outcome)}>${st.outcome || ""}</td></tr>`)}
    <//>` : html`<p class="muted">No steps recorded.</p>`}
    <h2>Log</h2>
    ${j.log && j.log.length ? html`<${Table} id="job-log" head=${["time", "level", "service", "message"]}>
      ${j.log.map((l) => html`<tr>
        <td>${fmtTime(l.time)}</td><td class=${l.level === "ERROR" ? "bad" : l.level === "WARN" ? "warn" : ""}>${l.level}</td>
        <td>${l.service}</td><td class="log-line">${l.message}</td></tr>`)}
    <//>` : html`<p class="muted">No log lines about this job.</p>`}` : html`<p class="muted">Waiting for the job to be recorded…</p>`}`;
}
