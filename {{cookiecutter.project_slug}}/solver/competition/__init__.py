"""A competition as its raw Kaggle files define it: the contract, images, the data check, Kaggle downloads, folds,
metrics, the submission format, new competition folders.
"""
