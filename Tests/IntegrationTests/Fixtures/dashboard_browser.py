#!/usr/bin/python3
"""Drives musterd's web dashboard in headless Chromium (Debian's chromium and chromium-driver,
Selenium from Debian's python3-selenium) for DashboardTests. One scenario a run:

  live       the page shows the services; `musterctl scale web 3` shows on it within 2 s;
             expanding web shows its instances; clicking worker:0 shows its log lines
  signed-in  opens the address `musterctl dashboard` prints, then scales web to 1 on the page;
             a form that another site's page submits (with the cookie in the browser) is refused
  refused    a scale clicked without a token, with a wrong one and with an expired one: each 401
  chart      traffic through web's proxy draws points on its req/s chart, a scale a mark whose
             hover text is the decision's reason

Prints one JSON object (what it measured) and exits 0, or prints why on stderr and exits 1.
Screenshots go to --output as dashboard-<scenario>-<step>.png, also when a step fails. Chromium
runs with a profile in --profile (the test's temp folder) and is always quit, also on a timeout.
"""
import argparse
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


class Failed(Exception):
    pass


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["live", "signed-in", "refused", "chart"])
    parser.add_argument("--url", required=True, help="the dashboard, e.g. http://127.0.0.1:9090")
    parser.add_argument("--musterctl", required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--proxy-port", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=50, help="the whole run's limit, seconds")
    return parser.parse_args()


class Browser:
    def __init__(self, args):
        self.args = args
        options = Options()
        for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", f"--user-data-dir={args.profile}", "--no-first-run",
                     "--disable-background-networking", "--disable-extensions"]:
            options.add_argument(flag)
        options.binary_location = "/usr/bin/chromium"
        service = Service("/usr/bin/chromedriver", log_path=f"{args.output}/dashboard-{args.scenario}-chromedriver.log")
        self.driver = webdriver.Chrome(service=service, options=options)

    def shot(self, step):
        self.driver.save_screenshot(f"{self.args.output}/dashboard-{self.args.scenario}-{step}.png")

    def wait(self, what, condition, seconds=10, step=0.05):
        deadline = time.monotonic() + seconds
        while True:
            try:
                value = condition()
                if value:
                    return value
            except Exception:   # the element is not there yet, or was redrawn under us
                pass
            if time.monotonic() > deadline:
                raise Failed(f"waited {seconds} s for {what}")
            time.sleep(step)

    def css(self, selector):
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def click(self, selector):
        """Clicks the element; the table is redrawn every second, so an element found just
        before a redraw is stale by the click: find it again and retry."""
        def attempt():
            self.css(selector)[0].click()
            return True
        self.wait(f"a click on {selector}", attempt)

    def cell(self, service, field):
        return self.css(f'tr.service[data-service="{service}"] td[data-field="{field}"]')[0].text

    def notice(self):
        box = self.css("#notice")[0]
        return box.text, box.get_attribute("class")

    def scale_on_page(self, service, count):
        box = self.css(f'input.scale-count[data-service="{service}"]')[0]
        box.clear()
        box.send_keys(str(count))
        self.click(f'button[data-action="scale"][data-service="{service}"]')

    def quit(self):
        self.driver.quit()


