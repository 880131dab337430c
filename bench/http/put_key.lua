wrk.method = "PUT"
wrk.body = string.rep("v", 64)
wrk.headers["Content-Type"] = "application/octet-stream"
