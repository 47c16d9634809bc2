#!/usr/bin/env python3
"""accel.py: what tcpfwd does to real transfers, measured in network namespaces.

Run by `make netlab` (root; the netlab testbed of ../shared/netlab). Not part of `make test`.

    tests/netlab/accel.py [PART...]      PART: accel near window blackhole dead (the default,
                                         ~11 minutes) | far relays buffers segsize | all

Topology (netlab's README): client C, router M, servers S and S2, each link a userspace
emulator (linkem: delay, loss, rate, silent drop of big packets, silent cut).

  accel      C -20 ms- M -20 ms- S (RTT 80 ms, each half 40 ms), 50 Mbit/s, 0.25 % loss per
             link and direction, cubic everywhere: download direct C<-S against through tcpfwd
             in M; the same with bbr on M's sockets (--congestion bbr when the binary has it,
             else the sysctl of M's namespace); an upload with bbr on M's target leg only
             (--congestion with a one-leg syntax when the binary has one).
  near       the relay next to the lossy hop: C -5 ms, 1 % loss- M -35 ms clean- S; download
             direct, through tcpfwd in M, and with bbr on M's client leg (the one that sends).
  window     the same 80 ms path without loss, socket buffers capped at 256 KiB everywhere
             (tcp_rmem / tcp_wmem max): a window-limited path.
  blackhole  C -5 ms- M -5 ms- S, packets over 1,400 bytes dropped silently on C-M (a PMTU
             black hole: no ICMP comes back): a 20 MiB download direct, through tcpfwd on the
             server side (in S) and on the client side (a local relay in C), each without and
             with --mss 1360.
  dead       tcpfwd in M forwards to S2; the M-S2 link is cut silently while a client sends
             (data in flight) and while another is idle: how long until tcpfwd gives each up,
             today (keepalive interval 10 s x 6 probes, the kernel's tcp_retries2) and with
             --user-timeout 5s / a keepalive interval and count where the binary has them.
  far        (extra) the mirror of near for the target leg: C -35 ms clean- M -5 ms, 1 %
             loss- S, an upload, bbr on M's target leg.
  relays     (extra) two tcpfwds, one in C and one in S, the whole 80 ms lossy path between
             them: cubic against bbr between the relays.
  buffers    (extra) 80 ms, no loss, endpoints' default buffers: M's socket buffers capped
             (tcp_wmem / tcp_rmem in M's namespace, standing in for SO_SNDBUF / SO_RCVBUF) and
             tcp_notsent_lowat in M: throughput and the kernel memory the relay holds.
  segsize    (extra) 80 ms, no loss: --segment-size 1000 and --mss 1000 against the default,
             throughput and the average IP packet M sends toward C (linkem's counters).

Rows that need an option this build lacks print "skipped: option not in this build".
Throughput figures are medians of ACCEL_REPS (3) runs of ACCEL_SECS (20) seconds.
Environment: TCPFWD_BIN (default target/release/tcpfwd), SHARED (../shared), NETLAB_DIR
(/tmp/netlab: where the testbed is copied and linkem built), NETLAB_PREFIX (nl), ACCEL_RATE (50
Mbit/s), ACCEL_KEEPALIVE (the option text for idle 5 s, interval 1 s, 3 probes, when detection
fails), ACCEL_CC_TARGET (the option text for bbr on the target leg only).
The markdown table goes to stdout; details (every run) to target/netlab/accel-*.json.
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SELF = os.path.abspath(__file__)
TCPFWD = os.environ.get("TCPFWD_BIN", os.path.join(REPO, "target/release/tcpfwd"))
SHARED = os.path.join(REPO, os.environ.get("SHARED", "../shared"))
NETLAB_DIR = os.environ.get("NETLAB_DIR", "/tmp/netlab")
PREFIX = os.environ.get("NETLAB_PREFIX", "nl")
RUN = os.path.join(NETLAB_DIR, f"run-accel-{PREFIX}")
NETLAB = os.path.join(NETLAB_DIR, "netlab")
REPS = int(os.environ.get("ACCEL_REPS", "3"))
SECS = float(os.environ.get("ACCEL_SECS", "15"))
RATE = int(os.environ.get("ACCEL_RATE", "50"))
DEFAULT_PARTS = ["accel", "near", "window", "blackhole", "dead"]
ALL_PARTS = DEFAULT_PARTS + ["far", "relays", "buffers", "segsize"]
SKIPPED = "skipped: option not in this build"

S, S2, M_C = "10.99.2.2", "10.99.3.2", "10.99.1.2"  # S, S2, and M's address toward C
BENCH_PORT = 5000
MIB20 = 20 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# The bench programs, run inside the namespaces as `accel.py _serve | _get | _put | _hold`.

CHUNK = bytes(256 * 1024)


def bench_serve(port):
    """SEND n: send n bytes (0: until the client closes). RECV: count bytes until EOF, answer
    "<bytes>". HOLD: echo whatever comes."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(128)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=bench_handle, args=(c,), daemon=True).start()


