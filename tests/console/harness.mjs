// What both console drivers (console.mjs, console_local.mjs) share: playwright-core
// from the test's node_modules, screenshots that are noted rather than failing a
// run, a wait that the console's CSP does not block, and the browser as the tests
// run it (Debian's chromium, headless).
import { createRequire } from 'node:module';
import path from 'node:path';

// `cfg.node_dir` holds node_modules/playwright-core; screenshots go to
// `cfg.shots/<prefix><name>.png`; failures to take one are listed in
// `out.shot_failures`.
export function harness(cfg, prefix) {
  const require = createRequire(path.join(cfg.node_dir, 'node_modules', 'x.js'));
  const { chromium } = require('playwright-core');
  const out = { shot_failures: [] };
  const shot = async (page, name) => {
    try {
      await page.screenshot({ path: path.join(cfg.shots, prefix + name + '.png'), timeout: 30000 });
    } catch (e) {
      out.shot_failures.push(name + ': ' + String(e.message).split('\n')[0]);
    }
  };
  const launch = () =>
    chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  return { out, shot, launch };
}

// page.waitForFunction polls with eval, which the console's CSP forbids (as it
// should); page.evaluate goes through the debugger protocol, which CSP does not see.
export async function until(page, fn, arg, timeout) {
  const end = Date.now() + timeout;
  for (;;) {
    if (await page.evaluate(fn, arg)) return;
    if (Date.now() > end) throw new Error('timed out waiting for ' + fn.toString().substring(0, 120));
    await new Promise((r) => setTimeout(r, 50));
  }
}
