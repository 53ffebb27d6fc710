"""Feature store (safetensors shards + JSON manifest) and feature extraction.

`store.py`: `FeatureStore.open(split_dir)`, `FeatureDataset`, `FeatureStoreWriter`.
`featurize.py`: decode each video once, run the student and teachers, write the store.
`pickle_import.py`: convert the original code's pickle caches (only with allow_pickle=True).
"""
