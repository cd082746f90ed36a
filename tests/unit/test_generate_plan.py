"""The generate op's plan without torch: family rules, memory estimates, offload choice, clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reelforge.config import GenerateModelEntry, Settings
from reelforge.errors import InputError, UserError
from reelforge.models.generate_plan import FAMILIES, choose_plan, model_entry, read_model
from reelforge.ops.registry import get_operation


def fake_model(folder: Path, components: dict[str, float]) -> Path:
    """A model folder whose weight files have the given sizes in GB (sparse files: no disk used)."""
    folder.mkdir(parents=True)
    index = {"_class_name": "X", "scheduler": ["diffusers", "S"]}
    for comp, gb in components.items():
        (folder / comp).mkdir()
        (folder / comp / "config.json").write_text("{}")
        with (folder / comp / "diffusion_pytorch_model.safetensors").open("wb") as fh:
            fh.truncate(int(gb * 1024**3))
        with (folder / comp / "diffusion_pytorch_model.fp16.safetensors").open("wb") as fh:
            fh.truncate(1024**3)  # a variant copy beside the plain file: not what loads, not counted
        index[comp] = ["diffusers", "M"]
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture
def svd_xt(tmp_path: Path) -> tuple[Settings, GenerateModelEntry]:
    folder = fake_model(tmp_path / "svd-xt", {"unet": 3.0, "vae": 0.2, "image_encoder": 1.2})
    settings = Settings(data_dir=tmp_path / "d", generate_models={"svd-xt": {"folder": str(folder), "family": "svd"}})
    return settings, settings.models.generate_models["svd-xt"]


def plan_for(settings: Settings, entry: GenerateModelEntry, vram: float, *, device: str = "cuda", w: int = 1024,
             h: int = 576, frames: int = 14):
    s = settings.model_copy(update={"models": settings.models.model_copy(update={"generate_vram_gb": vram})})
    return choose_plan(read_model("svd-xt", entry, s), entry, s, device=device, detected_gb=0,  # type: ignore[arg-type]
                       width=w, height=h, frames=frames)


def test_offload_mode_follows_the_declared_memory(svd_xt):
    big, mid, small = plan_for(*svd_xt, 24), plan_for(*svd_xt, 6), plan_for(*svd_xt, 4)
    assert (big.mode, mid.mode, small.mode) == ("none", "model", "sequential")
    assert big.dtype == "float16" and big.decode_chunk_size == 14 and not big.vae_tiling
    assert mid.vae_slicing and mid.vae_tiling and mid.decode_chunk_size == 8
    assert small.decode_chunk_size == 2 and small.forward_chunking
    assert big.needs["none"] > big.needs["model"] > big.needs["sequential"]
    assert big.resident_gb == pytest.approx(4.4, abs=0.01) and mid.resident_gb == 0


def test_nothing_fits_is_a_clear_error_with_the_numbers(svd_xt):
    with pytest.raises(UserError) as err:
        plan_for(*svd_xt, 1.5, frames=25)
    assert err.value.code == "generate_too_large"
    assert "1.5 GB declared (GENERATE_VRAM_GB)" in err.value.message and "sequential offload" in err.value.message
    assert err.value.details["need_gb"] > 1.5


def test_cpu_runs_only_small_models_and_never_offloads(svd_xt, tmp_path):
    with pytest.raises(UserError) as err:
        plan_for(*svd_xt, 64, device="cpu")
    assert err.value.code == "gpu_required" and "GENERATE_CPU_MAX_GB" in err.value.message
    folder = fake_model(tmp_path / "tiny", {"unet": 0.01, "vae": 0.01})
    settings = Settings(data_dir=tmp_path / "d2", generate_models={"svd-xt": {"folder": str(folder), "family": "svd"}})
    plan = plan_for(settings, settings.models.generate_models["svd-xt"], 8, device="cpu", w=64, h=64, frames=3)
    assert plan.mode == "none" and plan.dtype == "float32" and "slow" in plan.notes[0]


def test_family_rules_round_size_and_frames():
    assert FAMILIES["ltx"].frames_for(5) == 9 and FAMILIES["ltx"].frames_for(9) == 9
    assert FAMILIES["wan"].frames_for(30) == 33 and FAMILIES["svd"].frames_for(14) == 14
    assert FAMILIES["ltx"].size_for(700, 500) == (704, 512) and FAMILIES["svd"].size_for(10, 10) == (64, 64)


def test_missing_model_and_folder_errors_list_what_is_configured(tmp_path, svd_xt):
    settings, _ = svd_xt
    with pytest.raises(InputError) as err:
        model_entry(settings, "ltx")
    assert err.value.code == "model_not_configured" and "svd-xt" in err.value.message
    with pytest.raises(InputError) as none:
        model_entry(Settings(data_dir=tmp_path / "e"), None)
    assert "GENERATE_MODELS" in none.value.message
    gone = Settings(data_dir=tmp_path / "f", generate_models={"a": {"folder": str(tmp_path / "nope"), "family": "wan"}})
    with pytest.raises(InputError) as missing:
        read_model("a", gone.models.generate_models["a"], gone)
    assert missing.value.code == "model_unavailable" and "a (" in missing.value.message


def test_resources_and_timeout_scale_with_the_request():
    op = get_operation("generate")
    small = op.params_model.model_validate({"image": "x.png", "width": 256, "height": 256, "frames": 9, "steps": 4})
    large = op.params_model.model_validate({"image": "x.png", "width": 1280, "height": 720, "frames": 121,
                                            "steps": 50})
    rs, rl = op.resources_for(small), op.resources_for(large)
    assert rs.gpu == rl.gpu == "preferred" and rs.nvenc
    assert rl.vram_gb > rs.vram_gb >= 1.0
    assert op.default_timeout(large) > op.default_timeout(small) >= op.timeout_s
    assert op.default_timeout(large, cap=7200) == 7200
    with pytest.raises(ValueError, match="frames or duration_s"):
        op.params_model.model_validate({"image": "x.png", "frames": 9, "duration_s": 2})


def test_warm_cache_drops_least_recently_used_beyond_its_memory_budget(svd_xt, monkeypatch):
    from reelforge.models import generate_pipe as gp

    settings, entry = svd_xt
    cache = gp.PipelineCache()
    loads: list[str] = []

    def fake_load(plan):
        loads.append(plan.model.name)
        return gp.Loaded(pipe=object(), resident_gb=plan.resident_gb, cancel_box=[None], loaded_in_s=0.0)

    monkeypatch.setattr(gp, "load_pipeline", fake_load)
    monkeypatch.setattr(gp, "free_memory", lambda: None)
    base = plan_for(settings, entry, 24)  # mode none: 4.4 GB resident
    plans = [base.__class__(**{**base.__dict__, "model": base.model.__class__(
        **{**base.model.__dict__, "name": n})}) for n in ("a", "b", "c")]
    for p in plans[:2]:
        _, loaded_now, dropped = cache.get(p, cache_budget_gb=16)
        assert loaded_now and dropped == []
    assert cache.get(plans[0], 16)[1] is False  # warm; "a" is now the most recently used
    _, _, dropped = cache.get(plans[2], cache_budget_gb=12)  # a + b + c's need do not fit 12 GB: b goes
    held = cache.keys()
    assert dropped == ["b"] and [k[0] for k in held] == ["a", "c"]
    assert loads == ["a", "b", "c"]
