import os

from celery import Celery

broker = os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0")
app = Celery(
    "celery_app",
    broker=broker,
    backend=os.environ.get("CELERY_RESULT_BACKEND", broker),
    include=["celery_app.tasks"],
)
