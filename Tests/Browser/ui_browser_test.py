"""Drives Topsail's web UI in Debian's headless chromium (Selenium), as a user would.

Run by the Swift integration test UITests, which starts `topsail all`, saves the application and
pipeline, and passes the tokens. Prints one line per check; exits 1 if any failed. Screenshots of
each page go to --screenshots; axe-core checks each page for serious or critical violations.
"""
import argparse, json, re, subprocess, sys, time, urllib.request, urllib.error

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from axe_selenium_python import Axe

parser = argparse.ArgumentParser()
parser.add_argument("--base", required=True)
parser.add_argument("--admin", required=True)
parser.add_argument("--reader", required=True)
parser.add_argument("--screenshots", required=True)
parser.add_argument("--kill", help="clusters only: the container to kill while the clusters page is open")
args = parser.parse_args()

failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)


options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.set_script_timeout(20)
wait = WebDriverWait(driver, 30)


def until(what, condition, timeout=30):
    try:
        # The page re-renders as events arrive: an element found a moment ago may be gone.
        WebDriverWait(driver, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(lambda d: condition())
        return True
    except Exception:
        notice = driver.find_element(By.ID, "notice").text
        check(False, f"{what} (timed out after {timeout} s; the page shows '{heading()}', notice '{notice}', at {driver.current_url})")
        return False


def stale_safe(action, attempts=10):
    """Runs an action on elements found anew each time: live updates redraw the page under it."""
    for attempt in range(attempts):
        try:
            return action()
        except StaleElementReferenceException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)


def click(xpath):
    stale_safe(lambda: driver.find_element(By.XPATH, xpath).click())


def heading():
    return driver.execute_script("const h = document.querySelector('main h1'); return h ? h.textContent : ''")


def accessible(page):
    axe = Axe(driver)
    axe.inject()
    results = axe.run()
    bad = [v for v in results["violations"] if v.get("impact") in ("serious", "critical")]
    check(not bad, f"{page}: axe-core finds no serious or critical violations"
          + ("" if not bad else ": " + "; ".join(f"{v['id']} ({v['impact']}): {len(v['nodes'])} nodes: "
                                       + ", ".join(str(n.get('target')) + " " + (n.get('failureSummary') or '')[:160] for n in v['nodes'][:3]) for v in bad)))


def shot(name):
    driver.save_screenshot(f"{args.screenshots}/{name}.png")


def sign_in(token):
    driver.get(args.base + "/")
    until("the sign-in form", lambda: driver.find_elements(By.ID, "token"))
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    until("the applications after signing in", lambda: heading() == "Applications")


def page_fetch(method, path, csrf=True):
    """A request from the page itself, with the session cookie (and the CSRF token unless told not to)."""
    return driver.execute_async_script("""
        const [method, path, csrf, done] = arguments;
        fetch('/ui/session').then(r => r.json()).then(s => {
          const headers = csrf ? {'X-CSRF-Token': s.csrf} : {};
          return fetch(path, {method, headers, credentials: 'same-origin'});
        }).then(async r => done({status: r.status, body: await r.text()})).catch(e => done({status: 0, body: String(e)}));
    """, method, path, csrf)


def instances():
    return driver.execute_script(
        "return [...document.querySelectorAll('li[data-instance]')].map(li => [li.dataset.instance, li.dataset.health])")


