/// The dashboard's script: plain JavaScript, no library. It draws the page from the live feed
/// (`/live`: a snapshot, then a tick a second and each event), keeps 15 minutes of samples per
/// service in the page, draws the charts as SVG by hand, and sends actions as JSON POSTs that
/// the daemon checks against the cookie's token and the request's origin.
enum DashboardScript {
    static let source = #"""
        "use strict";
        const WINDOW_SECONDS = 900;
        const MAX_EVENTS = 100;
        const page = {
          status: { services: [] },
          history: new Map(),   // service -> { samples: [...], decisions: [...] }, oldest first
          events: [],           // newest first
          signedIn: false,
          expanded: new Set(),
          chosenInstance: null,
        };

        // --- numbers, as `musterctl top` prints them ------------------------------------------
        function number(value) {
          if (value === null || value === undefined) return "-";
          if (value >= 100 || value === Math.round(value)) return String(Math.round(value));
          return String(Math.round(value * 10) / 10);
        }
        function latency(seconds) {
          if (seconds === null || seconds === undefined) return "-";
          return seconds >= 1 ? number(seconds) + "s" : number(seconds * 1000) + "ms";
        }
        function bytes(count) {
          if (!count) return "-";
          const units = ["B", "KiB", "MiB", "GiB", "TiB"];
          let value = count, unit = 0;
          while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
          return number(value) + units[unit];
        }
        function uptime(seconds) {
          if (seconds === null || seconds === undefined) return "-";
          const s = Math.floor(seconds);
          if (s < 60) return s + "s";
          if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60) + "s";
          if (s < 86400) return Math.floor(s / 3600) + "h" + Math.floor(s % 3600 / 60) + "m";
          return Math.floor(s / 86400) + "d" + Math.floor(s % 86400 / 3600) + "h";
        }
        function clock(time) {
          return new Date(time * 1000).toLocaleTimeString([], { hour12: false });
        }
        function element(tag, attributes = {}, text = null) {
          const node = document.createElement(tag);
          for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
          if (text !== null) node.textContent = text;
          return node;
        }
        const SVG = "http://www.w3.org/2000/svg";
        function svgElement(tag, attributes = {}) {
          const node = document.createElementNS(SVG, tag);
          for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
          return node;
        }

        // --- what a row shows -----------------------------------------------------------------
        function latestSample(name) {
          const history = page.history.get(name);
          return history && history.samples.length ? history.samples[history.samples.length - 1] : null;
        }
        function serviceState(service) {
          if (!service.started) return ["stopped", "dim"];
          if (service.canary) return ["canary", "warn"];
          const ready = service.instances.filter(i => i.ready).length;
          if (service.desired === 0 && ready === 0) return ["idle", "dim"];
          if (ready >= service.desired) return ["up", "good"];
          if (service.instances.some(i => i.state === "backoff" || i.state === "exited")) return ["failing", "bad"];
          return ["partial", "warn"];
        }
        function serviceCells(service) {
          const sample = latestSample(service.name);
          const ready = service.instances.filter(i => i.ready).length;
          const scaler = service.autoscale;
          const rps = service.proxy ? service.proxy.rps : (sample ? sample.rps : null);
          const connections = service.proxy ? service.proxy.open_connections
            : service.instances.reduce((sum, i) => sum + (i.connections || 0), 0);
          const cpu = sample ? sample.cpu_percent : service.instances.reduce((sum, i) => sum + (i.cpu_percent || 0), 0);
          const memory = sample ? sample.memory_bytes : service.instances.reduce((sum, i) => sum + (i.memory_bytes || 0), 0);
          const [state, tone] = serviceState(service);
          return {
            name: (service.instances.length ? (page.expanded.has(service.name) ? "▾ " : "▸ ") : "  ") + service.name,
            state: [state, tone],
            ready: ready + "/" + service.desired,
            load: scaler ? number(scaler.load) + "/" + number(scaler.target) : "-",
            rps: number(rps),
            p50: latency(sample ? sample.p50_seconds : null),
            p99: latency(sample ? sample.p99_seconds : null),
            connections: String(connections),
            cpu: number(cpu) + "%",
            memory: bytes(memory),
            restarts: String(service.instances.reduce((sum, i) => sum + i.restarts, 0)),
          };
        }
        const FIELDS = ["name", "state", "ready", "load", "rps", "p50", "p99", "connections", "cpu", "memory", "restarts"];

        // --- the services table: rows kept across updates, so a count being typed survives ------
        function serviceRow(name) {
          const body = document.querySelector("#services tbody");
          let row = body.querySelector(`tr.service[data-service="${CSS.escape(name)}"]`);
          if (row) return row;
          row = element("tr", { class: "service", "data-service": name });
          for (const field of FIELDS) row.appendChild(element("td", { "data-field": field }));
          const actions = element("td", { class: "actions" });
          const count = element("input", { type: "number", min: "0", class: "scale-count", "data-service": name, "aria-label": "instances for " + name });
          actions.appendChild(count);
          for (const [action, label] of [["scale", "Scale"], ["restart", "Restart"], ["stop", "Stop"], ["start", "Start"]]) {
            actions.appendChild(element("button", { type: "button", "data-action": action, "data-service": name }, label));
          }
          actions.addEventListener("click", event => {
            event.stopPropagation();
            const button = event.target.closest("button");
            if (button) perform(button.dataset.action, name, count);
          });
          row.appendChild(actions);
          row.addEventListener("click", () => {
            if (page.expanded.has(name)) page.expanded.delete(name); else page.expanded.add(name);
            drawServices();
          });
          body.appendChild(row);
          return row;
        }
        function instanceRow(service, instance) {
          const row = element("tr", { class: "instance", "data-instance": instance.id });
          if (page.chosenInstance === instance.id) row.classList.add("chosen");
          // "ejected" while the proxy's outlier detection keeps it out of the rotation, as status says.
          const ejected = instance.ejected_until !== null && instance.ejected_until !== undefined;
          const health = ejected ? "ejected" : instance.ready ? "yes" : (instance.health || "no");
          const cells = [instance.id, instance.state, health, instance.pid ? "pid " + instance.pid : "-", number(instance.rps),
            "up " + uptime(instance.uptime_seconds), "", instance.connections === null ? "-" : String(instance.connections),
            instance.cpu_percent === null ? "-" : number(instance.cpu_percent) + "%", bytes(instance.memory_bytes), String(instance.restarts), ""];
          for (const text of cells) row.appendChild(element("td", {}, text));
          if (instance.state === "backoff" || instance.state === "fatal") row.classList.add("bad");
          else if (ejected) row.classList.add("warn");
          row.addEventListener("click", () => chooseInstance(instance.id));
          return row;
        }
        function drawServices() {
          const body = document.querySelector("#services tbody");
          const names = new Set(page.status.services.map(s => s.name));
          for (const row of body.querySelectorAll("tr.service")) if (!names.has(row.dataset.service)) row.remove();
          for (const row of body.querySelectorAll("tr.instance")) row.remove();
          for (const service of page.status.services) {
            const row = serviceRow(service.name);
            body.appendChild(row);   // keeps the daemon's order
            const cells = serviceCells(service);
            for (const field of FIELDS) {
              const cell = row.querySelector(`td[data-field="${field}"]`);
              if (field === "state") { cell.textContent = cells.state[0]; cell.className = cells.state[1]; }
              else cell.textContent = cells[field];
            }
            row.querySelector("input.scale-count").placeholder = String(service.desired);
            if (page.expanded.has(service.name)) {
              for (const instance of service.instances) body.appendChild(instanceRow(service, instance));
            }
          }
        }

        // --- charts: four a service, hand-drawn SVG --------------------------------------------
        const CHARTS = [
          { metric: "rps", title: "req/s", values: s => [s.rps] },
          { metric: "p99", title: "p99 (ms)", values: s => [s.p99_seconds === null ? null : s.p99_seconds * 1000] },
          { metric: "instances", title: "instances ready / desired", values: s => [s.ready, s.desired] },
          { metric: "cpu", title: "CPU %", values: s => [s.cpu_percent] },
        ];
        const WIDTH = 300, HEIGHT = 110, TOP = 14, BOTTOM = 16, LEFT = 4, RIGHT = 4;
        function niceCeiling(value) {
          if (value <= 0) return 1;
          const power = Math.pow(10, Math.floor(Math.log10(value)));
          for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
          return 10 * power;
        }
        function drawChart(name, chart, history, now) {
          const svg = svgElement("svg", { class: "chart", width: WIDTH, height: HEIGHT, viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
            "data-service": name, "data-metric": chart.metric });
          const start = now - WINDOW_SECONDS;
          const x = time => LEFT + (time - start) / WINDOW_SECONDS * (WIDTH - LEFT - RIGHT);
          const series = [[], []];
          let highest = 0;
          for (const sample of history.samples) {
            if (sample.time < start) continue;
            chart.values(sample).forEach((value, i) => {
              if (value === null || value === undefined) return;
              series[i].push([sample.time, value]);
              highest = Math.max(highest, value);
            });
          }
          const top = niceCeiling(highest);
          const y = value => HEIGHT - BOTTOM - value / top * (HEIGHT - TOP - BOTTOM);
          const label = svgElement("text", { x: LEFT + 2, y: 11 });
          label.textContent = "max " + number(top);
          svg.appendChild(label);
          const axis = svgElement("text", { x: LEFT + 2, y: HEIGHT - 4 });
          axis.textContent = "-15 min";
          svg.appendChild(axis);
          const nowLabel = svgElement("text", { x: WIDTH - RIGHT - 22, y: HEIGHT - 4 });
          nowLabel.textContent = "now";
          svg.appendChild(nowLabel);
          series.forEach((points, i) => {
            if (!points.length) return;
            svg.appendChild(svgElement("polyline", {
              class: i === 0 ? "line" : "line second", "data-points": points.length,
              points: points.map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1)).join(" "),
            }));
          });
          for (const decision of history.decisions) {
            if (decision.time < start) continue;
            const mark = svgElement("g", { class: "decision" });
            const at = x(decision.time).toFixed(1);
            mark.appendChild(svgElement("line", { x1: at, x2: at, y1: TOP, y2: HEIGHT - BOTTOM }));
            const dot = svgElement("circle", { cx: at, cy: TOP, r: 3.5 });
            const tip = svgElement("title");
            tip.textContent = `${clock(decision.time)} ${decision.from} → ${decision.to}: ${decision.reason}`;
            dot.appendChild(tip);
            mark.appendChild(dot);
            svg.appendChild(mark);
          }
          const figure = element("figure");
          figure.appendChild(svg);
          const latest = series[0].length ? series[0][series[0].length - 1][1] : null;
          figure.appendChild(element("figcaption", {}, chart.title + (latest === null ? "" : ": " + number(latest) + " now")));
          return figure;
        }
        function drawCharts() {
          const holder = document.getElementById("charts");
          const now = Date.now() / 1000;
          const rows = [];
          for (const service of page.status.services) {
            const history = page.history.get(service.name) || { samples: [], decisions: [] };
            const row = element("div", { class: "chart-row", "data-service": service.name });
            row.appendChild(element("h3", {}, service.name));
            for (const chart of CHARTS) row.appendChild(drawChart(service.name, chart, history, now));
            rows.push(row);
          }
          holder.replaceChildren(...rows);
        }

        // --- history, kept in the page: a sample a time, 15 minutes -----------------------------
        function mergeHistory(history, replace) {
          if (replace) page.history = new Map();
          for (const service of history.services) {
            const kept = page.history.get(service.name) || { samples: [], decisions: [] };
            const lastSample = kept.samples.length ? kept.samples[kept.samples.length - 1].time : -Infinity;
            for (const sample of service.samples) if (sample.time > lastSample) kept.samples.push(sample);
            const lastDecision = kept.decisions.length ? kept.decisions[kept.decisions.length - 1].time : -Infinity;
            for (const decision of service.decisions) if (decision.time > lastDecision) kept.decisions.push(decision);
            const cutoff = Date.now() / 1000 - WINDOW_SECONDS;
            while (kept.samples.length && kept.samples[0].time < cutoff) kept.samples.shift();
            while (kept.decisions.length && kept.decisions[0].time < cutoff) kept.decisions.shift();
            page.history.set(service.name, kept);
          }
        }

        // --- events and logs ------------------------------------------------------------------
        function eventItem(event) {
          const item = element("li", { "data-kind": event.kind });
          item.appendChild(element("time", {}, clock(event.time)));
          item.appendChild(element("span", { class: "kind" }, event.kind));
          const subject = event.instance || event.service;
          if (subject) item.appendChild(element("span", { class: "subject" }, subject));
          item.appendChild(document.createTextNode(event.message));
          return item;
        }
        function drawEvents() {
          document.getElementById("events").replaceChildren(...page.events.map(eventItem));
        }
        let logTimer = null;
        function chooseInstance(id) {
          page.chosenInstance = id;
          document.getElementById("log-title").textContent = id;
          for (const row of document.querySelectorAll("tr.instance")) row.classList.toggle("chosen", row.dataset.instance === id);
          clearInterval(logTimer);
          loadLog();
          logTimer = setInterval(loadLog, 2000);
        }
        async function loadLog() {
          const id = page.chosenInstance;
          if (!id) return;
          try {
            // The colon of "web:0" stays as it is: the route takes the target verbatim.
            const response = await fetch(`/v1/logs/${encodeURIComponent(id).replace(/%3A/g, ":")}?lines=50`);
            const text = response.ok ? await response.text() : `(${response.status}: ${(await response.json()).message})`;
            if (page.chosenInstance !== id) return;
            const pane = document.getElementById("log-lines");
            const atBottom = pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 4;
            pane.textContent = text || "(no lines yet)";
            if (atBottom) pane.scrollTop = pane.scrollHeight;
          } catch (error) {
            document.getElementById("log-lines").textContent = "(cannot read the log: " + error + ")";
          }
        }

        // --- actions --------------------------------------------------------------------------
        function notice(text, tone) {
          const box = document.getElementById("notice");
          box.textContent = text;
          box.className = tone;
        }
        async function perform(action, name, countInput) {
          let path, body, what;
          if (action === "scale") {
            const count = Number.parseInt(countInput.value, 10);
            if (!Number.isInteger(count) || count < 0) { notice(`type how many instances ${name} should have, then Scale`, "warn"); return; }
            path = `/v1/services/${encodeURIComponent(name)}/scale`; body = { instances: count }; what = `scale ${name} to ${count}`;
          } else {
            path = `/v1/${action}`; body = { targets: [name] }; what = `${action} ${name}`;
          }
          try {
            const response = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" },
              body: JSON.stringify(body), credentials: "same-origin" });
            const answer = await response.json().catch(() => ({}));
            if (response.ok) {
              notice(`${what}: ${(answer.results || []).join("; ") || "done"}`, "good");
              if (action === "scale") countInput.value = "";
            } else {
              notice(`${what} refused (${response.status}): ${answer.message || response.statusText}`, "bad");
            }
          } catch (error) {
            notice(`${what} failed: ${error}`, "bad");
          }
        }

        // --- the live feed --------------------------------------------------------------------
        function drawSession() {
          const session = document.getElementById("session");
          session.textContent = page.signedIn ? "signed in: actions allowed"
            : "read-only: run `musterctl dashboard` and open its address to act";
          session.className = page.signedIn ? "good" : "dim";
        }
        function drawAll() { drawServices(); drawCharts(); }
        function connect() {
          const source = new EventSource("/live");
          const status = document.getElementById("connection");
          source.addEventListener("snapshot", message => {
            const snapshot = JSON.parse(message.data);
            page.status = snapshot.status;
            page.signedIn = snapshot.signed_in;
            mergeHistory(snapshot.history, true);
            page.events = snapshot.events.slice().reverse().slice(0, MAX_EVENTS);
            status.textContent = "live";
            status.className = "good";
            drawSession(); drawAll(); drawEvents();
          });
          source.addEventListener("tick", message => {
            const tick = JSON.parse(message.data);
            page.status = tick.status;
            mergeHistory(tick.history, false);
            status.textContent = "live, " + clock(Date.now() / 1000);
            drawAll();
          });
          source.addEventListener("event", message => {
            page.events.unshift(JSON.parse(message.data));
            page.events.length = Math.min(page.events.length, MAX_EVENTS);
            drawEvents();
          });
          source.onerror = () => { status.textContent = "reconnecting…"; status.className = "warn"; };
        }
        connect();
        """#
}
