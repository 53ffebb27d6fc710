"""Feature store (safetensors shards + JSON manifest), feature extraction and the tiny model zoo.

    store.py          FeatureStore.open(split_dir), FeatureDataset, FeatureStoreWriter
    featurize.py      decode each video once, run the student and teachers, write the store
    zoo.py            the tiny zoo: tiny backbones trained on SynthMotion's pretraining set
    stats.py          per-model summaries of a store: dims, token norms, dtype, disk size
    pickle_import.py  convert the original code's pickle caches (only with allow_pickle=True)
    study.py          what notebook 01 calls (ws first), and its stage_metrics
    plots.py          figures of a store: one clip's token features, token-norm histograms
    commands.py       `polyspace featurize`, `import-pickle`, `features-info`, `zoo`
"""
