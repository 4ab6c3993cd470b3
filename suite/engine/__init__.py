"""The `suite run` engine: Ray Train (V2) workers, MLflow tracking, crash-safe checkpoints.

- config.py      resolve and validate a run's settings (recipe < --config YAML < flags)
- driver.py      preflight checks, one MLflow run, `build_trainer` (a TorchTrainer), resume
- train_loop.py  `train_loop_per_worker`, the one loop every task and model shares
- epoch.py       one training epoch; evaluate.py exact distributed evaluation
- schedule.py    cosine-with-warm-up LR; mixing.py mixup/cutmix; checkpoint.py save/load
- run_logger.py  what rank 0 logs to MLflow; progress.py progress bars; crash_injection.py the crash test hook
- ray_session.py embedded local Ray or a cluster
- stop_signals.py Ctrl-C and SIGTERM stop a run alike (MLflow KILLED, exit 128 + signal)

Heavy modules (ray, mlflow, torch) are imported by the submodules, not here.
"""
