"""The sync checker / corrector: ``avlib sync check|fix`` and its Python API."""
from __future__ import annotations

import re
import subprocess
import sys
import weakref

import av
import numpy as np
import pytest
import torch
from torch import nn

from avlib import cli, media
from avlib.sync import tool as synctool
from avlib.data import preprocess as pp
from avlib.data import crops as crop_mod
from avlib.data import tracking
from avlib import sync
from avlib.audio import SR
from avlib.checkpoints import save_checkpoint
from avlib.corpus.articulation import mouth_trajectory
from avlib.corpus.render import FaceIdentity, render_clip
from avlib.corpus.speech import Voice, synthesize
from avlib.models import SyncNet, SyncNetColor
from avlib.sync.tool import SyncToolError

#: Audio delay (frames) of the shifted copy: 160 ms late, so SyncNet's sign gives offset -4.
DELAY = 4
CROP = 96  # crop side of the test models (the official 224 is needlessly slow here)
SPEECH = "Bin blue at F two now. Place green by the seven soon please."


# --------------------------------------------------------------------------- the oracle model
class MouthEnergyOracle(nn.Module):
    """A SyncNet stand-in whose answer is known without training.

    Video window -> the contrast (luminance standard deviation) of the mouth region of each of
    its 5 crops: an open mouth shows the dark cavity and the bright teeth, a closed one only
    lips and skin. Audio window -> the log frame energy (MFCC c0) averaged over the 4 MFCC
    frames of each video frame. Each 5-vector is centred and scaled to unit length, so the L2
    distance of two windows is sqrt(2 - 2 r), r = their correlation over the 5 frames; a
    constant last coordinate (equal in both streams, so it cancels between real windows) puts
    syncnet_python's zero-padded out-of-range windows far away, as real embeddings are.
    Nothing in it knows about any shift: it only reads pixels and MFCCs.
    """

    #: Mouth region of a syncnet_python crop (fractions of the crop side): the crop runs from
    #: one half-size above the face centre to 1.8 below, so the mouth sits just below the middle.
    ROWS = (0.44, 0.60)
    COLS = (0.36, 0.64)

    def __init__(self, img_size: int = CROP, far: float = 3.0):
        super().__init__()
        self.img_size = img_size
        self.far = far

    def _embed(self, per_frame: torch.Tensor) -> torch.Tensor:
        centred = per_frame - per_frame.mean(1, keepdim=True)
        unit = centred / (centred.norm(dim=1, keepdim=True) + 1e-3)
        return torch.cat([unit, torch.full_like(unit[:, :1], self.far)], 1)

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        s = self.img_size
        rows = slice(int(self.ROWS[0] * s), int(self.ROWS[1] * s))
        cols = slice(int(self.COLS[0] * s), int(self.COLS[1] * s))
        luminance = frames[:, :, :, rows, cols].mean(1)  # (B, 5, h, w)
        return self._embed(luminance.flatten(2).std(2))  # (B, 5) contrast per frame

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        energy = mfcc[:, 0, 0, :]  # (B, 20) log energy per 10 ms
        return self._embed(energy.reshape(-1, 5, 4).mean(2))


# --------------------------------------------------------------------------- fixtures
def talking_face(size: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rendered speaker saying SPEECH, lips in sync with the sound: RGB frames and 16 kHz wav."""
    utt = synthesize(SPEECH, Voice(variant="m3"))
    n = len(utt.wav) // 640
    # lead_frames=0: the mouth shows the sound of the same instant, so the true offset is 0.
    mouth = mouth_trajectory(utt.phonemes, n, lead_frames=0.0)
    clip = render_clip(FaceIdentity.sample(np.random.default_rng(seed)), mouth, seed=seed, size=size)
    return clip.frames, utt.wav[: n * 640]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The in-sync clip, a copy with the audio delayed by DELAY frames, and the raw data."""
    root = tmp_path_factory.mktemp("synctool")
    frames, wav = talking_face()
    original = media.write_video(root / "talk.mp4", frames, audio=wav, sr=SR)
    delayed = media.remux_with_shifted_audio(original, root / "talk_late.mp4", DELAY)
    return {"root": root, "original": original, "delayed": delayed, "frames": frames, "wav": wav}


@pytest.fixture(scope="module")
def oracle():
    return MouthEnergyOracle()


@pytest.fixture(scope="module")
def oracle_offsets(clips, oracle):
    """Oracle results on both clips (computed once: several tests compare with them)."""
    return {name: synctool.check_video(clips[name], oracle, progress=False) for name in ("original", "delayed")}


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory):
    """A tiny random SyncNet saved as a book checkpoint (.json + .safetensors)."""
    torch.manual_seed(0)
    model = SyncNet(width=0.125, img_size=CROP, emb_dim=64)
    json_path = save_checkpoint(tmp_path_factory.mktemp("weights") / "syncnet_small", model)[1]
    return json_path


