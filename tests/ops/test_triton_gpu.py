"""The Triton masked-SGD kernel on a real GPU equals the production eager step (``pytest -m gpu``).

``update_impl=auto`` runs eager on CUDA (``fused_update.AUTO_CUDA_REASON``) until this test has
passed on a GPU; then auto may take Triton there. The element rule is
``fused_update.eager_masked_update``'s docstring; the same model, gradients and mask change as the
CPU tests (``test_fused_update.run_steps``), moved to CUDA.
"""

from __future__ import annotations

import pytest
import torch
from test_fused_update import HYPER, change_masks, make_model

from spfde_core.ops.fused_update import MaskedSGD, select_impl

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _run_cuda(impl: str, hyper: dict, reset_momentum: bool, steps: int = 4) -> torch.nn.ModuleDict:
    model = make_model().cuda()
    params = list(model.parameters())
    groups = [{"params": params[:4]}, {"params": params[4:], "lr": 0.03}]
    opt = MaskedSGD(groups, lr=0.1, impl=impl, **hyper)
    opt.register_masks({"conv": model.conv, "fc": model.fc}, mask_momentum=reset_momentum)
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        if step == 2:
            change_masks(model, opt, reset_momentum)
        for p in params:
            if p.requires_grad:
                g = torch.randn(p.shape, generator=generator)
                p.grad = g.to("cuda", memory_format=torch.channels_last if p.dim() == 4 else torch.contiguous_format)
        opt.step()
    torch.cuda.synchronize()
    model.optimizer = opt  # type: ignore[assignment]
    return model


@pytest.mark.parametrize("hyper", HYPER, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()))
@pytest.mark.parametrize("reset_momentum", [True, False])
def test_triton_kernel_on_gpu_equals_eager(hyper: dict, reset_momentum: bool) -> None:
    pytest.importorskip("triton")
    assert select_impl("triton", torch.device("cuda")) == ("triton", None)
    eager = _run_cuda("eager", hyper, reset_momentum)
    fused = _run_cuda("triton", hyper, reset_momentum)
    assert fused.optimizer.fused_params == 6 and fused.optimizer.eager_params == 0  # frozen: skipped
    for (name, pa), pb in zip(eager.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)
        sa = eager.optimizer.state.get(pa, {}).get("momentum_buffer")
        sb = fused.optimizer.state.get(pb, {}).get("momentum_buffer")
        assert (sa is None) == (sb is None), name
        if sa is not None:
            torch.testing.assert_close(sa, sb, rtol=1e-5, atol=1e-6, msg=f"{name} momentum")
    for name in ("conv", "fc"):
        module = fused[name]
        assert torch.all(module.weight[~module.weight_mask] == 0)
