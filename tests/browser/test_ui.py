"""GET /ui in a real browser: headless Chromium driven over the DevTools protocol (CDP).

Starts build/shmstate serve with --token (free port, unique --name, stopped by pid), creates
objects over HTTP, and checks that the page shows them, that its counters move while requests
run, that paging and the prefix filter work, that previews render (a heat map for an array) and
that a stored <script> value is shown as text and never runs.

Run: /usr/bin/python3 -m pytest tests/browser (ctest -L browser). SHMSTATE_BIN names the binary
(default build/shmstate), SHMSTATE_CHROMIUM the browser; SHMSTATE_UI_SCREENSHOT=path saves a
screenshot of the page there.
Skips only when Chromium is not installed.
"""
import base64
import http.client
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

CHROMIUM = (os.environ.get("SHMSTATE_CHROMIUM") or shutil.which("chromium")
            or "/usr/bin/chromium")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SHMSTATE_BIN", os.path.join(REPO, "build", "shmstate"))
TOKEN = "ui-test-" + secrets.token_hex(8)
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
WAIT_S = 15  # Longest any one condition may take to show in the page.

if not os.path.exists(CHROMIUM):
    pytest.skip("chromium is not installed (no %s): scripts/setup --test installs it" % CHROMIUM,
                allow_module_level=True)
try:
    import websocket  # Debian's python3-websocket.
except ImportError:  # A missing test dependency is a failure, not a skip.
    websocket = None


class Http:
    """One keep-alive connection to the server, with the bearer token."""

    def __init__(self, port, token=TOKEN):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.token = token

    def request(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
        self.conn.request(method, path, body=body, headers=h)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, dict(r.getheaders()), data

    def ok(self, method, path, body=None):
        status, _, data = self.request(method, path, body)
        assert 200 <= status < 300, (method, path, status, data)
        return json.loads(data) if data else None


@pytest.fixture(scope="module")
def server():
    name = "uitest%d%s" % (os.getpid(), secrets.token_hex(3))
    proc = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--name", name,
                             "--workers", "2", "--token", TOKEN],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no listening line within 30 s"
        line = proc.stdout.readline().decode()
        assert "listening on http://127.0.0.1:" in line, line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Cdp:
    """The least of the DevTools protocol: commands on one page target, answers by id."""

    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, timeout=WAIT_S, suppress_origin=True)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg["result"]

    def eval(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                      awaitPromise=True)
        assert "exceptionDetails" not in r, r
        return r["result"].get("value")

    def wait_for(self, expression, what):
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.1)
        pytest.fail("page never showed %s (%s)" % (what, expression))


@pytest.fixture(scope="module")
def browser():
    if websocket is None:
        pytest.fail("python3-websocket is missing: run scripts/setup --test", pytrace=False)
    profile = tempfile.mkdtemp(prefix="shmstate-ui-chromium-")
    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                             "--disable-quic", "--no-first-run", "--disable-background-networking",
                             "--disable-component-update", "--disable-sync",
                             "--window-size=1400,1100", "--remote-debugging-port=0",
                             "--user-data-dir=" + profile, "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
            assert proc.poll() is None, "chromium exited"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/json/list")
        pages = [t for t in json.loads(conn.getresponse().read()) if t["type"] == "page"]
        cdp = Cdp(pages[0]["webSocketDebuggerUrl"])
        yield cdp
        cdp.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def create_objects(port):
    c = Http(port)
    c.ok("POST", "/v1/counters/ui.hits/incr")
    c.ok("POST", "/v1/counters/ui.ttl/incr?ttl=600")
    c.ok("PUT", "/v1/dicts/ui.dict/greeting", "hello")
    c.ok("PUT", "/v1/dicts/ui.dict/hostile", HOSTILE)
    c.ok("PUT", "/v1/dicts/ui.dict/" + "%3Cb%3Ekey%3C%2Fb%3E", "bold key")
    for item in ("first", HOSTILE, "third"):
        c.ok("POST", "/v1/lists/ui.list/push", item)
    c.ok("POST", "/v1/arrays/ui.grid", {"dtype": "float64", "shape": [16, 24], "fill": 0})
    c.ok("PUT", "/v1/arrays/ui.grid/data?format=json",
         [[float(i * 24 + j) for j in range(24)] for i in range(16)])
    c.ok("POST", "/v1/locks/ui.lock/acquire?ttl=600&owner=tester")
    for i in range(12):
        c.ok("POST", "/v1/counters/page.%02d/incr" % i)


