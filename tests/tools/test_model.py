"""Loading subject models: devices, dtypes and the errors for paths that cannot be models."""

import pytest
import torch

from tools.errors import InterpError
from tools.model.devices import resolve_device, resolve_dtype
from tools.model.subject import load_subject_model, sha256_folder_weights


def test_auto_device_and_dtype_on_this_machine():
    device = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert device.type == expected
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    with pytest.raises(InterpError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", device)
    with pytest.raises(InterpError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_local_folder_loads_with_its_weights_digest(tiny_models):
    subject = load_subject_model(str(tiny_models["gemma3"]), device="cpu")
    assert type(subject.model).__name__ == "Gemma3ForCausalLM"
    assert subject.sha256 == sha256_folder_weights(tiny_models["gemma3"])
    assert not subject.model.training and subject.dtype == torch.float32


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "absent", "does not exist"),
    (lambda p: (p / "weights.bin").write_bytes(b"x") and p / "weights.bin", "is not a .gguf file"),
    (lambda p: p, "has no config.json"),
])
def test_paths_that_are_not_models(tmp_path, make, message):
    with pytest.raises(InterpError, match=message):
        load_subject_model(str(make(tmp_path)))


def test_hub_id_offline_names_the_local_alternatives(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InterpError, match="pass a local model folder or .gguf file, or use the embedded default"):
        load_subject_model("google/gemma-3-270m")
