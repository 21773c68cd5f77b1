// Interop: MQTT.js over WebSocket (ws://) against tern-broker's `protocol websockets`
// listeners on free loopback ports, and the WebSocket layer itself driven by the `ws`
// package (MQTT.js's own dependency) and by raw TCP:
//   MQTT.js 3.1.1 and 5.0, QoS 0/1/2 and a retained message, any path on one listener and
//   only /mqtt on another (404 elsewhere); subprotocol mqtt selected when offered among
//   others, a client offering none accepted, one offering only others refused; packets split
//   over several messages and several packets in one message; a text message and a frame
//   announcing 2^40 bytes close the connection, and the broker keeps serving.
//
// usage: node mqttjs_ws_test.mjs path/to/tern-broker
// exit:  0 all passed, 1 a check failed, 2 usage, 77 MQTT.js not installed (skipped)

import net from 'node:net';
import crypto from 'node:crypto';

import {check, report, requireJs, sleep, startBroker, TIMEOUT_MS, withTimeout} from './ws_support.mjs';

const WATCHDOG_MS = 150000;
const mqtt = requireJs('mqtt');
const WebSocket = requireJs('ws');
if (!mqtt || !WebSocket) {
    console.log('SKIP: MQTT.js (and ws) not installed in tests/interop/js (run scripts/setup)');
    process.exit(77);
}

// An MQTT.js client over `url`; resolves once connected, with its messages queued.
async function open(url, opts = {}) {
    const client = mqtt.connect(url, {
        reconnectPeriod: 0,
        connectTimeout: TIMEOUT_MS,
        keepalive: 30,
        ...opts,
    });
    const messages = [];
    client.on('message', (topic, payload, packet) => messages.push({topic, payload, packet}));
    client.on('error', () => {});
    await withTimeout(new Promise((resolve, reject) => {
        client.once('connect', resolve);
        client.once('error', reject);
        client.once('close', () => reject(new Error(`${url}: closed before CONNACK`)));
    }), `CONNACK over ${url}`);
    client.nextMessage = async () => {
        for (let i = 0; i < TIMEOUT_MS / 20 && !messages.length; i++) await sleep(20);
        return messages.shift() ?? null;
    };
    return client;
}

async function mqttjsRoundTrips(port) {
    for (const version of [4, 5]) {
        const url = `ws://127.0.0.1:${port}/any/path`;
        const sub = await open(url, {protocolVersion: version, clientId: `wsjs-sub-${version}`});
        const pub = await open(`ws://127.0.0.1:${port}`, {protocolVersion: version});
        check(true, `MQTT.js ${version === 4 ? '3.1.1' : '5.0'} connects over ws:// (any path)`);
        await withTimeout(sub.subscribeAsync('ws/js/#', {qos: 2}), 'SUBACK');
        for (const qos of [0, 1, 2]) {
            const payload = `qos${qos}-v${version}-` + 'x'.repeat(qos * 5000);
            await withTimeout(pub.publishAsync(`ws/js/${qos}`, payload, {qos}), 'publish');
            const m = await sub.nextMessage();
            check(m && m.topic === `ws/js/${qos}` && m.payload.toString() === payload &&
                      m.packet.qos === qos,
                  `MQTT.js ${version}: QoS ${qos} over WebSocket (${payload.length} bytes)`);
        }
        await withTimeout(pub.publishAsync('ws/js/retained', 'kept', {qos: 1, retain: true}), 'pub');
        const late = await open(url, {protocolVersion: version});
        await withTimeout(late.subscribeAsync('ws/js/retained', {qos: 1}), 'SUBACK');
        const r = await late.nextMessage();
        check(r && r.payload.toString() === 'kept' && r.packet.retain,
              `MQTT.js ${version}: retained message on subscribe`);
        await withTimeout(pub.publishAsync('ws/js/retained', '', {qos: 1, retain: true}), 'clear');
        for (const c of [sub, pub, late]) await withTimeout(c.endAsync(), 'end');
    }
}

async function pathListener(port, broker) {
    const c = await open(`ws://127.0.0.2:${port}/mqtt?token=1`);
    check(true, 'websockets_path /mqtt: MQTT.js connects to /mqtt (query ignored)');
    await withTimeout(c.endAsync(), 'end');
    try {
        const bad = await open(`ws://127.0.0.2:${port}/other`);
        bad.end(true);
        check(false, 'websockets_path /mqtt: /other refused');
    } catch (e) {
        await sleep(100);
        check(/refused: WebSocket request for another path \(GET \/other/.test(broker.log()),
              `websockets_path /mqtt: /other refused (${e.message}), logged by the broker`);
    }
}

// A raw WebSocket from the `ws` package offering `protocols`; resolves when open or refused.
function rawSocket(port, protocols) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, protocols);
    ws.binaryType = 'nodebuffer';
    ws.received = Buffer.alloc(0);
    ws.on('message', (data, isBinary) => {
        ws.received = Buffer.concat([ws.received, data]);
        ws.lastBinary = isBinary;
    });
    ws.closed = new Promise((r) => ws.on('close', (code) => r(code)));
    ws.on('error', () => {});
    return withTimeout(new Promise((resolve) => {
        ws.once('open', () => resolve({ws, open: true}));
        ws.once('unexpected-response', (req, res) => resolve({ws, open: false, status: res.statusCode}));
        ws.once('error', (e) => resolve({ws, open: false, error: e.message}));
    }), 'WebSocket open');
}

