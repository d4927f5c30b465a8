"""``specdecode bench``: sweeps on the real model, JSONL records, and a report with plots."""