def musterctl(args, *words):
    result = subprocess.run([args.musterctl, *words, "--socket", args.socket], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=20)
    if result.returncode != 0:
        raise Failed(f"musterctl {' '.join(words)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def live(browser, args):
    browser.driver.get(args.url + "/")
    browser.wait("web 2/2 and worker 1/1 in the table",
                 lambda: browser.cell("web", "ready") == "2/2" and browser.cell("worker", "ready") == "1/1", seconds=15)
    browser.wait("the feed to say live", lambda: browser.css("#connection")[0].text.startswith("live"))
    browser.shot("services")
    started = time.monotonic()
    musterctl(args, "scale", "web", "3")
    browser.wait("web's desired count 3 on the page", lambda: browser.cell("web", "ready").endswith("/3"), seconds=2, step=0.02)
    shown_after = time.monotonic() - started
    browser.shot("after-cli-scale")
    browser.click('tr.service[data-service="web"]')
    browser.wait("web's three instance rows", lambda: len(browser.css('tr.instance[data-instance^="web:"]')) == 3)
    browser.click('tr.service[data-service="worker"]')
    browser.wait("worker's instance row", lambda: browser.css('tr.instance[data-instance="worker:0"]'))
    browser.click('tr.instance[data-instance="worker:0"]')
    browser.wait("worker:0's log lines", lambda: "tick" in browser.css("#log-lines")[0].text)
    browser.wait("the scale in the events", lambda: any("musterctl scale" in e.text or "scale" in e.get_attribute("data-kind")
                                                        for e in browser.css("#events li")))
    browser.shot("instances-and-log")
    return {"cli_scale_shown_after_seconds": round(shown_after, 3)}


def signed_in(browser, args):
    login = json.loads(musterctl(args, "dashboard", "--json"))
    browser.driver.get(login["url"])
    browser.wait("the page after the sign-in redirect", lambda: browser.driver.current_url.rstrip("/") == args.url)
    browser.wait("the page to say signed in", lambda: "signed in" in browser.css("#session")[0].text)
    cookie = browser.driver.get_cookie("muster_dashboard")
    if not cookie or not cookie.get("httpOnly") or cookie.get("sameSite") != "Strict":
        raise Failed(f"the cookie is not HttpOnly and SameSite=Strict: {cookie}")
    if "token=" in browser.driver.current_url:
        raise Failed("the token stayed in the address bar")
    browser.wait("web 2/2", lambda: browser.cell("web", "ready") == "2/2", seconds=15)
    browser.scale_on_page("web", 1)
    text, tone = browser.wait("the scale's answer", lambda: browser.notice() if browser.notice()[0] else None)
    browser.shot("scaled")
    if "scale web to 1" not in text or tone != "good":
        raise Failed(f"the scale was not accepted: {text!r} ({tone})")
    browser.wait("web's desired count 1 on the page", lambda: browser.cell("web", "ready").endswith("/1"), seconds=5)
    # Another site's page submits a form to the dashboard while this browser is signed in: no
    # CORS preflight for a form, so only SameSite and the Origin check stand in the way.
    form = ('<form id="f" method="POST" enctype="text/plain" action="{url}/v1/stop">'
            '<input name=\'{{"targets":["web"],"x":"\' value=\'"}}\'></form>'
            '<script>document.getElementById("f").submit()</script>').format(url=args.url)
    browser.driver.get("data:text/html," + urllib.request.quote(form))
    body = browser.wait("the forged form's answer", lambda: browser.driver.find_element(By.TAG_NAME, "body").text)
    browser.shot("forged-form")
    if "cross_site" not in body and "unauthorized" not in body:
        raise Failed(f"a form from another site was not refused: {body[:300]}")
    return {"forged_form_answer": body[:200]}


def refused(browser, args):
    browser.driver.get(args.url + "/")
    browser.wait("web 2/2", lambda: browser.cell("web", "ready") == "2/2", seconds=15)
    if "read-only" not in browser.css("#session")[0].text:
        raise Failed("the page should say it is read-only without a token")
    answers = {}

    def click_and_read(label):
        browser.driver.execute_script("document.getElementById('notice').textContent = ''")
        browser.scale_on_page("web", 4)
        text, tone = browser.wait(f"the answer ({label})", lambda: browser.notice() if browser.notice()[0] else None)
        browser.shot(label)
        if "refused (401)" not in text or tone != "bad":
            raise Failed(f"a scale {label} was not refused with 401: {text!r} ({tone})")
        answers[label] = text

    click_and_read("without-token")
    browser.driver.add_cookie({"name": "muster_dashboard", "value": "0" * 64, "path": "/", "httpOnly": True, "sameSite": "Strict"})
    click_and_read("wrong-token")
    short = json.loads(musterctl(args, "dashboard", "--json", "--valid-for", "1s"))
    browser.driver.get(short["url"])
    browser.wait("the page after the sign-in redirect", lambda: browser.driver.current_url.rstrip("/") == args.url)
    browser.wait("web 2/2", lambda: browser.cell("web", "ready") == "2/2", seconds=15)
    time.sleep(max(0, short["expires_at"] - time.time()) + 0.2)
    # The cookie's Max-Age ends with the token, so the browser dropped it: no token now.
    click_and_read("after-expiry")
    # A cookie that outlived its token (the browser's clock, a daemon restart) is refused too.
    browser.driver.add_cookie({"name": "muster_dashboard", "value": short["token"], "path": "/", "httpOnly": True, "sameSite": "Strict"})
    click_and_read("expired-token")
    if "expired" not in answers["expired-token"]:
        raise Failed(f"the expired token's answer should say so: {answers['expired-token']!r}")
    return answers


def chart(browser, args):
    stop = threading.Event()
    sent = [0]

    def load():
        while not stop.is_set():
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{args.proxy_port}/", timeout=5).read()
                sent[0] += 1
            except OSError:
                time.sleep(0.05)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        browser.driver.get(args.url + "/")
        browser.wait("web 2/2", lambda: browser.cell("web", "ready") == "2/2", seconds=15)
        musterctl(args, "scale", "web", "3")
        line = 'svg.chart[data-service="web"][data-metric="rps"] polyline'
        points = browser.wait("3 or more points with traffic on web's req/s chart",
                              lambda: int(browser.css(line)[0].get_attribute("data-points")) >= 3
                              and not browser.css('svg.chart[data-service="web"][data-metric="rps"] + figcaption')[0].text.endswith(": 0 now")
                              and int(browser.css(line)[0].get_attribute("data-points")), seconds=20)
        reason = browser.wait("a scaling mark on web's instances chart",
                              lambda: browser.css('svg.chart[data-service="web"][data-metric="instances"] g.decision circle title')[-1]
                              .get_attribute("textContent"), seconds=10)
        if "musterctl scale" not in reason:
            raise Failed(f"the mark's hover text should give the reason: {reason!r}")
        browser.driver.execute_script("document.getElementById('charts').scrollIntoView()")
        browser.shot("charts")
        return {"points": points, "mark": reason, "requests_sent": sent[0]}
    finally:
        stop.set()


def main():
    args = parse_args()

    def too_long(_signum, _frame):
        raise Failed(f"the scenario ran past {args.timeout} s")

    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(int(args.timeout))
    browser = None
    try:
        browser = Browser(args)
        result = {"live": live, "signed-in": signed_in, "refused": refused, "chart": chart}[args.scenario](browser, args)
        print(json.dumps(result))
        return 0
    except Failed as failure:
        print(f"dashboard_browser {args.scenario}: {failure}", file=sys.stderr)
        if browser:
            try:
                browser.shot("failed")
                print(f"page text: {browser.driver.find_element(By.TAG_NAME, 'body').text[:2000]}", file=sys.stderr)
                print(f"console: {browser.driver.get_log('browser')}", file=sys.stderr)
            except Exception:
                pass
        return 1
    finally:
        signal.alarm(0)
        if browser:
            browser.quit()


if __name__ == "__main__":
    sys.exit(main())
