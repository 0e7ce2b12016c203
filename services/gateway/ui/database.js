// One database: its recovery-point timeline and restores.
import { useState } from "preact/hooks";
import { api, html, usePoll, can, q, Err, Table, fmtTime, fmtMoment, fmtBytes, stateClass, wallToUTC, utcToWall, localZone } from "./api.js";

const spans = [["all", 0], ["7 days", 7 * 864e5], ["24 hours", 864e5], ["1 hour", 36e5]];
const typeStyle = {
  full: { color: "#1f4fbf", y: 12 }, copy_only: { color: "#0e7490", y: 12 },
  differential: { color: "#7c3aed", y: 32 }, log: { color: "#6b7280", y: 58 },
};

// Timeline draws the recovery points (fulls tall, differentials
// middling, logs short), shades the ranges restorable to any moment,
// marks chain breaks in red, and hands a click's moment to onPick.
export function Timeline({ points, ranges, picked, onPick }) {
  const [span, setSpan] = useState(0);
  const now = Date.now();
  const times = [...points.map((p) => new Date(p.backup_start || p.backup_finish).getTime()),
    ...ranges.map((r) => new Date(r.from).getTime())];
  let from = times.length ? Math.min(...times) : now - 36e5;
  if (span) from = Math.max(from, now - span);
  const to = now, pad = (to - from) * 0.02 || 6e4;
  const lo = from - pad, hi = to + pad;
  const x = (t) => ((new Date(t).getTime() - lo) / (hi - lo)) * 1000;
  const click = (e) => {
    const box = e.currentTarget.getBoundingClientRect();
    onPick(new Date(lo + ((e.clientX - box.left) / box.width) * (hi - lo)));
  };
  const breaks = [
    ...ranges.filter((r) => r.break).map((r) => ({ t: r.to, why: r.break })),
    ...points.filter((p) => p.chain_break || p.heals_chain_break).map((p) => ({ t: p.backup_start, why: p.chain_break || p.heals_chain_break })),
  ];
  return html`<div>
    <div>${spans.map(([label, ms]) => html`<button class=${span === ms ? "" : "plain"} onClick=${() => setSpan(ms)}>${label}</button>`)}</div>
    <svg class="timeline" id="timeline" viewBox="0 0 1000 110" preserveAspectRatio="none" onClick=${click}
      role="img" aria-label="recovery-point timeline: click a moment to restore to">
      <line x1="0" x2="1000" y1="100" y2="100" stroke="#cbd5e1" />
      ${ranges.map((r) => html`<rect class="range" x=${x(r.from)} width=${Math.max(x(r.to) - x(r.from), 1.5)} y="6" height="94"
        fill="#16a34a" fill-opacity="0.18" stroke="#16a34a" stroke-opacity="0.5"><title>restorable to any moment from ${fmtMoment(r.from)} to ${fmtMoment(r.to)}</title></rect>`)}
      ${points.map((p) => {
        const s = typeStyle[p.type] || typeStyle.log;
        return html`<line class=${"point " + p.type} x1=${x(p.backup_finish)} x2=${x(p.backup_finish)} y1=${s.y} y2="100"
          stroke=${s.color} stroke-width="2"><title>${p.type} ${p.id}, finished ${fmtTime(p.backup_finish)}</title></line>`;
      })}
      ${breaks.map((b) => html`<line class="break" x1=${x(b.t)} x2=${x(b.t)} y1="0" y2="110" stroke="#b00020" stroke-width="3"
        stroke-dasharray="6 4"><title>chain break: ${b.why}</title></line>`)}
      ${picked ? html`<line class="picked" x1=${x(picked)} x2=${x(picked)} y1="0" y2="110" stroke="#ea580c" stroke-width="3" />` : null}
    </svg>
    <div class="legend muted"><span>${fmtTime(lo)}</span> → <span>${fmtTime(hi)}</span><br/>
      <span><i class="swatch sw-range"></i>restorable</span>
      <span><i class="swatch sw-full"></i>full</span>
      <span><i class="swatch sw-differential"></i>differential</span>
      <span><i class="swatch sw-log"></i>log</span>
      <span><i class="swatch sw-break"></i>chain break</span>
      <span><i class="swatch sw-picked"></i>picked</span></div>
  </div>`;
}

