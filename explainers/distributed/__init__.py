"""Runs on Ray: ``session`` (joining or starting Ray), ``cluster`` (the model each actor builds, the cluster's room
for the actors, a failed run as one sentence) and ``dataset_pipeline`` (``evaluate --ray``). ``trust --ray`` is
``explainers.trust.distributed``, on the same ``cluster``. Nothing here imports Ray until a run starts."""
