// The dashboard's access to the gateway's API, and the helpers every
// page shares. Every table is one request (never one per database), and
// each is polled: the gateway answers an unchanged table with 304 Not
// Modified by its ETag, which the browser's cache turns back into the
// table.
import { h } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";

export const html = htm.bind(h);

const csrfKey = "coffer-csrf";

// APIError is an answer in the API's error shape: {"error": {code, message}}.
export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// api calls the API. A change sends the X-Coffer-CSRF value the sign-in
// returned; a 401 tells the shell to show the sign-in page.
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const csrf = sessionStorage.getItem(csrfKey);
  if (method !== "GET" && csrf) headers["X-Coffer-CSRF"] = csrf;
  const r = await fetch(path, {
    method, headers, cache: "no-cache", credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let value = null;
  try { value = text ? JSON.parse(text) : null; } catch { /* not JSON: reported below */ }
  if (!r.ok) {
    const e = value && value.error;
    if (r.status === 401) window.dispatchEvent(new Event("coffer-signed-out"));
    throw new APIError(r.status, e ? e.code : "http_" + r.status, e ? e.message : (text || r.statusText));
  }
  return value;
}

export function setCSRF(v) {
  if (v) sessionStorage.setItem(csrfKey, v); else sessionStorage.removeItem(csrfKey);
}

const ranks = { viewer: 1, operator: 2, admin: 3 };

// can reports whether the signed-in user's role is at least role.
export function can(me, role) { return (ranks[me && me.role] || 0) >= ranks[role]; }

// usePoll reads path now and every ms milliseconds while the page shows
// it; reload reads it again at once (after a change).
export function usePoll(path, ms = 3000) {
  const [state, setState] = useState({ data: null, error: null, path });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!path) return undefined;
    let alive = true, timer = 0;
    const load = async () => {
      try {
        const data = await api("GET", path);
        if (alive) setState({ data, error: null, path });
      } catch (error) {
        if (alive) setState((s) => ({ data: s.path === path ? s.data : null, error, path }));
      }
      if (alive) timer = setTimeout(load, ms);
    };
    load();
    return () => { alive = false; clearTimeout(timer); };
  }, [path, ms, tick]);
  const data = state.path === path ? state.data : null;
  return { data, error: state.error, reload: () => setTick((t) => t + 1) };
}

export const q = (params) => "?" + new URLSearchParams(params).toString();

export function fmtTime(t) {
  if (!t) return "";
  return new Date(t).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

// fmtMoment writes a moment to the millisecond, as restores take it.
export function fmtMoment(t) {
  if (!t) return "";
  return new Date(t).toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
    fractionalSecondDigits: 3, timeZoneName: "short",
  });
}

export function fmtBytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

export function ago(t, now = Date.now()) {
  const s = Math.round((now - new Date(t).getTime()) / 1000);
  if (s < 90) return s + " s ago";
  if (s < 90 * 60) return Math.round(s / 60) + " min ago";
  if (s < 36 * 3600) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

// Err shows an error, or nothing.
export function Err({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message || String(error)}</p>`;
}

// Table wraps a table so that a narrow screen scrolls it, not the page.
export function Table({ head, children, id }) {
  return html`<div class="scroll"><table id=${id}>
    <thead><tr>${head.map((c) => html`<th>${c}</th>`)}</tr></thead>
    <tbody>${children}</tbody></table></div>`;
}

export function stateClass(state) {
  return state === "failed" ? "bad" : state === "succeeded" ? "ok" : state === "running" || state === "cancelled" ? "warn" : "";
}

// zoneOffset is how far zone's wall clock is ahead of UTC at utcMs.
function zoneOffset(zone, utcMs) {
  const f = new Intl.DateTimeFormat("en-US", {
    timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  const p = Object.fromEntries(f.formatToParts(new Date(utcMs)).map((x) => [x.type, x.value]));
  return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - Math.floor(utcMs / 1000) * 1000;
}

// wallToUTC reads "YYYY-MM-DD HH:MM:SS[.mmm]" as a wall-clock time in
// zone (an IANA name or UTC) and returns the moment it names.
export function wallToUTC(wall, zone) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?$/.exec(wall.trim());
  if (!m) throw new Error("write the moment as YYYY-MM-DD HH:MM:SS (milliseconds optional)");
  const naive = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0), m[7] ? +m[7].padEnd(3, "0") : 0);
  zoneOffset(zone, naive); // throws RangeError on an unknown zone
  let t = naive - zoneOffset(zone, naive);
  t = naive - zoneOffset(zone, t); // again, in case the offset changed between the two
  return new Date(t);
}

// utcToWall writes a moment as the wall-clock time of zone.
export function utcToWall(date, zone) {
  const ms = date.getTime();
  const wall = new Date(ms + zoneOffset(zone, ms));
  return wall.toISOString().replace("T", " ").replace("Z", "");
}

export const localZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