// within returns the range holding t, or null.
function within(ranges, t) {
  return ranges.find((r) => new Date(r.from) <= t && t <= new Date(r.to)) || null;
}

export function Database({ me, instance, database }) {
  const ref = { instance, database };
  const rps = usePoll("/api/v1/recovery-points" + q(ref), 5000);
  const ranges = usePoll("/api/v1/recovery-ranges" + q(ref), 5000);
  const jobs = usePoll("/api/v1/jobs", 5000);
  const instances = usePoll("/api/v1/instances", 30000);
  const [picked, setPicked] = useState(null);
  const [wall, setWall] = useState("");
  const [zone, setZone] = useState(localZone);
  const [timeError, setTimeError] = useState(null);
  const pts = rps.data || [], rs = ranges.data || [];
  const pick = (t) => {
    // a click between ranges snaps to the nearest restorable moment
    let best = t;
    if (!within(rs, t) && rs.length) {
      let d = Infinity;
      for (const r of rs) for (const e of [new Date(r.from), new Date(r.to)]) {
        if (Math.abs(e - t) < d) { d = Math.abs(e - t); best = e; }
      }
    }
    best = new Date(Math.round(best.getTime()));
    setPicked(best);
    setTimeError(null);
    try { setWall(utcToWall(best, zone)); } catch (e) { setTimeError(e); }
  };
  const typed = (w, z) => {
    setWall(w);
    setZone(z);
    try {
      const t = wallToUTC(w, z);
      setPicked(t);
      setTimeError(within(rs, t) ? null : new Error("no backup reaches that moment: pick one in a shaded range"));
    } catch (e) {
      setPicked(null);
      setTimeError(e);
    }
  };
  const dbJobs = (jobs.data || []).filter((j) => j.instance === instance && j.database === database).slice(0, 20);
  return html`<h1>${instance}/${database}</h1>
    <${Err} error=${rps.error || ranges.error} />
    <h2>Recovery points</h2>
    <${Timeline} points=${pts} ranges=${rs} picked=${picked} onPick=${pick} />
    ${rs.filter((r) => r.break).map((r) => html`<p class="bad">Chain break after ${fmtTime(r.to)}: ${r.break}</p>`)}
    ${can(me, "operator") ? html`<${Restore} me=${me} instance=${instance} database=${database} picked=${picked}
      wall=${wall} zone=${zone} onTyped=${typed} timeError=${timeError} instances=${instances.data || []} />` : null}
    <h2>Restorable ranges</h2>
    <${Table} id="ranges" head=${["from", "to", "break after"]}>${rs.map((r) => html`<tr>
      <td>${fmtMoment(r.from)}</td><td>${fmtMoment(r.to)}</td><td class="bad">${r.break || ""}</td></tr>`)}<//>
    <h2>Backups</h2>
    <${Table} id="recovery-points" head=${["finished", "type", "size", "new in vault", "id", "chain"]}>${[...pts].reverse().map((p) => html`<tr>
      <td>${fmtTime(p.backup_finish)}</td><td>${p.type}${p.on_demand ? " (on demand)" : ""}</td><td>${fmtBytes(p.size)}</td>
      <td>${fmtBytes(p.new_bytes)}</td><td class="muted">${p.id}</td><td class="bad">${p.chain_break || p.heals_chain_break || ""}</td></tr>`)}<//>
    <h2>Recent jobs</h2>
    <${Table} head=${["job", "kind", "state", "detail"]}>${dbJobs.map((j) => html`<tr>
      <td><a href=${"#/jobs/" + encodeURIComponent(j.id)}>${j.id}</a></td><td>${j.kind} ${j.backup_type || ""}</td>
      <td class=${stateClass(j.state)}>${j.state}</td><td>${j.error || j.detail || ""}</td></tr>`)}<//>`;
}

