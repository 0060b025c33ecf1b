// api.js talks to Sightline's query APIs on the same origin. Errors carry
// the server's message (which for queries includes line and column).

export class APIError extends Error {}

async function request(path, params, init) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, v);
  let resp;
  try {
    resp = await fetch(u, init);
  } catch (e) {
    throw new APIError(`cannot reach Sightline: ${e.message}`);
  }
  const text = await resp.text();
  if (resp.status === 401 && document.cookie.includes('sightline_session=')) {
    // The session's token or tenant was refused (expired, revoked):
    // sign in again and come back here.
    location.assign(`/ui/login?next=${encodeURIComponent(location.pathname + location.search)}`);
  }
  if (!resp.ok) {
    let msg = text.trim();
    try { const j = JSON.parse(text); msg = j.error || j.message || (j.errors && j.errors[0] && j.errors[0].msg) || msg; } catch { /* plain text */ }
    throw new APIError(msg || `${resp.status} ${resp.statusText}`);
  }
  return text ? JSON.parse(text) : null;
}

export const get = (path, params) => request(path, params);

// Time range helpers: seconds since the epoch.
export const nowSec = () => Date.now() / 1000;

export async function prom(query, time) {
  const r = await request('/api/v1/query', { query, time });
  return r.data;
}

export async function promRange(query, start, end, step) {
  const r = await request('/api/v1/query_range', { query, start, end, step });
  return r.data.result;
}

export function stepFor(start, end, points = 120) {
  return Math.max(15, Math.ceil((end - start) / points / 15) * 15);
}

export async function exemplars(query, start, end) {
  const r = await request('/api/v1/query_exemplars', { query, start, end });
  return r.data || [];
}

export async function searchTraces(q, start, end, limit = 100) {
  return request('/api/search', { q, start: Math.floor(start), end: Math.ceil(end), limit, spss: 10 });
}

export async function trace(id) {
  return request(`/api/v2/traces/${encodeURIComponent(id)}`);
}

export async function traceLogs(id) {
  return request(`/api/sightline/v1/traces/${encodeURIComponent(id)}/logs`);
}

export async function tagNames(scope) {
  const r = await request('/api/v2/search/tags', { scope });
  const out = [];
  for (const s of r.scopes || []) for (const t of s.tags || []) out.push({ scope: s.name, tag: t });
  return out;
}

export async function tagValues(tag, q) {
  const r = await request(`/api/v2/search/tag/${encodeURIComponent(tag)}/values`, { q });
  return (r.tagValues || []).map((v) => v.value);
}

export async function logs(query, start, end, limit = 500, direction = 'backward') {
  const r = await request('/loki/api/v1/query_range', {
    query, start: Math.floor(start * 1e9), end: Math.ceil(end * 1e9), limit, direction,
  });
  return r.data;
}

export async function logLabelValues(name, start, end) {
  const r = await request(`/loki/api/v1/label/${encodeURIComponent(name)}/values`, { start: Math.floor(start * 1e9), end: Math.ceil(end * 1e9) });
  return r.data || [];
}
