// The live lab page. Reads `topology` (what to draw) and `hops/stream` (hop records as they happen,
// server-sent events) from the lab's admin endpoint that serves this file; nothing else is fetched.
//
// Drawing: every component is a box with an id (`proxy:auth-proxy:auth-proxy`, `node:node-1`,
// `pod:default/web-1`, `svc:default/web`, ...); addresses map to boxes (a pod IP to its pod, a
// ClusterIP to its Service, a node address to its node). A hop record names its proxy box by its
// `proxy` and `instance` fields, and the boxes before and after it by its addresses.
//
// Stitching (as `proxylab trace` does, see the stitching section): hop B follows hop A when A's
// `upstreamLocal` is B's `client` and B was live while A's request was in flight. HTTP proxies that
// pool upstream connections and record no `upstreamLocal` are joined by request line and time
// instead; such a join is inferred and drawn dashed.
'use strict';

const SVGNS = 'http://www.w3.org/2000/svg';
const MAX_HOPS = 600;      // records kept in the page
const LIST_PATHS = 40;     // requests listed
const DRAW_PATHS = 10;     // requests drawn on the map
const REFRESH_MS = 5000;   // how often the topology is read again (pods, services, LB IPs change)

const S = {
  topo: null, topoText: '',
  boxes: new Map(),      // box id -> {x, y, w, h, el}
  byIp: new Map(),       // ip -> box id (pods, nodes, apiservers, services, LB IPs)
  byAddr: new Map(),     // ip:port -> box id (proxies' listen addresses)
  proxyBox: new Map(),   // "type:instance" -> box id
  typeBox: new Map(),    // "type" -> box id (first box of that proxy type)
  hops: new Map(),       // feed id -> {id, source, hop, t}
  byKey: new Map(),      // hopKey -> feed id (an open connection's record, later its closed one)
  lastId: 0,
  selectedRoot: null, selectedHop: null,
  fresh: new Set(),
  counts: new Map(),     // box id -> hop records kept for it
};

