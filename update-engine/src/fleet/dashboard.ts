/**
 * The fleet dashboard: one HTML page and its script, plain DOM code, served
 * by `basalt serve` at /dashboard/ from the package itself. It reads
 * /admin/v1/overview with the admin token the operator types in (kept in the
 * tab's sessionStorage only) and posts pause/resume. Text from the fleet is
 * put into the page with textContent only.
 */

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Basalt fleet</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
th { background: #f3f3f3; }
.paused { color: #a00; font-weight: bold; } .ok { color: #070; }
.bar { display: inline-block; width: 120px; height: 10px; background: #eee; vertical-align: middle; }
.bar > span { display: block; height: 100%; background: #4a8; }
#status { margin-left: 1em; color: #555; }
</style>
</head>
<body>
<h1>Basalt fleet</h1>
<form id="auth"><label>Admin token <input id="token" type="password" autocomplete="off" size="40"></label> <button type="submit">Connect</button><span id="status"></span></form>
<h2>Groups</h2>
<table id="groups"><thead><tr><th>group</th><th>channel</th><th>target</th><th>progress</th><th>allowed</th><th>offered in period</th><th>state</th><th>action</th></tr></thead><tbody></tbody></table>
<h2>Versions</h2>
<table id="versions"><thead><tr><th>group</th><th>version</th><th>machines</th><th>errors</th><th>rollbacks</th></tr></thead><tbody></tbody></table>
<h2>Machines not seen in the last day</h2>
<table id="stale"><thead><tr><th>machine</th><th>group</th><th>version</th><th>last check</th></tr></thead><tbody></tbody></table>
<script src="app.js"></script>
</body>
</html>
`;

export const DASHBOARD_JS = `'use strict';
(function () {
  var tokenInput = document.getElementById('token');
  var statusEl = document.getElementById('status');
  tokenInput.value = sessionStorage.getItem('basalt-token') || '';
  function cell(tr, text, cls) { var td = document.createElement('td'); td.textContent = text == null ? '' : String(text); if (cls) td.className = cls; tr.appendChild(td); return td; }
  function api(method, path, body) {
    return fetch('/admin/v1/' + path, { method: method, headers: { authorization: 'Bearer ' + tokenInput.value, 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined })
      .then(function (r) { return r.json().then(function (j) { if (!r.ok) throw new Error((j.error && j.error.message) || ('HTTP ' + r.status)); return j; }); });
  }
  function render(o) {
    var gb = document.querySelector('#groups tbody'); gb.textContent = '';
    var vb = document.querySelector('#versions tbody'); vb.textContent = '';
    var sb = document.querySelector('#stale tbody'); sb.textContent = '';
    o.groups.forEach(function (g) {
      var tr = document.createElement('tr'); tr.dataset.group = g.id;
      cell(tr, g.id); cell(tr, g.channel); cell(tr, g.rolloutVersion || '-');
      var pct = g.machines ? Math.round(100 * g.onTarget / g.machines) : 0;
      var td = cell(tr, ''); var bar = document.createElement('span'); bar.className = 'bar'; var fill = document.createElement('span'); fill.style.width = pct + '%'; bar.appendChild(fill); td.appendChild(bar); td.appendChild(document.createTextNode(' ' + g.onTarget + '/' + g.machines + ' (' + pct + ' %)'));
      cell(tr, g.allowedPercent == null ? '-' : g.allowedPercent + ' %');
      cell(tr, g.offeredInPeriod + (g.policy.maxUpdates != null ? ' / ' + g.policy.maxUpdates : ''));
      cell(tr, g.paused ? 'paused' + (g.pauseReason ? ': ' + g.pauseReason : '') : 'rolling', g.paused ? 'paused state' : 'ok state');
      var act = cell(tr, ''); var b = document.createElement('button'); b.textContent = g.paused ? 'Resume' : 'Pause'; b.className = g.paused ? 'resume' : 'pause';
      b.addEventListener('click', function () { b.disabled = true; api('POST', 'groups/' + encodeURIComponent(g.id) + '/' + (g.paused ? 'resume' : 'pause'), { reason: 'paused from the dashboard' }).then(refresh, fail); });
      act.appendChild(b); gb.appendChild(tr);
      g.versions.forEach(function (v) { var r = document.createElement('tr'); cell(r, v.group); cell(r, v.version); cell(r, v.machines); cell(r, v.errors); cell(r, v.rollbacks); vb.appendChild(r); });
    });
    o.stale.forEach(function (m) { var r = document.createElement('tr'); cell(r, m.id); cell(r, m.group); cell(r, m.version); cell(r, m.lastCheck ? new Date(m.lastCheck).toISOString() : 'never'); sb.appendChild(r); });
    statusEl.textContent = 'updated ' + o.now; document.body.dataset.loaded = String(Date.now());
  }
  function fail(e) { statusEl.textContent = 'error: ' + e.message; document.body.dataset.error = e.message; }
  function refresh() { return api('GET', 'overview').then(render, fail); }
  document.getElementById('auth').addEventListener('submit', function (ev) { ev.preventDefault(); sessionStorage.setItem('basalt-token', tokenInput.value); refresh(); });
  if (tokenInput.value) refresh();
  setInterval(function () { if (tokenInput.value) refresh(); }, 10000);
})();
`;
