"""Unit tests of the dataset: defaults, normalisation and subsets (refusals live in test_errors.py)."""

import numpy as np
import pandas as pd
import pytest
import torch

import scrub


def make(n=5, t=4, **kw):
    tokens = torch.arange(n * t).reshape(n, t) % 7
    return scrub.Dataset(tokens, labels=torch.arange(n) % 3, columns=pd.DataFrame({"c": list("abcde")[:n]}), **kw)


def test_defaults_and_normalisation():
    d = make()
    assert len(d) == 5 and d.seq_len == 4
    assert d.tokens.dtype == torch.long and d.labels is not None and d.labels.dtype == torch.long
    assert d.target_pos.tolist() == [3] * 5  # the last position
    assert d.attention_mask is None
    assert make(target_pos=np.int64(2)).target_pos.tolist() == [2] * 5
    assert make(target_pos=[0, 1, 2, 3, 0]).target_pos.tolist() == [0, 1, 2, 3, 0]
    assert "N=5, T=4" in repr(d) and "columns=[c]" in repr(d)


def test_float_masks_of_zeros_and_ones_are_masks():
    mask = torch.ones(5, 4)
    mask[0, 0] = 0.0
    d = make(attention_mask=mask)
    assert d.attention_mask is not None and d.attention_mask.dtype == torch.long
    assert d.attention_mask.sum().item() == 19


def test_subset_keeps_rows_in_order_with_their_columns():
    d = make(target_pos=[0, 1, 2, 3, 0])
    s = d.subset([4, 1, 1])
    assert torch.equal(s.tokens, d.tokens[[4, 1, 1]])
    assert s.labels is not None and d.labels is not None and s.labels.tolist() == d.labels[[4, 1, 1]].tolist()
    assert s.target_pos.tolist() == [0, 1, 1]
    assert s.columns["c"].tolist() == ["e", "b", "b"] and list(s.columns.index) == [0, 1, 2]
    assert len(d.subset(slice(1, 3))) == 2


def test_columns_are_reindexed_from_zero():
    frame = pd.DataFrame({"c": [10, 11, 12]}, index=[7, 8, 9])
    d = scrub.Dataset(torch.zeros(3, 2, dtype=torch.long), columns=frame)
    assert list(d.columns.index) == [0, 1, 2] and d.columns["c"].tolist() == [10, 11, 12]


@pytest.mark.parametrize("bad", [dict(target_pos=4), dict(target_pos=[0, 1])])
def test_target_positions_must_fit(bad):
    with pytest.raises(scrub.DatasetError):
        make(**bad)
