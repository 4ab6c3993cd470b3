"""The Tune callback (in the sweep's driver process) that ends every trial's MLflow run.

A trial's workers cannot always end their own run: ASHA stops a weak trial by killing its actor,
and an interrupted sweep stops them all. So the driver sets each trial run's final status from
Tune's view of the trial: TERMINATED -> FINISHED (tagged early-stopped when ASHA cut it short),
ERROR -> FAILED, and a trial still running when the sweep is interrupted -> KILLED, which
`suite tune --resume` reopens. No trial run is left RUNNING.
"""

from __future__ import annotations

import logging

from ray.tune import Callback

from suite import schema
from suite.tune import runs

log = logging.getLogger(__name__)


class TrialRunsCallback(Callback):
    def __init__(self, tracking_uri: str, parent_run_id: str, epochs: int):
        self.tracking_uri = tracking_uri
        self.parent_run_id = parent_run_id
        self.epochs = epochs
        self.ended: dict[str, tuple[str, str]] = {}  # trial id -> (status, error) Tune really ended

    def _run_of(self, trial) -> str | None:
        run_id = runs.find_trial_run(self.tracking_uri, self.parent_run_id, trial.trial_id)
        if run_id is None:  # the trial died before its driver created the run
            log.debug("trial %s has no MLflow run", trial.trial_id)
        return run_id

    def _end(self, trial, status: str, error: str = "") -> None:
        run_id = self._run_of(trial)
        if run_id is None:
            return
        try:
            # Epochs, not Tune's training_iteration, which restarts when a resumed trial continues
            # from its checkpoint: the last reported one (its logging may not have happened when
            # ASHA stops the trial), or the run's logged ones (a trial resumed from its last
            # epoch's checkpoint reports nothing).
            reported = int((trial.last_result or {}).get(schema.M_EPOCH, -1)) + 1
            early = status == "FINISHED" and max(reported, runs.epochs_logged(self.tracking_uri, run_id)) < self.epochs
            runs.end_trial_run(self.tracking_uri, run_id, status, early_stopped=early, error=error)
        except Exception as err:  # a tracking hiccup must not abort the whole sweep
            log.warning("could not set MLflow run %s of trial %s to %s: %s", run_id, trial.trial_id, status, err)

    # Tune calls these only when a trial really ends: it completed, the scheduler stopped it, or it failed.
    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended[trial.trial_id] = ("FINISHED", "")
        self._end(trial, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended[trial.trial_id] = ("FAILED", _error_text(trial))
        self._end(trial, "FAILED", error=self.ended[trial.trial_id][1])

    def on_experiment_end(self, trials, **info):
        for trial in trials:
            if trial.trial_id in self.ended:
                # Again: a dying worker may have written its own status after ours.
                status, error = self.ended[trial.trial_id]
                self._end(trial, status, error)
                continue
            # Not ended by Tune in this session: either it ended in an earlier session (its run is
            # FINISHED/FAILED already) or the sweep was interrupted while it ran (Tune then stops
            # the trial without calling on_trial_complete, and shows it TERMINATED).
            run_id = self._run_of(trial)
            if run_id is not None and runs.run_status(self.tracking_uri, run_id) not in ("FINISHED", "FAILED"):
                runs.end_trial_run(self.tracking_uri, run_id, "KILLED")


def _error_text(trial) -> str:
    try:
        error = trial.get_error()
    except Exception:  # older/newer Trial APIs: the status is what matters
        error = None
    return str(error) if error else f"trial {trial.trial_id} failed"
