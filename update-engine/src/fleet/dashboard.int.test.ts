/**
 * The fleet dashboard in a REAL headless Chromium (Debian's chromium, driven
 * by puppeteer-core) against `basalt serve` on 127.0.0.1: the page shows the
 * groups, versions and machines not seen lately; the test pauses a rollout
 * with the page's button and the next check of a machine in that group gets
 * noupdate. Screenshots are kept in a temp dir outside the checkout (printed;
 * BASALT_SCREENSHOT_DIR chooses it).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { access, mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tempDir, waitFor } from '../../test/helpers.js';
import { makeFleetRepo, startFleetServer, check, TOKEN } from '../../test/fleet.js';

const CHROMIUM = process.env['BASALT_CHROMIUM'] ?? '/usr/bin/chromium';
const skip = await access(CHROMIUM).then(
  () => undefined,
  () => `${CHROMIUM} not found (apt-get install chromium; npm run setup installs it)`,
);
if (skip) console.warn(`dashboard test skipped: ${skip}`);

let t: Awaited<ReturnType<typeof tempDir>> | undefined;
let srv: Awaited<ReturnType<typeof startFleetServer>> | undefined;

beforeAll(async () => {
  t = await tempDir('basalt-dashboard-');
  if (skip) return;
  srv = await startFleetServer({ repo: await makeFleetRepo(t.dir), database: join(t.dir, 'fleet.sqlite'), eventsFile: join(t.dir, 'events.jsonl') });
  // A machine last seen two days ago (recorded straight into the store), then a live fleet.
  await srv.store.checkIn({ id: 'stale-machine', group: 'stable', version: '1.0.0', track: 'stable', board: 'amd64-usr' }, Date.now() - 2 * 86_400_000);
  for (let i = 0; i < 5; i++) await check(srv.url, '2.0.0', `live-${i}`);
  await check(srv.url, '1.0.0', 'live-old', 'beta');
});
afterAll(async () => {
  await srv?.close();
  await t?.cleanup();
});

describe('fleet dashboard in Chromium', () => {
  it.skipIf(skip !== undefined)(`shows the fleet and pauses a rollout; the next check gets noupdate${skip ? ` (skipped: ${skip})` : ''}`, async () => {
    const puppeteer = (await import('puppeteer-core')).default;
    const browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      userDataDir: join(t!.dir, 'chromium-profile'),
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
      timeout: 60_000,
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      // Page code as text: the tests are compiled without the DOM's types.
      const ev = <T>(js: string) => page.evaluate(js) as Promise<T>;
      const rows = (sel: string) => `[...document.querySelectorAll('${sel}')].map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent))`;
      await page.goto(`${srv!.url}dashboard/`, { waitUntil: 'load' });
      // Without the token the page shows the API's refusal.
      await page.click('#auth button');
      await page.waitForFunction('document.body.dataset.error !== undefined', { timeout: 15_000 });
      expect(await ev<string>("document.querySelector('#status').textContent")).toMatch(/bearer token/);
      await page.type('#token', TOKEN);
      await page.click('#auth button');
      await page.waitForSelector('#groups tr[data-group="stable"]', { timeout: 15_000 });
      // Kept after the test (outside the checkout) for a person to look at; the path is printed.
      const shots = process.env['BASALT_SCREENSHOT_DIR'] ?? (await mkdtemp(join(tmpdir(), 'basalt-dashboard-screenshots-')));
      await mkdir(shots, { recursive: true });
      await page.screenshot({ path: join(shots, 'dashboard.png'), fullPage: true });
      const groups = await ev<string[][]>(rows('#groups tbody tr'));
      // 'beta' is no channel of the repository: its machine is recorded, no group is made for it.
      expect(groups.map((g) => g[0])).toEqual(['stable']);
      expect(groups.find((g) => g[0] === 'stable')!.slice(0, 3)).toEqual(['stable', 'stable', '3.0.0']);
      const versions = (await ev<string[][]>(rows('#versions tbody tr'))).map((r) => r.join(' '));
      expect(versions).toEqual(['stable 1.0.0 1 0 0', 'stable 2.0.0 5 0 0']);
      expect((await ev<string[][]>(rows('#stale tbody tr'))).map((r) => r[0])).toEqual(['stale-machine']);

      // The stable group's machines are offered 3.0.0 until the pause.
      expect(await check(srv!.url, '2.0.0', 'live-0')).toBe('3.0.0');
      await page.click('#groups tr[data-group="stable"] button.pause');
      await page.waitForSelector('#groups tr[data-group="stable"] button.resume', { timeout: 15_000 });
      expect(await ev<string>(`document.querySelector('#groups tr[data-group="stable"] td.state').textContent`)).toMatch(/^paused: paused from the dashboard/);
      await page.screenshot({ path: join(shots, 'paused.png'), fullPage: true });
      expect(await check(srv!.url, '2.0.0', 'live-1')).toBe('noupdate');
      expect(await check(srv!.url, '2.0.0', 'live-0')).toBe('noupdate');
      // Another group is not paused.
      expect(await check(srv!.url, '1.0.0', 'live-old', 'beta')).not.toBe('paused');
      // Resume through the page.
      await page.click('#groups tr[data-group="stable"] button.resume');
      await waitFor(async () => (await check(srv!.url, '2.0.0', 'live-1')) === '3.0.0', 15_000, 'the rollout to resume');
      expect(errors).toEqual([]);
      console.log(`dashboard screenshots: ${shots}`);
      await access(join(shots, 'paused.png'));
    } finally {
      await browser.close();
    }
  });
});
