// A browser as an MQTT client: headless Chromium (Debian's /usr/bin/chromium, driven by the
// pinned playwright-core) loads a small page served here over HTTP on 127.0.0.1 with MQTT.js's
// browser build (node_modules/mqtt/dist/mqtt.min.js). The page connects to tern-broker over
// WebSocket (MQTT 5.0), subscribes to browser/in, shows what arrives and publishes it back on
// browser/out. tern-pub (over mqtt://) publishes to browser/in; tern-sub (over ws://) must see
// the echo. A screenshot of the page is saved as browser_test.png in OUTDIR (the build tree).
//
// usage: node browser_test.mjs tern-broker tern-pub tern-sub OUTDIR
// exit:  0 all passed, 1 a check failed, 2 usage, 77 skipped: /usr/bin/chromium is missing
//        (scripts/setup installs it) or tests/interop/js is not installed (scripts/setup)

import {existsSync, mkdirSync, readFileSync, statSync} from 'node:fs';
import http from 'node:http';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';

import {check, report, requireJs, runTool, sleep, startBroker, withTimeout} from './ws_support.mjs';

const CHROMIUM = process.env.TERN_CHROMIUM || '/usr/bin/chromium';
const WATCHDOG_MS = 100000;  // below the CTest TIMEOUT
const WAIT_MS = 20000;       // per browser wait: Chromium's first start is slow on a busy machine

if (!existsSync(CHROMIUM)) {
    console.log(`SKIP: ${CHROMIUM} not found (scripts/setup installs Debian's chromium)`);
    process.exit(77);
}
const playwright = requireJs('playwright-core');
const mqttBrowserBuild =
    fileURLToPath(new URL('./js/node_modules/mqtt/dist/mqtt.min.js', import.meta.url));