async function waitBytes(ws, n) {
    for (let i = 0; i < TIMEOUT_MS / 20 && ws.received.length < n; i++) await sleep(20);
    return ws.received;
}

const CONNECT311 = Buffer.from('100c00044d5154540402003c0000', 'hex');
const CONNACK = Buffer.from('20020000', 'hex');
const PINGREQ = Buffer.from('c000', 'hex');
const SUBSCRIBE = Buffer.from('8206000100016100', 'hex');  // id 1, "a", QoS 0

async function subprotocols(port) {
    const a = await rawSocket(port, ['foo', 'mqtt']);
    check(a.open && a.ws.protocol === 'mqtt', `offered [foo, mqtt]: 'mqtt' selected (${a.ws.protocol})`);
    a.ws.close();
    const b = await rawSocket(port, []);
    check(b.open && b.ws.protocol === '', 'offered none: accepted, no subprotocol');
    if (b.open) {
        b.ws.send(CONNECT311);
        const got = await waitBytes(b.ws, 4);
        check(got.subarray(0, 4).equals(CONNACK) && b.ws.lastBinary,
              'offered none: CONNECT answered by CONNACK in a binary message');
        b.ws.close();
    }
    const c = await rawSocket(port, ['foo', 'bar']);
    check(!c.open && c.status === 400, `offered only [foo, bar]: refused (HTTP ${c.status})`);
}

async function framing(port) {
    const {ws, open} = await rawSocket(port, ['mqtt']);
    if (!check(open, 'raw ws client opens')) return;
    // CONNECT in three messages, then PINGREQ and SUBSCRIBE in one.
    ws.send(CONNECT311.subarray(0, 1));
    ws.send(CONNECT311.subarray(1, 7));
    ws.send(CONNECT311.subarray(7));
    const connack = await waitBytes(ws, 4);
    check(connack.subarray(0, 4).equals(CONNACK), 'CONNECT split over three messages: CONNACK');
    ws.send(Buffer.concat([PINGREQ, SUBSCRIBE]));
    const more = await waitBytes(ws, 4 + 2 + 5);
    check(more.subarray(4).equals(Buffer.from('d000900300010' + '0', 'hex')),
          `PINGREQ and SUBSCRIBE in one message: PINGRESP and SUBACK (${more.subarray(4).toString('hex')})`);
    // A text message closes the connection (MQTT 6.0.0-1).
    ws.send('not binary');
    const code = await withTimeout(ws.closed, 'close after a text message');
    check(true, `a text message closes the connection (close code ${code})`);
}

// The upgrade by hand, then a frame header announcing 2^40 bytes: closed at once.
function hugeFrame(port) {
    return withTimeout(new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        let buf = Buffer.alloc(0), upgraded = false;
        s.on('data', (d) => {
            buf = Buffer.concat([buf, d]);
            if (!upgraded && buf.includes('\r\n\r\n')) {
                upgraded = buf.toString().startsWith('HTTP/1.1 101');
                // FIN + binary, MASK + 127, 64-bit length 2^40, mask key, then a few bytes.
                const header = Buffer.from('82ff00000100000000000102030400000000', 'hex');
                s.write(header);
            }
        });
        s.on('close', () => resolve({upgraded, closed: true}));
        s.on('error', () => {});
        s.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
                `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n` +
                'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n');
    }), 'the broker closing the huge frame');
}

async function main() {
    const binary = process.argv[2];
    if (!binary) {
        console.log('usage: node mqttjs_ws_test.mjs path/to/tern-broker');
        return 2;
    }
    const watchdog = setTimeout(() => {
        console.log(`FAIL: watchdog: the run took over ${WATCHDOG_MS} ms`);
        process.exit(1);
    }, WATCHDOG_MS);
    let broker = null;
    try {
        broker = await startBroker(binary, [
            'allow_anonymous true',
            'listener 0 127.0.0.1', 'protocol websockets',
            'listener 0 127.0.0.2', 'protocol websockets', 'websockets_path /mqtt',
            'max_packet_size 65536', ''].join('\n'));
        const [anyPort, pathPort] = broker.ports;
        for (const [name, f, port] of [['MQTT.js round trips', mqttjsRoundTrips, anyPort],
                                       ['websockets_path', pathListener, pathPort],
                                       ['subprotocols', subprotocols, anyPort],
                                       ['framing', framing, anyPort]]) {
            try {
                await f(port, broker);
            } catch (e) {
                check(false, `${name}: ${e.stack || e}`);
            }
        }
        const huge = await hugeFrame(anyPort);
        check(huge.upgraded && huge.closed, 'a frame announcing 2^40 bytes (max_packet_size 65536) is closed');
        // Still serving.
        const after = await open(`ws://127.0.0.1:${anyPort}/`);
        check(true, 'the broker still serves after the hostile frames');
        await withTimeout(after.endAsync(), 'end');
        check(broker.running(), 'broker still running');
    } catch (e) {
        check(false, `exception: ${e.stack || e}`);
    } finally {
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
