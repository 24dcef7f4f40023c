"""Interventions as pure functions: exact values, and the direction cast once per device and dtype."""

import pytest
import torch

from steerlab.interventions import ablate, add, clamp
from steerlab.sites import Site

V = torch.tensor([3.0, 4.0, 0.0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_edits_keep_the_activations_dtype_and_values(dtype, device):
    h = torch.tensor([[[1.0, 2.0, 5.0]]], dtype=dtype, device=device)
    u = (V / 5).to(device, dtype)
    assert add(Site(0), V, 2.0).fn(h).tolist() == [[[7.0, 10.0, 5.0]]]
    ablated = ablate(Site(0), V).fn(h)
    clamped = clamp(Site(0), V, 1.5).fn(h)
    assert ablated.dtype == clamped.dtype == dtype and ablated.device == clamped.device == h.device
    tol = {"atol": 1e-6 if dtype == torch.float64 else 5e-3, "rtol": 0}  # the unit direction is made in fp32
    torch.testing.assert_close(ablated @ u, torch.zeros(1, 1, dtype=dtype, device=device), **tol)
    torch.testing.assert_close(clamped @ u, torch.full((1, 1), 1.5, dtype=dtype, device=device), **tol)


def test_edits_cast_their_direction_once_per_device_and_dtype(monkeypatch, device):
    """Later calls (decode steps) reuse the cast direction: no copy per call."""
    to = torch.Tensor.to
    calls = []

    def counting_to(self, *args, **kwargs):
        calls.append(self.shape)
        return to(self, *args, **kwargs)

    for edit in (add(Site(0), V, 2.0), ablate(Site(0), V), clamp(Site(0), V, 1.0)):
        for dtype in (torch.float64, torch.float16):
            h = torch.randn(2, 4, 3).to(device, dtype)
            first = edit.fn(h)
            monkeypatch.setattr(torch.Tensor, "to", counting_to)
            again = edit.fn(h)
            monkeypatch.setattr(torch.Tensor, "to", to)
            assert calls == [] and torch.equal(first, again) and again.dtype == dtype