def clusters():
    """A cluster's health on screen follows a container killed behind Topsail's back."""
    sign_in(args.admin)
    driver.get(args.base + "/#/applications/shop/clusters")
    until("both instances Up on the clusters page", lambda: [h for _, h in instances()] == ["Up", "Up"])
    balancers = driver.execute_script("return [...document.querySelectorAll('table tbody tr td:first-child')].map(td => td.textContent)")
    check("web" in balancers, f"the load balancer is listed: {balancers}")
    driver.execute_script("window.__samePage = true")
    before = instances()
    accessible("clusters")
    shot("clusters")
    killed = subprocess.run(["/usr/bin/podman", "kill", "--signal", "KILL", args.kill], capture_output=True, text=True)
    check(killed.returncode == 0, f"podman kill {args.kill}: {killed.stderr.strip()}")
    until("the killed instance to leave the page and its replacement to show Up", lambda: len(instances()) == 2
          and [h for _, h in instances()] == ["Up", "Up"] and instances() != before, timeout=60)
    check(driver.execute_script("return window.__samePage === true"), "the clusters page followed the change without reloading")
    print(f"instances before {before}, after {instances()}", flush=True)
    shot("clusters-replaced")

    # The actions: each is a task; the page follows its outcome.
    def state():
        return driver.execute_script("const s = document.querySelector('main section h3 .status'); return s ? s.textContent.toLowerCase() : ''")
    click("//button[normalize-space()='Disable']")
    until("the server group disabled on screen", lambda: state() == "disabled", timeout=60)
    click("//button[normalize-space()='Enable']")
    until("the server group enabled again on screen", lambda: state() == "enabled", timeout=60)

    def type_desired():
        desired = driver.find_element(By.CSS_SELECTOR, "input.narrow")
        desired.clear()
        desired.send_keys("3")
    stale_safe(type_desired)
    # What was typed survives a redraw (a live update may come between typing and clicking).
    check(stale_safe(lambda: driver.find_element(By.CSS_SELECTOR, "input.narrow").get_attribute("value")) == "3", "the typed capacity is kept")
    click("//button[normalize-space()='Resize']")
    until("three instances Up on screen", lambda: [h for _, h in instances()] == ["Up", "Up", "Up"], timeout=90)
    shot("clusters-resized")


