from celery_app.tasks import add

r = add.delay(10, 20)
print(r.get(timeout=10))
