"""``seganypet batch``: a cohort of studies segmented from a manifest of prompts.

- :mod:`.manifest`: the manifest (CSV or JSON), read and checked row by row;
- :mod:`.run`: a worker's study (:func:`run_study`) and the coordinator (:func:`run_batch`):
  keys, skipping what is done, records, the statistics and failures tables;
- :mod:`.engines`: where studies run (this machine's cores, or a dask cluster:
  :mod:`.dask_engine`); :mod:`.tables`: CSV and Parquet; :mod:`.command`: the parser.
"""
