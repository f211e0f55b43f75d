// Drives clade's dashboard in a real headless Chromium (Debian's, through
// playwright-core), for internal/serve's TestDashboardInChromium and the run's
// dashboard test. Environment: DASHBOARD_URL (the page), CHROMIUM (the browser),
// USER_DATA_DIR (a fresh profile), SCREENSHOT (where the 1,600 px PNG goes;
// SCREENSHOT_NARROW, when set, the 420 px one),
// DASHBOARD_KIND ("gateway", the default, or "run").
//
// Protocol with the Go test (gateway): the script prints MORE once the charts have
// points, the test sends more calls and answers SENT on stdin; the script then
// checks that the charts changed. It prints OK last when every check passed, and
// exits 1 with the reason otherwise.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

const url = process.env.DASHBOARD_URL;
const kind = process.env.DASHBOARD_KIND || 'gateway';
const OVER = 'rgb(198, 40, 40)'; // --over in app.css
const stdin = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => stdin.once('line', resolve));

function fail(msg) {
  console.error('FAIL: ' + msg);
  process.exit(1);
}
function check(ok, msg) {
  if (!ok) fail(msg);
  console.log('ok: ' + msg);
}

const context = await chromium.launchPersistentContext(process.env.USER_DATA_DIR, {
  executablePath: process.env.CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1600, height: 1000 },
});
try {
  const page = context.pages()[0] || await context.newPage();
  const origin = new URL(url).origin;
  const foreign = [];
  page.on('request', (r) => { if (!r.url().startsWith(origin) && !r.url().startsWith('data:')) foreign.push(r.url()); });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(url);

  // A chart's state: its points, its polylines' point counts, the value shown.
  const chart = (id) => page.evaluate((id) => {
    const c = id.startsWith('[') ? document.querySelector(id) : document.getElementById(id);
    if (!c) return null;
    const svg = c.querySelector('svg');
    return {
      points: +(svg.dataset.points || 0),
      drawn: [...svg.querySelectorAll('polyline.line')].reduce((n, p) => n + p.points.numberOfItems, 0),
      value: c.querySelector('.value').textContent,
      state: c.dataset.state,
      border: getComputedStyle(c).borderTopColor,
      width: svg.getBoundingClientRect().width,
    };
  }, id);
  const waitFor = async (what, f, ms = 60000) => {
    const end = Date.now() + ms;
    for (;;) {
      const v = await f();
      if (v) return v;
      if (Date.now() > end) fail('timed out waiting for ' + what);
      await page.waitForTimeout(250);
    }
  };

  const main = kind === 'run' ? 'p-done' : '[id^="l-"][id$="-requests"]'; // the first class's requests chart
  const first = await waitFor('a chart with 3 points', async () => { const c = await chart(main); return c && c.points >= 3 && c.drawn >= 3 && c; });
  check(first.drawn >= 3, `${main} draws ${first.drawn} points in SVG polylines (value "${first.value}")`);
  const all = await page.evaluate(() => [...document.querySelectorAll('svg.chart')].map((s) => +(s.dataset.points || 0)));
  check(all.length >= 4 && all.filter((n) => n > 0).length >= 4, `${all.length} charts, ${all.filter((n) => n > 0).length} with points`);
  const states = await page.evaluate(() => [[79999, 100000], [80000, 100000], [90000, 90000], [114314, 90000], [5, 0]]
    .map(([v, l]) => window.cladeDashboard.state(v, l)));
  check(states.join() === 'ok,near,at,over,', `states at 79.999 %, 80 %, 100 %, 127 % and no limit: ${states.join()}`);
  const meta = await page.textContent('#meta');
  check(/\d\d:\d\d:\d\d/.test(meta) && !/\d\d:\d\d:\d\d[.,]\d/.test(meta) && !/T\d\d:/.test(meta), `a human timestamp: "${meta}"`);

  if (kind === 'gateway') {
    const over = await waitFor('the requests chart over its limit', async () => { const c = await chart(main); return c && c.state === 'over' && c; });
    check(over.border === OVER && /\/ 30/.test(over.value) && /over/.test(over.value), `over the limit shows as over: "${over.value}", border ${over.border}`);
    check(await page.evaluate(() => document.querySelectorAll('.card.state-over').length) >= 1, 'a card has the over class');
    const before = await chart('q-wait');
    check(before && before.points > 0, `the wait chart has points (${before && before.value})`);
    const errs = await chart('e-teams');
    check(errs && errs.points > 0, `the errors chart has points (${errs && errs.value})`);
    const share = await chart('[id^="q-share-"]');
    check(share && share.points > 0 && /cap 50 %/.test(share.value), `the share chart against research's cap: "${share && share.value}"`);
    const spend = await page.evaluate(() => document.querySelectorAll('#spend-charts .card').length);
    check(spend >= 2, `${spend} budget charts`);
    const was = await chart(main);
    console.log('MORE');
    await nextLine();
    const after = await waitFor('more points and a changed value after more calls', async () => {
      const c = await chart(main);
      const e = await chart('e-teams');
      return c && e && c.points > was.points + 1 && (c.value !== was.value || e.value !== errs.value) && { c, e };
    });
    check(true, `after more calls: ${after.c.points} points (was ${was.points}), "${after.c.value}" (was "${was.value}"), errors "${after.e.value}" (was "${errs.value}")`);
  } else {
    // The run's page: progress gains points and done grows as results come in,
    // and the ETA the terminal display computes appears once its rates are warm.
    const later = await waitFor('more points and more done', async () => {
      const c = await chart(main);
      return c && c.points >= first.points + 3 && c.value !== first.value && c;
    });
    check(true, `the progress chart gained points: ${first.points} → ${later.points} ("${first.value}" → "${later.value}")`);
    const eta = await waitFor('an ETA', async () => {
      const t = await page.evaluate(() => document.querySelector('#p-done .eta').textContent);
      return /\d/.test(t) && t;
    });
    check(true, `ETA shown: ${eta}`);
    const lim = await chart('[id^="l-"][id$="-requests"]');
    check(lim && lim.points > 0 && /\/ 50/.test(lim.value), `the requests chart against the tier's 50 rpm: "${lim && lim.value}"`);
  }

  if (process.env.SCREENSHOT) {
    await page.waitForTimeout(300);
    await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
    console.log('ok: screenshot at 1600 px: ' + process.env.SCREENSHOT);
  }
  await page.setViewportSize({ width: 420, height: 900 });
  await page.waitForTimeout(600); // the charts redraw after a resize
  const narrow = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,
    widest: Math.max(...[...document.querySelectorAll('.card')].map((c) => c.getBoundingClientRect().right)) }));
  check(narrow.scroll <= 420 && narrow.widest <= 420, `no horizontal overflow at 420 px: scrollWidth ${narrow.scroll}, widest card ends at ${narrow.widest}`);
  if (process.env.SCREENSHOT_NARROW) await page.screenshot({ path: process.env.SCREENSHOT_NARROW, fullPage: true });
  const small = await chart(main);
  check(small.width <= 420 && small.drawn >= 3, `the chart redrawn at ${small.width} px with ${small.drawn} points`);
  check(foreign.length === 0, `nothing fetched from elsewhere (${foreign.join(', ')})`);
  check(errors.length === 0, `no script errors (${errors.join('; ')})`);
  console.log('OK');
} finally {
  await context.close();
  stdin.close();
}