def bench_handle(c):
    try:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        line = b""
        while not line.endswith(b"\n"):
            b = c.recv(1)
            if not b:
                return
            line += b
        words = line.decode().split()
        if words[0] == "SEND":
            n, sent = int(words[1]), 0
            while n == 0 or sent < n:
                k = len(CHUNK) if n == 0 else min(len(CHUNK), n - sent)
                c.sendall(CHUNK[:k])
                sent += k
            c.shutdown(socket.SHUT_WR)
            while c.recv(65536):
                pass
        elif words[0] == "RECV":
            total = 0
            while True:
                b = c.recv(1 << 20)
                if not b:
                    break
                total += len(b)
            c.sendall(f"{total}\n".encode())
        elif words[0] == "HOLD":
            while True:
                b = c.recv(65536)
                if not b:
                    return
                c.sendall(b)
    except OSError:
        pass
    finally:
        c.close()


def bench_get(host, port, secs, nbytes):
    """Download for secs seconds (or nbytes): one JSON line, mbps from the connect."""
    t0 = time.monotonic()
    s = socket.create_connection((host, port), timeout=10)
    s.settimeout(0.5)
    s.sendall(f"SEND {nbytes}\n".encode())
    buf = bytearray(1 << 20)
    total, done, err = 0, False, None
    while time.monotonic() - t0 < secs:
        try:
            n = s.recv_into(buf)
        except socket.timeout:
            continue
        except OSError as e:
            err = str(e)
            break
        if n == 0:
            done = True
            break
        total += n
        if nbytes and total >= nbytes:
            done = True
            break
    dt = time.monotonic() - t0
    s.close()
    print(json.dumps({"bytes": total, "secs": round(dt, 3), "mbps": round(total * 8 / dt / 1e6, 3),
                      "done": done, "error": err}), flush=True)


def bench_put(host, port, secs):
    """Upload for secs seconds; the server counts what arrived. mbps: its count over the time
    from the connect to its answer (what sat in buffers at the end is drained and counted)."""
    t0 = time.monotonic()
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"RECV\n")
    s.settimeout(0.5)
    data = bytes(65536)
    while time.monotonic() - t0 < secs:
        try:
            s.send(data)
        except socket.timeout:
            continue
    s.shutdown(socket.SHUT_WR)
    s.settimeout(60)
    reply = b""
    try:
        while not reply.endswith(b"\n"):
            b = s.recv(100)
            if not b:
                break
            reply += b
    except OSError:
        pass
    dt = time.monotonic() - t0
    total = int(reply or b"0")
    print(json.dumps({"bytes": total, "secs": round(dt, 3), "mbps": round(total * 8 / dt / 1e6, 3),
                      "done": bool(reply)}), flush=True)


def bench_hold(host, port, every, cap):
    """HOLD: idle (every = 0) or 1 KiB every `every` s; prints the monotonic times of the
    connect and of the end, and how it ended (eof, error, or cap)."""
    s = socket.create_connection((host, port), timeout=10)
    t_conn = time.monotonic()
    s.sendall(b"HOLD\n")
    s.settimeout(0.1)
    end, nxt = "cap", (t_conn + every if every else None)
    while time.monotonic() - t_conn < cap:
        try:
            if nxt and time.monotonic() >= nxt:
                s.send(bytes(1024))
                nxt += every
            if not s.recv(65536):
                end = "eof"
                break
        except socket.timeout:
            continue
        except OSError as e:
            end = f"error: {e.strerror or e}"
            break
    print(json.dumps({"t_conn": t_conn, "t_end": time.monotonic(), "end": end}), flush=True)


# ---------------------------------------------------------------------------------------------
# The testbed.

_procs = []


def log(msg):
    print(f"accel: {msg}", file=sys.stderr, flush=True)