if (!playwright || !existsSync(mqttBrowserBuild)) {
    console.log('SKIP: playwright-core or MQTT.js not installed in tests/interop/js ' +
                '(run scripts/setup, which runs npm ci there)');
    process.exit(77);
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Tern over WebSocket</title>
<style>body{font:16px sans-serif;margin:2em} li{font-family:monospace}</style>
<script src="/mqtt.min.js"></script></head>
<body><h1>MQTT.js in Chromium &harr; tern-broker</h1>
<p id="status">starting</p><ul id="log"></ul>
<script>
const params = new URLSearchParams(location.search);
const state = window.tern = {connected: false, subscribed: false, received: [], errors: []};
const status = (s) => (document.getElementById('status').textContent = s);
const log = (s) => {
  const li = document.createElement('li');
  li.textContent = s;
  document.getElementById('log').appendChild(li);
};
const url = 'ws://127.0.0.1:' + params.get('port') + '/mqtt';
const client = mqtt.connect(url, {protocolVersion: 5, clientId: 'tern-browser', reconnectPeriod: 0});
client.on('error', (e) => { state.errors.push(String(e)); status('error: ' + e); });
client.on('connect', () => {
  state.connected = true;
  status('connected to ' + url);
  client.subscribe('browser/in', {qos: 1}, (err) => {
    if (err) { state.errors.push(String(err)); return; }
    state.subscribed = true;
    status('connected to ' + url + ', subscribed to browser/in');
  });
});
client.on('message', (topic, payload) => {
  const text = new TextDecoder().decode(payload);
  state.received.push(text);
  log('received on ' + topic + ': ' + text);
  client.publish('browser/out', 'echo:' + text, {qos: 1}, () => log('published back: echo:' + text));
});
</script></body></html>`;

function serve() {
    const js = readFileSync(mqttBrowserBuild);
    const server = http.createServer((req, res) => {
        const path = new URL(req.url, 'http://x').pathname;
        if (path === '/') {
            res.writeHead(200, {'content-type': 'text/html; charset=utf-8'});
            res.end(PAGE);
        } else if (path === '/mqtt.min.js') {
            res.writeHead(200, {'content-type': 'text/javascript'});
            res.end(js);
        } else if (path === '/favicon.ico') {
            res.writeHead(204);
            res.end();
        } else {
            res.writeHead(404);
            res.end();
        }
    });
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function main() {
    const [brokerBin, pubBin, subBin, outDir] = process.argv.slice(2);
    if (!outDir) {
        console.log('usage: node browser_test.mjs tern-broker tern-pub tern-sub OUTDIR');
        return 2;
    }
    mkdirSync(outDir, {recursive: true});
    const watchdog = setTimeout(() => {
        console.log(`FAIL: watchdog: the run took over ${WATCHDOG_MS} ms`);
        process.exit(1);
    }, WATCHDOG_MS);
    let broker = null, browser = null, web = null;
    try {
        broker = await startBroker(brokerBin, [
            'allow_anonymous true',
            'listener 0 127.0.0.1', 'protocol websockets',
            'listener 0 127.0.0.2', ''].join('\n'));
        const [wsPort, mqttPort] = broker.ports;
        web = await serve();
        const webPort = web.address().port;
        browser = await withTimeout(playwright.chromium.launch({
            executablePath: CHROMIUM,
            headless: true,
            timeout: WAIT_MS,
            args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
                   '--disable-background-networking', '--disable-dev-shm-usage'],
        }), 'Chromium starting', WAIT_MS + 5000);
        check(true, `Chromium ${browser.version()} started`);
        const page = await browser.newPage({viewport: {width: 800, height: 400}});
        page.on('console', (m) => console.log(`  (page: ${m.text()})`));
        await page.goto(`http://127.0.0.1:${webPort}/?port=${wsPort}`, {timeout: WAIT_MS});
        await page.waitForFunction(() => window.tern.subscribed || window.tern.errors.length,
                                   null, {timeout: WAIT_MS});
        const state = await page.evaluate(() => window.tern);
        check(state.connected && state.subscribed && !state.errors.length,
              `the page connected over ws:// and subscribed (${JSON.stringify(state.errors)})`);

        // tern-sub over ws:// waits for the echo; tern-pub over mqtt:// sends to the page.
        const sub = runTool(subBin, ['-L', `ws://127.0.0.1:${wsPort}/`, '-t', 'browser/out',
                                     '-q', '1', '-C', '1', '-W', '20'], 25000);
        await sleep(700);
        const pub = await runTool(pubBin, ['-h', '127.0.0.2', '-p', String(mqttPort), '-t',
                                           'browser/in', '-q', '1', '-m', 'hello-from-tern-pub']);
        check(pub.code === 0, `tern-pub published to browser/in (exit ${pub.code} ${pub.stderr})`);
        await page.waitForFunction(() => window.tern.received.length > 0, null, {timeout: WAIT_MS})
            .catch(() => {});
        const received = await page.evaluate(() => window.tern.received);
        check(received.length === 1 && received[0] === 'hello-from-tern-pub',
              `the page received what tern-pub published (${JSON.stringify(received)})`);
        const echoed = await sub;
        check(echoed.code === 0 && echoed.stdout.trim() === 'echo:hello-from-tern-pub',
              `tern-sub received the page's echo (exit ${echoed.code}: ${echoed.stdout.trim()} ` +
                  `${echoed.stderr.trim()})`);
        await page.waitForFunction(
            () => document.getElementById('log').children.length >= 2, null, {timeout: 5000})
            .catch(() => {});
        const shot = join(outDir, 'browser_test.png');
        await page.screenshot({path: shot, timeout: WAIT_MS});
        check(existsSync(shot) && statSync(shot).size > 1000, `screenshot saved: ${shot}`);
        check(/tern-browser connected from/.test(broker.log()), 'the broker logged the browser client');
    } catch (e) {
        check(false, `exception: ${e.stack || e}`);
    } finally {
        if (browser) await withTimeout(browser.close(), 'Chromium closing').catch(() => {});
        if (web) web.close();
        if (broker) {
            const code = await broker.stop();
            check(code === 0, `broker exited cleanly on SIGTERM (${code})`);
        }
        clearTimeout(watchdog);
    }
    return report(broker ? broker.log() : '');
}

main().then((code) => process.exit(code), (e) => {
    console.log(`FAIL: ${e.stack || e}`);
    process.exit(1);
});