try:
  if args.kill:
    clusters()
  else:
    # --- Signing in: a session cookie, HttpOnly and SameSite=Strict; strict CSP on the page.
    driver.get(args.base + "/")
    until("the sign-in page", lambda: heading() == "Sign in")
    accessible("sign-in")
    shot("sign-in")
    with urllib.request.urlopen(args.base + "/") as response:
        policy = response.headers.get("Content-Security-Policy", "")
    check("script-src 'self'" in policy and "unsafe-inline" not in policy, f"the page has a strict Content-Security-Policy: {policy}")
    sign_in(args.admin)
    cookie = driver.get_cookie("topsail_session")
    check(cookie is not None and cookie.get("httpOnly") and cookie.get("sameSite") == "Strict",
          f"the session cookie is HttpOnly and SameSite=Strict: {cookie and {k: cookie[k] for k in ('httpOnly', 'sameSite')}}")
    check(args.admin not in driver.page_source, "the token is not in the page")
    until("the application in the list", lambda: driver.find_elements(By.LINK_TEXT, "shop"))
    accessible("applications")
    shot("applications")

    # --- An application's pipelines; triggering with the form its parameterConfig makes.
    driver.find_element(By.LINK_TEXT, "shop").click()
    until("the pipelines of shop", lambda: driver.find_elements(By.XPATH, "//button[normalize-space()='Run deploy']"))
    accessible("application")
    shot("application")
    driver.find_element(By.XPATH, "//button[normalize-space()='Run deploy']").click()
    until("the trigger form", lambda: driver.find_elements(By.ID, "parameter-0"))
    labels = [label.text for label in driver.find_elements(By.CSS_SELECTOR, "form label")]
    check("version (required)" in labels and "region" in labels, f"the form has the pipeline's parameters: {labels}")
    options_shown = [o.text for o in driver.find_elements(By.CSS_SELECTOR, "#parameter-1 option")]
    chosen = driver.find_element(By.ID, "parameter-1").get_attribute("value")
    check(options_shown[-2:] == ["eu", "us"] and chosen == "eu", f"a parameter with options is a choice of them, its default chosen: {options_shown}, {chosen}")
    accessible("trigger form")
    shot("trigger")
    driver.find_element(By.ID, "parameter-0").send_keys("1.2.3")
    driver.find_element(By.XPATH, "//button[normalize-space()='Start']").click()
    until("the execution page", lambda: "#/executions/" in driver.current_url and driver.find_elements(By.CSS_SELECTOR, "svg.dag g.node"))
    execution = driver.current_url.split("#/executions/")[1]
    driver.execute_script("window.__samePage = true")

    # --- The live execution: the judgment waits; approving it by clicking lets the pipeline go on.
    judgment = "svg.dag g.node[data-ref='approve']"
    until("the judgment stage to run (shown live)", lambda: "running" in driver.find_element(By.CSS_SELECTOR, judgment).get_attribute("aria-label"))
    stale_safe(lambda: driver.find_element(By.CSS_SELECTOR, judgment).click())
    until("the judgment's buttons", lambda: driver.find_elements(By.XPATH, "//button[normalize-space()='Continue']"))
    accessible("execution")
    shot("execution-judgment")
    driver.find_element(By.ID, "theme").click()
    check(driver.execute_script("return document.documentElement.dataset.theme") == "dark", "the theme switches to dark")
    accessible("execution, dark theme")
    shot("execution-dark")
    driver.find_element(By.ID, "theme").click()
    stale_safe(lambda: driver.find_element(By.ID, "judgment-input").send_keys("ship"))
    click("//button[normalize-space()='Continue']")
    until("the execution to succeed on screen", lambda: driver.find_elements(By.CSS_SELECTOR, ".panel .status.s-SUCCEEDED")
          and "running" not in driver.find_element(By.CSS_SELECTOR, "svg.dag g.node[data-ref='after']").get_attribute("aria-label")
          and "succeeded" in driver.find_element(By.CSS_SELECTOR, "svg.dag g.node[data-ref='after']").get_attribute("aria-label"), timeout=40)
    check(driver.execute_script("return window.__samePage === true"), "the execution page updated without reloading")
    events = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#timeline li code")]
    check("execution.completed" in events, f"the event timeline shows the completion: {events[-3:]}")
    shot("execution-done")

    # --- Replay: the execution as it stood after its first event.
    driver.execute_script("const s = document.getElementById('replay'); s.value = '1'; s.dispatchEvent(new Event('input'));")
    until("the replay of the first event", lambda: "Replaying" in driver.find_element(By.CSS_SELECTOR, "main .panel").text
          and "not started" in driver.find_element(By.CSS_SELECTOR, judgment).get_attribute("aria-label"))
    shot("execution-replay")

    # --- The editor: a validation problem is shown with its field, in JSON and in YAML; a valid
    # YAML edit saves a new version.
    driver.get(args.base + "/#/applications/shop/pipelines/deploy-1/edit")
    until("the editor", lambda: driver.find_elements(By.ID, "pipeline-text"))
    document = json.loads(driver.find_element(By.ID, "pipeline-text").get_attribute("value"))
    del document["stages"][1]["type"]
    driver.execute_script("document.getElementById('pipeline-text').value = arguments[0]", json.dumps(document, indent=2))
    driver.find_element(By.XPATH, "//button[normalize-space()='Save']").click()
    until("the validation problem", lambda: driver.find_elements(By.CSS_SELECTOR, "#problems li"))
    problems = [li.get_attribute("data-path") + " " + li.text for li in driver.find_elements(By.CSS_SELECTOR, "#problems li")]
    check(any("stages[1]" in p and "type" in p for p in problems), f"the problem names its field: {problems}")
    accessible("editor")
    shot("editor")
    driver.execute_script("window.confirm = () => true")
    driver.find_element(By.ID, "format-yaml").click()
    until("the pipeline as YAML", lambda: "stages:" in driver.find_element(By.ID, "pipeline-text").get_attribute("value"))
    yaml_text = driver.find_element(By.ID, "pipeline-text").get_attribute("value")
    broken = re.sub(r'waitTime: 1\b', 'waitTime: "soon"', yaml_text)
    check(broken != yaml_text, f"the YAML holds the wait's waitTime: {yaml_text[:400]}")
    driver.execute_script("document.getElementById('pipeline-text').value = arguments[0]", broken)
    driver.find_element(By.XPATH, "//button[normalize-space()='Save']").click()
    until("the YAML's validation problem", lambda: any("waitTime" in (li.get_attribute("data-path") or "") for li in driver.find_elements(By.CSS_SELECTOR, "#problems li")))
    fixed = re.sub(r'waitTime: 1\b', 'waitTime: 2', yaml_text)
    driver.execute_script("document.getElementById('pipeline-text').value = arguments[0]", fixed)
    driver.find_element(By.XPATH, "//button[normalize-space()='Save']").click()
    until("the YAML saved", lambda: "Saved version" in driver.find_element(By.ID, "notice").text)
    saved = json.loads(urllib.request.urlopen(urllib.request.Request(args.base + "/applications/shop/pipelineConfigs/deploy-1",
                                                                      headers={"Authorization": f"Bearer {args.admin}"})).read())
    check(saved["stages"][1]["waitTime"] == 2, f"the YAML edit was saved: {saved['stages'][1]}")
    shot("editor-yaml")

    # History: the two versions compared; a save over a version someone else replaced is refused.
    driver.get(args.base + "/#/applications/shop")
    until("the application again", lambda: heading() == "shop")
    driver.get(args.base + "/#/applications/shop/pipelines/deploy-1/edit")
    until("the editor with two versions", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#diff-from option")) >= 2)
    driver.find_element(By.XPATH, "//button[normalize-space()='Compare']").click()
    until("the diff", lambda: driver.find_elements(By.CSS_SELECTOR, ".diff .add"))
    added = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".diff .add")]
    removed = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".diff .del")]
    check(any('"waitTime": 2' in a for a in added) and any('"waitTime": 1' in r for r in removed), f"the diff shows the change: +{added} -{removed}")
    meanwhile = json.loads(driver.find_element(By.ID, "pipeline-text").get_attribute("value"))
    meanwhile["description"] = "saved by someone else"
    urllib.request.urlopen(urllib.request.Request(args.base + "/pipelines", data=json.dumps(meanwhile).encode(), method="POST",
                                                  headers={"Authorization": f"Bearer {args.admin}", "Content-Type": "application/json"}))
    driver.find_element(By.XPATH, "//button[normalize-space()='Save']").click()
    until("the stale save refused", lambda: driver.find_elements(By.CSS_SELECTOR, "#problems li"))
    stale = driver.find_element(By.CSS_SELECTOR, "#problems li").text
    check("version" in stale and "reload" in stale, f"a save over a newer version is refused, saying so: {stale}")

    # --- Audit.
    driver.get(args.base + "/#/audit?application=shop")
    until("audit entries", lambda: len(driver.find_elements(By.CSS_SELECTOR, "main tbody tr")) > 0)
    accessible("audit")
    shot("audit")

    # --- Signing out revokes the session.
    old = driver.get_cookie("topsail_session")["value"]
    driver.find_element(By.ID, "signout").click()
    until("the sign-in page after signing out", lambda: heading() == "Sign in")
    request = urllib.request.Request(args.base + "/ui/session", headers={"Cookie": f"topsail_session={old}"})
    try:
        urllib.request.urlopen(request)
        check(False, "the signed-out session is refused")
    except urllib.error.HTTPError as error:
        check(error.code == 401, f"the signed-out session is refused: {error.code}")

    # --- A READ-only user sees no buttons, and the server refuses what the page would not offer.
    sign_in(args.reader)
    driver.get(args.base + f"/#/executions/{execution}")
    until("the execution for the reader", lambda: driver.find_elements(By.CSS_SELECTOR, "svg.dag g.node"))
    stale_safe(lambda: driver.find_element(By.CSS_SELECTOR, judgment).click())
    buttons = [b.text for b in driver.find_elements(By.CSS_SELECTOR, "main button")]
    check(not any(b in buttons for b in ["Cancel execution", "Pause", "Continue", "Restart stage"]), f"no actions offered to a reader: {buttons}")
    driver.get(args.base + "/#/applications/shop")
    until("the application for the reader", lambda: heading() == "shop")
    check(not driver.find_elements(By.XPATH, "//button[starts-with(normalize-space(), 'Run')]"), "no Run button for a reader")
    shot("reader-application")
    forged = page_fetch("PUT", f"/pipelines/{execution}/stages/approve/restart")
    check(forged["status"] == 403 and "forbidden" in forged["body"], f"a forged request from a reader is refused: {forged}")
    no_csrf = page_fetch("PUT", f"/pipelines/{execution}/stages/approve/restart", csrf=False)
    check(no_csrf["status"] == 403 and "csrf" in no_csrf["body"], f"a request without the CSRF token is refused: {no_csrf}")
finally:
    logs = [entry["message"] for entry in driver.get_log("browser")] if hasattr(driver, "get_log") else []
    errors = [m for m in logs if "Content Security Policy" in m or "Uncaught" in m]
    check(not errors, f"no script errors or CSP violations in the console: {errors[:3]}")
    driver.quit()

print(json.dumps({"failures": failures}))
sys.exit(1 if failures else 0)
