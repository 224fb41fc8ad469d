"""Beam pipelines that build soft-label datasets, the bundled corpora and the `zhkd` CLI."""
