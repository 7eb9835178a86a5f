"""Medians per metric and target from bench/forwarder.sh's results.tsv, and the ratios of the goals."""
import statistics
import sys
from collections import defaultdict

res, idle = sys.argv[1], sys.argv[2]
vals = defaultdict(list)
for line in open(res):
    metric, target, value = line.rstrip("\n").split("\t")
    if value:
        vals[(metric, target)].append(float(value))
med = {k: statistics.median(v) for k, v in vals.items()}
targets = ["direct", "forwarder", "haproxy", "socat"]
rows = [("tput1_gbps", "iperf3 1 stream, Gbit/s"), ("tput1_cores", "  proxy CPU during it, cores"),
        ("tput4_gbps", "iperf3 4 streams, Gbit/s"),
        ("p50_us", "64 B round trip p50, µs"), ("p99_us", "64 B round trip p99, µs"),
        ("conn_per_s", "new connections/s (32 at a time)"),
        ("conn_cpu_us", "  proxy CPU per connection, µs"), ("udp_pps", "UDP req/resp per s (16 clients)"),
        ("rss_before_mib", "RSS before, MiB"), ("rss_idle_mib", f"RSS with {idle} idle conns, MiB")]
print(f"{'metric':40}" + "".join(f"{t:>12}" for t in targets))
for m, label in rows:
    print(f"{label:40}" + "".join(f"{med[(m, t)]:>12.2f}" if (m, t) in med else f"{'-':>12}" for t in targets))

def g(m, t):
    return med.get((m, t))

def ratio(label, a, b, goal):
    if a is None or b is None or b == 0:
        return
    print(f"{label:52} {a / b:6.2f}   (goal {goal})")

print()
for m, name in [("tput1_gbps", "1 stream"), ("tput4_gbps", "4 streams")]:
    ratio(f"throughput {name}: forwarder / haproxy", g(m, "forwarder"), g(m, "haproxy"), ">= 1.5")
    ratio(f"throughput {name}: forwarder / direct", g(m, "forwarder"), g(m, "direct"), ">= 0.8")
    ratio(f"throughput {name}: forwarder / socat", g(m, "forwarder"), g(m, "socat"), "-")
d = g("p50_us", "direct")
if d is not None:
    fa, ha = g("p50_us", "forwarder"), g("p50_us", "haproxy")
    if fa is not None and ha is not None:
        print(f"{'added p50 latency: forwarder vs haproxy (µs)':52} {fa - d:6.1f} vs {ha - d:.1f}   (goal: forwarder <= haproxy)")
ratio("connections/s: forwarder / haproxy", g("conn_per_s", "forwarder"), g("conn_per_s", "haproxy"), ">= 1.0")
ratio("UDP packets/s: forwarder / socat", g("udp_pps", "forwarder"), g("udp_pps", "socat"), "> 1")
r = g("rss_idle_mib", "forwarder")
if r is not None:
    print(f"{'forwarder RSS with ' + idle + ' idle connections (MiB)':52} {r:6.1f}   (goal <= 100 at 10,000)")
    b = g("rss_before_mib", "forwarder")
    if b is not None and int(idle) > 0:
        per = (r - b) * 1024 / int(idle)
        print(f"{'forwarder RSS per idle connection (KiB)':52} {per:6.2f}   (→ {b + per * 10000 / 1024:.1f} MiB at 10,000)")
