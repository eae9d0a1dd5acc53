#!/usr/bin/env python3
"""The children the stress suite runs: deterministic printers and misbehaving processes.

Standard library only; run as `python children.py MODE ARGS...`. The byte-producing
functions are imported by the tests too, so a test knows exactly what a child prints.

With STRESS_GATE=<path> in the environment, chatty, bulk and sleep first wait until that
file exists (a start barrier: every task of a load test is running before any prints).

Modes:
  sleep SECONDS            sleep, print nothing
  chatty SEED LINES        LINES short lines, one write() each
  bulk SEED NBYTES         NBYTES of text lines in 64 KiB writes
  phased SEED LINES PHASES GATE   PHASES x LINES chatty lines; before phase k > 0 wait
                           until the file GATE.<k-1> exists
  ticker SEED              a line every 5 ms until killed, with a sleeping grandchild
  ignore_term              ignore SIGTERM (grandchild too), print "ready", sleep forever
  fork_exit hold|close     fork a grandchild (same group) that sleeps forever, either
                           holding stdout/stderr or with them closed; the leader exits 0
  close_stdout GATE both|out   print, close stdout (and stderr with `both`), then block
                           reading the FIFO GATE; exit 0 once it has been written
  escape DIR stay|exit     start four processes that leave the task's group, each writing
                           its pid to DIR/<kind>: `setsid sleep &` and `set -m; sleep &`
                           (through bash), a Python child with start_new_session=True, and a
                           double-forked daemon that ignores SIGTERM; print "escaped", then
                           sleep forever (stay) or exit 0 (exit)
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

BLOCK = 64 * 1024


def chatty_line(seed: str, i: int) -> bytes:
    return f"{seed}:{i:06d}:the quick brown fox\n".encode()


def chatty_bytes(seed: str, lines: int) -> bytes:
    return b"".join(chatty_line(seed, i) for i in range(lines))


def _base_block(seed: str) -> bytes:
    lines: list[str] = []
    h = hashlib.sha256(seed.encode()).hexdigest()
    while sum(len(x) for x in lines) < BLOCK:
        h = hashlib.sha256(h.encode()).hexdigest()
        lines.append(h + "\n")
    return "".join(lines).encode()[:BLOCK]


def bulk_bytes(seed: str, nbytes: int) -> bytes:
    """Block k is the seed's block with k written over its first 16 bytes."""
    base = _base_block(seed)
    out = bytearray()
    k = 0
    while len(out) < nbytes:
        out += f"{k:015d}\n".encode() + base[16:]
        k += 1
    return bytes(out[:nbytes])


def ticker_line(seed: str, i: int) -> bytes:
    return f"{seed} tick {i}\n".encode()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _sleep_forever() -> None:
    while True:
        signal.pause()


def _gate() -> None:
    gate = os.environ.get("STRESS_GATE")
    while gate and not os.path.exists(gate):
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode in ("sleep", "chatty", "bulk"):
        _gate()
    if mode == "sleep":
        time.sleep(float(argv[1]))
        return 0
    if mode == "chatty":
        seed, lines = argv[1], int(argv[2])
        for i in range(lines):
            _write_all(1, chatty_line(seed, i))
        return 0
    if mode == "bulk":
        seed, nbytes = argv[1], int(argv[2])
        data = bulk_bytes(seed, nbytes)
        for pos in range(0, len(data), BLOCK):
            _write_all(1, data[pos : pos + BLOCK])
        return 0
    if mode == "phased":
        seed, lines, phases, gate = argv[1], int(argv[2]), int(argv[3]), argv[4]
        for k in range(phases):
            while k and not os.path.exists(f"{gate}.{k - 1}"):
                time.sleep(0.01)
            for i in range(k * lines, (k + 1) * lines):
                _write_all(1, chatty_line(seed, i))
        return 0
    if mode == "ticker":
        seed = argv[1]
        if os.fork() == 0:
            _sleep_forever()
        i = 0
        while True:
            _write_all(1, ticker_line(seed, i))
            i += 1
            time.sleep(0.005)
    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.fork() == 0:
            _sleep_forever()
        _write_all(1, b"ready\n")
        _sleep_forever()
    if mode == "fork_exit":
        pid = os.fork()
        if pid == 0:
            if argv[1] == "close":
                for fd in (0, 1, 2):
                    os.close(fd)
            _sleep_forever()
        _write_all(1, f"grandchild {pid}\n".encode())
        return 0
    if mode == "close_stdout":
        gate, which = argv[1], argv[2]
        _write_all(1, b"before close\n")
        os.close(1)
        if which == "both":
            os.close(2)
        with open(gate, "rb") as f:  # blocks until the test opens the FIFO to write
            f.read()
        return 0
    if mode == "escape":
        _escape(argv[1])
        _write_all(1, b"escaped\n")
        if argv[2] == "exit":
            return 0
        _sleep_forever()
    raise SystemExit(f"unknown mode {mode!r}")


ESCAPE_KINDS = ("setsid", "set_m", "new_session", "daemon")


def _escape(directory: str) -> None:
    d = directory
    # Each pid file appears whole (written, then renamed), so a reader never sees it empty.
    # (dash turns job control off without a tty; bash's `set -m` gives the job its own group)
    for kind, script in (("setsid", "setsid sleep 1000 &"), ("set_m", "set -m; sleep 1000 &")):
        sh = f"{script} echo $! > {d}/{kind}.tmp; mv {d}/{kind}.tmp {d}/{kind}"
        subprocess.run(["/bin/bash", "-c", sh], check=True, stderr=subprocess.DEVNULL)
    sleeper = [sys.executable, "-c", "import time; time.sleep(1000)"]
    child = subprocess.Popen(sleeper, start_new_session=True)
    _write_pid(f"{d}/new_session", child.pid)
    pid = os.fork()
    if pid == 0:  # the classic daemon: fork, setsid, fork, the middle one exits
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            for fd in (0, 1, 2):
                os.close(fd)
            _write_pid(f"{d}/daemon", os.getpid())
            _sleep_forever()
        os._exit(0)
    os.waitpid(pid, 0)
    while not all(os.path.exists(f"{d}/{k}") for k in ESCAPE_KINDS):
        time.sleep(0.005)


def _write_pid(path: str, pid: int) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(str(pid))
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
