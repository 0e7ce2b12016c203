// The overview, instances, databases and alerts pages.
import { useState } from "preact/hooks";
import { api, html, usePoll, can, Err, Table, fmtBytes, fmtTime, ago } from "./api.js";

const dbPath = (instance, name) => "#/db/" + encodeURIComponent(instance) + "/" + encodeURIComponent(name);
export const dbLink = (instance, name) => html`<a href=${dbPath(instance, name)}>${instance}/${name}</a>`;

// durationMs reads a policy duration: Go's ("15m", "1h30m") or days and
// weeks ("7d", "2w").
function durationMs(s) {
  if (!s) return 0;
  const unit = { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5 };
  let total = 0;
  for (const [, n, u] of String(s).matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) total += +n * unit[u];
  return total;
}

// rpoMs is a database's recovery point objective under its policy, as
// the alerter counts it (docs/alerts.md): twice the log interval while
// log backups run, else twice the longest gap between fulls (and
// differentials, approximated by the full's frequency).
function rpoMs(db, policy) {
  if (!policy) return 0;
  if (policy.log && policy.log.every && db.recovery_model !== "SIMPLE") return 2 * durationMs(policy.log.every);
  const weekly = policy.full && policy.full.frequency === "weekly";
  const gap = weekly && !policy.differential ? 7 * 864e5 : 864e5;
  return 2 * gap;
}

// lastBackups maps INSTANCE/DATABASE to its latest backup's finish.
function lastBackups(points) {
  const last = {};
  for (const p of points || []) {
    const k = p.instance + "/" + p.database, t = new Date(p.backup_finish || p.committed_at).getTime();
    if (!(last[k] >= t)) last[k] = t;
  }
  return last;
}