def run_cli(*args: str) -> int:
    return cli.main(["sync", *map(str, args)])


def video_packets(path) -> list[bytes]:
    """The raw bytes of every video packet (to prove the video stream was copied, not re-encoded)."""
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


# --------------------------------------------------------------------------- (a) the CLI end to end
def test_cli_check_prints_offset_lse_and_plot(clips, small_weights, tmp_path, capsys):
    plot = tmp_path / "curve.png"
    assert run_cli("check", clips["delayed"], "--weights", small_weights, "--plot", plot, "--quiet") == 0
    out = capsys.readouterr().out
    frames_ms = re.search(r"AV offset\s+([+-]?\d+) frames \(([+-]?\d+) ms\)", out)
    lse_d = re.search(r"LSE-D\s+([0-9.]+)", out)
    lse_c = re.search(r"LSE-C\s+(-?[0-9.]+)", out)
    assert frames_ms and lse_d and lse_c, out
    offset = int(frames_ms.group(1))
    assert int(frames_ms.group(2)) == 40 * offset
    assert re.search(r"(in sync|leads the video by \d+ ms|lags the video by \d+ ms)", out)
    assert "avlib checkpoint, SyncNet(emb_dim=64, img_size=96, width=0.125)" in out
    # The printout is the Python API's result, rounded.
    model = synctool.load_syncnet(small_weights)
    result = synctool.check_video(clips["delayed"], model, progress=False)
    assert result.offset == offset
    assert float(lse_d.group(1)) == pytest.approx(result.min_dist, abs=1e-3)
    assert float(lse_c.group(1)) == pytest.approx(result.confidence, abs=1e-3)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_fix_with_known_offset_runs_as_a_module(clips, oracle, oracle_offsets, tmp_path):
    """``python -m avlib sync fix --offset`` needs no weights and realigns the delayed copy."""
    out = tmp_path / "fixed.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "avlib", "sync", "fix", str(clips["delayed"]), "-o", str(out),
         "--offset", str(-DELAY), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"advanced by {40 * DELAY} ms" in proc.stdout and "not re-encoded" in proc.stdout
    assert video_packets(out) == video_packets(clips["delayed"])
    back = synctool.check_video(out, oracle, progress=False)
    assert abs(back.offset - oracle_offsets["original"].offset) <= 1


# --------------------------------------------------------------------------- (b) known shifts
def test_oracle_recovers_the_known_delay(oracle_offsets):
    original, delayed = oracle_offsets["original"], oracle_offsets["delayed"]
    assert abs(original.offset) <= 1
    # Delaying the audio by d frames makes SyncNet report -d (avlib.sync's sign convention).
    assert abs(delayed.offset - sync.audio_delay_to_offset(DELAY)) <= 1
    # The curve's minimum moved by the delay: the offsets in between score worse.
    assert original.offset - delayed.offset in (DELAY - 1, DELAY, DELAY + 1)
    assert delayed.confidence > 0.1 and original.confidence > 0.1


def test_fix_cancels_the_measured_offset(clips, oracle, oracle_offsets, tmp_path):
    out = tmp_path / "fixed.mp4"
    done = synctool.fix_video(clips["delayed"], out, model=oracle, progress=False, verify=True)
    assert done["measured"] and done["offset_frames"] == oracle_offsets["delayed"].offset
    assert done["shift_frames"] == done["offset_frames"] and done["shift_ms"] == 40 * done["offset_frames"]
    assert abs(done["residual_offset"]) <= 1
    # The re-check is a fresh measurement of the written file.
    assert abs(synctool.check_video(out, oracle, progress=False).offset) <= 1
    assert video_packets(out) == video_packets(clips["delayed"])
    assert media.probe(out).has_audio


