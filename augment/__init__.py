"""Chinese augmentation operators and task policies (pure Python: no Beam, no torch at import)."""
