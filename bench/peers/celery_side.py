"""Python Celery side of `npm run bench` (from the peer harness in shared/bench):
python3 celery_side.py MODE N [ARG]; prints one JSON line.

MODE enqueue: N apply_async of noop, timed, after an untimed warm-up of N/4. prefill: N noop messages (or burn with ARG ms), untimed.
roundtrip: N sequential noop.delay().get() after a warm-up of ARG (50), latencies in ms. versions: celery and kombu."""
import json, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_app.tasks import burn, noop  # noqa: E402

mode, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
if mode == "enqueue":
    for i in range(max(50, n // 4)):
        noop.apply_async((i, 1), ignore_result=False)
    t = time.perf_counter()
    for i in range(n):
        noop.apply_async((i, 1), ignore_result=False)
    print(json.dumps({"seconds": time.perf_counter() - t}))
elif mode == "prefill":
    ms = float(sys.argv[3]) if len(sys.argv) > 3 else None
    for i in range(n):
        (burn.apply_async((ms,)) if ms else noop.apply_async((i, 1)))
    print(json.dumps({"sent": n}))
elif mode == "roundtrip":
    for i in range(int(sys.argv[3]) if len(sys.argv) > 3 else 50):
        noop.delay(i, 1).get(timeout=10)
    lat = []
    for i in range(n):
        t = time.perf_counter()
        noop.delay(i, 1).get(timeout=10)
        lat.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"latencies_ms": lat}))
elif mode == "versions":
    import celery, kombu
    print(json.dumps({"celery": celery.__version__, "kombu": kombu.__version__}))