// Restore asks for a restore: the moment (picked on the timeline or
// typed with its time zone), the destination, then the validated plan
// (the API's dry run) before it runs; then it follows the job.
function Restore({ me, instance, database, picked, wall, zone, onTyped, timeError, instances }) {
  const [target, setTarget] = useState({ instance, database: database + "_restored", overwrite: false, latest: false });
  const [plan, setPlan] = useState(null);
  const [planned, setPlanned] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const request = (dryRun) => ({
    instance, database, dry_run: dryRun || undefined,
    latest: target.latest || undefined, time: target.latest ? undefined : picked && picked.toISOString(),
    target_instance: target.instance, target_database: target.database,
    overwrite: (can(me, "admin") && target.overwrite) || undefined,
  });
  const key = JSON.stringify(request(true));
  const check = async () => {
    setBusy(true);
    setError(null);
    setPlan(null);
    try { setPlan(await api("POST", "/api/v1/restores", request(true))); setPlanned(key); } catch (e) { setError(e); }
    setBusy(false);
  };
  const run = async () => {
    setBusy(true);
    setError(null);
    try {
      const r = await api("POST", "/api/v1/restores", request(false));
      location.hash = "#/jobs/" + encodeURIComponent(r.job_id);
    } catch (e) { setError(e); }
    setBusy(false);
  };
  const set = (k) => (e) => setTarget({ ...target, [k]: e.target.type === "checkbox" ? e.target.checked : e.target.value });
  const current = plan && planned === key;
  return html`<h2>Restore</h2><div class="box" id="restore">
    <div>
      <label class="check"><input type="checkbox" id="restore-latest" checked=${target.latest} onChange=${set("latest")} />the latest moment the backups reach</label>
    </div>
    ${target.latest ? null : html`<div>
      <label>Moment (click the timeline, or type it)<input id="restore-moment" placeholder="YYYY-MM-DD HH:MM:SS.mmm" size="26"
        value=${wall} onInput=${(e) => onTyped(e.target.value, zone)} /></label>
      <label>Time zone<input id="restore-zone" list="zones" value=${zone} onChange=${(e) => onTyped(wall, e.target.value)} /></label>
      <datalist id="zones">${["UTC", localZone, ...(Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : [])].map((z) => html`<option value=${z} />`)}</datalist>
      ${picked && !timeError ? html`<p class="muted" id="restore-utc">${picked.toISOString()} (UTC)</p>` : null}
      <${Err} error=${timeError} />
    </div>`}
    <div>
      <label>Restore onto instance<select id="restore-instance" value=${target.instance} onChange=${set("instance")}>
        ${instances.map((i) => html`<option value=${i.name}>${i.name}</option>`)}</select></label>
      <label>As database<input id="restore-target" required value=${target.database} onInput=${set("database")} /></label>
      ${can(me, "admin") ? html`<label class="check"><input type="checkbox" id="restore-overwrite" checked=${target.overwrite}
        onChange=${set("overwrite")} />overwrite it if it exists</label>` : null}
    </div>
    <button id="restore-plan" disabled=${busy || (!target.latest && (!picked || timeError)) || !target.database} onClick=${check}>Check the plan</button>
    <${Err} error=${error} />
    ${current ? html`<div id="restore-plan-result">
      <p>The restore applies ${plan.steps ? plan.steps.length : 0} backup(s); <b>${target.instance}/${target.database}</b> will be as
        of <b>${fmtMoment(plan.at || plan.stop_at)}</b>${target.overwrite ? html` <span class="bad">replacing the database there</span>` : null}.</p>
      <${Table} head=${["#", "type", "taken", "recovery point"]}>${(plan.steps || []).map((s, i) => html`<tr>
        <td>${i + 1}</td><td>${s.type}</td><td>${fmtTime(s.taken)}</td><td class="muted">${s.recovery_point}</td></tr>`)}<//>
      <button id="restore-run" class=${target.overwrite ? "danger" : ""} disabled=${busy} onClick=${run}>Restore</button>
    </div>` : null}
  </div>`;
}
