import subprocess, sys, time, httpx, socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
t = time.perf_counter()
proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"], cwd="/tmp/p10/srv")
url = f"http://127.0.0.1:{port}"
for _ in range(200):
    try:
        if httpx.get(url + "/health", timeout=0.5).status_code == 200: break
    except httpx.HTTPError: time.sleep(0.05)
print(f"server healthy after {time.perf_counter()-t:.2f} s")
with httpx.Client(base_url=url) as c:
    t = time.perf_counter(); n = 200
    for _ in range(n): c.post("/embed", files={"file": ("a.png", b"x" * 1000, "image/png")})
    print(f"{n} sequential requests: {(time.perf_counter()-t)/n*1000:.1f} ms each")
    print(c.post("/embed", files={"file": ("a.png", b"", "image/png")}).json())
proc.terminate(); proc.wait(timeout=10); print("stopped, returncode", proc.returncode)
