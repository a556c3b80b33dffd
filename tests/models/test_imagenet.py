"""ImageNet weights (tss.models.imagenet): loading from a file, downloading only when asked."""

from __future__ import annotations

import pytest
import torch
import torchvision

from tss.models import SliceAttentionNet, WeightsUnavailable, load_imagenet


def test_imagenet_loading_path(tmp_path, monkeypatch):
    ref = torchvision.models.resnet18(weights=None)  # stands in for the ImageNet file
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    m = SliceAttentionNet(n_slices=2)
    fc_before = m.fc.weight.clone()
    rep = load_imagenet(m, tmp_path / "resnet18.pth")
    for k, v in ref.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(m.state_dict()[k], v), k
    assert torch.equal(m.fc.weight, fc_before) and set(rep.skipped_head) == {"fc.weight", "fc.bias"}
    # found through the environment variable, and a clear error without any file
    monkeypatch.setenv("TSS_IMAGENET_WEIGHTS", str(tmp_path / "resnet18.pth"))
    assert load_imagenet(SliceAttentionNet(n_slices=2)).loaded
    monkeypatch.setenv("TSS_IMAGENET_WEIGHTS", str(tmp_path / "absent.pth"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsUnavailable, match="Nothing is downloaded"):
        load_imagenet(SliceAttentionNet(n_slices=2))


def test_imagenet_weights_download_only_when_the_user_opts_in(tmp_path, monkeypatch):
    """TSS_IMAGENET_DOWNLOAD=1 fetches torchvision's own file through torchvision's API into torch's
    hub cache (here a fake fetch that writes weights made here); without it nothing is fetched."""
    from torchvision.models import ResNet18_Weights

    from tss.models import imagenet

    hub, fetched = tmp_path / "hub", []
    ref = torchvision.models.resnet18(weights=None)

    def fake_fetch(url, *args, **kwargs):
        fetched.append(url)
        (hub / "checkpoints").mkdir(parents=True, exist_ok=True)
        torch.save(ref.state_dict(), hub / "checkpoints" / imagenet.FILENAME)
        return ref.state_dict()

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake_fetch)
    monkeypatch.delenv("TSS_IMAGENET_WEIGHTS", raising=False)
    monkeypatch.delenv(imagenet.DOWNLOAD_ENV, raising=False)
    with pytest.raises(WeightsUnavailable, match=imagenet.DOWNLOAD_ENV):
        load_imagenet(SliceAttentionNet(n_slices=2))
    assert not fetched and not imagenet.available()
    monkeypatch.setenv(imagenet.DOWNLOAD_ENV, "1")
    m = SliceAttentionNet(n_slices=2)
    assert load_imagenet(m).loaded and fetched == [ResNet18_Weights.IMAGENET1K_V1.url]
    assert torch.equal(m.state_dict()["layer4.1.conv2.weight"], ref.state_dict()["layer4.1.conv2.weight"])
    load_imagenet(SliceAttentionNet(n_slices=2))
    assert len(fetched) == 1  # the second time the hub cache has it

    def offline(url, *args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailable, match="download .* failed .*network unreachable"):
        load_imagenet(SliceAttentionNet(n_slices=2))
