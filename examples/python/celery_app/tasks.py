import time

from celery_app import app


@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y


@app.task
def xsum(numbers):
    return sum(numbers)


@app.task
def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@app.task
def fail(message="boom"):
    raise ValueError(message)


@app.task
def sleep(seconds):
    time.sleep(seconds)
    return seconds


@app.task(bind=True)
def flaky(self, times, countdown=1):
    """Retries until it has been retried `times` times; says who finished it."""
    if self.request.retries < times:
        raise self.retry(countdown=countdown, exc=ValueError(f"not yet ({self.request.retries})"))
    return f"python finished at retry {self.request.retries}"
