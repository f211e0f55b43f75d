// Drives clade's dashboard in a real headless Chromium (Debian's, through
// playwright-core), for internal/serve's TestDashboardInChromium and
// internal/cli's TestDashboardsInChromium. Environment: CHROMIUM (the browser),
// USER_DATA_DIR (a fresh profile), and either
//
//   - DASHBOARD_URL (one page) and DASHBOARD_KIND ("gateway", the default, or
//     "run"); SCREENSHOT (where the 1,600 px PNG goes; SCREENSHOT_NARROW, when
//     set, the 420 px one); or
//   - DASHBOARD_KINDS (a comma-separated list of run, batch and hybrid): the
//     script launches the browser, prints READY, then reads one "KIND URL" line
//     per kind on stdin and checks each page as it comes, all at once in one
//     browser; SCREENSHOT_DIR, when set, gets KIND.png (1,600 px, the run's end)
//     and KIND-420.png.
//
// Protocol with the Go test (gateway): the script prints MORE once the charts have
// points, the test sends more calls and answers SENT on stdin; the script then
// checks that the charts changed. It prints OK last when every check passed, and
// exits 1 with the reason otherwise.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

const OVER = 'rgb(198, 40, 40)'; // --over in app.css
const stdin = createInterface({ input: process.stdin });
const lines = [];
const waiters = [];
stdin.on('line', (l) => { if (waiters.length) waiters.shift()(l); else lines.push(l); });
const nextLine = () => new Promise((resolve) => { if (lines.length) resolve(lines.shift()); else waiters.push(resolve); });

function fail(msg) {
  console.error('FAIL: ' + msg);
  process.exit(1);
}

const context = await chromium.launchPersistentContext(process.env.USER_DATA_DIR, {
  executablePath: process.env.CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1600, height: 1000 },
});

