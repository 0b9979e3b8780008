// Formats the rows collected by bulk.sh: one table, REST and bulk per size,
// with bulk's throughput as a share of REST's and the peak RSS of each
// size's bulk run against the smallest size's.
// Row: size|path|seen|created|failed|wall s|user s|sys s|maxrss KiB|requests
const rows = process.argv.slice(2).map((r) => r.split('|'));
const head = ['patients', 'path', 'seen', 'created', 'failed', 'wall s', 'patients/s', 'CPU ms/patient',
  'peak RSS MiB', 'requests/patient', 'bulk/REST'];
const out = [];
const rest = {};
let firstBulkRss;
for (const r of rows) {
  const [n, path, seen, created, failed, wall, user, sys, rss, reqs] = r;
  const pps = Number(seen) / Number(wall);
  let ratio = '-';
  if (path.includes('REST')) rest[n] = pps;
  else if (rest[n]) ratio = (pps / rest[n]).toFixed(2);
  let rssNote = '';
  if (!path.includes('REST')) {
    if (firstBulkRss === undefined) firstBulkRss = Number(rss);
    else rssNote = ` (${Number(rss) >= firstBulkRss ? '+' : ''}${(100 * (Number(rss) - firstBulkRss) / firstBulkRss).toFixed(1)}%)`;
  }
  out.push([n, path, seen, created, failed, Number(wall).toFixed(1), pps.toFixed(1),
    ((Number(user) + Number(sys)) * 1000 / Number(seen)).toFixed(2),
    (Number(rss) / 1024).toFixed(1) + rssNote, (Number(reqs) / Number(seen)).toFixed(2), ratio]);
}
const w = head.map((h, i) => Math.max(h.length, ...out.map((r) => r[i].length)));
const line = (r) => `| ${r.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(' | ')} |`;
console.log(line(head));
console.log(`|${w.map((x, i) => (i < 2 ? ':' : '-') + '-'.repeat(x) + (i < 2 ? '-' : ':')).join('|')}|`);
for (const r of out) console.log(line(r));