// ---------------------------------------------------------------- helpers
function svg(tag, attrs, parent) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
function html(tag, attrs, parent, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function text(parent, x, y, s, cls) {
  const t = svg('text', { x, y, class: cls || '' }, parent);
  t.textContent = s;
  return t;
}
// "127.0.0.1:8001" / "[::1]:80" -> {ip, port}
function splitAddr(a) {
  if (!a) return null;
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(a);
  return m ? { ip: m[1], port: +m[2] } : { ip: a, port: 0 };
}
// RFC 3339 with nanoseconds -> ms since the epoch (Date.parse wants at most milliseconds).
function parseTime(s) {
  return Date.parse(String(s).replace(/(\.\d{3})\d+/, '$1'));
}
function hhmmss(ms) {
  const d = new Date(ms);
  return d.toTimeString().slice(0, 8) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

// ---------------------------------------------------------------- topology and layout
async function loadTopology() {
  try {
    const r = await fetch('topology', { cache: 'no-store' });
    const t = await r.json();
    const txt = JSON.stringify(t);
    if (!t.ready) {
      setStatus('the lab is starting…', '');
    } else if (txt !== S.topoText) {
      S.topo = t; S.topoText = txt;
      draw();
    }
  } catch (e) {
    setStatus('cannot read the topology: ' + e, 'down');
  }
  setTimeout(loadTopology, S.topo ? REFRESH_MS : 1000);
}

// Columns, left to right, as a request travels.
const COL = { client: 10, front: 160, mid: 345, api: 540, node: 760 };
const W = { client: 120, front: 160, mid: 170, api: 190, node: 300 };

function addBox(id, x, y, w, h, cls, parent, info) {
  const g = svg('g', { class: 'box ' + cls, 'data-box': id }, parent);
  svg('rect', { x, y, width: w, height: h, rx: 6 }, g);
  S.boxes.set(id, { x, y, w, h, el: g, info });
  return g;
}

function draw() {
  const t = S.topo;
  const root = document.getElementById('topo');
  root.textContent = '';
  S.boxes.clear(); S.byIp.clear(); S.byAddr.clear(); S.proxyBox.clear(); S.typeBox.clear();
  const layerBoxes = svg('g', { id: 'boxes' }, root);
  svg('g', { id: 'lines' }, root);

  for (const [k, label] of [['client', 'client'], ['front', 'in front'], ['mid', 'balancer · services'], ['api', 'apiservers'], ['node', 'nodes · pods']]) {
    text(layerBoxes, COL[k] + 2, 14, label, 'col');
  }
  const proxies = t.proxies || [];
  const ofType = (ty) => proxies.filter((p) => p.type === ty);
  const registerProxy = (p, id) => {
    S.proxyBox.set(p.type + ':' + p.instance, id);
    if (!S.typeBox.has(p.type)) S.typeBox.set(p.type, id);
    if (p.address) S.byAddr.set(p.address, id);
  };

  // The client: whoever is not a lab component.
  addBox('client', COL.client, 40, W.client, 56, 'client', layerBoxes);
  text(layerBoxes, COL.client + 10, 62, 'client', 'title');
  text(layerBoxes, COL.client + 10, 80, 'curl, kubectl, you', 'small');

  // Column "in front": kubectl proxy (auth-proxy) on top, the cloud load balancer below.
  let y = 40;
  const front = (type, title, sub, p) => {
    const id = p ? 'proxy:' + type + ':' + p.instance : 'absent:' + type;
    const g = addBox(id, COL.front, y, W.front, 62, p ? 'proxy' : 'absent', layerBoxes, p);
    g.setAttribute('data-proxy', type);
    text(g, COL.front + 10, y + 19, title, 'title');
    text(g, COL.front + 10, y + 36, p ? (p.address || p.instance) : 'not in this lab', 'small');
    text(g, COL.front + 10, y + 52, sub, 'small');
    if (p) registerProxy(p, id);
    y += 76;
    return g;
  };
  const auth = ofType('auth-proxy');
  if (auth.length) auth.forEach((p) => front('auth-proxy', 'kubectl proxy', 'auth-proxy', p));
  else front('auth-proxy', 'kubectl proxy', 'auth-proxy', null);
  const clbs = ofType('cloud-lb');
  const lbIps = [];
  for (const s of t.services || []) for (const ip of s.loadBalancerIngress || []) lbIps.push([ip, s]);
  const frontCloudY = Math.max(y, 330);
  y = frontCloudY;
  if (clbs.length) {
    clbs.forEach((p) => {
      const g = front('cloud-lb', 'cloud load balancer', 'cloud-lb', p);
      lbIps.forEach(([ip]) => S.byIp.set(ip, 'proxy:cloud-lb:' + p.instance));
      g.querySelector('rect').setAttribute('height', 62 + 14 * lbIps.length);
      lbIps.forEach(([ip, s], i) => text(g, COL.front + 10, y - 76 + 66 + 14 * i, ip + ' → ' + s.name, 'small'));
      y += 14 * lbIps.length;
    });
  } else {
    front('cloud-lb', 'cloud load balancer', 'cloud-lb', null);
  }
  // Proxies the page has no place for yet: listed under the cloud load balancer, still drawn.
  const known = new Set(['auth-proxy', 'cloud-lb', 'ha-balancer', 'bastion', 'forwarder']);
  for (const p of proxies.filter((q) => !known.has(q.type))) front(p.type, p.type, p.instance, p);

  // Column "balancer · services": the HA balancer, then the Services.
  y = 40;
  const habs = ofType('ha-balancer');
  const habList = habs.length ? habs : [null];
  for (const p of habList) {
    const id = p ? 'proxy:ha-balancer:' + p.instance : 'absent:ha-balancer';
    const g = addBox(id, COL.mid, y, W.mid, 62, p ? 'proxy' : 'absent', layerBoxes, p);
    g.setAttribute('data-proxy', 'ha-balancer');
    text(g, COL.mid + 10, y + 19, 'HA balancer', 'title');
    text(g, COL.mid + 10, y + 36, p ? (p.address || p.instance) : 'not in this lab', 'small');
    text(g, COL.mid + 10, y + 52, 'ha-balancer · apiservers', 'small');
    if (p) registerProxy(p, id);
    y += 76;
  }
  y = Math.max(y, 190);
  for (const s of t.services || []) {
    const id = 'svc:' + s.namespace + '/' + s.name;
    const ports = (s.ports || []).map((p) => p.port + (p.nodePort ? ':' + p.nodePort : '') + '/' + p.protocol);
    const lines = 2 + Math.ceil(ports.length / 2);
    const h = 22 + 14 * lines;
    const g = addBox(id, COL.mid, y, W.mid, h, 'svc', layerBoxes, s);
    g.setAttribute('data-service', s.namespace + '/' + s.name);
    text(g, COL.mid + 10, y + 17, 'svc ' + s.name, 'title');
    text(g, COL.mid + 10, y + 32, s.type + ' ' + (s.clusterIP || ''), 'small');
    for (let i = 0; i < ports.length; i += 2) text(g, COL.mid + 10, y + 46 + 7 * i, ports.slice(i, i + 2).join('  '), 'small');
    if (s.clusterIP && s.clusterIP !== 'None') S.byIp.set(s.clusterIP, id);
    y += h + 10;
  }

  // Column "apiservers": each with the apiserver proxy (bastion) inside.
  y = 40;
  const bastions = new Map(ofType('bastion').map((p) => [p.instance, p]));
  for (const a of t.apiservers || []) {
    const id = 'api:' + a.name;
    const g = addBox(id, COL.api, y, W.api, 62, 'api', layerBoxes, a);
    g.setAttribute('data-apiserver', a.name);
    text(g, COL.api + 10, y + 19, a.name, 'title');
    text(g, COL.api + 10, y + 36, a.address || '', 'small');
    text(g, COL.api + 10, y + 52, 'apiserver proxy (bastion) inside', 'small');
    if (a.address) S.byIp.set(splitAddr(a.address).ip, id);
    const p = bastions.get(a.name) || { type: 'bastion', instance: a.name };
    registerProxy({ ...p, address: null }, id);
    y += 72;
  }

  // Column "nodes · pods": kube-proxy (forwarder), kubelet, the pods.
  y = 40;
  const forwarders = new Map(ofType('forwarder').map((p) => [p.instance, p]));
  for (const n of t.nodes || []) {
    const pods = (t.pods || []).filter((p) => p.node === n.name);
    const h = 84 + 30 * Math.max(pods.length, 1);
    const id = 'node:' + n.name;
    const g = addBox(id, COL.node, y, W.node, h, 'node', layerBoxes, n);
    g.setAttribute('data-node', n.name);
    text(g, COL.node + 10, y + 18, n.name + (n.ready === false ? ' (NotReady)' : ''), 'title');
    text(g, COL.node + 10, y + 33, n.address + '  pods ' + (n.podCIDR || ''), 'small');
    S.byIp.set(n.address, id);
    const f = forwarders.get(n.name);
    const fid = f ? 'proxy:forwarder:' + n.name : 'absent:forwarder:' + n.name;
    const fg = addBox(fid, COL.node + 10, y + 42, 135, 30, f ? 'proxy' : 'absent', g, f);
    fg.setAttribute('data-proxy', 'forwarder');
    text(fg, COL.node + 18, y + 61, 'kube-proxy (forwarder)', 'small');
    if (f) registerProxy(f, fid);
    const kid = 'kubelet:' + n.name;
    const kg = addBox(kid, COL.node + 155, y + 42, 135, 30, 'pod', g, n);
    text(kg, COL.node + 163, y + 61, 'kubelet :10250', 'small');
    S.byAddr.set(n.address + ':10250', kid);
    pods.forEach((p, i) => {
      const pid = 'pod:' + p.namespace + '/' + p.name;
      const py = y + 80 + 30 * i;
      const pg = addBox(pid, COL.node + 10, py, W.node - 20, 24, 'pod' + (p.ready ? '' : ' notready'), g, p);
      pg.setAttribute('data-pod', p.namespace + '/' + p.name);
      text(pg, COL.node + 18, py + 16, p.name, 'title');
      text(pg, COL.node + 110, py + 16, (p.ip || 'no IP') + '  ' + (p.ports || []).map((q) => q.port).join(','), 'small');
      if (p.ip) S.byIp.set(p.ip, pid);
    });
    y += h + 12;
  }
  // Pods not on any node of the lab's list (not scheduled yet).
  const unscheduled = (t.pods || []).filter((p) => !(t.nodes || []).some((n) => n.name === p.node));
  unscheduled.forEach((p) => {
    const pid = 'pod:' + p.namespace + '/' + p.name;
    const pg = addBox(pid, COL.node + 10, y, W.node - 20, 24, 'pod notready', layerBoxes, p);
    pg.setAttribute('data-pod', p.namespace + '/' + p.name);
    text(pg, COL.node + 18, y + 16, p.name + ' (pending)', 'title');
    y += 30;
  });

  let bottom = 0;
  for (const b of S.boxes.values()) bottom = Math.max(bottom, b.y + b.h);
  root.setAttribute('viewBox', '0 0 ' + (COL.node + W.node + 10) + ' ' + (bottom + 10));
  drawPaths();
}

// ---------------------------------------------------------------- addresses to boxes
function boxForAddr(a) {
  const s = splitAddr(a);
  if (!s) return null;
  return S.byAddr.get(s.ip + ':' + s.port) || S.byIp.get(s.ip) || 'client';
}
function boxForHop(h) {
  return S.proxyBox.get(h.proxy + ':' + h.instance) || S.typeBox.get(h.proxy) || null;
}

// ---------------------------------------------------------------- stitching
// The rules of core's `telemetry::stitch::request_path` (what `proxylab trace` follows), so the
// page and trace draw the same path. One request's path starts at its first hop; each next hop is
// one whose client is the current hop's upstreamLocal and that was live while the request was in
// flight: an HTTP hop that started then, or a connection that was open then. A connection may
// carry many requests (kubectl proxy's pooled connection through the HA balancer is one L4 hop,
// shown `open` until it closes), so it appears in the path of every request it carried.
const SLACK_MS = 5;

// When a hop ended. An `open` record is published once, with the duration it had then; the
// connection is open until its closed record replaces it.
function endOf(e) {
  return e.hop.outcome === 'open' ? Infinity : e.t + e.hop.durationMs;
}
function lifetime(e) {
  return [e.t - SLACK_MS, endOf(e) + SLACK_MS];
}

function nextExact(e, win, seen, byClient) {
  const up = e.hop.upstreamLocal;
  if (!up) return null;
  const [from, to] = win;
  let best = null;
  for (const c of byClient.get(up) || []) {
    if (seen.has(c.id)) continue;
    const live = c.hop.http
      ? from <= c.t && c.t <= to
      : c.t <= to && from <= endOf(c) + SLACK_MS;
    if (!live) continue;
    // Several: a reused source port, or parallel requests on one connection: the nearest start.
    if (!best || Math.abs(c.t - from) < Math.abs(best.t - from)) best = c;
  }
  return best;
}

// An HTTP hop joined by request line and time, for a proxy that records no upstreamLocal (a pooled
// client that cannot tell which connection carried the request). Drawn dashed.
function inferredNext(e, all, seen) {
  const ph = e.hop;
  if (!ph.http || ph.upstreamLocal || !ph.upstream) return null;
  let best = null;
  for (const c of all) {
    const h = c.hop;
    if (c === e || seen.has(c.id) || !h.http) continue;
    if (splitAddr(ph.upstream).ip !== splitAddr(h.listener).ip) continue;
    if (ph.http.method !== h.http.method) continue;
    if (!(ph.http.path.endsWith(h.http.path) || h.http.path.endsWith(ph.http.path))) continue;
    if (!(e.t <= c.t + SLACK_MS && c.t <= endOf(e) + SLACK_MS)) continue;
    if (!best || Math.abs(c.t - e.t) < Math.abs(best.t - e.t)) best = c;
  }
  return best;
}

// [{e, prev, inferred}] from `root` on.
function requestPath(root, all, byClient) {
  const seen = new Set([root.id]);
  const out = [{ e: root, prev: null, inferred: false }];
  let win = lifetime(root);
  let cur = root;
  for (;;) {
    let next = nextExact(cur, win, seen, byClient);
    let inferred = false;
    if (!next) { next = inferredNext(cur, all, seen); inferred = !!next; }
    if (!next) return out;
    seen.add(next.id);
    out.push({ e: next, prev: cur, inferred });
    if (next.hop.http) win = lifetime(next);
    cur = next;
  }
}

// Every request's path, newest first. A hop inside another hop's path is not a request of its
// own; a request that arrived over a connection opened for an earlier one (kubectl straight to the
// HA balancer, say) is shown behind that connection.
function stitch() {
  const all = [...S.hops.values()].sort((a, b) => a.t - b.t || a.id - b.id);
  const byClient = new Map();
  for (const e of all) (byClient.get(e.hop.client) || byClient.set(e.hop.client, []).get(e.hop.client)).push(e);
  const paths = new Map();
  const inner = new Set();
  for (const e of all) {
    const p = requestPath(e, all, byClient);
    paths.set(e.id, p);
    for (const { e: x } of p.slice(1)) inner.add(x.id);
  }
  const roots = [];
  for (const e of all) {
    if (inner.has(e.id)) continue;
    let path = paths.get(e.id);
    const before = e.hop.http && all.find((c) => !c.hop.http && c.hop.upstreamLocal === e.hop.client &&
      c.t <= e.t + SLACK_MS && e.t <= endOf(c) + SLACK_MS);
    if (before) path = [{ e: before, prev: null, inferred: false }, { ...path[0], prev: before }, ...path.slice(1)];
    roots.push({ root: e, path });
  }
  roots.sort((a, b) => b.root.t - a.root.t || b.root.id - a.root.id);
  return roots;
}

// ---------------------------------------------------------------- drawing paths
function center(id, side) {
  const b = S.boxes.get(id);
  if (!b) return null;
  const x = side === 'in' ? b.x : side === 'out' ? b.x + b.w : b.x + b.w / 2;
  return { x, y: b.y + Math.min(b.h / 2, 31) };
}
function curve(a, b) {
  const dx = Math.max(30, Math.abs(b.x - a.x) / 2);
  const dir = b.x >= a.x ? 1 : -1;
  return 'M' + a.x + ',' + a.y + ' C' + (a.x + dir * dx) + ',' + a.y + ' ' + (b.x - dir * dx) + ',' + b.y + ' ' + b.x + ',' + b.y;
}

// The boxes one hop passes, in order: where it came from, the address it was sent to when that is
// not the proxy itself (a Service's ClusterIP, a node's NodePort), the proxy, and — for the last
// hop of a path — where it went.
function hopPoints(e, parentEntry, last) {
  const h = e.hop;
  const pts = [];
  const from = parentEntry ? boxForHop(parentEntry.hop) : boxForAddr(h.client);
  pts.push(from);
  const me = boxForHop(h);
  const at = boxForAddr(h.listener);
  if (at && at !== me && at !== 'client' && at !== from) pts.push(at);
  if (me) pts.push(me);
  if (last && h.upstream) {
    const to = boxForAddr(h.upstream);
    if (to && to !== me) pts.push(to);
  }
  return pts.filter((p, i) => p && p !== pts[i - 1]);
}

function drawPaths() {
  const layer = document.getElementById('lines');
  if (!layer || !S.topo) return;
  layer.textContent = '';
  for (const b of S.boxes.values()) b.el.classList.remove('hot');
  const roots = stitch();
  let shown = roots.slice(0, DRAW_PATHS);
  if (S.selectedRoot && !shown.some((r) => r.root.id === S.selectedRoot)) {
    const sel = roots.find((r) => r.root.id === S.selectedRoot);
    if (sel) shown = shown.concat([sel]);
  }
  // Oldest first, so the newest is drawn on top.
  shown.slice().reverse().forEach(({ root, path }, k) => {
    const age = shown.length - 1 - k;
    const selected = root.id === S.selectedRoot;
    path.forEach(({ e, prev, inferred }, n) => {
      const last = n === path.length - 1;
      const pts = hopPoints(e, prev, last);
      for (let i = 0; i + 1 < pts.length; i++) {
        const a = center(pts[i], 'mid');
        const b = center(pts[i + 1], 'mid');
        if (!a || !b) continue;
        const d = curve(a, b);
        const cls = ['hop'];
        if (inferred && i === 0) cls.push('inferred');
        if (!succeeded(e.hop)) cls.push('failed');
        if (selected || S.selectedHop === e.id) cls.push('selected');
        if (S.fresh.has(e.id)) cls.push('fresh');
        const line = svg('path', { d, class: cls.join(' '), 'data-hop': e.id, opacity: selected ? 1 : Math.max(0.15, 1 - age * 0.12) }, layer);
        const title = svg('title', {}, line);
        title.textContent = describeHop(e.hop);
        const hit = svg('path', { d, class: 'hit', 'data-hop': e.id }, layer);
        hit.addEventListener('click', () => selectHop(e.id, root.id));
        line.addEventListener('click', () => selectHop(e.id, root.id));
      }
      if (selected) for (const p of pts) { const b = S.boxes.get(p); if (b) b.el.classList.add('hot'); }
    });
  });
  S.fresh.clear();
  S.counts = new Map();
  for (const e of S.hops.values()) {
    const box = boxForHop(e.hop);
    if (box) S.counts.set(box, (S.counts.get(box) || 0) + 1);
  }
  drawCounts();
  renderList(roots);
}

// `open`: a connection still in progress (its record is replaced when it closes).
function succeeded(h) {
  return h.outcome === 'ok' || h.outcome === 'open';
}

function drawCounts() {
  for (const b of S.boxes.values()) {
    const old = b.el.querySelector(':scope > text.count');
    if (old) old.remove();
  }
  for (const [id, n] of S.counts) {
    const b = S.boxes.get(id);
    if (!b) continue;
    const t = svg('text', { x: b.x + b.w - 6, y: b.y + 14, 'text-anchor': 'end', class: 'count' }, b.el);
    t.textContent = n + (n === 1 ? ' hop' : ' hops');
  }
}

// ---------------------------------------------------------------- the list and the record
function describeHop(h) {
  const what = h.http ? h.http.method + ' ' + h.http.path + (h.http.status ? ' → ' + h.http.status : '') : h.protocol + ' ' + h.listener;
  return h.proxy + ' ' + h.instance + ': ' + h.client + ' → ' + h.listener + ' → ' + (h.upstream || '-') + '\n' + what +
    '\nendpoint ' + (h.endpoint || '-') + (h.reason ? ' (' + h.reason + ')' : '') + ', ' + h.outcome + ', ' + h.durationMs.toFixed(2) + ' ms';
}
function label(h) {
  const target = h.upstream ? S.boxes.get(boxForAddr(h.upstream)) : null;
  const where = target && target.info && target.info.name ? ' → ' + target.info.name : '';
  return h.proxy + (h.instance && h.instance !== h.proxy ? ' ' + h.instance : '') + where;
}

function renderList(roots) {
  const ol = document.getElementById('paths');
  ol.textContent = '';
  if (!roots.length) {
    const li = html('li', { class: 'empty' }, ol);
    li.innerHTML = 'No request yet. Try <code>curl http://127.0.0.1:8001/api/v1/namespaces/default/services/web/proxy/hostname</code>.';
    return;
  }
  for (const { root, path } of roots.slice(0, LIST_PATHS)) {
    const h = root.hop;
    const li = html('li', { 'data-path': root.id }, ol);
    if (root.id === S.selectedRoot) li.classList.add('selected');
    const line1 = html('div', { class: 'line1' }, li);
    html('span', {}, line1, hhmmss(root.t));
    const failed = path.filter(({ e }) => !succeeded(e.hop));
    html('span', { class: failed.length ? 'bad' : 'okv' }, line1, failed.length ? failed[0].e.hop.outcome + ' at ' + failed[0].e.hop.proxy : 'ok');
    // The request's time: a shared connection's age is not part of it.
    const timed = path.filter(({ e }) => e.hop.outcome !== 'open');
    const total = Math.max(...(timed.length ? timed : path).map(({ e }) => e.hop.durationMs));
    html('span', {}, line1, total.toFixed(2) + ' ms');
    const what = h.http ? h.http.method + ' ' + h.http.path + (h.http.status ? ' ' + h.http.status : '') : h.protocol + ' ' + h.client + ' → ' + h.listener;
    html('div', { class: 'what' }, li, what);
    const chips = html('div', { class: 'chips' }, li);
    for (const { e } of path) {
      const c = html('button', { class: 'chip' + (succeeded(e.hop) ? '' : ' failed') + (S.selectedHop === e.id ? ' selected' : ''), 'data-hop': e.id, type: 'button' }, chips, label(e.hop));
      c.addEventListener('click', (ev) => { ev.stopPropagation(); selectHop(e.id, root.id); });
    }
    li.addEventListener('click', () => { S.selectedRoot = S.selectedRoot === root.id ? null : root.id; S.selectedHop = null; drawPaths(); });
  }
}

function selectHop(id, rootId) {
  S.selectedHop = id;
  S.selectedRoot = rootId;
  const e = S.hops.get(id);
  document.getElementById('record').textContent = e
    ? '// ' + e.source + ' /debug/hops, feed id ' + e.id + '\n' + JSON.stringify(e.hop, null, 2)
    : 'that hop is no longer kept';
  drawPaths();
}

// ---------------------------------------------------------------- the feed
function setStatus(s, cls) {
  const el = document.getElementById('status');
  el.textContent = s;
  el.className = 'status ' + (cls || '');
}
let redrawQueued = false;
function queueRedraw() {
  if (redrawQueued) return;
  redrawQueued = true;
  setTimeout(() => { redrawQueued = false; drawPaths(); updateCounts(); }, 100);
}
function updateCounts() {
  document.getElementById('counts').textContent = S.hops.size + ' hop records · last id ' + S.lastId;
}
// A connection's identity across its records: the feed sends an `open` record once, then the
// closed one, which replaces it.
function hopKey(h) {
  return [h.proxy, h.instance, h.client, h.listener, h.time].join('|');
}
function addHop(ev) {
  if (S.hops.has(ev.id)) return;
  const e = { id: ev.id, source: ev.source, hop: ev.hop, t: parseTime(ev.hop.time) };
  const key = hopKey(e.hop);
  const earlier = S.byKey.get(key);
  if (earlier !== undefined) S.hops.delete(earlier);
  S.byKey.set(key, e.id);
  S.hops.set(e.id, e);
  S.lastId = Math.max(S.lastId, e.id);
  S.fresh.add(e.id);
  while (S.hops.size > MAX_HOPS) {
    const [id, old] = S.hops.entries().next().value;
    S.hops.delete(id);
    if (S.byKey.get(hopKey(old.hop)) === id) S.byKey.delete(hopKey(old.hop));
  }
  queueRedraw();
}
function connect() {
  const es = new EventSource('hops/stream');
  es.addEventListener('open', () => setStatus('live: streaming hop records', 'live'));
  es.addEventListener('hop', (m) => {
    try { addHop(JSON.parse(m.data)); } catch (err) { console.error('bad hop event', err, m.data); }
  });
  // EventSource reconnects by itself, sending Last-Event-ID, so nothing is missed while it can.
  es.addEventListener('error', () => setStatus('disconnected from the lab; retrying…', 'down'));
}

loadTopology();
connect();
