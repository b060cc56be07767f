"""The last step: a validated submission with its ledger row, and the offline package for code competitions."""
