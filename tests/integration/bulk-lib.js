// Shared by the bulk*.test.js files: the test server's control requests.
'use strict';

// adminOf(srv)(method, path, body): a request to the test server's
// /$test/... endpoints (JSON in, JSON out); once more, twice, on a
// kept-alive socket the server closed meanwhile (a long adapter run
// between two requests).
function adminOf(srv) {
  return async (method, p, body) => {
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await fetch(new URL(srv.base).origin + p, {
          method,
          headers: { 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        return await r.json();
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
  };
}

// Resolves once the test server has handled every request it received: a
// killed adapter's writes held by a delay fault are applied after the kill
// (as a real server applies what reached it), and a check made before they
// land would see a version that then changes under it.
async function settled(admin) {
  for (let i = 0; i < 600; i++) {
    if ((await admin('GET', '/$test/stats')).inflight === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the test server still had requests in flight after 30 s');
}

module.exports = { adminOf, settled };
