"""Predictions from trained folds: plain, TTA (fixed and chosen on OOF), embeddings."""
