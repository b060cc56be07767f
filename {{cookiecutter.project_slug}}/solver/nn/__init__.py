"""The neural-network parts: datasets and augmentations, timm models, optimizers, schedules, curriculum, devices and
DataLoaders, distributed runs, inference.
"""
