"""``avlib lipread``: word-level lip reading of a video (SyncVSR and MMAB inference,
:mod:`avlib.vsr.infer`).

The inputs are clips of a tiny embedded corpus (two 29-frame LRW word clips and one GRID sentence
of 75+ frames, 160 x 160). The readers are a random cpu-size ``SyncVSR`` and a random cpu-size
``MMAB`` (8 slots) saved as book checkpoints: the tests check the plumbing (crops, windows,
boundaries, audio, weights, errors), not the words.
"""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import asdict

import numpy as np
import pytest
import torch

from avlib import cli, media
from avlib.artifacts import project_root
from avlib.checkpoints import save_checkpoint
from avlib.models import SyncNet
from avlib.models.mmab import MMAB, MMABConfig
from avlib.models.syncvsr import SyncVSR, SyncVSRConfig
from avlib.vsr import infer
from avlib.vsr.infer import (
    LipreadError,
    LipreadWarning,
    lipread,
    load_reader,
    mouth_crops,
    window_starts,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ("ABOUT", "BLUE", "GREEN", "PLACE")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """1 GRID sentence (>= 75 frames) and 2 LRW word clips (29 frames)."""
    from avlib.corpus.make import CorpusConfig, make_corpus

    cfg = CorpusConfig(n_seen_speakers=1, n_unseen_speakers=0, grid_per_speaker=1, lrw_words=2,
                       lrw_train_per_word=1, lrw_val_per_word=0, lrw_test_per_word=0,
                       lrw_unseen_per_word=0, sync_per_split=0)
    out = tmp_path_factory.mktemp("corpus")
    make_corpus(cfg, out, workers=1, progress=False)
    return {"word": sorted((out / "lrw").rglob("*.mp4"))[0],
            "long": sorted((out / "grid").rglob("*.mp4"))[0]}


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return SyncVSR(**asdict(SyncVSRConfig.named("cpu", n_classes=len(WORDS), vocabulary=WORDS)))


@pytest.fixture(scope="module")
def weights(net, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reader")
    save_checkpoint(folder / "net", net)
    return folder / "net.json"


@pytest.fixture(scope="module")
def inputs(corpus, tmp_path_factory):
    """Short, face-less, broken and foreign-weight inputs."""
    root = tmp_path_factory.mktemp("inputs")
    frames, _ = media.read_video(corpus["word"])
    files = {
        "short20": media.write_video(root / "short20.mp4", frames[:20]),
        "tiny": media.write_video(root / "tiny.mp4", frames[:3]),
        "noface": media.write_video(root / "noface.mp4", np.full((12, 160, 160, 3), 128, np.uint8)),
    }
    (root / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    files["text"] = root / "notes.mp4"
    torch.manual_seed(1)
    other = SyncNet(width=0.125)
    save_checkpoint(root / "syncnet", other)
    files["book_other"] = root / "syncnet.json"
    torch.save({"state_dict": other.state_dict(), "global_step": 3}, root / "syncnet_v2.pth")
    files["official_other"] = root / "syncnet_v2.pth"
    torch.manual_seed(2)
    small = SyncVSR(**asdict(SyncVSRConfig.named("cpu", n_classes=len(WORDS))))
    torch.save({"state_dict": small.state_dict(), "epoch": 1}, root / "small.ckpt")
    files["ckpt_small"] = root / "small.ckpt"
    (root / "words4.txt").write_text("\n".join(WORDS) + "\n\n")
    (root / "words3.txt").write_text("\n".join(WORDS[:3]) + "\n")
    files["words4"], files["words3"] = root / "words4.txt", root / "words3.txt"
    return files


def run(*args) -> int:
    return cli.main(["lipread", *map(str, args), "--no-progress"])


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "an error message was expected on stderr"
    return err[-1]


# --------------------------------------------------------------------------- the API
def test_word_clip_gives_sorted_top_words(corpus, weights):
    result = lipread(corpus["word"], weights=weights, top=3, progress=False)
    assert result["mode"] == "word" and result["frames"] == 29
    top = result["top"]
    assert len(top) == 3 and all(w in WORDS for w, _ in top)
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and all(0 < p < 1 for p in probs)
    assert sum(probs) <= 1 + 1e-6
    # top larger than the vocabulary lists every word once; probabilities sum to 1
    every = lipread(corpus["word"], weights=weights, top=10, progress=False)["top"]
    assert sorted(w for w, _ in every) == sorted(WORDS)
    assert sum(p for _, p in every) == pytest.approx(1.0, abs=1e-5)
    assert [w for w, _ in every[:3]] == [w for w, _ in top]


def test_word_boundary_marks_the_clip_frames(corpus, inputs, net):
    seen = []
    original = net.forward

    def spy(video, boundary=None):
        seen.append((tuple(video.shape), boundary.clone()))
        return original(video, boundary)

    net.forward = spy
    try:
        lipread(corpus["word"], net, progress=False)
        lipread(inputs["short20"], net, progress=False)
    finally:
        del net.forward
    (shape29, b29), (shape20, b20) = seen
    assert shape29 == shape20 == (1, 1, 29, 96, 96)
    assert b29.tolist() == [[1.0] * 29]  # the whole clip: no duration is known
    assert b20[0].tolist() == [0.0] * 4 + [1.0] * 20 + [0.0] * 5  # its 20 frames, centred


def test_long_video_is_read_in_windows(corpus, net):
    result = lipread(corpus["long"], net, top=2, hop=10, progress=False)
    n = result["frames"]
    assert result["mode"] == "windows" and n >= 75
    starts = window_starts(n, 10)
    assert starts[:3] == [0, 10, 20] and starts[-1] == n - 29
    windows = result["windows"]
    assert len(windows) == len(starts)
    for s, w in zip(starts, windows):
        assert w["start"] == pytest.approx(s / 25) and w["end"] == pytest.approx((s + 29) / 25)
        assert w["centre"] == pytest.approx((s + 14.5) / 25)
        assert w["word"] in WORDS and 0 < w["p"] <= 1
        assert len(w["top"]) == 2 and w["top"][0] == (w["word"], w["p"])
        assert w["face"] == 1.0


def test_streamed_crops_equal_held_crops(corpus, monkeypatch):
    held, info = mouth_crops(corpus["long"])
    monkeypatch.setattr(infer, "HOLD_BYTES", 0)  # decode three times, 16 frames at a time
    monkeypatch.setattr(infer, "CHUNK", 16)
    streamed, info2 = mouth_crops(corpus["long"])
    assert held.shape == (info["frames"], 96, 96) and held.dtype == np.uint8
    np.testing.assert_array_equal(streamed, held)
    np.testing.assert_array_equal(info2["face"], info["face"])
    assert held.std() > 5  # a mouth, not a flat patch


def test_load_reader_names_classes_and_checks_words(weights, inputs):
    net = load_reader(weights)
    assert isinstance(net, SyncVSR) and net.cfg.vocabulary == WORDS and not net.training
    renamed = load_reader(weights, words=["w1", "w2", "w3", "w4"])
    assert renamed.cfg.vocabulary == ("w1", "w2", "w3", "w4")
    with pytest.raises(LipreadError, match="3 words but the reader has 4 classes") as err:
        load_reader(weights, words=inputs["words3"])
    assert err.value.exit_code == cli.EXIT_USAGE
    with pytest.raises(LipreadError, match="unknown lip-reading model") as err:
        load_reader(weights, model="unknown")
    assert err.value.exit_code == cli.EXIT_USAGE


# --------------------------------------------------------------------------- the command
def test_cli_prints_words_and_windows_and_writes_nothing(corpus, weights, capsys):
    before = {p: sorted(p.parent.iterdir()) for p in (corpus["word"], weights)}
    assert run(corpus["word"], "--weights", weights, "--top", "2") == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "29 frames" in out and str(weights) in out
    ranked = [ln.split() for ln in out.splitlines() if re.match(r"\s+\d+\s", ln)]
    assert [r[0] for r in ranked] == ["1", "2"] and all(r[1] in WORDS for r in ranked)

    assert run(corpus["long"], "--weights", weights, "--json", "--hop", "20") == cli.EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "windows" and doc["video"] == str(corpus["long"])
    assert [w["start"] for w in doc["windows"][:2]] == pytest.approx([0.0, 0.8])
    assert all(w["word"] in WORDS and len(w["top"]) == 4 for w in doc["windows"])

    assert run(corpus["word"], "--weights", weights, "--json") == cli.EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "word" and [w for w, _ in doc["top"]] and len(doc["top"]) == 4
    assert {p: sorted(p.parent.iterdir()) for p in before} == before


def test_default_weights_are_the_chapter_product(corpus, weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AVLIB_ARTIFACTS", str(tmp_path))
    monkeypatch.delenv(infer.ENV_WEIGHTS, raising=False)
    assert run(corpus["word"]) == cli.EXIT_USAGE
    line = error_line(capsys)
    assert "vsr_lam10_f100" in line and "make run ONLY=06_syncvsr" in line and "--weights" in line
    product = tmp_path / "vsr_lam10_f100" / "0123456789ab"
    product.mkdir(parents=True)
    for suffix in (".json", ".safetensors"):
        (product / f"net{suffix}").write_bytes(weights.with_suffix(suffix).read_bytes())
    (product / "history.json").write_text("{}")
    assert run(corpus["word"]) == cli.EXIT_USAGE  # no artifact.json: not a finished product
    capsys.readouterr()
    (product / "artifact.json").write_text("{}")
    assert run(corpus["word"]) == cli.EXIT_OK
    assert str(product / "net.json") in capsys.readouterr().out
    # the product's name folder, given as --weights, means its newest product
    assert run(corpus["word"], "--weights", product.parent) == cli.EXIT_OK
    capsys.readouterr()


@pytest.mark.parametrize("case, code, message", [
    ("missing", cli.EXIT_INPUT, "video not found"),
    ("text", cli.EXIT_INPUT, "notes.mp4"),
    ("noface", cli.EXIT_INPUT, "no usable face"),
    ("tiny", cli.EXIT_INPUT, "needs at least 5"),
])
def test_bad_videos_are_refused(case, code, message, inputs, weights, tmp_path, capsys):
    video = tmp_path / "absent.mp4" if case == "missing" else inputs[case]
    assert run(video, "--weights", weights) == code
    line = error_line(capsys)
    assert line.startswith("avlib lipread: ") and message in line


def test_bad_weights_and_words_are_refused(corpus, inputs, weights, tmp_path, capsys):
    clip = corpus["word"]
    cases = [
        (["--weights", tmp_path / "none.json"], cli.EXIT_INPUT, "weights not found"),
        (["--weights", inputs["book_other"]], cli.EXIT_INPUT, "holds a 'syncnet' model"),
        (["--weights", inputs["official_other"]], cli.EXIT_INPUT, "holds SyncNet"),
        (["--weights", inputs["ckpt_small"]], cli.EXIT_USAGE, "pass --words FILE"),
        (["--weights", inputs["ckpt_small"], "--words", inputs["words3"]], cli.EXIT_USAGE,
         "3 words but"),
        (["--weights", inputs["ckpt_small"], "--words", inputs["words4"]], cli.EXIT_INPUT,
         "not an official-size SyncVSR"),
        (["--weights", weights, "--words", inputs["words3"]], cli.EXIT_USAGE,
         "3 words but the reader has 4 classes"),
        (["--weights", weights, "--words", tmp_path / "no_words.txt"], cli.EXIT_INPUT,
         "not found"),
        (["--weights", weights, "--top", "0"], cli.EXIT_USAGE, "--top must be"),
        (["--weights", weights, "--device", "tpu:x"], cli.EXIT_USAGE, "unknown device"),
    ]
    for args, code, message in cases:
        assert run(clip, *args) == code, args
        line = error_line(capsys)
        assert message in line, (args, line)
        assert "Traceback" not in line


def test_unknown_model_is_a_usage_error(corpus, weights, capsys):
    with pytest.raises(SystemExit) as err:
        run(corpus["word"], "--weights", weights, "--model", "unknown")
    assert err.value.code == cli.EXIT_USAGE
    assert "invalid choice: 'unknown'" in capsys.readouterr().err
    assert set(infer.READERS) == {"syncvsr", "mmab"}


def test_torch_device_is_one_check_shared_by_the_commands(monkeypatch):
    class ToolError(Exception):
        def __init__(self, message, exit_code):
            super().__init__(message)
            self.exit_code = exit_code

    assert cli.torch_device("cpu", ToolError) == torch.device("cpu")
    with pytest.raises(ToolError, match="unknown device 'tpu:x'") as err:
        cli.torch_device("tpu:x", ToolError)
    assert err.value.exit_code == cli.EXIT_USAGE
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ToolError, match="sees no CUDA GPU"):
        cli.torch_device("cuda:0", ToolError)


# --------------------------------------------------------------------------- MMAB
def mmab_config(**changes) -> MMABConfig:
    return MMABConfig.named("cpu", **{"n_classes": len(WORDS), "vocabulary": WORDS, "n_slot": 8,
                                      **changes})


@pytest.fixture(scope="module")
def mmab_net():
    torch.manual_seed(3)
    return MMAB(**asdict(mmab_config()))


@pytest.fixture(scope="module")
def mmab_files(mmab_net, tmp_path_factory):
    """The MMAB as a book checkpoint and in the official format, an MS-TCN official file of 5
    classes, and audio files: longer than the long video at 22.05 kHz, short, silent, broken."""
    root = tmp_path_factory.mktemp("mmab")
    save_checkpoint(root / "mmab", mmab_net)
    files = {"book": root / "mmab.json"}
    torch.save({part: module.state_dict() for part, module in mmab_net.official_parts().items()},
               root / "GRU_Back_Ckpt.ckpt")
    files["official"] = root / "GRU_Back_Ckpt.ckpt"
    torch.manual_seed(4)
    tcn = MMAB(**asdict(mmab_config(backend="mstcn", n_classes=5, vocabulary=())))
    torch.save({part: module.state_dict() for part, module in tcn.official_parts().items()},
               root / "MSTCN_Back_Ckpt.ckpt")
    files["official_tcn"] = root / "MSTCN_Back_Ckpt.ckpt"
    rng = np.random.default_rng(0)
    files["other"] = media.write_wav(root / "other.wav", 0.3 * rng.standard_normal(22050 * 5),
                                     22050)
    files["short"] = media.write_wav(root / "short.wav", 0.3 * rng.standard_normal(8000), 16000)
    files["silent"] = media.write_wav(root / "silent.wav", np.zeros(16000 * 2), 16000)
    (root / "broken.wav").write_bytes(b"RIFF" + bytes(range(256)) * 8)
    files["broken"] = root / "broken.wav"
    return files


def test_mmab_reads_a_word_clip_with_and_without_audio(corpus, mmab_net, mmab_files):
    seen = []
    original = mmab_net.classify

    def spy(video, audio=None, mode="memory", flip=False):
        seen.append((tuple(video.shape), None if audio is None else tuple(audio.shape), mode, flip,
                     float(video.mean()), float(video.std())))
        return original(video, audio, mode, flip)

    mmab_net.classify = spy
    try:
        alone = lipread(corpus["word"], mmab_net, top=3, progress=False)
        heard = lipread(corpus["word"], mmab_net, top=10, progress=False, audio=True, flip=False)
    finally:
        del mmab_net.classify
    for result, top in ((alone, 3), (heard, 4)):
        assert result["mode"] == "word" and result["frames"] == 29 and result["model"] == "mmab"
        probs = [p for _, p in result["top"]]
        assert len(probs) == top and all(w in WORDS for w, _ in result["top"])
        assert probs == sorted(probs, reverse=True) and all(0 < p < 1 for p in probs)
    assert alone["model_mode"] == "memory" and alone["flip"] and alone["audio"] is None
    assert heard["model_mode"] == "audiovisual" and not heard["flip"]
    assert heard["audio"] == f"the soundtrack of {corpus['word']}" and heard["audio_padded_s"] == 0
    assert sum(p for _, p in heard["top"]) == pytest.approx(1.0, abs=1e-5)
    # vcagan112 crops resized to the reader's 32 px, MMAB's normalisation; 4 mel frames a frame
    (v1, a1, mode1, flip1, mean1, std1), (v2, a2, mode2, flip2, _, _) = seen
    assert v1 == v2 == (1, 1, 29, 32, 32) and a1 is None and a2 == (1, 1, 80, 116)
    assert (mode1, flip1, mode2, flip2) == ("memory", True, "audiovisual", False)
    assert -3 < mean1 < 3 and 0.3 < std1 < 3  # (x / 255 - 0.4136) / 0.17 of a mouth


def test_mmab_reads_a_long_video_in_windows_with_other_audio(corpus, mmab_net, mmab_files):
    result = lipread(corpus["long"], mmab_net, top=2, hop=20, progress=False,
                     audio=mmab_files["other"])
    n = result["frames"]
    assert result["mode"] == "windows" and result["model_mode"] == "audiovisual"
    assert result["audio"] == str(mmab_files["other"]) and result["audio_padded_s"] == 0
    assert [w["start"] for w in result["windows"]] == pytest.approx(
        [s / 25 for s in window_starts(n, 20)])
    assert all(w["word"] in WORDS and len(w["top"]) == 2 and w["face"] == 1.0
               for w in result["windows"])
    # audio shorter than the clip: padded with silence, and said; silence alone is just read
    with pytest.warns(LipreadWarning, match="read with silence"):
        short = lipread(corpus["word"], mmab_net, progress=False, audio=mmab_files["short"])
    assert short["audio_padded_s"] == pytest.approx((29 * 640 - 8000) / 16000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LipreadWarning)
        silent = lipread(corpus["word"], mmab_net, progress=False, audio=mmab_files["silent"])
    assert all(np.isfinite(p) for _, p in silent["top"])


def test_cli_mmab_modes_and_json(corpus, mmab_files, capsys):
    book = mmab_files["book"]
    assert run(corpus["word"], "--model", "mmab", "--weights", book, "--json") == cli.EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert (doc["model"], doc["model_mode"], doc["mode"]) == ("mmab", "memory", "word")
    assert doc["flip"] is True
    assert len(doc["top"]) == 4 and doc["weights"].startswith(str(book))

    assert run(corpus["word"], "--model", "mmab", "--weights", book, "--audio",
               "--json") == cli.EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["model_mode"] == "audiovisual" and "soundtrack" in doc["audio"]

    assert run(corpus["word"], "--model", "mmab", "--weights", book, "--audio",
               mmab_files["short"], "--no-flip", "--top", "2") == cli.EXIT_OK
    captured = capsys.readouterr()
    assert "mmab, audiovisual mode" in captured.out and "flip" not in captured.out
    assert "word boundary" not in captured.out
    ranked = [ln.split() for ln in captured.out.splitlines() if re.match(r"\s+\d+\s", ln)]
    assert [r[0] for r in ranked] == ["1", "2"] and all(r[1] in WORDS for r in ranked)
    assert "avlib lipread: warning: " in captured.err and "read with silence" in captured.err


def test_mmab_default_weights_are_the_chapter_07_product(corpus, mmab_files, tmp_path,
                                                         monkeypatch, capsys):
    monkeypatch.setenv("AVLIB_ARTIFACTS", str(tmp_path))
    monkeypatch.delenv(infer.ENV_MMAB_WEIGHTS, raising=False)
    monkeypatch.setenv(infer.ENV_WEIGHTS, "/nowhere/syncvsr.json")  # SyncVSR's: not used
    with pytest.raises(LipreadError) as err:
        load_reader(model="mmab")
    assert err.value.exit_code == cli.EXIT_USAGE
    message = str(err.value)
    chapter = (project_root() / "notebooks" / "07_mmab.py").is_file()
    assert "mmab_memory168" in message
    assert ("make run ONLY=07_mmab" in message) == chapter  # only when the chapter exists
    assert infer.ENV_MMAB_WEIGHTS in message and "GRU_Back_Ckpt.ckpt" in message
    monkeypatch.setenv(infer.ENV_MMAB_WEIGHTS, str(mmab_files["book"]))
    assert isinstance(load_reader(model="mmab"), MMAB)
    monkeypatch.delenv(infer.ENV_MMAB_WEIGHTS)
    product = tmp_path / "mmab_memory168" / "0123456789ab"
    product.mkdir(parents=True)
    for suffix in (".json", ".safetensors"):
        (product / f"net{suffix}").write_bytes(mmab_files["book"].with_suffix(suffix).read_bytes())
    (product / "artifact.json").write_text("{}")
    net = load_reader(model="mmab")
    assert isinstance(net, MMAB) and net.cfg.vocabulary == WORDS


def test_mmab_official_checkpoints(mmab_files, monkeypatch):
    with pytest.raises(LipreadError, match="pass --words FILE") as err:
        load_reader(mmab_files["official"], model="mmab")
    assert err.value.exit_code == cli.EXIT_USAGE
    with pytest.raises(LipreadError, match="4 words but .* has 5 classes") as err:
        load_reader(mmab_files["official_tcn"], words=WORDS, model="mmab")
    assert err.value.exit_code == cli.EXIT_USAGE
    # the official sizes are what the official format loads into; a cpu-size file is refused ...
    with pytest.raises(LipreadError, match="not an official-size MMAB") as err:
        load_reader(mmab_files["official"], words=WORDS, model="mmab")
    assert err.value.exit_code == cli.EXIT_INPUT
    # ... and loads when MMAB.from_official is told the cpu size (the loader's own checks)
    original = MMAB.from_official.__func__
    cpu = {k: v for k, v in asdict(mmab_config()).items()
           if k not in ("n_classes", "n_slot", "backend", "vocabulary")}
    monkeypatch.setattr(MMAB, "from_official",
                        classmethod(lambda cls, raw, **ch: original(cls, raw, **{**cpu, **ch})))
    net = load_reader(mmab_files["official"], words=["a", "b", "c", "d"], model="mmab")
    assert isinstance(net, MMAB) and net.cfg.vocabulary == ("a", "b", "c", "d")
    assert (net.cfg.backend, net.cfg.n_slot, net.cfg.n_classes) == ("gru", 8, 4)
    tcn = load_reader(mmab_files["official_tcn"], words=list("vwxyz"), model="mmab")
    assert tcn.cfg.backend == "mstcn" and tcn.cfg.n_classes == 5


def test_mmab_bad_inputs_are_refused(corpus, inputs, weights, mmab_files, tmp_path, capsys):
    clip, book = corpus["word"], mmab_files["book"]
    mmab = ["--model", "mmab", "--weights", book]
    cases = [
        (["--weights", weights, "--audio"], cli.EXIT_USAGE, "SyncVSR reads lips only"),
        (["--weights", weights, "--audio", mmab_files["other"]], cli.EXIT_USAGE,
         "SyncVSR reads lips only"),
        (["--model", "mmab", "--weights", weights], cli.EXIT_INPUT,
         "holds a 'syncvsr' model, not MMAB's memory lip reader"),
        (["--model", "mmab", "--weights", weights.parent], cli.EXIT_INPUT, "--model syncvsr"),
        (["--weights", book], cli.EXIT_INPUT, "holds a 'mmab' model, not SyncVSR's"),
        (["--weights", book], cli.EXIT_INPUT, "read it with --model mmab"),
        (["--weights", mmab_files["official"], "--words", inputs["words4"]], cli.EXIT_INPUT,
         "read it with --model mmab"),
        (["--model", "mmab", "--weights", inputs["ckpt_small"]], cli.EXIT_INPUT,
         "read it with --model syncvsr"),
        (["--model", "mmab", "--weights", inputs["official_other"]], cli.EXIT_INPUT,
         "holds SyncNet"),
        (["--model", "mmab", "--weights", mmab_files["official"]], cli.EXIT_USAGE,
         "pass --words FILE"),
        ([*mmab, "--audio", mmab_files["broken"]], cli.EXIT_INPUT, "cannot read the audio"),
        ([*mmab, "--audio", tmp_path / "absent.wav"], cli.EXIT_INPUT, "audio not found"),
    ]
    for args, code, message in cases:
        assert run(clip, *args) == code, args
        line = error_line(capsys)
        assert message in line, (args, line)
        assert "Traceback" not in line
    with pytest.raises(LipreadError, match="is SyncVSR's word lip reader, not MMAB's") as err:
        lipread(clip, load_reader(weights), model="mmab", progress=False)
    assert err.value.exit_code == cli.EXIT_USAGE
    # --audio alone on a video without sound
    assert run(inputs["short20"], *mmab, "--audio") == cli.EXIT_INPUT
    assert "no sound track" in error_line(capsys)