# --------------------------------------------------------------------------- (c) weights
def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A made-up syncnet_v2.model: the official key names and shapes, random values, and no
    ``num_batches_tracked`` (2016-17 PyTorch did not have them)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, ref in SyncNet().state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        values = torch.randn(ref.shape, generator=gen)
        state[key] = values.abs() + 0.5 if key.endswith("running_var") else values
    return state


def test_official_format_weights_load(tmp_path, monkeypatch):
    state = official_state_dict()
    path = tmp_path / "syncnet_v2.model"
    torch.save(state, path)
    model = synctool.load_syncnet(path)
    assert isinstance(model, SyncNet) and model.img_size == 224 and not model.training
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert int(loaded["netcnnaud.1.num_batches_tracked"]) == 0
    # The same file through the environment variable.
    monkeypatch.setenv(synctool.ENV_WEIGHTS, str(path))
    from_env = synctool.load_syncnet()
    assert torch.equal(from_env.state_dict()["netfclip.3.bias"], state["netfclip.3.bias"])


def test_book_checkpoint_loads_by_any_of_its_names(small_weights):
    reference = synctool.load_syncnet(small_weights).state_dict()
    for name in (small_weights.with_suffix(".safetensors"), small_weights.with_suffix("")):
        model = synctool.load_syncnet(name)
        assert model.img_size == CROP and model.emb_dim == 64
        assert all(torch.equal(model.state_dict()[k], v) for k, v in reference.items())


