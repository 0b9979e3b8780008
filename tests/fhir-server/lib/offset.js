'use strict';
// Instant offsets for POST /$test/instant-offset (ours). Real servers report
// meta.lastUpdated in the zone they run in ("...+02:00", "...-05:00"), not
// always in UTC as this one stores it. With an offset set, every response
// body is rewritten on its way out: meta.lastUpdated of the resource, of
// each Bundle entry's resource and of the Bundle itself (a searchset gets
// one, the time of the answer) is given as the same instant in that offset.
// Stored data and search (_lastUpdated=ge...) are unchanged.

const OFFSET = /^([+-])(\d\d):(\d\d)$/;

function parseOffset(text) {
  const m = typeof text === 'string' ? OFFSET.exec(text) : null;
  if (!m || Number(m[2]) > 14 || Number(m[3]) > 59) {
    throw new Error('offset must be "+hh:mm" or "-hh:mm"');
  }
  return { text, minutes: (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) };
}

// The instant iso (any form Date.parse reads) in the offset, milliseconds kept.
function inOffset(iso, offset) {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) {
    return iso;
  }
  return new Date(ms + offset.minutes * 60000).toISOString().slice(0, -1) + offset.text;
}

function rewriteMeta(resource, offset) {
  if (resource && typeof resource === 'object' && resource.meta && typeof resource.meta.lastUpdated === 'string') {
    resource.meta = { ...resource.meta, lastUpdated: inOffset(resource.meta.lastUpdated, offset) };
  }
}

// A copy of body with its instants in the offset (body itself is not
// changed: it may be the stored resource).
function withOffset(body, offset) {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    return body;
  }
  const out = { ...body };
  if (out.resourceType === 'Bundle') {
    if (out.type === 'searchset' && !(out.meta && out.meta.lastUpdated)) {
      out.meta = { ...(out.meta || {}), lastUpdated: new Date().toISOString() };
    }
    if (Array.isArray(out.entry)) {
      out.entry = out.entry.map((e) => {
        if (!e || !e.resource) {
          return e;
        }
        const copy = { ...e, resource: { ...e.resource } };
        rewriteMeta(copy.resource, offset);
        return copy;
      });
    }
  }
  rewriteMeta(out, offset);
  return out;
}

module.exports = { parseOffset, inOffset, withOffset };
