#!/usr/bin/env python3
"""The 100-concurrent-clients check: 100 clients POST /v1/counters/<fresh name>/incr at once, each
on its own connection; the answers must be exactly 1..100. Prints "ok" or what was wrong; exit 1
when wrong."""
import http.client
import json
import sys
import threading
import uuid

CLIENTS = 100


def main():
    port = int(sys.argv[1])
    name = "check-" + uuid.uuid4().hex[:12]
    values, errors = [], []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            conn.connect()
            start.wait(timeout=20)
            conn.request("POST", "/v1/counters/%s/incr" % name, body=b"")
            response = conn.getresponse()
            body = response.read()
            with lock:
                if response.status != 200:
                    errors.append("HTTP %d" % response.status)
                else:
                    values.append(int(json.loads(body)["value"]))
            conn.close()
        except Exception as e:  # noqa: BLE001 - any failure is a wrong answer.
            with lock:
                errors.append(type(e).__name__)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    if errors:
        print("wrong: %d errors (%s)" % (len(errors), ", ".join(sorted(set(errors)))))
        return 1
    if sorted(values) != list(range(1, CLIENTS + 1)):
        dupes = len(values) - len(set(values))
        print("wrong: %d answers, %d duplicates, max %s" % (len(values), dupes, max(values or [0])))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
