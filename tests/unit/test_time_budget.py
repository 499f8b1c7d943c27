"""run.max_train_seconds: training ends once the budget is spent, counted across resumes."""

import json
import time
from types import SimpleNamespace

from transformers import TrainerControl

from posttrain import rundir
from posttrain.trainers import faults


def _state(step):
    return SimpleNamespace(global_step=step, max_steps=1000, is_world_process_zero=True)


def _steps_until_stop(callback, pause=0.05, limit=200):
    callback.on_train_begin(None, _state(0), TrainerControl())
    for step in range(1, limit):
        time.sleep(pause)
        control = callback.on_step_end(None, _state(step), TrainerControl())
        if control.should_training_stop:
            assert not control.should_save  # ending, not interrupting: the final model is saved as usual
            return step
    return None


def test_training_stops_once_the_budget_is_spent(tmp_path):
    callback = faults.fault_callback(tmp_path, None, max_train_seconds=0.3)
    stopped = _steps_until_stop(callback)
    assert stopped is not None and stopped >= 2
    assert callback.budget_spent_at == stopped and callback.stopped_at is None
    assert callback.spent() >= 0.3


def test_a_resumed_run_spends_only_what_is_left(tmp_path):
    checkpoint = tmp_path / "checkpoint-10"
    checkpoint.mkdir()
    rundir.mark_complete(checkpoint, 10, train_seconds=0.25)
    assert json.loads((checkpoint / rundir.COMPLETE).read_text()) == {"step": 10, "train_seconds": 0.25}
    callback = faults.fault_callback(tmp_path, None, max_train_seconds=0.4, resumed_from=checkpoint)
    began = time.monotonic()
    stopped = _steps_until_stop(callback)
    fresh = time.monotonic() - began
    assert stopped is not None and callback.spent() >= 0.4
    assert 0.15 <= fresh < 0.4  # only the 0.15 s left of the budget were spent now


def test_the_marker_records_the_training_time_so_far(tmp_path):
    callback = faults.fault_callback(tmp_path, None)
    callback.on_train_begin(None, _state(0), TrainerControl())
    (tmp_path / "checkpoint-3").mkdir()
    time.sleep(0.1)
    callback.on_save(None, _state(3), TrainerControl())
    assert json.loads((tmp_path / "checkpoint-3" / rundir.COMPLETE).read_text())["train_seconds"] >= 0.1
    assert _steps_until_stop(callback, pause=0.0, limit=20) is None  # no budget: never stops
