"""The data wing: where items come from (:mod:`.sources`: the ``Source`` type and its readers — built-in data
sets, image folders, text and parquet files, arrays, Hugging Face datasets) and how they become embeddings
(:mod:`.encoders`: pixels, EfficientNet-Lite0, MiniLM, hub models; torch imported lazily).

What ships offline and how each reader is tested is written down in ``docs/data.md``.
"""
