// coffer's dashboard: the shell (sign-in, navigation, the page the
// address names). Pages are addressed by the fragment (#/databases), so
// the gateway serves one page and every link can be bookmarked.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, html, setCSRF, Err } from "./api.js";
import { Overview, Instances, Databases, Alerts } from "./pages.js";
import { Database } from "./database.js";
import { Jobs, JobDetail } from "./jobs.js";
import { Policies, PolicyEdit } from "./policies.js";

const nav = [
  ["#/", "Overview"], ["#/instances", "Instances"], ["#/databases", "Databases"],
  ["#/jobs", "Jobs"], ["#/policies", "Policies"], ["#/alerts", "Alerts"],
];

function useHash() {
  const [hash, setHash] = useState(location.hash || "#/");
  useEffect(() => {
    const on = () => setHash(location.hash || "#/");
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

// page picks the page the address names; parts are decoded.
function page(hash, me) {
  const [path] = hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  switch (parts[0]) {
    case undefined: return html`<${Overview} me=${me} />`;
    case "instances": return html`<${Instances} me=${me} />`;
    case "databases": return html`<${Databases} me=${me} />`;
    case "db": return html`<${Database} me=${me} instance=${parts[1]} database=${parts.slice(2).join("/")} />`;
    case "jobs": return parts[1] ? html`<${JobDetail} me=${me} id=${parts[1]} />` : html`<${Jobs} />`;
    case "policies": return parts[1] ? html`<${PolicyEdit} me=${me} name=${parts[1]} />` : html`<${Policies} me=${me} />`;
    case "alerts": return html`<${Alerts} />`;
  }
  return html`<p class="error">No page ${hash}. <a href="#/">Overview</a></p>`;
}

function SignIn({ onSignedIn }) {
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const me = await api("POST", "/api/v1/login", { name, password });
      setCSRF(me.csrf);
      onSignedIn(me);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<main><form class="box signin" id="signin" onSubmit=${submit}>
    <h1>Sign in to coffer</h1>
    <label>User<input name="name" autocomplete="username" required value=${name} onInput=${(e) => setName(e.target.value)} /></label>
    <label>Password<input name="password" type="password" autocomplete="current-password" required value=${password}
      onInput=${(e) => setPassword(e.target.value)} /></label>
    <${Err} error=${error} />
    <button type="submit" disabled=${busy}>Sign in</button>
    <p class="muted">Users and passwords are made with <code>coffer user add NAME --role ROLE --password-stdin</code>.</p>
  </form></main>`;
}

function App() {
  const [me, setMe] = useState(undefined); // undefined: not known yet; null: signed out
  const [error, setError] = useState(null);
  const hash = useHash();
  useEffect(() => {
    api("GET", "/api/v1/whoami").then(setMe, (e) => (e.status === 401 ? setMe(null) : setError(e)));
    const out = () => setMe(null);
    addEventListener("coffer-signed-out", out);
    return () => removeEventListener("coffer-signed-out", out);
  }, []);
  if (error) return html`<main><${Err} error=${error} /></main>`;
  if (me === undefined) return html`<main><p class="muted">Loading…</p></main>`;
  if (me === null) return html`<${SignIn} onSignedIn=${setMe} />`;
  const signOut = async () => {
    try { await api("POST", "/api/v1/logout"); } catch { /* the cookie is cleared either way */ }
    setCSRF(null);
    setMe(null);
  };
  const here = "#/" + (hash.slice(2).split(/[/?]/)[0] || "");
  return html`<header>
      <a class="brand" href="#/">coffer</a>
      <nav>${nav.map(([href, label]) => html`<a href=${href} class=${href === here || (href === "#/databases" && here === "#/db") ? "here" : ""}>${label}</a> `)}</nav>
      <span class="who" id="whoami">${me.name} (${me.role})
        ${me.via === "session" ? html` <button class="plain" onClick=${signOut}>Sign out</button>` : null}</span>
    </header>
    <main>${page(hash, me)}</main>`;
}

const root = document.getElementById("app");
root.replaceChildren(); // the "Loading" placeholder
render(html`<${App} />`, root);
