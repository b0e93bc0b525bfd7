// Draws the dashboard's charts as SVG from the stats API. Labels are set
// with textContent, never as HTML.
(function () {
  'use strict';
  var NS = 'http://www.w3.org/2000/svg';

  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    if (parent) { parent.appendChild(e); }
    return e;
  }

  function note(box, text) {
    var p = document.createElement('p');
    p.className = 'note';
    p.textContent = text;
    box.appendChild(p);
  }

  function colors(box) {
    var out = [];
    (box.getAttribute('data-colors') || '').split(',').forEach(function (kv) {
      var i = kv.indexOf(':');
      if (i > 0) { out.push([kv.slice(0, i), kv.slice(i + 1)]); }
    });
    return out;
  }

  // niceMax rounds the highest value up to 4 grid steps of 1, 2 or 5 × 10^k.
  function niceMax(v) {
    var raw = Math.max(v, 4) / 4;
    var p = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * p >= raw) { return 4 * steps[i] * p; }
    }
    return 40 * p;
  }

  // sameOrigin makes a path absolute without the user:password@ a page
  // opened with credentials in its URL would lend it (fetch refuses those).
  function sameOrigin(path) { return window.location.origin + path; }

  function pad(n) { return n < 10 ? '0' + n : String(n); }

  // label writes a bucket's start in UTC, as every other time of the admin.
  function label(ts, step) {
    var d = new Date(ts * 1000);
    var hm = pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes());
    if (step >= 3600) { return pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()) + ' ' + hm; }
    return hm;
  }

  function legend(box, cs, totals) {
    var lg = document.createElement('div');
    lg.className = 'legend';
    cs.forEach(function (c) {
      var s = document.createElement('span');
      var i = document.createElement('i');
      i.style.background = c[1];
      s.appendChild(i);
      s.appendChild(document.createTextNode(c[0] + ' (' + (totals[c[0]] || 0) + ')'));
      lg.appendChild(s);
    });
    box.appendChild(lg);
  }

  // stacked draws one column per bucket, the series stacked.
  function stacked(box, data) {
    var cs = colors(box);
    var n = data.buckets.length;
    var sums = new Array(n).fill(0), totals = {}, points = 0;
    cs.forEach(function (c) {
      var vals = data.series[c[0]] || [];
      totals[c[0]] = 0;
      for (var i = 0; i < n; i++) { sums[i] += vals[i] || 0; totals[c[0]] += vals[i] || 0; }
    });
    legend(box, cs, totals);
    var W = 1100, H = 230, L = 44, R = 8, T = 10, B = 26;
    var pw = W - L - R, ph = H - T - B;
    var top = niceMax(Math.max.apply(null, sums.concat([0])));
    var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', 'data-series': cs.length });
    svg.style.aspectRatio = W + ' / ' + H;
    for (var g = 0; g <= 4; g++) {
      var y = T + ph - ph * g / 4;
      el('line', { x1: L, x2: W - R, y1: y, y2: y, 'class': g === 0 ? 'axis' : 'grid' }, svg);
      var t = el('text', { x: L - 6, y: y + 4, 'text-anchor': 'end' }, svg);
      t.textContent = String(Math.round(top * g / 4));
    }
    var bw = pw / n, gap = Math.min(2, bw * 0.2);
    var every = Math.max(1, Math.ceil(n / 10));
    for (var i = 0; i < n; i++) {
      var x = L + i * bw, y0 = T + ph;
      cs.forEach(function (c) {
        var v = (data.series[c[0]] || [])[i] || 0;
        if (v <= 0) { return; }
        var h = ph * v / top;
        y0 -= h;
        var r = el('rect', { x: x + gap / 2, y: y0, width: Math.max(1, bw - gap), height: h, fill: c[1], 'class': 'col', 'data-v': v, 'data-series': c[0] }, svg);
        var tt = el('title', {}, r);
        tt.textContent = label(data.buckets[i], data.step) + ' UTC · ' + c[0] + ': ' + v;
        points++;
      });
      if (i % every === 0) {
        var lt = el('text', { x: x + bw / 2, y: H - 8, 'text-anchor': 'middle' }, svg);
        lt.textContent = label(data.buckets[i], data.step);
      }
    }
    svg.setAttribute('data-points', String(points));
    box.appendChild(svg);
    if (points === 0) { note(box, 'Nothing in this window.'); }
  }

  // top draws horizontal bars: failures then refusals, per source.
  function top(box, data) {
    var items = data.items || [];
    if (items.length === 0) {
      var empty = el('svg', { viewBox: '0 0 10 1', 'data-points': '0' });
      box.appendChild(empty);
      note(box, 'No failed attempts in this window.');
      return;
    }
    legend(box, [['failure', '#e0a020'], ['blocked', '#d64545']], items.reduce(function (acc, it) {
      acc.failure = (acc.failure || 0) + it.failures; acc.blocked = (acc.blocked || 0) + it.blocked; return acc;
    }, {}));
    var W = 540, row = 26, L = 190, R = 56;
    var H = items.length * row + 4;
    var maxV = Math.max.apply(null, items.map(function (it) { return it.failures + it.blocked; }).concat([1]));
    var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, 'data-points': String(items.length) });
    svg.style.aspectRatio = W + ' / ' + H;
    var base = box.getAttribute('data-link') || '';
    items.forEach(function (it, i) {
      var y = i * row + 2;
      // "." and ".." in the query, as the server's subjectHref puts them.
      var dots = it.value === '.' || it.value === '..';
      var a = el('a', { href: base + (dots ? '?value=' : '') + encodeURIComponent(it.value) }, svg);
      var name = it.value.length > 22 ? it.value.slice(0, 21) + '…' : it.value;
      var t = el('text', { x: L - 10, y: y + 16, 'text-anchor': 'end', 'class': 'bar-label' }, a);
      t.textContent = name;
      var tt = el('title', {}, a);
      tt.textContent = it.value;
      var pw = W - L - R, x = L;
      [[it.failures, '#e0a020', 'failure'], [it.blocked, '#d64545', 'blocked']].forEach(function (p) {
        if (p[0] <= 0) { return; }
        var w = Math.max(2, pw * p[0] / maxV);
        var r = el('rect', { x: x, y: y + 4, width: w, height: row - 10, rx: 3, fill: p[1], 'class': 'col', 'data-v': p[0], 'data-series': p[2] }, svg);
        var rt = el('title', {}, r);
        rt.textContent = it.value + ' · ' + p[2] + ': ' + p[0];
        x += w;
      });
      var v = el('text', { x: x + 6, y: y + 16, 'class': 'bar-value' }, svg);
      v.textContent = String(it.failures + it.blocked);
    });
    box.appendChild(svg);
  }

  document.querySelectorAll('.chart[data-src]').forEach(function (box) {
    fetch(sameOrigin(box.getAttribute('data-src')), { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) { throw new Error(body && body.error ? body.error : 'HTTP ' + r.status); }
          return body;
        });
      })
      .then(function (data) {
        if (box.getAttribute('data-type') === 'top') { top(box, data); } else { stacked(box, data); }
        box.setAttribute('data-state', 'drawn');
      })
      .catch(function (err) {
        note(box, 'Could not load: ' + err.message);
        box.setAttribute('data-state', 'error');
      });
  });
}());
