"""`suite tune`: hyperparameter sweeps with Ray Tune over the run engine, tracked in MLflow.

- space.py     `--param NAME=DIST:ARGS`, task search spaces, the per-modality defaults
- sweep.py     checks, concurrency, the Tuner (ASHA/FIFO, random/Optuna), resume, the best trial
- trial.py     the Tune function of one trial: the engine's TorchTrainer + TuneReportCallback
- runs.py      the parent MLflow run and one nested run per trial
- callback.py  ends each trial's MLflow run from Tune's view of the trial
- report.py    the trials table and the best config as a `suite run` command

Ray, MLflow and torch are imported inside functions (callback.py excepted: import it lazily).
"""
