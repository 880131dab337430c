"""redis-cli (Debian redis-tools) against shmstate: one-shot commands and a piped script."""
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-tools")


def cli(server, *args, stdin=None, code=0):
    result = subprocess.run(["redis-cli", "-p", str(server.port), *args], input=stdin,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == code, result.stderr
    return result.stdout


def test_one_shot_commands(server):
    cli(server, "flushall")
    assert cli(server, "ping") == "PONG\n"
    assert cli(server, "set", "greeting", "hello world") == "OK\n"
    assert cli(server, "get", "greeting") == "hello world\n"
    assert cli(server, "incrby", "n", "41") == "41\n"
    assert cli(server, "rpush", "q", "a", "b") == "2\n"
    assert cli(server, "lrange", "q", "0", "-1") == "a\nb\n"
    assert cli(server, "-3", "hset", "h", "f", "v") == "1\n"
    assert "db0:keys=4" in cli(server, "info", "keyspace")
    assert cli(server, "nosuch").startswith("ERR unknown command 'nosuch'")


def test_piped_script(server):
    cli(server, "flushall")
    script = "".join("SET key:%d %d\n" % (i, i) for i in range(500)) + "DBSIZE\nGET key:499\n"
    out = cli(server, stdin=script).splitlines()
    assert out[:500] == ["OK"] * 500 and out[500:] == ["500", "499"]
    assert len(cli(server, "--scan", "--pattern", "key:1??").split()) == 100


def test_pipe_mode(server):
    cli(server, "flushall")
    payload = "".join("*3\r\n$4\r\nSADD\r\n$1\r\ns\r\n$1\r\n%d\r\n" % i for i in range(3))
    payload += "".join("*3\r\n$3\r\nSET\r\n$2\r\np%d\r\n$1\r\n%d\r\n" % (i, i) for i in range(10))
    out = cli(server, "--pipe", stdin=payload, code=1)  # SADD (sets) is not supported.
    assert "errors: 3, replies: 13" in out
    assert cli(server, "get", "p9") == "9\n"
