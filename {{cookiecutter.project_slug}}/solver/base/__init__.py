"""Plumbing every stage shares: one-line errors, atomic writes, provenance, custom code of a competition folder, CLI parsing, thread shares."""
