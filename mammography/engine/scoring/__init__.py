"""The one scoring path of eval-export and predict: model sources → caches → probabilities.

``sources`` says what the path takes (a loaded model - checkpoint or ONNX - with
its preprocessing, and the cache, loader and bad-image settings), ``caches``
builds each distinct preprocessing's decode-once cache once and applies
``--on-bad-image`` / ``--max-bad-fraction`` to what cannot be decoded,
``probabilities`` runs every model over its cache (``model``: the one
inference loop; ``onnx``: onnxruntime) and averages them per image. A single
eval-export model is an ensemble of one.
"""
