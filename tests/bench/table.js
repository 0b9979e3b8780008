// Formats the rows collected by run.sh into the one table of `make bench`.
// Row: size|who|patients|failed|wall s|user s|sys s|maxrss KiB|requests
// (for wrk: failed = non-2xx answers, wall = seconds, requests = sent, and
// a tenth field: the requests per patient of the mix, from mix.js).
const rows = process.argv.slice(2).map((r) => r.split('|'));
const out = [];
const head = ['patients', 'implementation', 'done', 'failed', 'patients/s', 'CPU ms/patient',
  'peak RSS MiB', 'requests/patient', 'vs server'];
const byN = {};
for (const r of rows) (byN[r[0]] ||= []).push(r);
for (const [n, list] of Object.entries(byN)) {
  const wrk = list.find((r) => r[1].startsWith('server'));
  const mixPerPatient = wrk ? Number(wrk[9]) : NaN; // mix.js: batch, transaction
  const capacity = wrk ? Number(wrk[8]) / Number(wrk[4]) / mixPerPatient : NaN;
  for (const r of list) {
    if (r === wrk) {
      out.push([n, r[1], '-', r[3], capacity.toFixed(1), '-', '-', String(mixPerPatient), '100%']);
      continue;
    }
    const done = Number(r[2]);
    const pps = done / Number(r[4]);
    out.push([n, r[1], String(done), r[3], pps.toFixed(1),
      ((Number(r[5]) + Number(r[6])) * 1000 / done).toFixed(2),
      (Number(r[7]) / 1024).toFixed(1), (Number(r[8]) / done).toFixed(2),
      `${(100 * pps / capacity).toFixed(0)}%`]);
  }
}
const w = head.map((h, i) => Math.max(h.length, ...out.map((r) => r[i].length)));
const line = (r) => `| ${r.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(' | ')} |`;
console.log(line(head));
console.log(`|${w.map((x, i) => (i < 2 ? ':' : '-') + '-'.repeat(x) + (i < 2 ? '-' : ':')).join('|')}|`);
for (const r of out) console.log(line(r));