def test_weight_errors_are_clear(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(synctool.ENV_WEIGHTS, raising=False)
    with pytest.raises(SyncToolError, match=r"--weights FILE.*AVLIB_SYNCNET_WEIGHTS.*syncnet_v2\.model.*\.json"):
        synctool.load_syncnet()
    with pytest.raises(SyncToolError, match="weights file not found"):
        synctool.load_syncnet(tmp_path / "nope.model")
    monkeypatch.setenv(synctool.ENV_WEIGHTS, str(tmp_path / "gone.model"))
    with pytest.raises(SyncToolError, match=r"gone\.model \(from \$AVLIB_SYNCNET_WEIGHTS\)"):
        synctool.load_syncnet()
    for name, content in (("empty.model", b""), ("text.model", b"hello")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(SyncToolError, match=f"cannot read .*{name} as a PyTorch checkpoint"):
            synctool.load_syncnet(tmp_path / name)
    # A state dict of another network (the Wav2Lip expert) is not syncnet_v2.
    torch.save(SyncNetColor(width=0.125).state_dict(), tmp_path / "expert.pth")
    with pytest.raises(SyncToolError, match="not a syncnet_v2 state dict"):
        synctool.load_syncnet(tmp_path / "expert.pth")
    # A book checkpoint of another model.
    json_path = save_checkpoint(tmp_path / "expert", SyncNetColor(width=0.125))[1]
    with pytest.raises(SyncToolError, match="'wav2lip_expert' model, not a SyncNet"):
        synctool.load_syncnet(json_path)
    json_path.with_suffix(".safetensors").unlink()
    with pytest.raises(SyncToolError, match=r"checkpoint file not found: .*expert\.safetensors"):
        synctool.load_syncnet(json_path)
    # The command line turns them into one line on stderr and exit code 2 (usage: no weights).
    monkeypatch.delenv(synctool.ENV_WEIGHTS)
    assert run_cli("check", tmp_path / "any.mp4", "--quiet") == cli.EXIT_USAGE
    assert "avlib sync check: error: no SyncNet weights given" in capsys.readouterr().err


# --------------------------------------------------------------------------- (d) input errors
def test_input_errors_are_clear(clips, oracle, tmp_path, capsys):
    frames, wav = clips["frames"], clips["wav"]
    with pytest.raises(SyncToolError, match="video not found"):
        synctool.check_video(tmp_path / "missing.mp4", oracle, progress=False)

    silent = media.write_video(tmp_path / "silent.mp4", frames[:40])
    with pytest.raises(SyncToolError, match="has no audio stream"):
        synctool.check_video(silent, oracle, progress=False)

    # No face: a moving grey gradient with the speech.
    ramp = np.linspace(40, 200, 160, dtype=np.float32)
    blank = np.stack([np.broadcast_to((ramp + t)[None, :, None], (160, 160, 3)) for t in range(40)])
    faceless = media.write_video(tmp_path / "faceless.mp4", blank.astype(np.uint8), audio=wav[: 40 * 640])
    with pytest.raises(SyncToolError, match="no face found"):
        synctool.check_video(faceless, oracle, progress=False)

    # Too short: 15 frames. vshift 15 needs 5 + 16 = 21 frames; vshift 5 needs 11.
    short = media.write_video(tmp_path / "short.mp4", frames[:15], audio=wav[: 15 * 640])
    with pytest.raises(SyncToolError, match=r"15 usable frames .* at least 21 frames \(0\.84 s\)"):
        synctool.check_video(short, oracle, progress=False)
    assert synctool.min_frames(5) == 11
    assert synctool.check_video(short, oracle, vshift=5, progress=False).n_windows == 10

    with pytest.raises(SyncToolError, match="needs the offset"):
        synctool.fix_video(short, tmp_path / "out.mp4")
    with pytest.raises(SyncToolError, match="must be a new file"):
        synctool.fix_video(short, short, offset=1)
    with pytest.raises(SyncToolError, match="vshift must be a positive"):
        synctool.check_video(short, oracle, vshift=0, progress=False)

    assert run_cli("fix", tmp_path / "missing.mp4", "-o", tmp_path / "o.mp4", "--offset", "2",
                   "--quiet") == cli.EXIT_INPUT
    assert "avlib sync fix: error: video not found" in capsys.readouterr().err


def test_offset_sentences_follow_the_sign_convention():
    assert synctool.describe_offset(0).startswith("The audio and the video are in sync")
    assert synctool.describe_offset(3) == (
        "The audio leads the video by 120 ms (3 frames): the sound comes before the lips move."
    )
    assert synctool.describe_offset(-1) == (
        "The audio lags the video by 40 ms (1 frame): the sound comes after the lips move."
    )


# --------------------------------------------------------------------------- (e) streaming
class _Tracked(np.ndarray):
    """An ndarray that owns its memory, so a weakref finalizer tells when it is really freed."""


def _tracked_copy(arr: np.ndarray, counter: dict) -> _Tracked:
    copy = np.ndarray.__new__(_Tracked, arr.shape, arr.dtype)
    copy[...] = arr
    counter["made"] += 1
    counter["live"] += 1
    counter["peak"] = max(counter["peak"], counter["live"])

    def freed():
        counter["live"] -= 1

    weakref.finalize(copy, freed)
    return copy


def test_memory_stays_bounded_and_streaming_matches_in_memory(clips, oracle, monkeypatch):
    decoded = {"made": 0, "live": 0, "peak": 0}
    crops = {"made": 0, "live": 0, "peak": 0}
    real_iter, real_crop = media.iter_video, synctool.crop_syncnet

    def counting_iter(*args, **kwargs):
        for index, frame in real_iter(*args, **kwargs):
            yield index, _tracked_copy(frame, decoded)

    monkeypatch.setattr(media, "iter_video", counting_iter)
    monkeypatch.setattr(synctool, "crop_syncnet", lambda *a, **k: _tracked_copy(real_crop(*a, **k), crops))
    batch = 4
    streamed = synctool.check_video(clips["original"], oracle, vshift=5, batch_size=batch, progress=False)
    n_frames = streamed.n_windows + 5
    assert crops["made"] == n_frames > 10 * batch  # every frame went through, far more than are held
    assert decoded["made"] == 2 * n_frames  # two passes over the video: faces, then crops
    assert crops["peak"] <= batch + 5
    assert decoded["peak"] <= 2
    assert crops["live"] == decoded["live"] == 0

    # The same pipeline with the whole clip in memory gives the same numbers.
    monkeypatch.undo()
    frames, _ = media.read_video(clips["original"])
    wav = media.read_audio(clips["original"])
    cfg = pp.PreprocessConfig(syncnet_size=CROP)
    detector = pp.make_detector(cfg)
    try:
        track = tracking.track_faces(tracking.detect_faces(frames, detector), (frames.shape[2], frames.shape[1]), cfg)
    finally:
        detector.close()
    all_crops = np.stack([crop_mod.crop_syncnet(f, *track.syncnet[t], CROP) for t, f in enumerate(frames)])
    in_memory = sync.syncnet_offset(oracle, all_crops, wav, vshift=5, batch_size=batch)
    assert in_memory.offset == streamed.offset
    np.testing.assert_array_equal(in_memory.mean_dists, streamed.mean_dists)
    assert in_memory.min_dist == streamed.min_dist and in_memory.confidence == streamed.confidence


# --------------------------------------------------------------------------- (f) lse and protocols
def test_lse_takes_a_path_or_arrays_and_is_exported(clips, oracle, oracle_offsets):
    assert sync.lse is synctool.lse and "lse" in sync.__all__
    from_path = sync.lse(clips["delayed"], oracle)
    assert from_path.offset == oracle_offsets["delayed"].offset
    assert from_path.min_dist == oracle_offsets["delayed"].min_dist
    assert from_path.lse_c == from_path.confidence == oracle_offsets["delayed"].confidence
    assert from_path.framewise_conf.shape == (from_path.n_windows,)
    # The same decoded frames and audio as arrays give the same numbers, in either colour order.
    frames, _ = media.read_video(clips["delayed"])
    wav = media.read_audio(clips["delayed"])
    from_rgb = sync.lse((frames, wav), oracle)
    from_bgr = sync.lse((frames[..., ::-1], wav), oracle, order="bgr")
    for other in (from_rgb, from_bgr):
        assert other.offset == from_path.offset
        np.testing.assert_array_equal(other.mean_dists, from_path.mean_dists)
        np.testing.assert_array_equal(other.framewise_conf, from_path.framewise_conf)
    with pytest.raises(SyncToolError, match="pass the video's path"):
        sync.lse((frames, wav), oracle, protocol="syncnet_python")
    with pytest.raises(SyncToolError, match="protocol must be one of"):
        sync.lse(clips["delayed"], oracle, protocol="upstream")


def test_syncnet_python_protocol_reads_ffmpeg_jpegs_and_pcm16(clips, oracle, oracle_offsets,
                                                            tmp_path, monkeypatch):
    commands, reads = [], []
    real_run, real_imread = synctool.subprocess.run, synctool.cv2.imread

    def spy_run(cmd, *args, **kwargs):
        commands.append([str(c) for c in cmd])
        return real_run(cmd, *args, **kwargs)

    def spy_imread(name, *args):
        reads.append(name)
        return real_imread(name, *args)

    # A scratch folder left by a killed run (its owner process is dead) is swept.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".{synctool.SCRATCH_NAME}.{synctool.temp_path('x').name.split('.')[2]}" \
                       f".{dead}.0123456789.tmp"
    stale.mkdir()
    monkeypatch.setattr(synctool.subprocess, "run", spy_run)
    monkeypatch.setattr(synctool.cv2, "imread", spy_imread)
    result, facts = synctool._analyse(clips["delayed"], oracle, progress=False,
                                      protocol="syncnet_python", tmp_dir=tmp_path)
    frame_cmd = next(c for c in commands if c[-1].endswith("%06d.jpg"))
    audio_cmd = next(c for c in commands if c[-1].endswith("audio.wav"))
    assert "-qscale:v" not in frame_cmd and "-q:v" not in frame_cmd  # ffmpeg's default quality
    assert audio_cmd[-7:-1] == ["-ac", "1", "-ar", "16000", "-acodec", "pcm_s16le"]
    assert all(str(r).endswith(".jpg") for r in reads)
    assert len(reads) == 2 * facts["frames_used"]  # faces pass, then crops pass
    assert list(tmp_path.iterdir()) == []  # the scratch folder is gone, the stale one too
    # JPEG frames and 16-bit audio: the same answer, slightly different distances.
    reference = oracle_offsets["delayed"]
    assert abs(result.offset - reference.offset) <= 1
    assert result.min_dist != reference.min_dist
    assert result.min_dist == pytest.approx(reference.min_dist, rel=0.1)


def test_scratch_folder_is_removed_when_the_measurement_fails(clips, tmp_path):
    class Broken(MouthEnergyOracle):
        def forward_lip(self, frames):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        synctool.check_video(clips["original"], Broken(), progress=False,
                             protocol="syncnet_python", tmp_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def _face_track(frames: np.ndarray):
    """The preprocessing face track of 160-px frames (boxes for the SyncNet crops)."""
    cfg = pp.PreprocessConfig(syncnet_size=CROP)
    detector = pp.make_detector(cfg)
    try:
        return tracking.track_faces(tracking.detect_faces(frames, detector), (160, 160), cfg)
    finally:
        detector.close()


def test_cropped_face_tracks_skip_detection(clips, oracle, oracle_offsets, tmp_path, monkeypatch):
    """A pre-cropped face track (as syncnet_python's pycrop/*.avi) is only resized."""
    frames, wav = talking_face()
    track = _face_track(frames)
    # Crops at 128 px (resized to the model's 96 by the tool), written as RGB video.
    crops = np.stack([crop_mod.crop_syncnet(f, *track.syncnet[t], 128)[..., ::-1]
                      for t, f in enumerate(frames)])
    track_clip = media.write_video(tmp_path / "pycrop.mp4", crops, audio=wav, sr=SR)
    late = media.remux_with_shifted_audio(track_clip, tmp_path / "pycrop_late.mp4", DELAY)

    def no_detector(*args, **kwargs):
        raise AssertionError("cropped input must not open a face detector")

    monkeypatch.setattr(synctool, "make_detector", no_detector)
    result, facts = synctool._analyse(late, oracle, progress=False, cropped=True)
    assert facts["faces"] is None and facts["cropped"] and facts["crop_size"] == CROP
    assert abs(result.offset - oracle_offsets["delayed"].offset) <= 1
    jpeg = synctool.check_video(late, oracle, progress=False, cropped=True,
                                protocol="syncnet_python", tmp_dir=tmp_path)
    assert abs(jpeg.offset - result.offset) <= 1
    on_time = sync.lse(track_clip, oracle, cropped=True)
    assert abs(on_time.offset - oracle_offsets["original"].offset) <= 1


# --------------------------------------------------------------------------- (g) the engine
@pytest.mark.parametrize("size", ["official", "small"])
def test_fast_engine_matches_the_reference_network(size, official_model):
    from avlib.models.syncnet import lip_windows
    from avlib.sync.batch import SyncEngine

    torch.manual_seed(1)
    model = official_model("syncnet", fresh=True) if size == "official" else \
        SyncNet(width=0.25, img_size=112, emb_dim=128).eval()
    for bn in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        bn.running_mean.uniform_(-0.5, 0.5)  # statistics that folding must honour
        bn.running_var.uniform_(0.5, 2.0)
    engine = SyncEngine(model)
    assert engine.fast and engine.audio_batch == 256
    s = model.img_size
    frames = np.random.default_rng(0).integers(0, 256, (7, s, s, 3), dtype=np.uint8)
    mfcc = torch.randn(3, 1, 13, 20, generator=torch.Generator().manual_seed(0)) * 10
    with torch.no_grad():
        ref_lip = model.forward_lip(lip_windows(frames, 3))
        ref_aud = model.forward_aud(mfcc)
    lip, aud = engine.lip(frames, 3), engine.aud(mfcc)
    assert lip.dtype == aud.dtype == torch.float32
    torch.testing.assert_close(lip, ref_lip, rtol=1e-4, atol=1e-4 * float(ref_lip.abs().max()))
    torch.testing.assert_close(aud, ref_aud, rtol=1e-4, atol=1e-4 * float(ref_aud.abs().max()))
    # Weights changed in place: the next engine folds them again.
    with torch.no_grad():
        model.netfclip[3].weight.mul_(2.0)
        ref_lip = model.forward_lip(lip_windows(frames, 3))
    torch.testing.assert_close(SyncEngine(model).lip(frames, 3), ref_lip, rtol=1e-4,
                               atol=1e-4 * float(ref_lip.abs().max()))


def test_engine_runs_other_models_as_given():
    from avlib.sync.batch import SyncEngine

    class Scaled(SyncNet):  # a subclass that changes the function: no fast copy
        def forward_lip(self, frames):
            return 2.0 * super().forward_lip(frames)

    torch.manual_seed(0)
    model = Scaled(width=0.125, img_size=64, emb_dim=32).eval()
    assert not SyncEngine(model).fast
    assert not SyncEngine(MouthEnergyOracle()).fast
    with pytest.raises(ValueError, match="precision must be one of"):
        SyncEngine(model, precision="fp16")


def test_fp32_tool_matches_the_reference_protocol(clips):
    """The tool (fast engine, audio in batches of 256) and syncnet_offset on the same crops."""
    torch.manual_seed(0)
    model = SyncNet(width=0.25, img_size=CROP, emb_dim=128).eval()
    streamed, facts = synctool._analyse(clips["delayed"], model, vshift=5, progress=False)
    assert facts["fast_network"]
    frames, _ = media.read_video(clips["delayed"])
    wav = media.read_audio(clips["delayed"])
    track = _face_track(frames)
    crops = np.stack([crop_mod.crop_syncnet(f, *track.syncnet[t], CROP)
                      for t, f in enumerate(frames)])
    reference = sync.syncnet_offset(model, crops, wav, vshift=5)
    assert streamed.offset == reference.offset
    np.testing.assert_allclose(streamed.dists, reference.dists, rtol=1e-5)
    assert streamed.min_dist == pytest.approx(reference.min_dist, rel=1e-5)
    assert streamed.confidence == pytest.approx(reference.confidence, rel=1e-3, abs=1e-5)


def test_bf16_finds_the_same_offset_and_lse_within_one_percent(clips):
    torch.manual_seed(3)
    model = SyncNet(width=0.25, img_size=CROP, emb_dim=128).eval()
    for name in ("original", "delayed"):
        fp32, _ = synctool._analyse(clips[name], model, vshift=6, progress=False)
        bf16, facts = synctool._analyse(clips[name], model, vshift=6, progress=False,
                                        precision="bf16")
        assert facts["precision"] == "bf16" and bf16.dists.dtype == np.float32
        assert bf16.offset == fp32.offset
        assert bf16.min_dist == pytest.approx(fp32.min_dist, rel=0.01)
        assert bf16.confidence == pytest.approx(fp32.confidence, rel=0.01)
        assert not np.array_equal(bf16.dists, fp32.dists)  # it did run in bfloat16


# --------------------------------------------------------------------------- (h) distances
def test_chunked_distances_are_identical_and_bounded(monkeypatch):
    from avlib.sync import protocol

    gen = torch.Generator().manual_seed(0)
    video, audio = torch.randn(301, 96, generator=gen), torch.randn(301, 96, generator=gen)
    whole = sync.calc_pdist(video, audio, vshift=15)
    for elements in (1, 96 * 31 * 7, 96 * 31 * 64):
        monkeypatch.setattr(protocol, "_PDIST_CHUNK_ELEMENTS", elements)
        assert torch.equal(sync.calc_pdist(video, audio, vshift=15), whole)
    padded = torch.cat([torch.zeros(15, 96), audio, torch.zeros(15, 96)])
    direct = torch.stack([torch.linalg.vector_norm(video - padded[j:j + 301] + 1e-6, dim=1)
                          for j in range(31)], 1)
    torch.testing.assert_close(whole, direct, rtol=1e-6, atol=1e-5)


def _rss_mib(field: str) -> float:
    from pathlib import Path

    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def test_distance_step_of_a_ten_minute_video_needs_little_memory():
    """10 minutes = 14,995 windows at D = 1024: the step adds far less than its old GBs."""
    from pathlib import Path

    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (Linux)
    except OSError:
        pytest.skip("cannot reset the peak resident set size here")
    gen = torch.Generator().manual_seed(0)
    video, audio = torch.randn(14995, 1024, generator=gen), torch.randn(14995, 1024, generator=gen)
    Path("/proc/self/clear_refs").write_text("5")
    base = _rss_mib("VmRSS")
    result = sync.summarise_dists(sync.calc_pdist(video, audio), 15)
    assert result.dists.shape == (14995, 31)
    assert _rss_mib("VmHWM") - base < 200  # padded audio copy (60 MB) + chunk temporaries


# --------------------------------------------------------------------------- (i) CLI options
def test_cli_check_with_protocol_cropped_and_precision(clips, small_weights, capsys):
    assert run_cli("check", clips["original"], "--weights", small_weights, "--precision", "bf16",
                   "--protocol", "syncnet_python", "--quiet") == 0
    out = capsys.readouterr().out
    assert "syncnet_python protocol, bf16" in out and re.search(r"LSE-C\s+-?[0-9.]+", out)
    assert run_cli("check", clips["original"], "--weights", small_weights, "--cropped",
                   "--quiet") == 0
    assert "face track given (--cropped: no detection)" in capsys.readouterr().out
    assert run_cli("check", clips["original"], clips["delayed"], "--plot", "x.png",
                   "--weights", small_weights, "--quiet") == cli.EXIT_USAGE
    assert "--plot draws the curve of one video" in capsys.readouterr().err