export function Overview() {
  const dbs = usePoll("/api/v1/databases", 5000);
  const ins = usePoll("/api/v1/instances", 5000);
  const jobs = usePoll("/api/v1/jobs", 5000);
  const rps = usePoll("/api/v1/recovery-points", 10000);
  const pols = usePoll("/api/v1/policies", 30000);
  const alerts = usePoll("/api/v1/alerts?open=true", 5000);
  const now = Date.now();
  const protectedDbs = (dbs.data || []).filter((d) => d.protected);
  const policies = Object.fromEntries((pols.data || []).map((p) => [p.name, p]));
  const last = lastBackups(rps.data);
  const late = protectedDbs.filter((d) => {
    const rpo = rpoMs(d, policies[d.policy]);
    const at = last[d.instance + "/" + d.name];
    return rpo && (at === undefined ? (d.created && now - new Date(d.created).getTime() > rpo) : now - at > rpo);
  });
  const failed = (jobs.data || []).filter((j) => j.state === "failed" && now - new Date(j.updated || j.created).getTime() < 864e5);
  const unhealthy = (ins.data || []).filter((i) => !i.healthy);
  let logical = 0, added = 0;
  for (const p of rps.data || []) { logical += p.size || 0; added += p.new_bytes || 0; }
  const error = dbs.error || ins.error || jobs.error || rps.error;
  return html`<h1>Overview</h1><${Err} error=${error} />
    <div class="cards" id="overview">
      <div class="card"><div class="n" id="protected-count">${protectedDbs.length}</div>protected of ${(dbs.data || []).length} databases</div>
      <div class="card"><div class=${"n " + (late.length ? "bad" : "ok")} id="late-count">${late.length}</div>out of their RPO</div>
      <div class="card"><div class=${"n " + (failed.length ? "bad" : "ok")} id="failed-count">${failed.length}</div>failed jobs in 24 h</div>
      <div class="card"><div class="n">${fmtBytes(added)}</div>written to the vault for ${fmtBytes(logical)} of backups
        ${added ? html` (dedup and compression ${(logical / added).toFixed(1)}×)` : null}</div>
      <div class="card"><div class=${"n " + (unhealthy.length ? "bad" : "ok")}>${unhealthy.length}</div>unhealthy instances</div>
      ${alerts.data ? html`<a class="card" id="open-alerts-card" href="#/alerts"><div class=${"n " + (alerts.data.length ? "bad" : "ok")}
        id="open-alerts-count">${alerts.data.length}</div>open alerts</a>` : null}
    </div>
    ${unhealthy.length ? html`<h2>Unhealthy instances</h2>
      <${Table} head=${["instance", "problem", "fix"]}>${unhealthy.map((i) => html`<tr>
        <td><a href="#/instances">${i.name}</a></td><td class="bad">${i.reason}</td><td>${i.fix}</td></tr>`)}<//>` : null}
    ${late.length ? html`<h2>Out of their RPO</h2>
      <${Table} head=${["database", "policy", "last backup"]}>${late.map((d) => {
        const at = last[d.instance + "/" + d.name];
        return html`<tr><td>${dbLink(d.instance, d.name)}</td><td>${d.policy}</td><td class="bad">${at ? ago(at, now) : "none yet"}</td></tr>`;
      })}<//>` : null}
    ${failed.length ? html`<h2>Failed jobs in the last 24 h</h2>
      <${Table} head=${["job", "kind", "database", "error"]}>${failed.slice(0, 20).map((j) => html`<tr>
        <td><a href=${"#/jobs/" + encodeURIComponent(j.id)}>${j.id}</a></td><td>${j.kind}</td>
        <td>${j.instance ? dbLink(j.instance, j.database) : ""}</td><td class="bad">${j.error}</td></tr>`)}<//>` : null}
    <p class="muted">The RPO is counted as the alerter counts it (docs/alerts.md). Vault figures add up the recovery points listed.</p>`;
}

export function Instances({ me }) {
  const ins = usePoll("/api/v1/instances", 4000);
  const pols = usePoll("/api/v1/policies", 30000);
  const [form, setForm] = useState({ name: "", dsn: "", mode: "auto" });
  const [msg, setMsg] = useState(null);
  const [error, setError] = useState(null);
  const [checks, setChecks] = useState({});
  const act = async (fn) => {
    setError(null);
    setMsg(null);
    try { setMsg(await fn()); ins.reload(); } catch (e) { setError(e); }
  };
  const [tested, setTested] = useState(null);
  // add tests the connection first and saves only what passed, unless
  // told to save anyway (discovery, elsewhere, may reach what the
  // gateway cannot)
  const add = (anyway) => act(async () => {
    const name = form.name;
    if (!anyway) {
      const t = await api("POST", "/api/v1/instances", { ...form, test: true });
      setTested(t);
      if (!t.healthy) return null;
    }
    await api("POST", "/api/v1/instances", form);
    setForm({ name: "", dsn: "", mode: "auto" });
    setTested(null);
    return `Instance ${name} saved: discovery lists its databases now; its health shows below.`;
  });
  const check = (name) => act(async () => {
    const c = await api("POST", "/api/v1/instances/" + encodeURIComponent(name) + "/check-url");
    setChecks((s) => ({ ...s, [name]: c }));
    return null;
  });
  const autoprotect = (i, enabled, policy) => act(async () => {
    await api("PUT", "/api/v1/instances/" + encodeURIComponent(i.name) + "/autoprotect", { enabled, policy });
    return `Auto-protection of ${i.name} ${enabled ? "on, with policy " + (policy || "default") : "off"}.`;
  });
  return html`<h1>Instances</h1>
    ${can(me, "admin") ? html`<form class="box" id="add-instance" onSubmit=${(e) => { e.preventDefault(); add(false); }}>
      <label>Name<input name="name" required value=${form.name} onInput=${(e) => { setForm({ ...form, name: e.target.value }); setTested(null); }} /></label>
      <label>Connection string<input name="dsn" required size="40" autocomplete="off" placeholder="sqlserver://user:password@host:1433"
        value=${form.dsn} onInput=${(e) => { setForm({ ...form, dsn: e.target.value }); setTested(null); }} /></label>
      <label>Mode<select name="mode" value=${form.mode} onChange=${(e) => setForm({ ...form, mode: e.target.value })}>
        <option value="auto">auto</option><option value="url">url</option><option value="disk">disk</option></select></label>
      <div><button type="submit">Test and add</button></div>
      ${tested && !tested.healthy ? html`<div class="error" id="instance-test">Not saved: ${tested.reason}<br/><b>Fix:</b> ${tested.fix}
        <div><button type="button" class="plain" onClick=${() => add(true)}>Save anyway</button></div></div>` : null}
    </form>` : null}
    <${Err} error=${error || ins.error} />${msg ? html`<p class="notice" id="instances-notice">${msg}</p>` : null}
    <${Table} id="instances" head=${["instance", "health", "server", "databases", "mode", "auto-protection", ""]}>
      ${(ins.data || []).map((i) => html`<tr data-instance=${i.name}>
        <td>${i.name}</td>
        <td class=${i.healthy ? "ok" : "bad"}>${i.healthy ? "healthy" : html`unhealthy: ${i.reason}${i.fix ? html`<br/><b>Fix:</b> ${i.fix}` : null}`}
          ${checks[i.name] ? html`<br/><span class=${checks[i.name].ok ? "ok" : "bad"}>URL check: ${checks[i.name].ok ? "ok (" + checks[i.name].mode + ")" : checks[i.name].problem + " " + (checks[i.name].fix || "")}</span>` : null}</td>
        <td>${i.server_name} <span class="muted">${i.version} ${i.edition}</span></td>
        <td>${i.databases}</td><td>${i.mode}</td>
        <td>${can(me, "admin") ? html`<${AutoprotectControl} instance=${i} policies=${pols.data || []} onSet=${autoprotect} />`
          : i.autoprotect ? "on (" + (i.autoprotect_policy || "default") + ")" : "off"}</td>
        <td>${can(me, "operator") ? html`
          <button class="plain" onClick=${() => act(async () => { await api("POST", "/api/v1/instances/" + encodeURIComponent(i.name) + "/discover"); return `Discovery of ${i.name} asked for.`; })}>Rediscover</button>
          <button class="plain" onClick=${() => check(i.name)}>Check URL mode</button>` : null}</td>
      </tr>`)}
    <//>`;
}

