"""Dynamic sampling's batch surgery: which groups carry no signal, and merging groups from
several generation rounds with their paddings."""

import torch

from posttrain.trainers.dynamic import take_groups, zero_std_groups


def test_zero_variance_groups_are_the_ones_whose_advantages_are_all_zero():
    advantages = torch.tensor([0.0, 0.0, 0.5, -0.5, 0.0, 0.0, 0.0, 1e-3])
    assert zero_std_groups(advantages, 2).tolist() == [True, False, True, False]


def test_groups_from_two_rounds_merge_with_left_padded_prompts_and_right_padded_completions():
    first = {"prompt_ids": torch.tensor([[5, 6], [5, 6], [7, 8], [7, 8]]),
             "prompt_mask": torch.ones(4, 2, dtype=torch.long),
             "completion_ids": torch.tensor([[1, 2], [3, 0], [4, 0], [5, 6]]),
             "completion_mask": torch.tensor([[1, 1], [1, 0], [1, 0], [1, 1]]),
             "advantages": torch.tensor([0.0, 0.0, 1.0, -1.0]), "num_items_in_batch": torch.tensor(6)}
    second = {"prompt_ids": torch.tensor([[9, 9, 9], [9, 9, 9]]),
              "prompt_mask": torch.ones(2, 3, dtype=torch.long),
              "completion_ids": torch.tensor([[1, 1, 1], [2, 0, 0]]),
              "completion_mask": torch.tensor([[1, 1, 1], [1, 0, 0]]),
              "advantages": torch.tensor([0.7, -0.7]), "num_items_in_batch": torch.tensor(4)}
    merged = take_groups([(first, [1]), (second, [0])], generations=2, pad_id=0)
    assert merged["prompt_ids"].tolist() == [[0, 7, 8], [0, 7, 8], [9, 9, 9], [9, 9, 9]]
    assert merged["prompt_mask"].tolist() == [[0, 1, 1], [0, 1, 1], [1, 1, 1], [1, 1, 1]]
    assert merged["completion_ids"].tolist() == [[4, 0, 0], [5, 6, 0], [1, 1, 1], [2, 0, 0]]
    assert merged["completion_mask"].tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 0, 0]]
    assert merged["advantages"].tolist() == [1.0, -1.0, *torch.tensor([0.7, -0.7]).tolist()]
    assert "num_items_in_batch" not in merged  # recomputed by the trainer across processes
