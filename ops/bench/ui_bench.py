"""The browser half of `topsail bench ui` (Selenium driving Debian's headless chromium).

1. Render: navigates to an execution --rounds times and records, in the page, the time from the
   navigation to the moment its stage graph holds every stage (a MutationObserver on the page).
2. Live: with the execution open, writes --ready, then records when each new event appears in the
   page's timeline (Date.now(), the machine's clock), until --events more have appeared.
Prints one JSON object: {"render": {"<id>": [ms, ...]}, "seen": [epoch_ms, ...]}.
"""
import argparse, json, os, sys, time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

parser = argparse.ArgumentParser()
parser.add_argument("--base", required=True)
parser.add_argument("--token", required=True)
parser.add_argument("--render", action="append", default=[], help="execution id:stage count (repeatable)")
parser.add_argument("--rounds", type=int, default=5)
parser.add_argument("--live", required=True, help="the execution whose new events are timed")
parser.add_argument("--events", type=int, required=True)
parser.add_argument("--ready", required=True, help="a file written once the live page is open")
args = parser.parse_args()

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.set_script_timeout(60)
try:
    driver.get(args.base + "/")
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "token"))
    driver.find_element(By.ID, "token").send_keys(args.token)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("const h = document.querySelector('main h1'); return h && h.textContent === 'Applications'"))

    render = {}
    for item in args.render:
        execution, count = item.split(":")
        times = []
        for _ in range(args.rounds):
            driver.execute_script("location.hash = '#/'")
            WebDriverWait(driver, 30).until(lambda d: d.execute_script("const h = document.querySelector('main h1'); return h && h.textContent === 'Applications'"))
            elapsed = driver.execute_async_script("""
                const [execution, count, done] = arguments;
                const main = document.getElementById('main');
                const start = performance.now();
                const observer = new MutationObserver(() => {
                  if (document.querySelectorAll('svg.dag g.node').length >= count) {
                    observer.disconnect();
                    // The graph is in the DOM; the next frame has it painted.
                    requestAnimationFrame(() => done(performance.now() - start));
                  }
                });
                observer.observe(main, {childList: true, subtree: true});
                location.hash = '#/executions/' + execution;
            """, execution, int(count))
            times.append(elapsed)
        render[execution] = times

    driver.execute_script(f"location.hash = '#/executions/{args.live}'")
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline li"))
    time.sleep(1)
    driver.execute_script("""
        window.__seen = [];
        let known = document.querySelectorAll('#timeline li').length;
        new MutationObserver(() => {
          const now = Date.now();
          const count = document.querySelectorAll('#timeline li').length;
          for (; known < count; known++) window.__seen.push(now);
        }).observe(document.getElementById('main'), {childList: true, subtree: true});
    """)
    with open(args.ready, "w") as ready:
        ready.write("ready\n")
    WebDriverWait(driver, 120, poll_frequency=0.2).until(lambda d: d.execute_script("return window.__seen.length") >= args.events)
    seen = driver.execute_script("return window.__seen")
    print(json.dumps({"render": render, "seen": seen}))
finally:
    driver.quit()
