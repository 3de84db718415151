/// The dashboard's page and style. Served by musterd itself, nothing from elsewhere: the page
/// must work on a host with no network beyond the daemon, and the Content-Security-Policy
/// (`default-src 'self'`) would refuse anything else anyway.
enum DashboardPage {
    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Muster</title>
        <link rel="stylesheet" href="/dashboard.css">
        </head>
        <body>
        <header>
          <h1>Muster</h1>
          <span id="connection" class="dim">connecting…</span>
          <span id="session" class="dim"></span>
        </header>
        <div id="notice" role="status"></div>
        <main>
          <section>
            <h2>Services</h2>
            <table id="services">
              <thead><tr>
                <th>Service</th><th>State</th><th>Ready</th><th>Load/target</th><th>Req/s</th><th>P50</th><th>P99</th>
                <th>Conns</th><th>CPU</th><th>Memory</th><th>Restarts</th><th>Actions</th>
              </tr></thead>
              <tbody></tbody>
            </table>
            <p class="dim hint">Click a service to show its instances, an instance to show its log.</p>
          </section>
          <section>
            <h2>Last 15 minutes</h2>
            <div id="charts"></div>
          </section>
          <div class="columns">
            <section>
              <h2>Events</h2>
              <ol id="events"></ol>
            </section>
            <section>
              <h2>Log <span id="log-title" class="dim">(no instance chosen)</span></h2>
              <pre id="log-lines"></pre>
            </section>
          </div>
        </main>
        <script src="/dashboard.js"></script>
        </body>
        </html>
        """#

    static let loginRefused = #"""
        <!doctype html>
        <html lang="en">
        <head><meta charset="utf-8"><title>Muster: not signed in</title><link rel="stylesheet" href="/dashboard.css"></head>
        <body>
        <header><h1>Muster</h1></header>
        <main>
          <p id="refused">The token is wrong or has expired, so this browser is not signed in.</p>
          <p>Run <code>musterctl dashboard</code> on the host (as root or a member of the control group) and open the address it prints.
             <a href="/">The page</a> can be read without signing in.</p>
        </main>
        </body>
        </html>
        """#

    static let style = #"""
        :root { --fg: #1d2329; --dim: #6b7480; --line: #d9dee3; --good: #1a7f37; --warn: #9a6700; --bad: #cf222e;
                --accent: #0969da; --bg: #ffffff; --panel: #f6f8fa; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
        header { display: flex; gap: 1.5em; align-items: baseline; padding: .6em 1.2em; border-bottom: 1px solid var(--line); background: var(--panel); }
        header h1 { font-size: 1.2em; margin: 0; }
        main { padding: 0 1.2em 2em; }
        h2 { font-size: 1em; margin: 1.2em 0 .5em; }
        .dim { color: var(--dim); }
        .good { color: var(--good); } .warn { color: var(--warn); } .bad { color: var(--bad); }
        #notice { min-height: 1.6em; padding: .2em 1.2em; }
        table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
        th, td { text-align: left; padding: .25em .6em; border-bottom: 1px solid var(--line); white-space: nowrap; }
        th { font-weight: 600; color: var(--dim); }
        tr.service { cursor: pointer; }
        tr.service:hover, tr.instance:hover { background: var(--panel); }
        tr.instance { cursor: pointer; color: var(--dim); }
        tr.instance td:first-child { padding-left: 2em; }
        tr.instance.chosen { background: #ddf4ff; }
        td.actions { cursor: default; }
        td.actions input { width: 4.5em; }
        button { font: inherit; padding: .1em .6em; margin-right: .2em; cursor: pointer; }
        .hint { margin: .4em 0 0; font-size: .9em; }
        .chart-row { display: flex; flex-wrap: wrap; gap: .8em; align-items: flex-start; margin-bottom: .8em; }
        .chart-row h3 { width: 100%; font-size: .95em; margin: .2em 0 0; }
        figure { margin: 0; }
        figcaption { font-size: .85em; color: var(--dim); }
        svg.chart { background: var(--panel); border: 1px solid var(--line); }
        svg.chart .line { fill: none; stroke: var(--accent); stroke-width: 1.5; }
        svg.chart .line.second { stroke: var(--dim); stroke-dasharray: 4 3; }
        svg.chart .decision line { stroke: var(--warn); stroke-width: 1; stroke-dasharray: 2 2; }
        svg.chart .decision circle { fill: var(--warn); cursor: help; }
        svg.chart text { font-size: 10px; fill: var(--dim); }
        .columns { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5em; }
        #events { list-style: none; padding: 0; margin: 0; max-height: 22em; overflow-y: auto; font-size: .9em; }
        #events li { padding: .15em 0; border-bottom: 1px solid var(--line); }
        #events time { color: var(--dim); margin-right: .5em; font-variant-numeric: tabular-nums; }
        #events .kind { font-weight: 600; margin-right: .5em; }
        #events .subject { color: var(--accent); margin-right: .5em; }
        #log-lines { background: var(--panel); border: 1px solid var(--line); padding: .5em; max-height: 22em; overflow: auto; font-size: .85em; margin: 0; white-space: pre-wrap; }
        """#
}