function AutoprotectControl({ instance, policies, onSet }) {
  const [policy, setPolicy] = useState(instance.autoprotect_policy || "");
  return html`<select value=${policy} onChange=${(e) => setPolicy(e.target.value)} aria-label="auto-protection policy">
      <option value="">default</option>${policies.map((p) => html`<option value=${p.name}>${p.name}</option>`)}</select>
    <button class="plain" onClick=${() => onSet(instance, !instance.autoprotect, policy)}>
      ${instance.autoprotect ? "Turn off" : "Turn on"}</button>
    <span class=${instance.autoprotect ? "ok" : "muted"}> ${instance.autoprotect ? "on" : "off"}</span>`;
}

export function Databases({ me }) {
  const dbs = usePoll("/api/v1/databases", 4000);
  const pols = usePoll("/api/v1/policies", 30000);
  const vaults = usePoll("/api/v1/vaults", 30000);
  const [vault, setVault] = useState(null); // null: the default vault, whatever its name
  const [filter, setFilter] = useState("");
  const [show, setShow] = useState("all");
  const [picked, setPicked] = useState({});
  const [policy, setPolicy] = useState("");
  const [type, setType] = useState("full");
  const [confirming, setConfirming] = useState(false);
  const [msg, setMsg] = useState(null);
  const [error, setError] = useState(null);
  const key = (d) => d.instance + "/" + d.name;
  const f = filter.toLowerCase();
  const rows = (dbs.data || []).filter((d) => key(d).toLowerCase().includes(f) &&
    (show === "all" || (show === "protected") === d.protected));
  const chosen = rows.filter((d) => picked[key(d)]);
  const act = async (fn) => {
    setError(null);
    setMsg(null);
    try { setMsg(await fn()); setPicked({}); dbs.reload(); } catch (e) { setError(e); }
  };
  const defaultVault = ((vaults.data || []).find((v) => v.default) || {}).name || "";
  const into = vault === null ? defaultVault : vault;
  // each action is one request for every database picked
  const protect = () => act(async () => {
    const r = await api("POST", "/api/v1/protect", { databases: chosen.map(key), policy, vault: into });
    return `Protection asked for ${r.protected.length} database(s)${policy ? " with policy " + policy : ""}` +
      (into && into !== defaultVault ? ` into vault ${into}.` : " into the default vault.");
  });
  const unprotect = () => act(async () => {
    const r = await api("POST", "/api/v1/unprotect", { databases: chosen.map(key) });
    return `Unprotected ${r.unprotected.length} database(s).`;
  });
  const backup = () => act(async () => {
    const r = await api("POST", "/api/v1/backups", { databases: chosen.map(key), type });
    return `Backup asked for ${r.jobs.length} database(s). Jobs: ${r.jobs.join(", ")}`;
  });
  const all = rows.length > 0 && chosen.length === rows.length;
  return html`<h1>Databases</h1>
    <div class="box">
      <label>Filter<input id="db-filter" type="search" placeholder="instance/name" value=${filter} onInput=${(e) => setFilter(e.target.value)} /></label>
      <label>Show<select id="db-show" value=${show} onChange=${(e) => setShow(e.target.value)}>
        <option value="all">all</option><option value="protected">protected</option><option value="unprotected">unprotected</option></select></label>
      ${can(me, "operator") ? html`<div id="db-actions">
        <label>Policy<select id="protect-policy" value=${policy} onChange=${(e) => setPolicy(e.target.value)}>
          <option value="">default</option>${(pols.data || []).map((p) => html`<option value=${p.name}>${p.name}</option>`)}</select></label>
        <label>Vault<select id="protect-vault" value=${into} onChange=${(e) => setVault(e.target.value)}>
          ${(vaults.data || []).map((v) => html`<option value=${v.name}>${v.name}${v.default && v.name !== "default" ? " (default)" : ""}</option>`)}</select></label>
        <button id="protect" disabled=${!chosen.length} onClick=${protect}>Protect ${chosen.length || ""}</button>
        ${can(me, "admin") ? html`<button id="unprotect" class="danger" disabled=${!chosen.length} onClick=${() => setConfirming(true)}>Unprotect</button>` : null}
        <label>Backup type<select id="backup-type" value=${type} onChange=${(e) => setType(e.target.value)}>
          <option value="full">full</option><option value="differential">differential</option>
          <option value="log">log</option><option value="copy_only">copy-only full</option></select></label>
        <button id="backup" disabled=${!chosen.length} onClick=${backup}>Back up now</button>
      </div>` : null}
    </div>
    ${confirming && chosen.length ? html`<div class="notice" id="unprotect-confirm">
      Stop protecting ${chosen.map(key).join(", ")}? No backup is taken of them from now on; their recovery points are not deleted.
      <div><button class="danger" id="unprotect-yes" onClick=${() => { setConfirming(false); unprotect(); }}>Unprotect ${chosen.length}</button>
        <button class="plain" onClick=${() => setConfirming(false)}>Keep them protected</button></div></div>` : null}
    <${Err} error=${error || dbs.error || vaults.error} />${msg ? html`<p class="notice" id="databases-notice">${msg}</p>` : null}
    <${Table} id="databases" head=${[
      can(me, "operator") ? html`<input type="checkbox" aria-label="select all" checked=${all}
        onChange=${(e) => setPicked(e.target.checked ? Object.fromEntries(rows.map((d) => [key(d), true])) : {})} />` : "",
      "database", "state", "recovery model", "size", "protection"]}>
      ${rows.map((d) => html`<tr data-db=${key(d)}>
        <td>${can(me, "operator") ? html`<input type="checkbox" aria-label=${"select " + key(d)} checked=${!!picked[key(d)]}
          onChange=${(e) => setPicked({ ...picked, [key(d)]: e.target.checked })} />` : null}</td>
        <td>${dbLink(d.instance, d.name)}</td><td>${d.state}${d.read_only ? " (read-only)" : ""}</td><td>${d.recovery_model}</td>
        <td>${fmtBytes(d.size_bytes)}</td>
        <td class=${d.protected ? "ok" : d.last_error ? "bad" : "muted"}>${d.protected ? "protected (" + d.policy + ")" + (d.vault ? " into vault " + d.vault : "") : (d.protection_state || "unprotected")}
          ${d.last_error ? html`<br/><span class="bad">${d.last_error}</span>` : null}</td>
      </tr>`)}
    <//>
    <p class="muted">${rows.length} of ${(dbs.data || []).length} databases.</p>`;
}

