"""Waiting for a state another process changes, for the RESP tests: bounded polls, never a
sleep in place of the state."""
import time


def until(predicate, seconds=10.0):
    """Polls `predicate` until true or the bound; returns its last answer."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def blocked(conn):
    """How many clients INFO (of the worker `conn` is on) counts as blocked."""
    return conn.info("clients")["blocked_clients"]
