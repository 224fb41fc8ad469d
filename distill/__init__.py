"""The shard format, KD losses, students and the lean trainer (torch is imported lazily)."""
