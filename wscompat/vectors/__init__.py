"""Test vectors: the format, the offline checker, recording, replay and their CLI."""
