// clade's dashboard: polls the series endpoint and draws every chart in SVG.
// No library, nothing fetched but the series (see package dashboard).
'use strict';
(function () {
  const SERIES = '/_clade/dashboard/series';
  const COLORS = ['#1f6fb4', '#c2410c', '#2e7d32', '#7b3fa0', '#b8860b', '#0e8a8a', '#8b5a2b', '#c2185b'];
  const st = { samples: [], last: 0, every: 2, keep: 1800, span: 900, title: '', failedAt: null };
  const $ = (id) => document.getElementById(id);

  // state is a value's state against its limit: ok under 80 %, near from 80 %,
  // at 100 % exactly, over above; '' without a limit.
  function state(v, limit) {
    if (!(limit > 0) || v == null) return '';
    if (v > limit) return 'over';
    if (v >= limit) return 'at';
    if (v >= 0.8 * limit) return 'near';
    return 'ok';
  }
  function esc(s) { return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c])); }
  function num(v) { return v == null ? '–' : Math.round(v).toLocaleString('en-US'); }
  function short(v) {
    if (v == null) return '–';
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + 'M';
    if (a >= 1e4) return Math.round(v / 1e3) + 'k';
    if (a >= 1e3) return (v / 1e3).toFixed(1) + 'k';
    if (a > 0 && a < 10 && v % 1 !== 0) return v.toFixed(a < 1 ? 2 : 1);
    return String(Math.round(v));
  }
  function usd(v) { return v == null ? '–' : '$' + (Math.abs(v) < 10 ? v.toFixed(4) : v.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })); }
  function dur(sec) {
    if (sec == null) return '–';
    if (sec < 1) return Math.round(sec * 1000) + ' ms';
    if (sec < 60) return (sec < 10 ? sec.toFixed(1) : Math.round(sec)) + ' s';
    if (sec < 3600) { const m = Math.floor(sec / 60); return m + 'm' + String(Math.round(sec % 60)).padStart(2, '0') + 's'; }
    const h = Math.floor(sec / 3600); return h + 'h' + String(Math.round((sec % 3600) / 60)).padStart(2, '0') + 'm';
  }
  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  const hmFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', hour12: false });
  const zone = (() => { try { return new Intl.DateTimeFormat(undefined, { timeZoneName: 'short' }).formatToParts(new Date()).find((p) => p.type === 'timeZoneName').value; } catch (e) { return ''; } })();
  function clock(ms) { return timeFmt.format(new Date(ms)); }
  function pct(v, limit) { return limit > 0 ? Math.round(100 * v / limit) + ' %' : ''; }

  // card returns the card of id in the grid of section, made once.
  function card(section, grid, id, title, withChart) {
    let c = document.getElementById(id);
    if (!c) {
      c = document.createElement('div');
      c.id = id;
      c.className = 'card';
      c.innerHTML = '<div class="head"><h3></h3><span class="value"></span></div>' +
        '<div class="body"></div>' + (withChart ? '<svg class="chart" role="img"></svg><div class="legend"></div>' : '');
      $(grid).appendChild(c);
    }
    const h = c.querySelector('h3');
    if (h.textContent !== title) h.textContent = title; // a hybrid run's mode changes
    $(section).hidden = false;
    c.dataset.seen = '1';
    return c;
  }
  function setState(el, s) {
    el.classList.remove('state-ok', 'state-near', 'state-at', 'state-over');
    if (s) el.classList.add('state-' + s);
    el.dataset.state = s || '';
  }
  function setValue(c, html) { c.querySelector('.value').innerHTML = html; }
  function limitValue(v, limit, s) {
    return esc(num(v)) + (limit > 0 ? ' / ' + esc(num(limit)) + ' <span class="pct">' + esc(pct(v, limit)) + '</span>' : '') +
      (s === 'over' ? ' <span class="state-over">over</span>' : s === 'at' ? ' <span class="state-at">at the limit</span>' : '');
  }
  function niceStep(max) {
    const raw = max / 3, p = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
  }

  // draw renders the lines of series (each {name, color, dash, pts: [[ms, v|null]]})
  // and the limit (pts, or null) into c's svg over the last st.span seconds.
  function draw(c, series, limit, opts) {
    opts = opts || {};
    const svg = c.querySelector('svg');
    const W = Math.max(160, Math.round(svg.getBoundingClientRect().width || c.clientWidth - 20)), H = 150;
    const L = 46, R = 10, T = 8, B = 18;
    const t1 = st.samples.length ? Date.parse(st.samples[st.samples.length - 1].at) : Date.now();
    // The span chosen, or less while the history is shorter (at least a minute).
    const first = st.samples.length ? Date.parse(st.samples[0].at) : t1;
    const t0 = Math.max(t1 - st.span * 1000, Math.min(first, t1 - 60000));
    const inWin = (p) => p[0] >= t0 && p[1] != null;
    let ymax = 0;
    for (const s of series) for (const p of s.pts) if (inWin(p)) ymax = Math.max(ymax, p[1]);
    if (limit) for (const p of limit) if (inWin(p)) ymax = Math.max(ymax, p[1]);
    if (opts.min) ymax = Math.max(ymax, opts.min);
    if (!(ymax > 0)) ymax = 1;
    const step = niceStep(ymax * 1.08);
    ymax = Math.ceil(ymax * 1.08 / step) * step;
    const x = (t) => (L + (t - t0) / (t1 - t0 || 1) * (W - L - R)).toFixed(1);
    const y = (v) => (T + (1 - v / ymax) * (H - T - B)).toFixed(1);
    const fmt = opts.fmt || short;
    let out = '';
    const lastLimit = limit && limit.length ? limit[limit.length - 1][1] : null;
    if (lastLimit > 0 && lastLimit <= ymax && !opts.noBands) {
      out += '<rect class="near-band" x="' + L + '" width="' + (W - L - R) + '" y="' + y(lastLimit) + '" height="' + (y(0.8 * lastLimit) - y(lastLimit)).toFixed(1) + '"/>';
      out += '<rect class="over-band" x="' + L + '" width="' + (W - L - R) + '" y="' + T + '" height="' + (y(lastLimit) - T).toFixed(1) + '"/>';
    }
    for (let v = 0; v <= ymax + step / 2; v += step) {
      out += '<line class="gridline" x1="' + L + '" x2="' + (W - R) + '" y1="' + y(v) + '" y2="' + y(v) + '"/>' +
        '<text x="' + (L - 4) + '" y="' + (+y(v) + 3) + '" text-anchor="end">' + esc(fmt(v)) + '</text>';
    }
    const ticks = W < 420 ? 2 : 4;
    for (let i = 0; i <= ticks; i++) {
      const t = t0 + (t1 - t0) * i / ticks;
      out += '<text x="' + x(t) + '" y="' + (H - 4) + '" text-anchor="' + (i === 0 ? 'start' : i === ticks ? 'end' : 'middle') + '">' + esc((t1 - t0 < 600000 ? timeFmt : hmFmt).format(new Date(t))) + '</text>';
    }
    let points = 0;
    const line = (pts, cls, color) => {
      let seg = [];
      const flush = () => {
        if (seg.length === 1) out += '<circle class="dot" r="2.5" cx="' + seg[0].split(',')[0] + '" cy="' + seg[0].split(',')[1] + '" fill="' + color + '"/>';
        else if (seg.length) out += '<polyline class="' + cls + '" stroke="' + color + '" points="' + seg.join(' ') + '"/>';
        seg = [];
      };
      for (const p of pts) {
        if (p[0] < t0) continue;
        if (p[1] == null) { flush(); continue; }
        seg.push(x(p[0]) + ',' + y(p[1]));
        points++;
      }
      flush();
    };
    if (limit) { let seg = []; for (const p of limit) if (inWin(p) && p[1] > 0) seg.push(x(p[0]) + ',' + y(p[1])); if (seg.length) out += '<polyline class="limit" points="' + seg.join(' ') + '"/>'; }
    series.forEach((s) => line(s.pts, 'line' + (s.dash ? ' dash' : ''), s.color));
    for (const s of series) {
      const p = [...s.pts].reverse().find(inWin);
      if (p) out += '<circle class="last" r="3" cx="' + x(p[0]) + '" cy="' + y(p[1]) + '" fill="' + s.color + '"/>';
    }
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    svg.setAttribute('aria-label', c.querySelector('h3').textContent);
    svg.dataset.points = String(points);
    svg.innerHTML = out;
    const leg = c.querySelector('.legend');
    leg.innerHTML = series.map((s) => '<span class="' + (s.dash ? 'dashed' : '') + '" style="--c:' + s.color + '">' + esc(s.name) + '</span>').join('') +
      (limit ? '<span class="dashed" style="--c:var(--limit)">' + esc(opts.limitName || 'limit') + '</span>' : '');
  }
  function pts(f) { return st.samples.map((s) => { const v = f(s); return [Date.parse(s.at), v == null ? null : v]; }); }
  const byName = (arr, name) => (arr || []).find((x) => x.name === name);

  function renderProgress(s) {
    const p = s.progress;
    if (!p) return;
    const c = card('progress', 'progress-cards', 'p-done', 'Requests done (' + p.mode + ')', true);
    const frac = p.total > 0 ? p.done / p.total : 1;
    setValue(c, esc(num(p.done)) + ' / ' + esc(num(p.total)) + ' <span class="pct">' + Math.floor(frac * 1000) / 10 + ' %</span>');
    const eta = p.done >= p.total ? 'done' : p.eta_seconds > 0 ? dur(p.eta_seconds) : '…';
    c.querySelector('.body').innerHTML = '<div class="bar"><i style="width:' + (100 * Math.min(1, frac)).toFixed(1) + '%"></i></div>' +
      '<dl class="kv"><dt>ok</dt><dd>' + num(p.ok) + '</dd><dt>errors</dt><dd>' + num(p.errored) + '</dd>' +
      '<dt>elapsed</dt><dd>' + dur(p.elapsed_seconds) + '</dd><dt>ETA</dt><dd class="eta">' + esc(eta) + '</dd>' +
      '<dt>cost</dt><dd>' + usd(p.cost_usd) + ' (batch price ' + usd(p.batch_cost_usd) + ')</dd>' +
      (p.note ? '<dt>now</dt><dd>' + esc(p.note) + '</dd>' : '') + '</dl>';
    draw(c, [{ name: 'done', color: COLORS[0], pts: pts((x) => x.progress && x.progress.done) },
      { name: 'errors', color: COLORS[1], pts: pts((x) => x.progress && x.progress.errored) }],
    pts((x) => x.progress && x.progress.total), { noBands: true, limitName: 'total' });
    const k = card('progress', 'progress-cards', 'p-cost', 'Cost so far', true);
    setValue(k, esc(usd(p.cost_usd)));
    draw(k, [{ name: 'cost', color: COLORS[3], pts: pts((x) => x.progress && x.progress.cost_usd) }], null, { fmt: usd });
    // What is in flight: a batch run's requests in batches not ended, realtime's calls.
    const f = card('progress', 'progress-cards', 'p-flight', p.mode === 'batch' ? 'Requests in batches in flight' : 'Calls in flight', true);
    setValue(f, esc(num(s.in_flight)));
    draw(f, [{ name: 'in flight', color: COLORS[2], pts: pts((x) => x.progress && x.in_flight) }], null, { min: 1 });
  }

  function renderLimits(s) {
    const dims = [['requests', 'requests / min'], ['input_tokens', 'input tokens / min'], ['output_tokens', 'output tokens / min']];
    for (const cl of s.classes || []) {
      dims.forEach(([key, label], i) => {
        const c = card('limits', 'limit-charts', 'l-' + cl.name + '-' + key, cl.name + ' · ' + label, true);
        const r = cl[key];
        const sst = cl.warming ? '' : state(r.per_min, r.limit);
        setState(c, sst);
        setValue(c, limitValue(r.per_min, r.limit, sst) + (cl.warming ? ' <span class="empty">(burst)</span>' : '') + (cl.paused ? ' <span class="state-over">paused</span>' : ''));
        draw(c, [{ name: label, color: COLORS[i], pts: pts((x) => { const y = byName(x.classes, cl.name); return y && y[key].per_min; }) }],
          pts((x) => { const y = byName(x.classes, cl.name); return y && y[key].limit; }));
      });
    }
  }

  function renderQueues(s) {
    const teams = (s.teams || []).map((t) => t.name);
    if (!teams.length) return;
    const q = card('queues', 'queue-charts', 'q-depth', 'Queue depth (calls waiting)', true);
    setValue(q, (s.teams || []).map((t) => esc(t.name) + ' ' + num(t.queued)).join(' · '));
    draw(q, teams.map((n, i) => ({ name: n, color: COLORS[i % COLORS.length], pts: pts((x) => { const t = byName(x.teams, n); return t && t.queued; }) })), null, { min: 1 });
    const w = card('queues', 'queue-charts', 'q-wait', 'Admission wait p50 / p99 (per interval)', true);
    const cur = (s.teams || []).filter((t) => t.wait_p99_seconds != null);
    setValue(w, cur.length ? cur.map((t) => esc(t.name) + ' ' + dur(t.wait_p50_seconds) + ' / ' + dur(t.wait_p99_seconds)).join(' · ') : '<span class="empty">no call admitted in the last interval</span>');
    const ser = [];
    teams.forEach((n, i) => {
      const color = COLORS[i % COLORS.length];
      ser.push({ name: n + ' p50', color, pts: pts((x) => { const t = byName(x.teams, n); return t && t.wait_p50_seconds; }) });
      ser.push({ name: n + ' p99', color, dash: true, pts: pts((x) => { const t = byName(x.teams, n); return t && t.wait_p99_seconds; }) });
    });
    draw(w, ser, null, { fmt: dur, min: 0.01 });
    // Each class's share of what was admitted in the last minute, per team, against
    // the teams' caps (a capped team over its cap is borrowing what nobody else wanted).
    const classes = [...new Set((s.teams || []).flatMap((t) => (t.shares || []).map((x) => x.class)))].sort();
    for (const cl of classes) {
      const c = card('queues', 'queue-charts', 'q-share-' + cl, cl + ' · share of admitted, last minute', true);
      const share = (t) => (t.shares || []).find((x) => x.class === cl);
      let worst = '';
      const parts = (s.teams || []).filter(share).map((t) => {
        const x = share(t);
        const sst = x.cap > 0 ? state(x.share, x.cap) : '';
        if (sst === 'over' || (sst === 'at' && worst !== 'over') || (sst === 'near' && !worst)) worst = sst;
        return esc(t.name) + ' ' + Math.round(100 * x.share) + ' %' + (x.cap > 0 ? ' <span class="state-' + sst + '">(cap ' + Math.round(100 * x.cap) + ' %)</span>' : '');
      });
      setState(c, worst);
      setValue(c, parts.join(' · '));
      draw(c, teams.map((n, i) => ({ name: n, color: COLORS[i % COLORS.length], pts: pts((x) => { const t = byName(x.teams, n); const y = t && share(t); return y ? 100 * y.share : null; }) }))
        .concat(teams.filter((n) => { const t = byName(s.teams, n); const y = t && share(t); return y && y.cap > 0; })
          .map((n) => ({ name: n + ' cap', color: COLORS[teams.indexOf(n) % COLORS.length], dash: true, pts: pts((x) => { const t = byName(x.teams, n); const y = t && share(t); return y && y.cap > 0 ? 100 * y.cap : null; }) }))),
      null, { min: 100, fmt: (v) => Math.round(v) + ' %' });
    }
  }

  function renderErrors(s) {
    const classes = (s.classes || []).map((c) => c.name);
    const run = !!s.progress;
    if (classes.length) {
      const c = card('errors', 'error-charts', 'e-upstream', run ? 'Upstream 429 / 529 (total so far)' : 'Upstream 429 / 529 per minute', true);
      const sum = (k) => (s.classes || []).reduce((a, x) => a + (x[k] || 0), 0);
      setValue(c, '429 ' + num(run ? s.progress.rate_limited : sum('upstream_429')) + ' · 529 ' + num(run ? s.progress.overloaded : sum('upstream_529')));
      const ser = [];
      if (run) {
        ser.push({ name: '429', color: COLORS[1], pts: pts((x) => x.progress && x.progress.rate_limited) });
        ser.push({ name: '529', color: COLORS[3], dash: true, pts: pts((x) => x.progress && x.progress.overloaded) });
      } else {
        classes.forEach((n, i) => {
          ser.push({ name: n + ' 429', color: COLORS[(i * 2 + 1) % COLORS.length], pts: pts((x) => { const y = byName(x.classes, n); return y && y.upstream_429; }) });
          ser.push({ name: n + ' 529', color: COLORS[(i * 2 + 1) % COLORS.length], dash: true, pts: pts((x) => { const y = byName(x.classes, n); return y && y.upstream_529; }) });
        });
      }
      draw(c, ser, null, { min: 1 });
    }
    const teams = (s.teams || []).map((t) => t.name);
    if (teams.length) {
      const e = card('errors', 'error-charts', 'e-teams', 'Calls answered with an error, per minute', true);
      setValue(e, (s.teams || []).map((t) => esc(t.name) + ' ' + num(t.errors_per_min)).join(' · '));
      draw(e, teams.map((n, i) => ({ name: n, color: COLORS[i % COLORS.length], pts: pts((x) => { const t = byName(x.teams, n); return t && t.errors_per_min; }) })), null, { min: 1 });
    }
  }

  function renderSpend(s) {
    for (const b of s.budgets || []) {
      const id = 'b-' + b.team + '-' + (b.key || '') + '-' + b.period;
      const who = b.key ? 'key ' + b.key + ' (' + b.team + ')' : 'team ' + b.team;
      const c = card('spend', 'spend-charts', id, who + ' · ' + ({ day: 'daily', week: 'weekly', month: 'monthly' }[b.period] || b.period) + ' budget', true);
      const used = b.spent_usd + b.held_usd;
      const sst = state(used, b.limit_usd);
      setState(c, sst);
      setValue(c, esc(usd(b.spent_usd)) + ' / ' + esc(usd(b.limit_usd)) + ' <span class="pct">' + esc(pct(b.spent_usd, b.limit_usd)) + '</span>');
      c.querySelector('.body').innerHTML = '<div class="bar state-' + sst + '"><i style="width:' + Math.min(100, 100 * used / b.limit_usd).toFixed(1) + '%"></i></div>' +
        '<div class="empty">held for calls in flight ' + esc(usd(b.held_usd)) + '</div>';
      const same = (x) => (x.budgets || []).find((y) => y.team === b.team && (y.key || '') === (b.key || '') && y.period === b.period);
      draw(c, [{ name: 'spent', color: COLORS[3], pts: pts((x) => { const y = same(x); return y && y.spent_usd; }) },
        { name: 'spent + held', color: COLORS[3], dash: true, pts: pts((x) => { const y = same(x); return y && y.spent_usd + y.held_usd; }) }],
      pts((x) => { const y = same(x); return y && y.limit_usd; }), { fmt: usd });
    }
  }

  function render() {
    if (!st.samples.length) return;
    const s = st.samples[st.samples.length - 1];
    const at = Date.parse(s.at);
    document.title = st.title;
    $('title').textContent = st.title;
    const parts = [];
    if (s.tier) parts.push('tier ' + s.tier);
    parts.push(s.in_flight + ' in flight');
    parts.push('updated ' + clock(at) + (zone ? ' ' + zone : ''));
    parts.push('history since ' + clock(Date.parse(st.samples[0].at)) + ', a point every ' + st.every + ' s');
    const meta = $('meta');
    if (st.failedAt) parts.push('no answer since ' + clock(st.failedAt));
    meta.textContent = parts.join(' · ');
    meta.classList.toggle('stale', !!st.failedAt);
    renderProgress(s);
    renderLimits(s);
    renderQueues(s);
    renderErrors(s);
    renderSpend(s);
  }

  async function poll() {
    try {
      const r = await fetch(SERIES + '?after=' + st.last, { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const j = await r.json();
      st.title = j.title; st.every = j.every_seconds; st.keep = j.keep_seconds;
      for (const s of j.samples || []) { if (s.seq > st.last) { st.samples.push(s); st.last = s.seq; } }
      const max = Math.ceil(st.keep / st.every) + 1;
      if (st.samples.length > max) st.samples.splice(0, st.samples.length - max);
      st.failedAt = null;
    } catch (e) {
      if (!st.failedAt) st.failedAt = Date.now();
    }
    render();
    setTimeout(poll, Math.max(500, st.every * 1000));
  }
  document.querySelectorAll('nav.span button').forEach((b) => b.addEventListener('click', () => {
    st.span = +b.dataset.span;
    document.querySelectorAll('nav.span button').forEach((o) => o.setAttribute('aria-pressed', String(o === b)));
    render();
  }));
  let resize = null;
  window.addEventListener('resize', () => { clearTimeout(resize); resize = setTimeout(render, 150); });
  window.cladeDashboard = Object.freeze({ state }); // for the browser test
  poll();
})();
