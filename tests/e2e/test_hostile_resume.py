"""Resuming from a checkpoint directory someone else wrote into (issue 29): a pickle planted in
a checkpoint file is refused in one line, exit 2, before it runs; a checkpoint posttrain wrote
itself still resumes (tests/e2e/test_sft_run.py resumes one and checks the losses)."""

import shutil

import pytest
import torch

from posttrain.cli import main

from .test_sft_run import make_recipe

pytestmark = pytest.mark.e2e


class Planted:
    def __init__(self, mark):
        self.mark = mark

    def __reduce__(self):
        return (open, (self.mark, "w"))


def test_a_planted_pickle_in_a_checkpoint_is_refused_on_resume(tmp_path, capsys):
    path = make_recipe(tmp_path, "planted")
    assert main(["run", str(path)]) == 0
    run = tmp_path / "runs" / "planted"
    shutil.rmtree(run / "final")
    shutil.rmtree(run / "checkpoints" / "checkpoint-6")
    mark = tmp_path / "PWNED"
    checkpoint = run / "checkpoints" / "checkpoint-3"
    for victim in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        original = (checkpoint / victim).read_bytes()
        torch.save({"state": Planted(str(mark))}, checkpoint / victim)
        capsys.readouterr()
        assert main(["run", str(path), "--resume"]) == 2, victim
        err = capsys.readouterr().err
        # (a progress bar may still be on the line: tqdm ends its lines with a carriage return)
        errors = [line.rsplit("\r", 1)[-1].split("error: ", 1)[1] for line in err.splitlines() if "error: " in line]
        assert len(errors) == 1 and "Traceback" not in err, err[-2000:]
        assert victim in errors[0] and "--trust-checkpoint" in errors[0] and "it names io.open" in errors[0]
        assert not mark.exists()
        (checkpoint / victim).write_bytes(original)
    assert main(["run", str(path), "--resume"]) == 0  # the run itself was not harmed
    assert (run / "final" / "config.json").is_file()