def row_names(cdp):
    return cdp.eval("[...document.querySelectorAll('#objects tbody tr[data-name]')]"
                    ".map(r => r.dataset.name)")


def test_status_page(server, browser):
    port = server
    create_objects(port)

    # The page is served without the token; the data it shows is not.
    anonymous = Http(port, token=None)
    status, headers, body = anonymous.request("GET", "/ui")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'nonce-" in headers["Content-Security-Policy"]
    assert b"<canvas id=\"plot\"" in body
    assert anonymous.request("GET", "/v1/stats")[0] == 401
    assert anonymous.request("GET", "/v1/objects")[0] == 401

    cdp = browser
    cdp.call("Page.navigate", url="http://127.0.0.1:%d/ui" % port)
    cdp.wait_for("document.getElementById('conn')?.textContent === 'token needed'",
                 "that it needs the token")
    cdp.eval("document.getElementById('token').value = %s;"
             "document.getElementById('login').requestSubmit(); true" % json.dumps(TOKEN))
    cdp.wait_for("document.querySelector('#objects tr[data-name=\"ui.hits\"]') !== null",
                 "the objects created over HTTP")
    assert cdp.eval("document.getElementById('token').value") == ""  # Not left in the form.

    names = row_names(cdp)
    for name in ("ui.dict", "ui.grid", "ui.hits", "ui.list", "ui.lock", "ui.ttl"):
        assert name in names
    stats = Http(port).ok("GET", "/v1/stats")
    assert cdp.eval("document.getElementById('seg-gen').textContent") == str(
        stats["segment"]["generation"])
    assert cdp.eval("document.querySelectorAll('#workers tbody tr').length") == 2
    pids = cdp.eval("[...document.querySelectorAll('#workers tbody tr')].map(r => r.dataset.pid)")
    assert sorted(pids) == sorted(str(w["pid"]) for w in stats["workers"])
    ttl = cdp.eval("document.querySelector('#objects tr[data-name=\"ui.ttl\"]').cells[3]"
                   ".textContent")
    assert ttl.endswith(" s") and 500 < float(ttl.split()[0]) <= 600, ttl
    grid = cdp.eval("document.querySelector('#objects tr[data-name=\"ui.grid\"]').cells[2]"
                    ".textContent")
    assert grid == "384 elems, 3.0 KiB", grid

    # Counters move while load runs: drive requests between two reads of the page.
    before = int(cdp.eval("document.getElementById('total-requests').textContent"))
    load = Http(port)
    for _ in range(300):
        load.ok("POST", "/v1/counters/ui.hits/incr")
    cdp.wait_for("+document.getElementById('total-requests').textContent >= %d" % (before + 300),
                 "the requests total move by the 300 requests sent")
    cdp.wait_for("document.querySelector('#objects tr[data-name=\"ui.hits\"]').cells[2]"
                 ".textContent === '= 301'", "the counter's new value")
    cdp.wait_for("[...document.querySelectorAll('#workers td.rps')].some(td => +td.textContent > 0)"
                 " || +document.getElementById('total-rps').textContent > 0",
                 "a non-zero requests/s")
    assert cdp.eval("document.getElementById('plot').width") > 0

    # A stored <script> is text: shown as such, never run, no element made of it.
    cdp.eval("document.querySelector('#objects tr[data-name=\"ui.dict\"]').click(); true")
    cdp.wait_for("document.getElementById('preview-body').textContent.includes('window.pwned=1')",
                 "the dict preview")
    assert cdp.eval("[...document.querySelectorAll('#preview-body td.value')]"
                    ".some(td => td.textContent === %s)" % json.dumps(HOSTILE))
    assert cdp.eval("[...document.querySelectorAll('#preview-body td.key')]"
                    ".some(td => td.textContent === '<b>key</b>')")
    cdp.eval("document.querySelector('#objects tr[data-name=\"ui.list\"]').click(); true")
    cdp.wait_for("document.querySelectorAll('#preview-body li').length === 3", "the list head")
    assert cdp.eval("document.querySelectorAll('#preview-body li')[1].textContent") == HOSTILE
    assert cdp.eval("document.querySelectorAll('#preview-body script, #preview-body img, "
                    "#objects b').length") == 0
    assert cdp.eval("document.querySelectorAll('script').length") == 1
    assert cdp.eval("typeof window.pwned") == "undefined"

    # An array: dtype and shape, and a heat map whose corners differ (values 0 .. 383).
    cdp.eval("document.querySelector('#objects tr[data-name=\"ui.grid\"]').click(); true")
    cdp.wait_for("document.getElementById('heat') !== null", "the heat map")
    assert cdp.eval("document.getElementById('preview-body').textContent.includes('(16, 24)')")
    assert cdp.eval("[document.getElementById('heat').width, document.getElementById('heat')"
                    ".height]") == [24, 16]
    corners = cdp.eval("(() => { const g = document.getElementById('heat').getContext('2d');"
                       "return [[...g.getImageData(0,0,1,1).data], "
                       "[...g.getImageData(23,15,1,1).data]]; })()")
    assert corners[0] != corners[1]

    # The counter preview, then the prefix filter and paging.
    cdp.eval("document.querySelector('#objects tr[data-name=\"ui.hits\"]').click(); true")
    cdp.wait_for("document.getElementById('preview-value')?.textContent === '301'",
                 "the counter preview")
    assert cdp.eval("document.getElementById('login').hidden")  # Connected: no token form.
    if os.environ.get("SHMSTATE_UI_SCREENSHOT"):
        cdp.eval("document.getElementById('prefix').value = 'ui.';"
                 "document.getElementById('prefix').dispatchEvent(new Event('input')); true")
        cdp.wait_for("document.querySelectorAll('#objects tr[data-name]').length === 6",
                     "the ui. objects")
        cdp.eval("document.querySelector('#objects tr[data-name=\"ui.grid\"]').click(); true")
        cdp.wait_for("document.getElementById('heat') !== null", "the heat map")
        shot = cdp.call("Page.captureScreenshot", format="png")
        with open(os.environ["SHMSTATE_UI_SCREENSHOT"], "wb") as f:
            f.write(base64.b64decode(shot["data"]))
    cdp.eval("document.getElementById('page-size').value = '10';"
             "document.getElementById('prefix').value = 'page.';"
             "document.getElementById('prefix').dispatchEvent(new Event('input')); true")
    cdp.wait_for("document.querySelectorAll('#objects tr[data-name]').length === 10 && "
                 "document.querySelector('#objects tr[data-name]').dataset.name === 'page.00'",
                 "the first page of page.*")
    assert row_names(cdp) == ["page.%02d" % i for i in range(10)]
    cdp.eval("document.getElementById('next').click(); true")
    cdp.wait_for("document.querySelectorAll('#objects tr[data-name]').length === 2",
                 "the second page")
    assert row_names(cdp) == ["page.10", "page.11"]
    assert cdp.eval("document.getElementById('next').disabled")
    cdp.eval("document.getElementById('prev').click(); true")
    cdp.wait_for("document.querySelectorAll('#objects tr[data-name]').length === 10",
                 "the first page again")