// check drives one page of kind at url; tag prefixes its lines.
async function check(page, kind, url, shots) {
  const tag = shots.tag ? '[' + kind + '] ' : '';
  const ok = (cond, msg) => {
    if (!cond) fail(tag + msg);
    console.log('ok: ' + tag + msg);
  };
  const origin = new URL(url).origin;
  const foreign = [];
  page.on('request', (r) => { if (!r.url().startsWith(origin) && !r.url().startsWith('data:')) foreign.push(r.url()); });
  const errors = [];
  let ended = false; // the run ended: its dashboard closes, and the page's polls fail
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && !(ended && /net::ERR_CONNECTION_REFUSED/.test(m.text()))) errors.push(m.text());
  });
  await page.goto(url);

  // A chart's state: its points, its polylines' point counts, the value shown.
  // charts reads several in one round trip to the browser (a loaded machine makes
  // each one slow, and a poll that takes seconds can miss what lasts seconds).
  const charts = (ids) => page.evaluate((ids) => ids.map((id) => {
    const c = id.startsWith('[') ? document.querySelector(id) : document.getElementById(id);
    if (!c) return null;
    const svg = c.querySelector('svg');
    return {
      title: c.querySelector('h3').textContent,
      points: +(svg.dataset.points || 0),
      drawn: [...svg.querySelectorAll('polyline.line')].reduce((n, p) => n + p.points.numberOfItems, 0),
      value: c.querySelector('.value').textContent,
      state: c.dataset.state,
      border: getComputedStyle(c).borderTopColor,
      width: svg.getBoundingClientRect().width,
    };
  }), ids);
  const chart = async (id) => (await charts([id]))[0];
  const waitFor = async (what, f, ms = 60000, every = 250) => {
    const end = Date.now() + ms;
    for (;;) {
      const v = await f();
      if (v) return v;
      if (Date.now() > end) fail(tag + 'timed out waiting for ' + what);
      await page.waitForTimeout(every);
    }
  };
  const LIMITS = '[id^="l-"][id$="-requests"]'; // the first class's requests chart

  const main = kind === 'gateway' ? LIMITS : 'p-done';
  const need = kind === 'gateway' ? 3 : 2; // a run's page is opened as the run starts
  const first = await waitFor(`a chart with ${need} points`, async () => { const c = await chart(main); return c && c.points >= need && c.drawn >= need && c; });
  ok(first.drawn >= need, `${main} draws ${first.drawn} points in SVG polylines (value "${first.value}")`);
  const states = await page.evaluate(() => [[79999, 100000], [80000, 100000], [90000, 90000], [114314, 90000], [5, 0]]
    .map(([v, l]) => window.cladeDashboard.state(v, l)));
  ok(states.join() === 'ok,near,at,over,', `states at 79.999 %, 80 %, 100 %, 127 % and no limit: ${states.join()}`);
  const meta = await page.textContent('#meta');
  ok(/\d\d:\d\d:\d\d/.test(meta) && !/\d\d:\d\d:\d\d[.,]\d/.test(meta) && !/T\d\d:/.test(meta), `a human timestamp: "${meta}"`);

  if (kind === 'gateway') {
    const all = await page.evaluate(() => [...document.querySelectorAll('svg.chart')].map((s) => +(s.dataset.points || 0)));
    ok(all.length >= 4 && all.filter((n) => n > 0).length >= 4, `${all.length} charts, ${all.filter((n) => n > 0).length} with points`);
    const over = await waitFor('the requests chart over its limit', async () => { const c = await chart(main); return c && c.state === 'over' && c; });
    ok(over.border === OVER && /\/ 30/.test(over.value) && /over/.test(over.value), `over the limit shows as over: "${over.value}", border ${over.border}`);
    ok(await page.evaluate(() => document.querySelectorAll('.card.state-over').length) >= 1, 'a card has the over class');
    const before = await chart('q-wait');
    ok(before && before.points > 0, `the wait chart has points (${before && before.value})`);
    const errs = await chart('e-teams');
    ok(errs && errs.points > 0, `the errors chart has points (${errs && errs.value})`);
    const share = await chart('[id^="q-share-"]');
    ok(share && share.points > 0 && /cap 50 %/.test(share.value), `the share chart against research's cap: "${share && share.value}"`);
    const spend = await page.evaluate(() => document.querySelectorAll('#spend-charts .card').length);
    ok(spend >= 2, `${spend} budget charts`);
    const was = await chart(main);
    console.log('MORE');
    await nextLine();
    const after = await waitFor('more points and a changed value after more calls', async () => {
      const c = await chart(main);
      const e = await chart('e-teams');
      return c && e && c.points > was.points + 1 && (c.value !== was.value || e.value !== errs.value) && { c, e };
    });
    ok(true, `after more calls: ${after.c.points} points (was ${was.points}), "${after.c.value}" (was "${was.value}"), errors "${after.e.value}" (was "${errs.value}")`);
  } else {
    // A run's page (run, batch, hybrid): opened while the run works, it follows it
    // to its end. On the way: the ETA the display computes, what is in flight, the
    // mode (a hybrid run's batches, then realtime), the limits where they apply.
    const DONE = /^(\S+) \/ \1 100 %$/;
    ok(!DONE.test(first.value), `the page opened before the run's end: "${first.value}"`);
    let eta = '', flight = 0, note = '';
    const titles = [first.title];
    let lim = null;
    const end = await waitFor('the run at 100 %', async () => {
      // One round trip a poll: the charts, the ETA, the note and the page's meta line.
      const [[c, f, l], t] = await Promise.all([charts(['p-done', 'p-flight', LIMITS]), page.evaluate(() => ({
        eta: document.querySelector('#p-done .eta').textContent, meta: document.querySelector('#meta').textContent,
        note: [...document.querySelectorAll('#p-done dt')].filter((d) => d.textContent === 'now').map((d) => d.nextElementSibling.textContent).join() }))]);
      if (!eta && /\d/.test(t.eta)) eta = t.eta;
      if (!note && t.note) note = t.note;
      if (f) flight = Math.max(flight, +f.value.replace(/,/g, ''));
      if (c && titles[titles.length - 1] !== c.title) titles.push(c.title);
      lim = l || lim;
      if (c && DONE.test(c.value) && t.eta === 'done') return c;
      if (/no answer since/.test(t.meta)) fail(`${tag}the dashboard went away before the page saw the run's end: "${c && c.value}", ${t.meta}`);
      return null;
    }, 90000, 100);
    ok(end.points > first.points && end.drawn >= 3, `the progress chart gained points to the end: ${first.points} → ${end.points} ("${first.value}" → "${end.value}")`);
    const cost = await chart('p-cost');
    ok(cost && cost.points >= 2 && /^\$0\.\d*[1-9]/.test(cost.value), `the cost chart: ${cost && cost.points} points, "${cost && cost.value}"`);
    ok(flight > 0, `${(await chart('p-flight')).title}: up to ${flight}`);
    const all = await page.evaluate(() => [...document.querySelectorAll('svg.chart')].map((s) => +(s.dataset.points || 0)));
    ok(all.length >= 3 && all.every((n) => n > 0), `${all.length} charts, all with points (${all.join(', ')})`);
    const mode = { run: ['realtime'], batch: ['batch'], hybrid: ['batch', 'realtime'] }[kind];
    ok(titles.join() === mode.map((m) => `Requests done (${m})`).join(), `the mode shown: ${titles.join(' → ')}`);
    ok(eta !== '', `ETA shown before the end: ${eta}`);
    if (kind !== 'run') ok(/batches running/.test(note), `the batches shown: "${note}"`);
    const limit = { run: 50, hybrid: 600 }[kind];
    if (limit) ok(lim && lim.points > 0 && lim.value.includes('/ ' + limit), `the requests chart against the tier's ${limit} rpm: "${lim && lim.value}"`);
    else ok(lim === null, 'no realtime limit chart for batches');
    ended = true;
  }

  if (shots.wide) {
    await page.waitForTimeout(300);
    await page.screenshot({ path: shots.wide, fullPage: true });
    ok(true, 'screenshot at 1600 px: ' + shots.wide);
  }
  await page.setViewportSize({ width: 420, height: 900 });
  await page.waitForTimeout(600); // the charts redraw after a resize
  const narrow = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,
    widest: Math.max(...[...document.querySelectorAll('.card')].map((c) => c.getBoundingClientRect().right)) }));
  ok(narrow.scroll <= 420 && narrow.widest <= 420, `no horizontal overflow at 420 px: scrollWidth ${narrow.scroll}, widest card ends at ${narrow.widest}`);
  if (shots.narrow) await page.screenshot({ path: shots.narrow, fullPage: true });
  const small = await chart(main);
  ok(small.width <= 420 && small.drawn >= need, `the chart redrawn at ${small.width} px with ${small.drawn} points`);
  ok(foreign.length === 0, `nothing fetched from elsewhere (${foreign.join(', ')})`);
  ok(errors.length === 0, `no script errors (${errors.join('; ')})`);
}

try {
  if (process.env.DASHBOARD_KINDS) {
    const kinds = process.env.DASHBOARD_KINDS.split(',');
    const dir = process.env.SCREENSHOT_DIR;
    console.log('READY');
    const checks = [];
    for (let left = new Set(kinds); left.size;) {
      const [kind, url] = (await nextLine()).trim().split(/\s+/);
      if (!left.delete(kind)) fail(`an unexpected line: ${kind} ${url} (kinds ${kinds.join(',')})`);
      const page = await context.newPage();
      checks.push(check(page, kind, url, { tag: true, wide: dir && join(dir, kind + '.png'), narrow: dir && join(dir, kind + '-420.png') }));
    }
    await Promise.all(checks);
  } else {
    const page = context.pages()[0] || await context.newPage();
    await check(page, process.env.DASHBOARD_KIND || 'gateway', process.env.DASHBOARD_URL,
      { wide: process.env.SCREENSHOT, narrow: process.env.SCREENSHOT_NARROW });
  }
  console.log('OK');
} finally {
  await context.close();
  stdin.close();
}