def sh(cmd, check=True):
    r = subprocess.run(cmd, shell=isinstance(cmd, str), text=True, capture_output=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def netlab(*args, check=True):
    env = dict(os.environ, NETLAB_PREFIX=PREFIX, NETLAB_RUN=RUN)
    r = subprocess.run([NETLAB, *args], text=True, capture_output=True, env=env)
    if check and r.returncode != 0:
        raise RuntimeError(f"netlab {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def nsx(node, *cmd):
    return ["ip", "netns", "exec", f"{PREFIX}-{node}", *cmd]


def run_in(node, *cmd, timeout=None):
    r = subprocess.run(nsx(node, *cmd), text=True, capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{node}: {' '.join(cmd)} failed: {r.stderr.strip()}")
    return r.stdout


def sysctl(node, **kv):
    run_in(node, "sysctl", "-qw", *[f"{k.replace('__', '.')}={v}" for k, v in kv.items()])


def start(node, cmd, logname):
    """Starts cmd (a list) in node's namespace; remembered and stopped by its pid."""
    f = open(os.path.join(RUN, logname), "w")
    p = subprocess.Popen(nsx(node, *cmd), stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    p.logpath = f.name
    _procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in _procs:
        _procs.remove(p)


def stop_all():
    for p in list(_procs):
        stop(p)


def wait_port(node, host, port, timeout=5.0):
    code = (f"import socket,sys,time\nt=time.time()+{timeout}\n"
            f"while time.time()<t:\n try: socket.create_connection(('{host}',{port}),1).close(); sys.exit(0)\n"
            f" except OSError: time.sleep(0.1)\nsys.exit(1)")
    if subprocess.run(nsx(node, sys.executable, "-c", code)).returncode != 0:
        raise RuntimeError(f"{host}:{port} not reachable from {node}")


def up(cm, ms, ms2="--delay 5", cc="cubic"):
    netlab("down", check=False)
    netlab("up", "--cm", cm, "--ms", ms, "--ms2", ms2, "--cc", cc)


def server(node="s"):
    p = start(node, [sys.executable, SELF, "_serve", str(BENCH_PORT)], f"bench-{node}.log")
    wait_port(node, "127.0.0.1", BENCH_PORT)
    return p


def fwd(node, listen, target, opts=(), name="fwd"):
    p = start(node, [TCPFWD, listen, target, *opts], f"{name}-{node}.log")
    host, port = listen.rsplit(":", 1)
    wait_port(node, host, int(port))
    return p


def get(node, host, port, secs=None, nbytes=0):
    out = run_in(node, sys.executable, SELF, "_get", host, str(port), str(secs or SECS), str(nbytes),
                 timeout=(secs or SECS) + 30)
    return json.loads(out.strip().splitlines()[-1])


def put(node, host, port, secs=None):
    out = run_in(node, sys.executable, SELF, "_put", host, str(port), str(secs or SECS),
                 timeout=(secs or SECS) + 90)
    return json.loads(out.strip().splitlines()[-1])


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------------------------------------
# What this build offers.

HELP = ""


def check_opts(rule_opts):
    """True when `tcpfwd --check` accepts a rule with these options."""
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write("127.0.0.1:1 127.0.0.1:2 " + " ".join(rule_opts) + "\n")
    try:
        r = subprocess.run([TCPFWD, "--check", "--config", f.name], capture_output=True, text=True)
        return r.returncode == 0
    finally:
        os.unlink(f.name)


def has(option):
    return re.search(re.escape(option) + r"\b", HELP) is not None


def first_accepted(candidates, env):
    if os.environ.get(env):
        return os.environ[env].split()
    for c in candidates:
        if check_opts(c):
            return c
    return None


def cc_one_leg(leg):
    """The options for bbr on one leg only (leg: target or client), or None."""
    if not has("--congestion"):
        return None
    return first_accepted([["--congestion", f"{leg}=bbr"], ["--congestion", f"{leg}:bbr"],
                           ["--congestion-" + leg, "bbr"]], f"ACCEL_CC_{leg.upper()}")


def keepalive_probes():
    """The options for keepalive idle 5 s, then probes 1 s apart, 3 of them, or None."""
    if not re.search(r"keepalive[^\n]*(interval|count|probe|/)", HELP, re.I) and not os.environ.get("ACCEL_KEEPALIVE"):
        return None
    return first_accepted([["--keepalive", "5s/1s/3"], ["--keepalive", "5/1/3"], ["--keepalive", "5s,1s,3"],
                           ["--keepalive", "5s:1s:3"],
                           ["--keepalive", "5s", "--keepalive-interval", "1s", "--keepalive-count", "3"],
                           ["--keepalive", "5s", "--keepalive-interval", "1s", "--keepalive-probes", "3"],
                           ["--keepalive", "5s", "--keepalive-intvl", "1s", "--keepalive-cnt", "3"]],
                          "ACCEL_KEEPALIVE")


# ---------------------------------------------------------------------------------------------
# The parts. Each appends rows: (part, condition, result, note).

ROWS = []
DETAIL = {}


def row(part, cond, result, note=""):
    ROWS.append((part, cond, result, note))
    log(f"| {part} | {cond} | {result} | {note} |")


def fmt_mbps(runs):
    m = med([r["mbps"] for r in runs])
    each = ", ".join("%.1f" % r["mbps"] for r in runs)
    return m, f"{m:.2f} Mbit/s ({each})"


def measure(modes, key):
    """modes: {label: (fn, setup, teardown)}; REPS rounds, the order rotated each round."""
    runs = {m: [] for m in modes}
    names = list(modes)
    for rep in range(REPS):
        for m in names[rep % len(names):] + names[:rep % len(names)]:
            fn, setup, teardown = modes[m]
            ctx = setup() if setup else None
            try:
                r = fn()
            finally:
                if teardown:
                    teardown(ctx)
            runs[m].append(r)
            log(f"{key} {m}: {r}")
    DETAIL[key] = runs
    return runs


VIA = f"{M_C}:9000"


def relay(opts=(), m_bbr=False):
    """setup / teardown of tcpfwd in M (VIA -> S); m_bbr: M's namespace defaults to bbr."""
    def setup():
        if m_bbr:
            sysctl("m", net__ipv4__tcp_congestion_control="bbr")
        return fwd("m", VIA, f"{S}:{BENCH_PORT}", ["-q", *opts])

    def teardown(p):
        stop(p)
        sysctl("m", net__ipv4__tcp_congestion_control="cubic")
    return setup, teardown


def bbr_on(leg):
    """(tcpfwd options, m_bbr, how) for bbr on M's `leg` (client, target or both)."""
    one = cc_one_leg(leg) if leg != "both" else None
    if one:
        return one, False, f"`{' '.join(one)}` (that leg only)"
    if has("--congestion"):
        return ["--congestion", "bbr"], False, "`--congestion bbr`" + ("" if leg == "both" else " (both legs: no one-leg syntax found)")
    return [], True, "M's namespace bbr by sysctl (both legs: baseline, no option in this build)"


def transfer(part, path, direction, rows):
    """rows: [(label, kind)], kind: direct, via, or bbr-LEG; REPS rounds of each."""
    fn = get if direction == "down" else put
    arrow = "C←S" if direction == "down" else "C→S"
    modes, labels = {}, {}
    for label, kind in rows:
        if kind == "direct":
            modes[label] = (lambda: fn("c", S, BENCH_PORT), None, None)
            labels[label] = f"{path}; {'download' if direction == 'down' else 'upload'} direct {arrow}"
        elif kind == "via":
            modes[label] = (lambda: fn("c", M_C, 9000), *relay())
            labels[label] = "the same through tcpfwd in M (cubic)"
        else:
            opts, m_bbr, how = bbr_on(kind.split("-", 1)[1])
            modes[label] = (lambda: fn("c", M_C, 9000), *relay(opts, m_bbr))
            labels[label] = f"the same through tcpfwd in M, {label}: {how}"
    runs = measure(modes, f"{part}-{direction}")
    d = None
    for label, kind in rows:
        v, text = fmt_mbps(runs[label])
        if kind == "direct":
            d = v
            row(part, labels[label], text)
        else:
            row(part, labels[label], text, f"**{v / d:.2f}×** direct" if d else "")


def part_accel():
    loss = f"--delay 20 --rate {RATE} --loss 0.25"
    up(loss, loss)
    server()
    path = "2×40 ms (20 ms each link), 0.25 % loss per link, cubic everywhere"
    transfer("accel", path, "down", [("direct", "direct"), ("via", "via"), ("bbr on M", "bbr-both")])
    transfer("accel", path, "up", [("direct", "direct"), ("bbr on M's target leg", "bbr-target")])
    stop_all()


def part_near():
    """The relay next to the lossy hop: the endpoint's cubic runs on the clean long leg."""
    up(f"--delay 5 --rate {RATE} --loss 1", f"--delay 35 --rate {RATE}")
    server()
    path = "C-M 5 ms with 1 % loss, M-S 35 ms clean, cubic everywhere"
    transfer("near", path, "down", [("direct", "direct"), ("via", "via"),
                                    ("bbr on M's client leg", "bbr-client")])
    stop_all()


def part_far():
    """The mirror of near for the target leg: an upload, the lossy hop on M's target side."""
    up(f"--delay 35 --rate {RATE}", f"--delay 5 --rate {RATE} --loss 1")
    server()
    path = "C-M 35 ms clean, M-S 5 ms with 1 % loss, cubic everywhere"
    transfer("far", path, "up", [("direct", "direct"), ("via", "via"),
                                 ("bbr on M's target leg", "bbr-target")])
    stop_all()


def set_bufs(nodes, rmem_max, wmem_max):
    for n in nodes:
        sysctl(n, net__ipv4__tcp_rmem=f"4096 131072 {rmem_max}", net__ipv4__tcp_wmem=f"4096 16384 {wmem_max}")


def part_window():
    up(f"--delay 20 --rate {RATE}", f"--delay 20 --rate {RATE}")
    set_bufs("cms", 262144, 262144)
    server()
    f = fwd("m", VIA, f"{S}:{BENCH_PORT}", ["-q"])
    runs = measure({"direct": (lambda: get("c", S, BENCH_PORT), None, None),
                    "via": (lambda: get("c", M_C, 9000), None, None)}, "window")
    d, dtext = fmt_mbps(runs["direct"])
    v, vtext = fmt_mbps(runs["via"])
    row("window", "80 ms, no loss, buffers capped at 256 KiB everywhere; download, direct", dtext)
    row("window", "the same through tcpfwd in M", vtext, f"**{v / d:.2f}×** direct")
    stop(f)
    stop_all()


def ss_mss(node, dst):
    """mss / advmss of node's established sockets to dst (`ss -tin`)."""
    out = sh(nsx(node, "ss", "-tin", "state", "established", "dst", dst), check=False)
    found = re.findall(r"\bmss:(\d+).*?advmss:(\d+)", out)
    return [f"mss {a} advmss {b}" for a, b in found]


def part_blackhole():
    up(f"--delay 5 --rate {RATE} --drop-above 1400", f"--delay 5 --rate {RATE}")
    server()
    cap = 15

    def fetch(label, host, port, ss_node=None, ss_dst=None):
        runs = []
        for rep in range(REPS):
            snap = {}
            if ss_node:
                t = threading.Timer(1.0, lambda: snap.update(mss=ss_mss(ss_node, ss_dst)))
                t.start()
            r = get("c", host, port, secs=cap, nbytes=MIB20)
            if ss_node:
                t.join()
                r["ss"] = snap.get("mss")
            runs.append(r)
            log(f"blackhole {label}: {r}")
            if not r["done"]:
                break  # a stall is a stall: no need for three
        DETAIL[f"blackhole {label}"] = runs
        ok = [r for r in runs if r["done"]]
        if len(ok) == len(runs):
            res = f"complete in {med([r['secs'] for r in ok]):.1f} s"
        else:
            r = runs[-1]
            res = f"**stalled**: {r['bytes']:,} B of 20 MiB in {cap} s"
        note = f"outbound leg: {', '.join(runs[0]['ss'])}" if runs[0].get("ss") else ""
        row("blackhole", label, res, note)

    fetch("1,400-byte hop, ICMP dropped; 20 MiB download direct", S, BENCH_PORT)
    for mss in (None, "1360"):
        opts = ["-q"] + (["--mss", mss] if mss else [])
        tag = f"`--mss {mss}`" if mss else "no --mss"
        f = fwd("s", f"{S}:8080", f"127.0.0.1:{BENCH_PORT}", opts)
        fetch(f"tcpfwd in S (server side), {tag}", S, 8080)
        stop(f)
        f = fwd("c", "127.0.0.1:8081", f"{S}:{BENCH_PORT}", opts)
        fetch(f"tcpfwd in C (client's local relay), {tag}", "127.0.0.1", 8081, ss_node="c", ss_dst=S)
        stop(f)
    stop_all()


def part_dead():
    up("--delay 5", "--delay 5", ms2="--delay 5")
    server("s2")
    wait_port("m", S2, BENCH_PORT)
    cap = 75  # today's idle case needs 5 + 6 x 10 s
    ut = ["--user-timeout", "5s"] if has("--user-timeout") else None
    ka = keepalive_probes()
    # (label, listen port, tcpfwd options, clients: (kind, every))
    setups = [("today: `--keepalive 5s` (probes 10 s apart, 6 of them)", 9100, ["--keepalive", "5s"],
               [("busy", 0.2), ("idle", 0)])]
    if ut:
        setups.append(("`--keepalive 5s --user-timeout 5s`", 9101, ["--keepalive", "5s", *ut],
                       [("busy", 0.2), ("idle", 0)]))
    if ka:
        setups.append((f"`{' '.join(ka)}`", 9102, ka, [("idle", 0)]))
    fwds, clients = [], []
    for label, port, opts, cl in setups:
        fwds.append(fwd("m", f"{M_C}:{port}", f"{S2}:{BENCH_PORT}", opts, name=f"fwd{port}"))
    for label, port, opts, cl in setups:
        for kind, every in cl:
            p = subprocess.Popen(nsx("c", sys.executable, SELF, "_hold", M_C, str(port), str(every), str(cap + 5)),
                                 stdout=subprocess.PIPE, text=True)
            clients.append((label, kind, port, p))
    time.sleep(1.5)
    netlab("cut", "ms2")
    t_cut = time.monotonic()
    results = []
    for label, kind, port, p in clients:
        try:
            out, _ = p.communicate(timeout=cap + 20)
            results.append((label, kind, port, json.loads(out.strip().splitlines()[-1])))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            results.append((label, kind, port, {"end": "cap", "t_conn": t_cut, "t_end": time.monotonic()}))
    time.sleep(0.3)
    for f in fwds:
        stop(f)
    logs = {}
    for f in fwds:
        for line in open(f.logpath):
            m = re.search(r"listen=\S+:(\d+) .*?up=(\d+) .*?dur=([0-9.]+) end=(\S+)", line)
            if m:
                kind = "idle" if int(m.group(2)) <= 5 else "busy"
                logs[(int(m.group(1)), kind)] = f"end={m.group(4)} dur={m.group(3)}s"
    DETAIL["dead"] = {"t_cut": t_cut, "clients": results, "logs": {f"{k[0]} {k[1]}": v for k, v in logs.items()}}
    for label, kind, port, r in results:
        what = "client sending 1 KiB / 0.2 s" if kind == "busy" else "idle connection"
        after = r["t_end"] - t_cut
        tlog = logs.get((port, kind), "no log line yet: still open")
        if r["end"] == "cap":
            res = f"**still open** {after:.0f} s after the cut (cap)"
        else:
            res = f"given up {after:.1f} s after the cut ({r['t_end'] - r['t_conn']:.1f} s after its last ack'd traffic)"
        row("dead", f"target link cut silently, {what}; {label}", res, f"tcpfwd: {tlog}; client saw {r['end']}")
    if not ut:
        row("dead", "target link cut, client sending; `--user-timeout 5s`", SKIPPED)
    if not ka:
        row("dead", "target link cut, idle; keepalive 5 s, interval 1 s, 3 probes", SKIPPED)
    stop_all()


def part_relays():
    loss = f"--delay 20 --rate {RATE} --loss 0.25"
    up(loss, loss)
    server()
    cc_opt = ["--congestion", "bbr"] if has("--congestion") else None

    def pair(bbr):
        def setup():
            if bbr and not cc_opt:
                for n in "cs":
                    sysctl(n, net__ipv4__tcp_congestion_control="bbr")
            opts = ["-q"] + (cc_opt if bbr and cc_opt else [])
            return [fwd("s", f"{S}:8080", f"127.0.0.1:{BENCH_PORT}", opts, name="relay"),
                    fwd("c", "127.0.0.1:8081", f"{S}:8080", opts, name="relay")]

        def teardown(ps):
            for p in ps:
                stop(p)
            for n in "cs":
                sysctl(n, net__ipv4__tcp_congestion_control="cubic")
        return setup, teardown

    runs = measure({"direct": (lambda: get("c", S, BENCH_PORT), None, None),
                    "pair cubic": (lambda: get("c", "127.0.0.1", 8081), *pair(False)),
                    "pair bbr": (lambda: get("c", "127.0.0.1", 8081), *pair(True))}, "relays")
    d, dtext = fmt_mbps(runs["direct"])
    row("relays", "2×40 ms lossy path, cubic; download direct", dtext)
    v, vtext = fmt_mbps(runs["pair cubic"])
    row("relays", "tcpfwd in C and in S (loopback to the endpoints), cubic between them", vtext, f"{v / d:.2f}× direct")
    v, vtext = fmt_mbps(runs["pair bbr"])
    how = "`--congestion bbr` on both" if cc_opt else "bbr by sysctl in C and S (baseline: also the loopback legs)"
    row("relays", f"the same, {how}", vtext, f"**{v / d:.2f}×** direct")
    stop_all()


def m_memory():
    """Kernel memory of M's established sockets, summed (ss -tm): receive queues (skmem r) and
    send queues (skmem w: queued, sent or not)."""
    out = sh(nsx("m", "ss", "-tmn", "state", "established"), check=False)
    r = sum(int(x) for x in re.findall(r"skmem:\(r(\d+)", out))
    w = sum(int(x) for x in re.findall(r",w(\d+),", out))
    return r, w


def part_buffers():
    up(f"--delay 20 --rate {RATE}", f"--delay 20 --rate {RATE}")
    server()
    secs = min(SECS, 15)
    configs = {
        "M default": {},
        "M capped at 1 MiB": {"bufs": 1048576},
        "M capped at 512 KiB": {"bufs": 524288},
        "M capped at 256 KiB": {"bufs": 262144},
        "M tcp_notsent_lowat 128 KiB": {"lowat": 131072},
    }
    orig = {k: sh(nsx("m", "sysctl", "-n", k.replace("__", "."))).split()
            for k in ("net__ipv4__tcp_rmem", "net__ipv4__tcp_wmem", "net__ipv4__tcp_notsent_lowat")}
    configs = {(f"M default (rmem {int(orig['net__ipv4__tcp_rmem'][2]) >> 20} MiB / "
                f"wmem {int(orig['net__ipv4__tcp_wmem'][2]) >> 20} MiB max)" if k.startswith("M default") else k): v
               for k, v in configs.items()}
    res = {}
    for label, c in configs.items():
        if "bufs" in c:
            set_bufs("m", c["bufs"], c["bufs"])
        if "lowat" in c:
            sysctl("m", net__ipv4__tcp_notsent_lowat=c["lowat"])
        f = fwd("m", VIA, f"{S}:{BENCH_PORT}", ["-q"])
        runs = []
        for rep in range(REPS):
            snaps = []
            timers = [threading.Timer(secs * x, lambda: snaps.append(m_memory())) for x in (0.4, 0.6, 0.8)]
            for t in timers:
                t.start()
            r = get("c", M_C, 9000, secs=secs)
            for t in timers:
                t.join()
            r["m_mem"] = [sum(x[0] for x in snaps) / len(snaps), sum(x[1] for x in snaps) / len(snaps)] if snaps else None
            runs.append(r)
            log(f"buffers {label}: {r}")
        stop(f)
        sysctl("m", **{k: " ".join(v) for k, v in orig.items()})
        res[label] = runs
        m, text = fmt_mbps(runs)
        rr = med([x["m_mem"][0] for x in runs if x["m_mem"]])
        tt = med([x["m_mem"][1] for x in runs if x["m_mem"]])
        row("buffers", f"80 ms, no loss, endpoints default; through tcpfwd in M, {label}", text,
            f"M holds {rr / 1048576:.2f} MiB receive + {tt / 1048576:.2f} MiB send")
    DETAIL["buffers"] = res
    stop_all()


def link_out(name, key):
    """(packets, bytes) linkem wrote in one direction of link `name` so far (its stats file)."""
    time.sleep(1.1)  # rewritten every second
    for line in open(os.path.join(RUN, f"{name}.stats")):
        parts = line.split()
        if parts and parts[0] == key:
            d = dict(kv.split("=") for kv in parts[1:])
            return int(d["out"]), int(d["out_bytes"])
    return 0, 0


def part_segsize():
    up(f"--delay 20 --rate {RATE}", f"--delay 20 --rate {RATE}")
    server()
    secs = min(SECS, 15)
    key = f"{PREFIX}-m:m1->{PREFIX}-c:c0"
    res = {}
    for label, opts in (("default", []), ("`--segment-size 1000`", ["--segment-size", "1000"]),
                        ("`--mss 1000` (for contrast)", ["--mss", "1000"])):
        f = fwd("m", f"{M_C}:9000", f"{S}:{BENCH_PORT}", ["-q", *opts])
        runs = []
        for rep in range(REPS):
            p0, b0 = link_out("cm", key)
            r = get("c", M_C, 9000, secs=secs)
            p1, b1 = link_out("cm", key)
            r["wire_avg_bytes"] = round((b1 - b0) / max(p1 - p0, 1), 1)
            runs.append(r)
            log(f"segsize {label}: {r}")
        stop(f)
        res[label] = runs
        m, text = fmt_mbps(runs)
        row("segsize", f"80 ms, no loss; download through tcpfwd in M, {label}", text,
            f"average IP packet M→C {med([r['wire_avg_bytes'] for r in runs]):.0f} B")
    DETAIL["segsize"] = res
    stop_all()


# ---------------------------------------------------------------------------------------------


def skip(reason):
    print(f"netlab: skipped ({reason})")
    sys.exit(0)


def prepare():
    global HELP
    if os.geteuid() != 0:
        skip("needs root: network namespaces and TUN devices")
    src = os.path.join(SHARED, "netlab")
    if not os.path.isfile(os.path.join(src, "netlab")):
        skip(f"no netlab testbed at {src}")
    if not os.path.exists("/dev/net/tun") or not shutil.which("ip"):
        skip("needs /dev/net/tun and iproute2")
    if not os.access(TCPFWD, os.X_OK):
        sys.exit(f"accel: no tcpfwd binary at {TCPFWD} (cargo build --release)")
    if not os.path.isfile(NETLAB):
        shutil.copytree(src, NETLAB_DIR, dirs_exist_ok=True)
    linkem = os.path.join(NETLAB_DIR, "linkem/target/release/linkem")
    if not os.access(linkem, os.X_OK):
        log("building linkem")
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=os.path.join(NETLAB_DIR, "linkem"), check=True)
    os.makedirs(RUN, exist_ok=True)
    have = sh(["ip", "netns", "list"])
    if re.search(rf"^{re.escape(PREFIX)}-(c|m|s|s2)\b", have, re.M):
        sys.exit(f"accel: namespaces {PREFIX}-* exist (another netlab run?): "
                 f"`NETLAB_RUN={RUN} {NETLAB} down` if they are yours, or set NETLAB_PREFIX")
    HELP = sh([TCPFWD, "--help"])


def main():
    args = sys.argv[1:]
    if args and args[0].startswith("_"):
        cmd, a = args[0], args[1:]
        if cmd == "_serve":
            bench_serve(int(a[0]))
        elif cmd == "_get":
            bench_get(a[0], int(a[1]), float(a[2]), int(a[3]))
        elif cmd == "_put":
            bench_put(a[0], int(a[1]), float(a[2]))
        elif cmd == "_hold":
            bench_hold(a[0], int(a[1]), float(a[2]), float(a[3]))
        return
    parts = ALL_PARTS if args == ["all"] else (args or DEFAULT_PARTS)
    bad = [p for p in parts if p not in ALL_PARTS]
    if bad:
        sys.exit(f"accel: unknown part {bad[0]} (parts: {' '.join(ALL_PARTS)}, or all)")
    prepare()
    version = sh([TCPFWD, "--version"]).strip()
    t0 = time.monotonic()

    def on_alarm(*_):
        raise TimeoutError(f"over the {BUDGET_S} s budget")
    # A hard stop, well above what the parts take (default parts ~11 min, extras ~3 min each).
    BUDGET_S = 15 * 60 + 4 * 60 * len([p for p in parts if p not in DEFAULT_PARTS])
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(BUDGET_S)
    failed = []
    try:
        for p in parts:
            log(f"part {p} ({time.monotonic() - t0:.0f} s in)")
            try:
                globals()[f"part_{p}"]()
            except Exception as e:  # the other parts, and the table so far, are still worth having
                if isinstance(e, TimeoutError):
                    raise
                failed.append(f"{p}: {type(e).__name__}: {e}")
                log(f"part {p} failed: {failed[-1]}")
                stop_all()
    except (TimeoutError, KeyboardInterrupt) as e:
        failed.append(f"stopped: {type(e).__name__}: {e}")
        log(failed[-1])
    finally:
        signal.alarm(0)
        stop_all()
        netlab("down", check=False)
    took = time.monotonic() - t0
    out = os.path.join(REPO, "target/netlab")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, time.strftime("accel-%Y%m%d-%H%M%S.json"))
    with open(path, "w") as f:
        json.dump({"version": version, "parts": parts, "rate_mbit": RATE, "secs": SECS, "reps": REPS,
                   "rows": ROWS, "detail": DETAIL, "failed": failed}, f, indent=1, default=str)
    print(f"\n### tcpfwd data acceleration, measured ({version}; netlab, {RATE} Mbit/s links, "
          f"medians of {REPS} × {SECS:g} s; {took / 60:.1f} min)\n")
    print("| part | condition | result | note |")
    print("|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")
    print(f"\ndetails: {path}")
    for f in failed:
        print(f"\naccel: {f}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
