"""Voices an operator adds (VOICE_DIRS), listed with their languages, and the default voice chosen by the
language of the text: Piper voice files found in a folder, Kokoro voices files, espeak's languages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from reelforge.config import Settings
from reelforge.errors import InvalidParams
from reelforge.models import tts as tts_models
from reelforge.models import tts_kokoro, tts_piper
from reelforge.models.text_language import detect_language
from reelforge.ops.context import OpContext
from reelforge.ops.registry import get_operation

PORTUGUESE = "Olá, tudo bem? Hoje o tempo está ótimo para ir à praia com os amigos."
ENGLISH = "The weather is lovely today and we are going to the beach."


@pytest.fixture(scope="module")
def voice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged Piper voice's own files, placed in a folder as a Brazilian Portuguese voice would be."""
    folder = tmp_path_factory.mktemp("voices")
    joe = tts_piper.packaged_voice()
    shutil.copy(joe.model, folder / "pt_BR-test-medium.onnx")
    config = json.loads(joe.config.read_text(encoding="utf-8"))
    config["language"] = {"code": "pt_BR", "family": "pt", "region": "BR"}
    config["espeak"] = {"voice": "pt-br"}
    (folder / "pt_BR-test-medium.onnx.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "notes.onnx").write_bytes(b"not a voice: no config beside it")
    return folder


def test_text_language_detection() -> None:
    assert detect_language(PORTUGUESE) == "pt"
    assert detect_language(ENGLISH) == "en"
    assert detect_language("Привет, как дела? Сегодня хорошая погода.") == "ru"
    assert detect_language("Hello") is None  # too short to tell


def test_voices_in_a_folder_are_listed_with_their_languages(voice_dir: Path) -> None:
    piper = [v for v in tts_models.list_voices(voice_dirs=[voice_dir]) if v["engine"] == "piper"]
    by_name = {v["voice"]: v for v in piper}
    assert set(by_name) == {"joe", "pt_BR-test-medium"}
    assert by_name["pt_BR-test-medium"]["languages"] == ["pt-br"]
    assert by_name["pt_BR-test-medium"]["source"] == str(voice_dir)
    assert by_name["joe"]["languages"] == ["en-us"] and by_name["joe"]["default"]


def test_the_default_piper_voice_follows_the_text(voice_dir: Path) -> None:
    pt = tts_models.resolve_voice("piper", None, None, text=PORTUGUESE, voice_dirs=[voice_dir])
    assert (pt.voice, pt.language) == ("pt_BR-test-medium", "pt-br") and "pt" in (pt.note or "")
    en = tts_models.resolve_voice("piper", None, None, text=ENGLISH, voice_dirs=[voice_dir])
    assert (en.voice, en.language) == ("joe", "en-us")
    ru = tts_models.resolve_voice("piper", None, None, text="Привет, как дела? Сегодня хорошая погода.",
                                  voice_dirs=[voice_dir])
    assert ru.voice == "joe" and "no piper voice speaks ru" in (ru.note or "")
    # an explicit language picks a voice that speaks it; one nobody speaks lists what exists
    assert tts_models.resolve_voice("piper", None, "pt", voice_dirs=[voice_dir]).voice == "pt_BR-test-medium"
    with pytest.raises(InvalidParams) as err:
        tts_models.resolve_voice("piper", None, "de", voice_dirs=[voice_dir])
    assert err.value.code == "unknown_language" and err.value.details == {"available": ["en-us", "pt-br"]}
    with pytest.raises(InvalidParams, match="speaks en-us, not pt"):
        tts_models.resolve_voice("piper", "joe", "pt", voice_dirs=[voice_dir])


def test_a_folder_voice_speaks_through_the_op(voice_dir: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", workers=1, device="cpu", voice_dirs=[voice_dir])
    op = get_operation("tts")
    ctx = OpContext.for_test(tmp_path / "work", settings)
    result = op.run(op.params_model(text=PORTUGUESE, word_timings=False), ctx)
    assert result.data["voice"] == "pt_BR-test-medium" and result.data["language"] == "pt-br"
    assert ctx.notes["tts_voice"] == "pt_BR-test-medium" and result.data["duration_s"] > 1.0


def test_kokoro_picks_a_voice_made_for_the_language(tmp_path: Path) -> None:
    names = ["jf_alpha", "af_bella", "af_heart", "pf_dora", "bm_george"]
    assert tts_kokoro.voice_for_language("en-us", names) == "af_heart"
    assert tts_kokoro.voice_for_language("pt-br", names) == "pf_dora"
    assert tts_kokoro.voice_for_language("en-gb", names) == "bm_george"
    assert tts_kokoro.voice_for_language("fr-fr", names) is None
    # only the packaged (Japanese) voices: English text still speaks, and the job is told why it is accented
    packaged = tts_models.resolve_voice("kokoro", None, None, text=ENGLISH)
    assert packaged.voice == "jf_alpha" and packaged.language == "en-us" and "accent" in (packaged.note or "")
    # a voices file in a voice folder adds English voices: English text gets one of them
    folder = tmp_path / "kokoro"
    folder.mkdir()
    with np.load(tts_kokoro.packaged_voices_file()) as data:
        np.savez(folder / "voices-extra.npz", af_heart=data["jf_alpha"], pf_dora=data["jf_alpha"])
    en = tts_models.resolve_voice("kokoro", None, None, text=ENGLISH, voice_dirs=[folder])
    pt = tts_models.resolve_voice("kokoro", None, None, text=PORTUGUESE, voice_dirs=[folder])
    assert (en.voice, en.language, en.note) == ("af_heart", "en-us", None)
    assert (pt.voice, pt.language) == ("pf_dora", "pt-br")
    listed = {v["voice"]: v for v in tts_kokoro.list_voices(dirs=[folder])}
    assert listed["af_heart"]["native_language"] == "en-us" and listed["af_heart"]["languages"][0] == "en-us"
    assert listed["jf_alpha"]["native_language"] == "ja"


def test_espeak_default_follows_the_text() -> None:
    req = tts_models.resolve_voice("espeak", None, None, text=PORTUGUESE)
    assert req.voice.startswith("pt")


def test_voice_dirs_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REELFORGE_VOICE_DIRS", "/srv/voices:/opt/more-voices")
    assert Settings(data_dir=tmp_path).models.voice_dirs == [Path("/srv/voices"), Path("/opt/more-voices")]
