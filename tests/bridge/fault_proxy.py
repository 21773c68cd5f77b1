"""A TCP proxy for the bridge fault tests: forwards a free loopback port to a broker and, in
chaos(), cuts (FIN), resets (RST) and stalls the live connections at random moments."""

import random
import select
import socket
import struct
import threading
import time

HOST = "127.0.0.1"


class FaultyProxy:
    """Forwards 127.0.0.1:port to upstream; chaos() breaks the live connections."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.pairs = []
        self.lock = threading.Lock()
        self.stalled = threading.Event()
        self.refusing = False  # set: new connections are closed at once (the upstream is "down")
        self.running = True
        self.faults = {"cut": 0, "reset": 0, "stall": 0}
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.running:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                down.close()
                continue
            try:
                up = socket.create_connection((HOST, self.upstream), 5)
            except OSError:
                down.close()
                continue
            with self.lock:
                self.pairs.append((down, up))
            threading.Thread(target=self._pump, args=(down, up), daemon=True).start()

    def _pump(self, a, b):
        socks = [a, b]
        try:
            while self.running:
                r, _, _ = select.select(socks, [], [], 0.05)
                if self.stalled.is_set():
                    continue  # bytes wait in the kernel buffers
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for s in socks:
                try:
                    s.close()
                except OSError:
                    pass

    def _break(self, reset):
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    if reset:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    else:
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
        return len(pairs)

    def chaos(self, until):
        rng = random.Random(7)
        while time.time() < until:
            time.sleep(rng.uniform(0.2, 0.5))
            kind = rng.choice(["cut", "reset", "stall"])
            if kind == "stall":
                self.stalled.set()
                time.sleep(rng.uniform(0.3, 1.0))
                self.stalled.clear()
                self.faults["stall"] += 1
            elif self._break(kind == "reset"):
                self.faults[kind] += 1

    def refuse(self, on):
        """On: the live connections are reset and new ones closed; off: forwarding again."""
        self.refusing = on
        if on:
            self._break(True)

    def close(self):
        self.running = False
        self.listener.close()
        self._break(True)
