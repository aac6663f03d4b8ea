#!/usr/bin/env python3
"""Fleet bench (issue 13; not a test): N polegate processes (cabinet build) against one
mosquitto that restarts. Each gateway queues a stats event every second; while the broker
is down for --down seconds every gateway builds a backlog. Reports the reconnect spread
(p50/p99 of the time from broker restart to each gateway's `status` online, from the
payload's `ts`), the broker's CPU and connection rate during the storm, the time until
every backlog has drained (last `"historical": true` message of each gateway), and RSS
per process.

    benches/fleet.py [--n 200] [--down 20] [--bin target/cabinet/polegate]

Needs mosquitto and mosquitto_sub on PATH; builds the cabinet binary when --bin is absent.
"""
import argparse, atexit, datetime, json, os, queue, socket, subprocess, sys, tempfile, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=200)
ap.add_argument("--down", type=float, default=20.0, help="seconds the broker stays down")
ap.add_argument("--bin", default=None)
ap.add_argument("--replay-rate", type=int, default=1000)
a = ap.parse_args()

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
exe = a.bin or os.path.join(target, "cabinet", "polegate")
if a.bin is None:
    subprocess.run(["cargo", "build", "--profile", "cabinet", "--no-default-features",
                    "--bin", "polegate"], cwd=root, check=True)

work = tempfile.mkdtemp(prefix="polegate-fleet-")
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
with open(os.path.join(work, "mosquitto.conf"), "w") as f:
    f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 100000\n")


def broker():
    p = subprocess.Popen(["mosquitto", "-c", os.path.join(work, "mosquitto.conf")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return p
        except OSError:
            time.sleep(0.02)
    sys.exit("mosquitto did not start")


def ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except (OSError, IndexError):
        return 0


def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


mosq = broker()
gws = []


def cleanup():
    for g in gws:
        if g.poll() is None:
            g.kill()
    if mosq.poll() is None:
        mosq.kill()


atexit.register(cleanup)  # a failing run leaves no gateway or broker behind
for i in range(a.n):
    d = os.path.join(work, f"gw{i:03}")
    os.makedirs(d)
    cfg = os.path.join(d, "polegate.toml")
    with open(cfg, "w") as f:
        f.write(f'[gateway]\nid = "fleet-{i:03}"\nstate_dir = "{d}/state"\n'
                f'plugins_dirs = ["{root}/plugins"]\n'
                f'[mqtt]\nurl = "mqtt://127.0.0.1:{port}"\nreplay_rate = {a.replay_rate}\n'
                '[stats]\ninterval_s = 1\n')
    gws.append(subprocess.Popen([exe, "run", "--config", cfg], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "error"}))
time.sleep(5)  # every gateway connected, births and first stats out
rss = sorted(rss_kb(g.pid) for g in gws)

mosq.terminate(); mosq.wait()
time.sleep(a.down)  # backlogs build: one stats event per second and gateway
mosq = broker()
t_up = time.time()
sub = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-q", "1", "-v", "-t", "polegate/+/status",
                        "-t", "polegate/+/stats", "-F", "%U %t %p"],
                       stdout=subprocess.PIPE, text=True)
c0 = ticks(mosq.pid)
online, last_hist = {}, {}
deadline = t_up + 120
lines_q = queue.Queue()
threading.Thread(target=lambda: [lines_q.put(l) for l in sub.stdout], daemon=True).start()
while time.time() < deadline:
    lines = []
    while not lines_q.empty():
        lines.append(lines_q.get())
    for line in lines:
        parts = line.rstrip("\n").split(" ", 2)
        if len(parts) < 3:
            continue
        at, topic, payload = float(parts[0]), parts[1], parts[2]
        gw = topic.split("/")[1]
        try:
            body = json.loads(payload)
        except ValueError:
            continue
        if topic.endswith("/status") and body.get("state") == "online":
            ts = body.get("ts")
            try:
                t = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
            except (AttributeError, ValueError):
                t = at  # no parsable ts: the time it was received
            online.setdefault(gw, t)
        elif body.get("historical"):
            last_hist[gw] = at
    if len(online) == a.n and time.time() - max(last_hist.values() or [t_up]) > 3:
        break
    time.sleep(0.05)
storm_cpu = (ticks(mosq.pid) - c0) / 100.0
el = time.time() - t_up
sub.terminate()
for g in gws:
    g.terminate()
for g in gws:
    g.wait()
mosq.terminate(); mosq.wait()

back = sorted(t - t_up for t in online.values())
pct = lambda v, q: v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")
spread = (back[-1] - back[0]) if back else float("nan")
print(f"fleet: {a.n} gateways ({exe}), broker down {a.down:.0f} s, replay_rate {a.replay_rate}")
print(f"reconnected {len(online)}/{a.n}: time back p50 {pct(back, .5):.2f} s, p99 {pct(back, .99):.2f} s, "
      f"max {back[-1] if back else float('nan'):.2f} s; connection rate {len(back) / max(spread, 1e-3):.0f}/s over the spread")
print(f"backlogs drained (last historical message) {max(last_hist.values(), default=t_up) - t_up:.2f} s after "
      f"the restart; {len(last_hist)} gateways replayed a backlog")
print(f"broker CPU during the storm: {storm_cpu / el * 100:.1f} % of one core over {el:.1f} s")
print(f"RSS per gateway: median {rss[len(rss) // 2] / 1024:.1f} MB, max {rss[-1] / 1024:.1f} MB")
