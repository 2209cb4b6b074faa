"""The story: poll (source -> diff -> match -> outbox) and drain (outbox -> render -> channel)."""
