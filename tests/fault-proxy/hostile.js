'use strict';
// Hostile bodies for the proxy's --hostile mode (ours): a 200 answer whose
// JSON is valid and under the adapter's response cap but whose shape makes a
// naive parser take tens of times its size: a searchset Bundle whose `entry`
// is "{},{},..." (objects), "[],[],..." (arrays) or "0,0,..." (integers).

const ITEMS = { objects: '{}', arrays: '[]', integers: '0' };

// A Buffer of about `bytes` bytes (never more) for the shape.
function hostileBody(shape, bytes) {
  const item = ITEMS[shape];
  if (!item) throw new Error(`unknown --hostile shape ${shape} (objects, arrays, integers)`);
  const head = '{"resourceType":"Bundle","type":"searchset","entry":[';
  const tail = ']}';
  const n = Math.max(1, Math.floor((bytes - head.length - tail.length + 1) / (item.length + 1)));
  return Buffer.from(head + new Array(n).fill(item).join(',') + tail);
}

// --expires-in N (ours): a token endpoint's "expires_in" rewritten to N (an
// integer text, so values beyond what a double holds exactly pass as sent).
function rewriteExpiresIn(buf, n) {
  const s = buf.toString('utf8');
  const out = s.replace(/"expires_in"\s*:\s*\d+/g, `"expires_in":${n}`);
  return out === s ? buf : Buffer.from(out);
}

module.exports = { hostileBody, rewriteExpiresIn };
