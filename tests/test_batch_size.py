"""Rows per pass: from the accelerator's free memory on a GPU, a fixed residual budget on the CPU."""

from __future__ import annotations

import torch

from scrub import _executor as E
from tests.architectures import native


def test_cpu_budget_is_4m_residual_floats():
    m = native()
    assert E.default_batch_size(m, 8) == (1 << 22) // (8 * m.cfg.d_model)


def test_gpu_rows_come_from_free_memory(monkeypatch):
    m = native()
    free = 8 << 30
    monkeypatch.setattr(E, "model_device", lambda model: torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 16 << 30))
    rows = E.default_batch_size(m, 8)
    assert rows == int(free * E.DEVICE_MEMORY_SHARE) // E.bytes_per_row(m, 8)
    assert rows * E.bytes_per_row(m, 8) <= free * E.DEVICE_MEMORY_SHARE < (rows + 1) * E.bytes_per_row(m, 8)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free // 4, 16 << 30))
    assert E.default_batch_size(m, 8) == rows // 4 or abs(E.default_batch_size(m, 8) - rows / 4) <= 1


def test_row_estimate_grows_with_the_sequence_and_covers_the_attention_scores():
    m = native()
    small, large = E.bytes_per_row(m, 8), E.bytes_per_row(m, 64)
    assert large > 8 * small  # the [heads, seq, seq] scores grow quadratically
    itemsize = 4
    scores = m.cfg.n_heads * 64 * 64 * itemsize
    assert large >= 2 * scores
    assert E.rows_for_memory(0, large) == 1  # never zero rows
