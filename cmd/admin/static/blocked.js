// Keeps the Blocked page current: rows appear and disappear as block and
// unblock events arrive from /api/v1/events, and countdowns tick. Every
// value is set with textContent or attributes, never as HTML.
(function () {
  'use strict';
  // The tables, by kind, as the page rendered them: one per kind of
  // block, each with its array's key in GET /api/v1/blocked.
  var TABLES = {};
  document.querySelectorAll('tbody[data-kind]').forEach(function (tb) {
    TABLES[tb.getAttribute('data-kind')] = tb;
  });
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute('content') : '';
  var live = document.getElementById('live');

  function human(secs) {
    if (secs <= 0) { return '0s'; }
    var d = Math.floor(secs / 86400), h = Math.floor(secs / 3600) % 24, m = Math.floor(secs / 60) % 60, s = secs % 60;
    if (d > 0) { return d + 'd ' + h + 'h'; }
    if (h > 0) { return h + 'h ' + m + 'm'; }
    if (m > 0) { return m + 'm ' + s + 's'; }
    return s + 's';
  }

  function utc(date) {
    return date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, '') + ' UTC';
  }

  // subjectHref is a subject's page, as the server's subjectHref builds it:
  // "." and "..", which the browser would resolve as path segments, go in
  // the query.
  function subjectHref(kind, value) {
    if (value === '.' || value === '..') { return '/' + kind + '/?value=' + encodeURIComponent(value); }
    return '/' + kind + '/' + encodeURIComponent(value);
  }

  function tbody(kind) {
    return Object.prototype.hasOwnProperty.call(TABLES, kind) ? TABLES[kind] : null;
  }

  // isReport says whether a kind's blocks are reports that refuse nobody.
  function isReport(kind) {
    var card = tbody(kind).closest('section');
    return !!card && card.getAttribute('data-report') === 'true';
  }

  function findRow(tb, value) {
    var rows = tb.querySelectorAll('tr[data-value]');
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute('data-value') === value) { return rows[i]; }
    }
    return null;
  }

  function refresh(tb) {
    var n = tb.querySelectorAll('tr[data-value]').length;
    var empty = tb.querySelector('tr.empty');
    if (empty) { empty.hidden = n > 0; }
    var card = tb.closest('section');
    if (card && n > 0) { card.hidden = false; } // a kind this configuration does not block, blocked all the same
    var count = card && card.querySelector('[data-count]');
    if (count) { count.textContent = String(n); }
  }

  function hidden(name, value) {
    var i = document.createElement('input');
    i.type = 'hidden'; i.name = name; i.value = value;
    return i;
  }

  function makeRow(ev) {
    var tr = document.createElement('tr');
    tr.setAttribute('data-value', ev.value);
    var td = document.createElement('td');
    td.className = 'value';
    var a = document.createElement('a');
    a.href = subjectHref(ev.kind, ev.value);
    a.textContent = ev.value;
    td.appendChild(a);
    var report = isReport(ev.kind);
    if (report) {
      var rb = document.createElement('span');
      rb.className = 'badge report'; rb.title = 'a report: refuses nobody'; rb.textContent = 'report';
      td.appendChild(document.createTextNode(' '));
      td.appendChild(rb);
    }
    tr.appendChild(td);

    td = document.createElement('td');
    td.className = 'ends';
    if (ev.permanent || !ev.until) {
      var b = document.createElement('span');
      b.className = 'badge perm';
      b.textContent = 'permanent';
      td.appendChild(b);
    } else {
      var until = new Date(ev.until);
      tr.setAttribute('data-until', String(Math.floor(until.getTime() / 1000)));
      var t = document.createElement('time');
      t.setAttribute('datetime', ev.until);
      t.appendChild(document.createTextNode('in '));
      var left = document.createElement('span');
      left.className = 'left';
      left.textContent = human(Math.max(0, Math.ceil((until.getTime() - Date.now()) / 1000)));
      t.appendChild(left);
      td.appendChild(t);
      var at = document.createElement('span');
      at.className = 'at';
      at.textContent = utc(until);
      td.appendChild(at);
    }
    tr.appendChild(td);

    td = document.createElement('td');
    td.className = 'right';
    var f = document.createElement('form');
    f.method = 'post'; f.action = '/blocked/unblock'; f.className = 'inline';
    f.appendChild(hidden('csrf', csrf));
    f.appendChild(hidden('kind', ev.kind));
    f.appendChild(hidden('value', ev.value));
    var btn = document.createElement('button');
    btn.type = 'submit';
    if (report) {
      btn.className = 'btn small unblock'; btn.textContent = 'Clear';
      btn.setAttribute('aria-label', 'Clear report ' + ev.kind + ' ' + ev.value);
    } else {
      btn.className = 'btn small danger unblock'; btn.textContent = 'Unblock';
      btn.setAttribute('aria-label', 'Unblock ' + ev.kind + ' ' + ev.value);
    }
    f.appendChild(btn);
    td.appendChild(f);
    tr.appendChild(td);
    return tr;
  }

  function onBlock(ev) {
    var tb = tbody(ev.kind);
    if (!tb) { return; }
    var row = makeRow(ev);
    var old = findRow(tb, ev.value);
    if (old) { tb.replaceChild(row, old); } else { tb.insertBefore(row, tb.firstChild); }
    row.classList.add('fresh');
    refresh(tb);
  }

  function onUnblock(ev) {
    var tb = tbody(ev.kind);
    if (!tb) { return; }
    var old = findRow(tb, ev.value);
    if (old) { old.parentNode.removeChild(old); }
    refresh(tb);
  }

  function tick() {
    var now = Date.now() / 1000;
    var rows = document.querySelectorAll('tr[data-until]');
    for (var i = 0; i < rows.length; i++) {
      var left = Math.ceil(Number(rows[i].getAttribute('data-until')) - now);
      var tb = rows[i].parentNode;
      if (left <= 0) {
        tb.removeChild(rows[i]);
        refresh(tb);
        continue;
      }
      var span = rows[i].querySelector('.left');
      if (span) { span.textContent = human(left); }
    }
  }
  setInterval(tick, 1000);

  // The manual block form's placeholder shows a value of the chosen kind.
  var kindSel = document.getElementById('block-kind');
  var valueIn = document.getElementById('block-value');
  if (kindSel && valueIn) {
    kindSel.addEventListener('change', function () {
      var opt = kindSel.options[kindSel.selectedIndex];
      valueIn.placeholder = opt ? opt.getAttribute('data-example') || '' : '';
    });
  }

  // reconcile brings the tables in line with the current list, for what
  // changed while the stream was not connected.
  function reconcile() {
    return fetch(window.location.origin + '/api/v1/blocked', { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (list) {
        if (!list) { return; }
        Object.keys(TABLES).forEach(function (kind) {
          var tb = TABLES[kind];
          var card = tb.closest('section');
          var key = card ? card.getAttribute('data-key') : '';
          var seen = new Map();
          (list[key] || []).forEach(function (e) {
            seen.set(e.value, true);
            if (!findRow(tb, e.value)) {
              onBlock({ kind: kind, value: e.value, until: e.until, permanent: e.permanent });
            }
          });
          var rows = tb.querySelectorAll('tr[data-value]');
          for (var i = 0; i < rows.length; i++) {
            if (!seen.has(rows[i].getAttribute('data-value'))) { tb.removeChild(rows[i]); }
          }
          refresh(tb);
        });
      })
      .catch(function () {});
  }

  function parse(e) {
    try { return JSON.parse(e.data); } catch (err) { return null; }
  }

  if (live && live.getAttribute('data-live') === 'true' && window.EventSource) {
    var es = new EventSource(window.location.origin + '/api/v1/events');
    es.addEventListener('open', function () {
      live.className = 'live on'; live.textContent = 'Live';
      reconcile().then(function () { live.setAttribute('data-state', 'open'); });
    });
    es.addEventListener('error', function () {
      live.className = 'live lost'; live.textContent = 'Reconnecting…';
      live.setAttribute('data-state', 'lost');
    });
    es.addEventListener('block', function (e) { var ev = parse(e); if (ev) { onBlock(ev); } });
    es.addEventListener('unblock', function (e) { var ev = parse(e); if (ev) { onUnblock(ev); } });
  }
}());
