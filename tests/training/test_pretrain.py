"""`cardreamer train --pretrain-data DIR`: a dataset from `cardreamer collect` fills the replay."""
import json

from cardreamer.cli import main


def test_collected_episodes_pretrain_a_fresh_run(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    short = ["--task.terminal.time_limit=70", "--task.traffic.background=5"]
    assert main(["collect", "--task", "four_lane", "--policy", "expert", "--episodes", "2", "--out", str(data),
                 *short]) == 0
    assert main(["train", "--task", "four_lane", "--size", "tiny", "--steps", "16", "--logdir", str(run),
                 "--pretrain-data", str(data), "--run.pretrain_updates=2", "--eval-every", "0",
                 "--run.train_fill=100000", *short]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows and rows[-1]["updates"] == 2  # the two pre-training updates, none while collecting
