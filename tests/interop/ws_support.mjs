// What the WebSocket interop tests (mqttjs_ws_test.mjs, browser_test.mjs) share: checks,
// bounded waits, and a tern-broker started from a configuration text on free loopback ports.

import {spawn} from 'node:child_process';
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import {tmpdir} from 'node:os';
import {join} from 'node:path';

export const TIMEOUT_MS = 10000;  // per wait; generous for the sanitizer build on a busy machine

// A package pinned in tests/interop/js (scripts/setup installs them), or null.
export function requireJs(name) {
    try {
        return createRequire(new URL('./js/package.json', import.meta.url))(name);
    } catch (e) {
        return null;
    }
}

export const results = {passed: 0, failures: []};
export function check(cond, what) {
    console.log((cond ? 'PASS: ' : 'FAIL: ') + what);
    if (cond)
        results.passed++;
    else
        results.failures.push(what);
    return cond;
}

export function withTimeout(promise, what, ms = TIMEOUT_MS) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// tern-broker -c (a file holding `config`) -v; resolves to {ports: [one per address of the
// first log line, in order], log(), stop()}. Killed at process exit in any case.
export async function startBroker(binary, config) {
    const dir = mkdtempSync(join(tmpdir(), 'tern-ws-'));
    // TERN_BROKER_THREADS=N (CTest's *.threads2 variants): `threads N`.
    const threads = process.env.TERN_BROKER_THREADS;
    writeFileSync(join(dir, 'tern.conf'), (threads ? `threads ${threads}\n` : '') + config);
    const proc = spawn(binary, ['-c', join(dir, 'tern.conf'), '-v'],
                       {stdio: ['ignore', 'ignore', 'pipe']});
    let log = '';
    const kill = () => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
        rmSync(dir, {recursive: true, force: true});
    };
    process.on('exit', kill);
    const ports = new Promise((resolve, reject) => {
        proc.on('error', reject);
        proc.on('exit', (code, sig) => reject(new Error(`broker exited early (${code ?? sig})`)));
        proc.stderr.on('data', (chunk) => {
            log += chunk.toString();
            if (!log.includes('\n')) return;
            const first = log.split('\n')[0];
            const found = [...first.matchAll(/127\.0\.0\.\d+:(\d+)/g)].map((m) => Number(m[1]));
            if (found.length)
                resolve(found);
            else
                reject(new Error(`unexpected first line: ${first}`));
        });
    });
    const broker = {
        proc,
        ports: await withTimeout(ports, 'broker reporting its ports'),
        log: () => log,
        running: () => proc.exitCode === null && proc.signalCode === null,
        async stop() {
            if (!broker.running()) return proc.exitCode;
            const exited = new Promise((r) => proc.once('exit', (code, sig) => r(code ?? sig)));
            proc.kill('SIGTERM');
            try {
                return await withTimeout(exited, 'broker exiting on SIGTERM');
            } catch (e) {
                kill();
                return e.message;
            } finally {
                rmSync(dir, {recursive: true, force: true});
            }
        },
    };
    return broker;
}

// Runs a Tern tool with a time bound; resolves to {code, stdout, stderr}.
export function runTool(binary, args, ms = TIMEOUT_MS) {
    return new Promise((resolve) => {
        const p = spawn(binary, args, {stdio: ['ignore', 'pipe', 'pipe']});
        let stdout = '', stderr = '';
        p.stdout.on('data', (c) => (stdout += c));
        p.stderr.on('data', (c) => (stderr += c));
        const timer = setTimeout(() => p.kill('SIGKILL'), ms);
        // 'close', not 'exit': the tool's output pipes may still hold its last lines at exit.
        p.on('close', (code, sig) => {
            clearTimeout(timer);
            resolve({code: code ?? sig, stdout, stderr});
        });
        p.on('error', (e) => {
            clearTimeout(timer);
            resolve({code: -1, stdout, stderr: String(e)});
        });
    });
}

export function report(brokerLog) {
    const {passed, failures} = results;
    if (failures.length) {
        console.log('--- tern-broker log ---\n' + brokerLog + '--- end of log ---');
        console.log('failed checks:\n  ' + failures.join('\n  '));
    }
    console.log(`${passed} passed, ${failures.length} failed`);
    return failures.length ? 1 : 0;
}