const ruleNames = {
  job_failed: "failed job", chain_break: "chain break", rpo: "out of RPO", verify_failed: "failed test restore",
  instance_unhealthy: "unhealthy instance", vault_check_failed: "failed vault check",
};

// alertSubject is what an alert is about: a database (a link to it), an
// instance or a vault.
function alertSubject(a) {
  if (a.database) return dbLink(a.instance, a.database);
  if (a.instance) return html`<a href="#/instances">${a.instance}</a>`;
  return a.vault ? html`vault <code>${a.vault}</code>` : "";
}

// sent says what became of an alert's notification; channels is how
// many channels the alerter sends to (undefined: not known).
function sent(a, channels) {
  if (!a.notified) return html`<span class="muted">not sent (an old event)</span>`;
  if (channels === 0) return html`<span class="muted">recorded only: no channel</span>`;
  if (a.pending) return html`<span class="warn">${a.pending === "resolved" ? "resolution" : "alert"} being sent${a.delivered && a.delivered.length ? "; " + a.delivered.join(", ") + " have it" : ""}</span>`;
  return html`<span class="ok">sent</span>`;
}

export function Alerts() {
  const open = usePoll("/api/v1/alerts?open=true", 4000);
  const recent = usePoll("/api/v1/alerts?limit=100", 8000);
  const rules = usePoll("/api/v1/alerts/rules", 30000);
  const now = Date.now();
  const resolved = (recent.data || []).filter((a) => !a.open);
  const r = rules.data;
  const days = r && r.resolved_retention_seconds ? Math.round(r.resolved_retention_seconds / 86400) : 0;
  return html`<h1>Alerts</h1><${Err} error=${open.error || recent.error || rules.error} />
    <h2>Open <span class=${(open.data || []).length ? "bad" : "ok"} id="open-count">${(open.data || []).length}</span></h2>
    ${open.data && !open.data.length ? html`<p class="ok" id="no-open-alerts">No alert is open.</p>` : html`
    <${Table} id="open-alerts" head=${["alert", "about", "what happened", "since", "notification"]}>
      ${(open.data || []).map((a) => html`<tr data-alert=${a.key}>
        <td class="bad">${ruleNames[a.rule] || a.rule}${a.kind ? html` <span class="muted">(${a.kind})</span>` : null}</td>
        <td>${alertSubject(a)}</td>
        <td><b>${a.summary}</b>${a.detail ? html`<br/><span class="muted">${a.detail}</span>` : null}</td>
        <td title=${fmtTime(a.opened_at)}>${ago(a.opened_at, now)}</td><td>${sent(a, r && r.published ? r.channels.length : undefined)}</td></tr>`)}
    <//>`}
    <h2>Recently resolved</h2>
    ${recent.data && !resolved.length ? html`<p class="muted" id="no-resolved-alerts">None${days ? ` in the last ${days} days` : ""}.</p>` : html`
    <${Table} id="resolved-alerts" head=${["alert", "about", "what happened", "opened", "resolved"]}>
      ${resolved.map((a) => html`<tr data-alert=${a.key}>
        <td>${ruleNames[a.rule] || a.rule}${a.kind ? html` <span class="muted">(${a.kind})</span>` : null}</td>
        <td>${alertSubject(a)}</td>
        <td>${a.summary}${a.detail ? html`<br/><span class="muted">${a.detail}</span>` : null}</td>
        <td title=${fmtTime(a.opened_at)}>${ago(a.opened_at, now)}</td>
        <td class="ok" title=${fmtTime(a.resolved_at)}>${a.notice ? html`<span class="muted">a notice: nothing resolves it</span>` : ago(a.resolved_at, now)}</td></tr>`)}
    <//>`}
    <h2>Rules</h2>
    ${r && !r.published ? html`<p class="notice" id="alert-rules-unpublished">No alerter has published its rules yet: alerts are raised
      by the alerter service (<code>coffer up</code> runs it; <code>coffer-alerter</code> alone), which sends them to the webhooks and
      mail its flags name (<code>docs/alerts.md</code>).</p>` : html`
    <${Table} id="alert-rules" head=${["rule", "", "opens when", "sent to"]}>
      ${(r ? r.rules : []).map((x) => html`<tr data-rule=${x.name}>
        <td>${ruleNames[x.name] || x.name} <span class="muted hide-narrow">${x.name}</span></td>
        <td class=${x.enabled ? "ok" : "muted"}>${x.enabled ? "on" : "off"}</td><td>${x.description}</td>
        <td>${x.channels.length ? x.channels.join(", ") : html`<span class=${x.enabled ? "bad" : "muted"}>${x.enabled ? "no channel: recorded here only" : "—"}</span>`}</td></tr>`)}
    <//>
    <h2>Channels</h2>
    ${r && !r.channels.length ? html`<p class="bad" id="no-alert-channels">No channel: alerts are recorded here and sent nowhere.
      Name webhooks or mail with the alerter's flags (<code>--alert-webhook</code>, <code>--alert-slack-webhook</code>,
      <code>--alert-teams-webhook</code>, <code>--alert-smtp-host</code> with <code>--alert-mail-to</code>).</p>` : html`
    <${Table} id="alert-channels" head=${["channel", "kind", "where", "set by"]}>
      ${(r ? r.channels : []).map((c) => html`<tr data-channel=${c.name}>
        <td>${c.name}</td><td>${c.kind}</td>
        <td>${c.host}${c.to && c.to.length ? html`<br/>to ${c.to.join(", ")}` : null}${c.problem ? html`<br/><span class="bad">not sent: ${c.problem}</span>` : null}</td>
        <td class="muted">${c.source === "settings" ? "alert settings" : "alerter flags"}</td></tr>`)}
    <//>`}
    ${days ? html`<p class="muted">Resolved alerts are kept ${days} days; a webhook is shown by its host only, since its URL holds its token.</p>` : null}`}`;
}
