"""Clip store: round trips, windows, atomicity, resumability, shards, manifest, export."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from avlib.data import store
from avlib.data.store import ClipStore, StoreError, StoreWriter, id_from_safe_name, safe_name

T, H, W = 12, 32, 40
LRS2_ID = "6330311066473698535/00011"


def smooth_frames(seed: int, n: int = T) -> np.ndarray:
    """Natural-looking uint8 RGB video (n, H, W, 3): moving colour gradients plus mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    frames = np.empty((n, H, W, 3), np.uint8)
    base = rng.uniform(40, 200, 3)
    for t in range(n):
        for c in range(3):
            wave = 40 * np.sin((x + 2 * t) / (6 + 3 * c)) + 30 * np.cos((y - t) / (5 + 2 * c))
            frames[t, :, :, c] = np.clip(base[c] + wave + rng.normal(0, 2, (H, W)), 0, 255)
    return frames


def clip_data(seed: int, n: int = T) -> dict:
    rng = np.random.default_rng(seed)
    frames = smooth_frames(seed, n)
    audio = (0.3 * np.sin(np.arange(640 * n) * 0.05) + rng.normal(0, 0.05, 640 * n)).astype(np.float32)
    return {
        "streams": {"face": frames, "mouth": frames[:, ::2, ::2, 0].copy()},
        "audio": audio,
        "features": {"mel": rng.normal(size=(80, 1 + len(audio) // 200)).astype(np.float32)},
        "landmarks": rng.uniform(0, W, (n, 20, 2)).astype(np.float32),
    }


def write(writer: StoreWriter, clip_id: str, seed: int = 0, n: int = T, **meta) -> dict:
    data = clip_data(seed, n)
    meta = {"dataset": "toy", "split": "train", "speaker": "s1", "transcript": "HELLO", **meta}
    writer.write_clip(clip_id, meta, data["streams"], data["audio"], features=data["features"],
                      landmarks=data["landmarks"])
    return data


# ----------------------------------------------------------------------------- ids


@pytest.mark.parametrize("clip_id", [LRS2_ID, "a", "..", ".hidden", "a b/c%20d", "ünï/çødé", "x/../y",
                                     "A%2F", "tab\tnew\nline", "-dash_under.dot"])
def test_safe_name_round_trips(clip_id):
    name = safe_name(clip_id)
    assert "/" not in name and "\\" not in name and not name.startswith(".")
    assert all(ch.isascii() and (ch.isalnum() or ch in "_-.%") for ch in name)
    assert id_from_safe_name(name) == clip_id


def test_safe_name_is_collision_free_and_strict():
    ids = ["a/b", "a%2Fb", "a_b", "a%b", "a%25b"]
    assert len({safe_name(i) for i in ids}) == len(ids)
    assert safe_name(LRS2_ID) == "6330311066473698535%2F00011"
    for bad in ("a%2", "a%zz", "%2e", "a%41"):  # truncated, not hex, lower case, needless escape
        with pytest.raises(ValueError):
            id_from_safe_name(bad)
    with pytest.raises(ValueError, match="non-empty"):
        safe_name("")
    with pytest.raises(ValueError, match="too long"):
        safe_name("/" * 100)


# ----------------------------------------------------------------------------- round trips


def test_round_trip_streams_audio_features_landmarks(tmp_path):
    writer = StoreWriter(tmp_path / "s")
    data = write(writer, LRS2_ID, seed=1, face_track={"detections": np.int64(12), "box_jitter": np.float32(0.5)})
    writer.finalize()
    st = ClipStore(tmp_path / "s")

    face = st.frames(LRS2_ID, "face")
    assert face.shape == (T, H, W, 3) and face.dtype == np.uint8
    assert np.abs(face.astype(int) - data["streams"]["face"]).mean() < 3.0  # JPEG q95
    mouth = st.frames(LRS2_ID, "mouth")
    assert mouth.shape == (T, H // 2, W // 2)  # gray stays gray
    assert np.abs(mouth.astype(int) - data["streams"]["mouth"]).mean() < 3.0

    audio = st.audio(LRS2_ID)
    assert audio.dtype == np.float32 and audio.shape == data["audio"].shape
    assert np.abs(audio - data["audio"]).max() <= 1 / 32768
    mel = st.feature(LRS2_ID, "mel")
    assert isinstance(mel, np.memmap) and not mel.flags.writeable
    np.testing.assert_array_equal(mel, data["features"]["mel"])
    np.testing.assert_array_equal(st.landmarks(LRS2_ID), data["landmarks"])

    meta = st.meta(LRS2_ID)
    assert meta["n_frames"] == T and meta["fps"] == 25 and meta["duration"] == pytest.approx(T / 25)
    assert (meta["dataset"], meta["split"], meta["speaker"], meta["transcript"]) == ("toy", "train", "s1", "HELLO")
    assert meta["face_track"] == {"detections": 12, "box_jitter": 0.5}
    assert meta["streams"]["face"]["shape"] == [T, H, W, 3] and meta["streams"]["face"]["order"] == "rgb"
    assert meta["streams"]["mouth"]["order"] == "gray"
    assert meta["features"]["mel"] == {"shape": [80, 1 + 640 * T // 200], "dtype": "float32"}
    assert meta["status"] == "ok" and meta["reason"] is None
    assert st.n_frames(LRS2_ID) == T and LRS2_ID in st and len(st) == 1


def test_colour_order_is_kept_and_jpeg_holds_true_colours(tmp_path):
    rgb = np.zeros((3, 16, 16, 3), np.uint8)
    rgb[..., 0] = 220  # strongly red
    writer = StoreWriter(tmp_path)
    audio = np.zeros(3 * 640, np.float32)
    writer.write_clip("c", {}, {"as_rgb": rgb, "as_bgr": rgb[..., ::-1].copy()}, audio,
                      orders={"as_bgr": "bgr"})
    writer.finalize()
    st = ClipStore(tmp_path)
    assert st.frames("c", "as_rgb")[..., 0].mean() > 200  # returned in the order given
    assert st.frames("c", "as_bgr")[..., 2].mean() > 200
    # both streams hold the same (true-colour) JPEG: OpenCV decodes it to BGR, red last
    for stream in ("as_rgb", "as_bgr"):
        decoded = cv2.imdecode(np.frombuffer(st.jpeg_bytes("c", stream, 0), np.uint8), cv2.IMREAD_COLOR)
        assert decoded[..., 2].mean() > 200 and decoded[..., 0].mean() < 30


def test_int16_audio_is_stored_exactly(tmp_path):
    writer = StoreWriter(tmp_path)
    pcm = np.random.default_rng(0).integers(-32768, 32767, 640 * 4, dtype=np.int16)
    writer.write_clip("c", {}, {"g": np.zeros((4, 8, 8), np.uint8)}, pcm)
    writer.finalize()
    np.testing.assert_array_equal(ClipStore(tmp_path).audio("c") * 32768, pcm.astype(np.float32))


# ----------------------------------------------------------------------------- windows


@pytest.fixture
def one_clip(tmp_path):
    writer = StoreWriter(tmp_path / "s")
    data = write(writer, "clip", seed=3)
    writer.finalize()
    return ClipStore(tmp_path / "s"), data


@pytest.mark.parametrize("start", [0, 4, T - 5])
def test_window_reads_match_the_whole_clip(one_clip, start):
    st, data = one_clip
    whole = st.frames("clip", "face")
    np.testing.assert_array_equal(st.frames("clip", "face", start, 5), whole[start : start + 5])
    np.testing.assert_array_equal(st.frames("clip", "mouth", start, 5), st.frames("clip", "mouth")[start : start + 5])
    window = st.audio("clip", start, 5)
    assert window.shape == (3200,)
    np.testing.assert_array_equal(window, st.audio("clip")[640 * start : 640 * (start + 5)])
    np.testing.assert_array_equal(st.frames("clip", "face", start), whole[start:])


def test_windows_past_the_end_raise(one_clip):
    st, _ = one_clip
    with pytest.raises(ValueError, match=r"past the end.*12 frames.*last valid start: 7"):
        st.frames("clip", "face", T - 4, 5)
    with pytest.raises(ValueError, match="past the end"):
        st.frames("clip", "face", T, 1)
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="non-negative integer"):
            st.frames("clip", "face", bad, 1)
    with pytest.raises(ValueError, match="positive"):
        st.frames("clip", "face", 0, 0)
    with pytest.raises(ValueError, match="past the end"):
        st.audio("clip", T - 2, 5)
    padded = st.audio("clip", T - 2, 5, pad=True)
    assert padded.shape == (3200,) and not padded[1280:].any() and padded[:1280].any()


def test_unknown_names_give_clear_errors(one_clip):
    st, _ = one_clip
    with pytest.raises(StoreError, match="not in the store"):
        st.frames("nope", "face")
    with pytest.raises(StoreError, match=r"no stream 'lips'.*\['face', 'mouth'\]"):
        st.frames("clip", "lips")
    with pytest.raises(StoreError, match=r"no feature 'mfcc'.*\['mel'\]"):
        st.feature("clip", "mfcc")


def test_store_pickles_for_dataloader_workers(one_clip):
    st, _ = one_clip
    st.frames("clip", "face", 0, 5)  # fill the caches first
    clone = pickle.loads(pickle.dumps(st))
    np.testing.assert_array_equal(clone.frames("clip", "face", 2, 5), st.frames("clip", "face", 2, 5))


# ----------------------------------------------------------------------------- atomicity, resume


def test_failure_mid_write_leaves_nothing_and_rerun_completes(tmp_path, monkeypatch):
    writer = StoreWriter(tmp_path)
    real_encode = store._encode_stream
    calls = []

    def encode_then_crash(*args):
        calls.append(1)
        if len(calls) == 2:  # the first stream's files are already on disk
            raise RuntimeError("simulated crash")
        return real_encode(*args)

    monkeypatch.setattr(store, "_encode_stream", encode_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write(writer, LRS2_ID)
    assert not writer.done(LRS2_ID)
    assert list((tmp_path / "clips").iterdir()) == []  # no clip folder, no temporary
    assert writer.finalize()["summary"]["n_clips"] == 0

    monkeypatch.setattr(store, "_encode_stream", real_encode)
    write(writer, LRS2_ID)
    assert writer.done(LRS2_ID) and writer.finalize()["summary"]["n_clips"] == 1


def test_killed_run_leaves_a_temporary_that_the_next_writer_removes(tmp_path):
    child = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from avlib.data import store
        from test_store import write
        real = store._encode_stream
        calls = []
        def encode_then_die(*args):
            calls.append(1)
            if len(calls) == 2:
                os._exit(9)  # like SIGKILL: no cleanup code runs
            return real(*args)
        store._encode_stream = encode_then_die
        write(store.StoreWriter({str(tmp_path)!r}), "victim")
    """)
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert run.returncode == 9, run.stderr
    leftovers = [p.name for p in (tmp_path / "clips").iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp.") and leftovers[0].endswith("victim")

    writer = StoreWriter(tmp_path)  # the dead owner's temporary goes at start
    assert writer.removed_temporaries == 1 and list((tmp_path / "clips").iterdir()) == []
    assert writer.pending(["victim"]) == ["victim"]
    write(writer, "victim")
    assert writer.pending(["victim"]) == []
    assert [p.name for p in (tmp_path / "clips").iterdir()] == ["victim"]


def test_live_and_fresh_temporaries_are_kept(tmp_path):
    StoreWriter(tmp_path)
    other_host = tmp_path / "clips" / ".tmp.elsewhere.123.abcdef0123.x"
    mine = tmp_path / "clips" / f".tmp.{store._HOST}.{os.getpid()}.abcdef0123.y"
    other_host.mkdir()
    mine.mkdir()
    assert StoreWriter(tmp_path).removed_temporaries == 0  # other machine's may still be running
    old = os.path.getmtime(other_host) - 7200
    os.utime(other_host, (old, old))
    assert StoreWriter(tmp_path).removed_temporaries == 1 and mine.exists()


def test_rewriting_a_clip_replaces_it(tmp_path):
    writer = StoreWriter(tmp_path)
    write(writer, "c", seed=1, n=T)
    data = write(writer, "c", seed=2, n=T + 3)
    writer.finalize()
    st = ClipStore(tmp_path)
    assert st.n_frames("c") == T + 3
    assert np.abs(st.frames("c", "face").astype(int) - data["streams"]["face"]).mean() < 3.0


# ----------------------------------------------------------------------------- rejections, shards, manifest


def test_rejections_and_done(tmp_path):
    writer = StoreWriter(tmp_path)
    assert not writer.done("bad/1")
    writer.reject("bad/1", "no_face", "no face in 40% of frames", {"split": "train", "speaker": "s2"})
    assert writer.done("bad/1")
    record = json.loads((tmp_path / "rejected" / "bad%2F1.json").read_text())
    assert record["reason"] == "no_face" and record["speaker"] == "s2" and record["status"] == "rejected"
    with pytest.raises(ValueError, match="short code"):
        writer.reject("bad/2", "no face!")

    write(writer, "bad/1")  # a rerun with other settings accepts it: the rejection goes
    assert not (tmp_path / "rejected" / "bad%2F1.json").exists() and writer.done("bad/1")
    # A rejection never destroys a finished clip (another writer may have finished it) ...
    assert writer.reject("bad/1", "too_short") is False
    assert (tmp_path / "clips" / "bad%2F1" / "meta.json").is_file()
    assert not (tmp_path / "rejected" / "bad%2F1.json").exists()
    # ... unless the caller means to replace it.
    assert writer.reject("bad/1", "too_short", replace_finished=True) is True
    assert not (tmp_path / "clips" / "bad%2F1").exists()
    manifest = writer.finalize()
    assert manifest["summary"]["n_clips"] == 0 and manifest["summary"]["rejections"] == {"too_short": 1}

    st = ClipStore(tmp_path)
    assert [r["id"] for r in st.rejected] == ["bad/1"]
    with pytest.raises(StoreError, match="rejected.*too_short"):
        st.frames("bad/1", "face")


def test_shards_merge_into_one_manifest(tmp_path):
    cfg = {"crop": 96, "detector": "mediapipe"}
    shard_a, shard_b = StoreWriter(tmp_path, cfg), StoreWriter(tmp_path, cfg)
    write(shard_a, "spk1/00001", seed=1, split="train", speaker="spk1")
    write(shard_a, "spk1/00002", seed=2, n=20, split="train", speaker="spk1", dataset="other")
    shard_a.reject("spk1/00003", "no_face", "face lost")
    write(shard_b, "spk2/00001", seed=3, split="test", speaker="spk2")
    shard_b.reject("spk2/00002", "too_short", "9 frames")
    shard_b.reject("spk2/00003", "no_face", "profile view")

    manifest = StoreWriter(tmp_path).finalize()  # any writer (config adopted) can finalize
    assert manifest["config"] == cfg and manifest["format_version"] == store.FORMAT_VERSION
    summary = manifest["summary"]
    assert (summary["n_clips"], summary["n_rejected"], summary["n_frames"]) == (3, 3, 2 * T + 20)
    assert summary["hours"] == pytest.approx((2 * T + 20) / 25 / 3600)
    assert summary["rejections"] == {"no_face": 2, "too_short": 1}
    assert summary["splits"]["train"]["clips"] == 2 and summary["splits"]["test"]["frames"] == T
    assert summary["datasets"] == {"other": {"clips": 1, "frames": 20, "hours": pytest.approx(20 / 25 / 3600)},
                                   "toy": {"clips": 2, "frames": 2 * T, "hours": pytest.approx(2 * T / 25 / 3600)}}
    assert [r["id"] for r in manifest["clips"]] == sorted(r["id"] for r in manifest["clips"])
    for rec in manifest["clips"]:
        required = {"id", "dataset", "split", "speaker", "transcript", "face_track", "status", "reason", "detail"}
        assert required <= set(rec)
    assert json.loads((tmp_path / "store.json").read_text()) == manifest

    st = ClipStore(tmp_path)
    assert st.ids == ["spk1/00001", "spk1/00002", "spk2/00001"]
    assert [r["id"] for r in st.select(split="train")] == ["spk1/00001", "spk1/00002"]
    assert [r["id"] for r in st.select(split=("train", "test"), min_frames=T + 1)] == ["spk1/00002"]
    assert [r["id"] for r in st.select(speaker="spk2", dataset="toy")] == ["spk2/00001"]


def test_config_mismatch_is_refused(tmp_path):
    StoreWriter(tmp_path, {"crop": 96})
    with pytest.raises(StoreError, match=r"different config.*\['crop'\]"):
        StoreWriter(tmp_path, {"crop": 128})
    assert StoreWriter(tmp_path).config == {"crop": 96}


# ----------------------------------------------------------------------------- input validation


def test_bad_clip_inputs_are_refused(tmp_path):
    writer = StoreWriter(tmp_path)
    data = clip_data(0)
    face, audio = data["streams"]["face"], data["audio"]
    cases = [
        (dict(streams={"face": face, "short": face[:-1]}), "same number of frames"),
        (dict(streams={"face": face.astype(np.float32)}), "uint8"),
        (dict(streams={"face": face[..., :2]}), "expected"),
        (dict(streams={"face one": face}), "becomes a file name"),
        (dict(orders={"face": "gray"}), "order 'gray'"),
        (dict(orders={"lips": "bgr"}), "not in streams"),
        (dict(audio=np.zeros(int(len(audio) * 44100 / 16000), np.float32)), "16 kHz mono"),
        (dict(audio=np.stack([audio, audio], 1)), "mono"),
        (dict(audio=audio * 32768), "divide by 32768"),
        (dict(meta={"n_frames": 3}), "computed by the store"),
        (dict(meta={"fps": 30}), "25 fps"),
        (dict(meta={"when": object()}), "JSON"),
        (dict(landmarks=np.zeros((T - 1, 20, 2))), "landmarks"),
    ]
    for change, message in cases:
        args = {"meta": {}, "streams": {"face": face}, "audio": audio, "landmarks": None, "orders": None}
        args.update(change)
        with pytest.raises(ValueError, match=message):
            writer.write_clip("c", args["meta"], args["streams"], args["audio"],
                              landmarks=args["landmarks"], orders=args["orders"])
    assert not writer.done("c") and list((tmp_path / "clips").iterdir()) == []


def test_missing_store_gives_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        ClipStore(tmp_path / "nowhere")
    StoreWriter(tmp_path / "unfinished")
    with pytest.raises(StoreError, match=r"not finalized.*finalize\(\)"):
        ClipStore(tmp_path / "unfinished")


# ----------------------------------------------------------------------------- export


def test_export_matches_the_upstream_layout(tmp_path):
    writer = StoreWriter(tmp_path / "s")
    write(writer, LRS2_ID, seed=4, split="train")
    write(writer, "odd id/../x", seed=5, n=7, split="val")
    data = clip_data(6)
    writer.write_clip("bgr", {"split": "train"}, {"face": data["streams"]["face"][..., ::-1].copy()},
                      data["audio"], orders={"face": "bgr"})
    writer.finalize()
    st = ClipStore(tmp_path / "s")

    out = tmp_path / "lrs2_preprocessed"
    assert st.export_jpeg_layout(out, stream="face", filelist_dir=tmp_path / "filelists") == 3
    nested = out / "6330311066473698535" / "00011"
    assert sorted(p.name for p in nested.iterdir()) == sorted([f"{n}.jpg" for n in range(T)] + ["audio.wav"])
    assert (out / safe_name("odd id/../x") / "6.jpg").is_file()  # unsafe parts: one flat folder

    frames = st.frames(LRS2_ID, "face")
    for n in range(T):
        bgr = cv2.imread(str(nested / f"{n}.jpg"))  # what upstream's loaders do
        np.testing.assert_array_equal(bgr[..., ::-1], frames[n])
    np.testing.assert_array_equal(cv2.imread(str(out / "bgr" / "0.jpg")), st.frames("bgr", "face", 0, 1)[0])
    wav, sr = sf.read(nested / "audio.wav", dtype="float32")
    assert sr == 16000
    np.testing.assert_array_equal(wav, st.audio(LRS2_ID))
    assert (tmp_path / "filelists" / "train.txt").read_text().split() == [LRS2_ID, "bgr"]
    assert (tmp_path / "filelists" / "val.txt").read_text().split() == [safe_name("odd id/../x")]

    assert st.export_jpeg_layout(out, stream="face", clip_ids=[LRS2_ID]) == 1  # re-export replaces
    assert not [p for p in nested.parent.iterdir() if p.name.startswith(".")]
    with pytest.raises(StoreError, match="no stream 'face96'"):
        st.export_jpeg_layout(tmp_path / "other")


def test_export_refuses_a_clip_folder_inside_another(tmp_path):
    writer = StoreWriter(tmp_path / "s")
    write(writer, "spk", n=6)
    write(writer, "spk/00001", n=6)
    writer.finalize()
    st = ClipStore(tmp_path / "s")
    with pytest.raises(StoreError, match="cannot both be exported"):
        st.export_jpeg_layout(tmp_path / "out", stream="face")
    assert not (tmp_path / "out").exists()
    assert st.export_jpeg_layout(tmp_path / "out", stream="face", clip_ids=["spk/00001"]) == 1


def test_find_store_pointer_and_errors(tmp_path):
    from avlib.data.store import StoreError, find_store, record_current

    with pytest.raises(StoreError, match="01_preprocessing"):
        find_store(tmp_path / "artifacts")
    with pytest.raises(StoreError, match="not a clip store"):
        find_store(tmp_path / "artifacts", data_root=tmp_path)
    root = tmp_path / "store"
    StoreWriter(root).finalize()
    record_current(tmp_path / "artifacts", root)
    assert find_store(tmp_path / "artifacts").root == root.resolve()
    assert find_store(None, data_root=root).root == root
