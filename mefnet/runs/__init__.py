"""The on-disk experiment: its layout and records (:mod:`~mefnet.runs.store`), which stored
runs are one experiment (:mod:`~mefnet.runs.identity`), which clips each fold tests
(:mod:`~mefnet.runs.splits`) and a training fold's heartbeat file
(:mod:`~mefnet.runs.heartbeat`). Written by the runner (:mod:`mefnet.experiment`), read by
the report (:mod:`mefnet.report`) and inference (:mod:`mefnet.inference`)."""
