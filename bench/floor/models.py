"""The floor's one table."""

from django.db import models


class FloorEvent(models.Model):
    """One received event: its id, its object's id and status, the raw body."""

    event_id = models.CharField(max_length=255, unique=True)
    object_id = models.CharField(max_length=255, db_index=True)
    status = models.CharField(max_length=32, blank=True)
    payload = models.TextField()

    def __str__(self) -> str:
        return self.event_id
