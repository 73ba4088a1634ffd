"""GRID .align and LRW/LRS .txt reading and writing."""
from __future__ import annotations

import os

import pytest

from avlib.corpus.speech import Segment
from avlib.data.formats import (
    FormatError,
    read_grid_align,
    read_lrs_txt,
    read_lrw_txt,
    write_grid_align,
    write_lrs_txt,
    write_lrw_txt,
)

GRID_WORDS = [
    Segment("bin", 0.95, 1.18),
    Segment("blue", 1.18, 1.40),
    Segment("at", 1.40, 1.50),
    Segment("f", 1.62, 1.84),  # a short pause before the letter
    Segment("two", 1.84, 2.04),
    Segment("now", 2.04, 2.30),
]


def test_grid_align_write_matches_the_corpus_layout(tmp_path):
    path = write_grid_align(tmp_path / "bbaf2n.align", GRID_WORDS)
    lines = path.read_text().splitlines()
    assert lines[0] == "0 23750 sil"
    assert lines[1] == "23750 29500 bin"
    assert lines[4] == "37500 40500 sp"
    assert lines[-1] == "57500 75000 sil"  # a GRID clip is 3 s = 75000 units
    assert len(lines) == 9
    assert path.read_bytes().count(b"\r") == 0


def test_grid_align_round_trip(tmp_path):
    path = write_grid_align(tmp_path / "x.align", GRID_WORDS, duration_s=2.5)
    everything = read_grid_align(path)
    assert everything[0] == Segment("sil", 0.0, 0.95)
    assert everything[-1] == Segment("sil", 2.30, 2.5)
    words = read_grid_align(path, keep_silence=False)
    assert [w.label for w in words] == [w.label for w in GRID_WORDS]
    for got, want in zip(words, GRID_WORDS):
        assert got.start == pytest.approx(want.start, abs=1 / 25000)
        assert got.end == pytest.approx(want.end, abs=1 / 25000)
    # Contiguous from 0 to the clip end.
    assert all(a.end == b.start for a, b in zip(everything, everything[1:]))


def test_grid_align_reader_is_robust_and_strict(tmp_path):
    crlf = tmp_path / "crlf.align"
    crlf.write_bytes(b"0 23750 sil\r\n23750 29500 bin\r\n\r\n29500 75000 sil\r\n")
    assert [s.label for s in read_grid_align(crlf)] == ["sil", "bin", "sil"]
    bad = tmp_path / "bad.align"
    bad.write_text("0 23750 sil\n23750 x bin\n")
    with pytest.raises(FormatError, match=r"bad.align:2"):
        read_grid_align(bad)
    bad.write_text("0 23750\n")
    with pytest.raises(FormatError, match="start end word"):
        read_grid_align(bad)
    bad.write_bytes(b"0 23750 s\xffl\n")
    with pytest.raises(FormatError, match="UTF-8"):
        read_grid_align(bad)
    with pytest.raises(FormatError, match="not found"):
        read_grid_align(tmp_path / "missing.align")


def test_grid_align_writer_rejects_bad_words(tmp_path):
    target = tmp_path / "w.align"
    with pytest.raises(FormatError, match="before the previous word"):
        write_grid_align(target, [Segment("a", 0.5, 0.8), Segment("b", 0.7, 0.9)])
    with pytest.raises(FormatError, match="spaces"):
        write_grid_align(target, [Segment("two words", 0.1, 0.2)])
    with pytest.raises(FormatError, match="at least one"):
        write_grid_align(target, [])
    with pytest.raises(FormatError, match="ends before"):
        write_grid_align(target, GRID_WORDS, duration_s=2.0)
    assert not target.exists()


def test_writes_are_atomic_and_overwrite(tmp_path):
    target = tmp_path / "a.align"
    target.write_text("old content\n")
    write_grid_align(target, GRID_WORDS)
    assert target.read_text().startswith("0 23750 sil")
    write_lrw_txt(tmp_path / "ABOUT_00001.txt", "ABOUT", 0.33)
    assert sorted(os.listdir(tmp_path)) == ["ABOUT_00001.txt", "a.align"]  # no temp files left
    with pytest.raises(FormatError, match="does not exist"):
        write_lrw_txt(tmp_path / "missing" / "x.txt", "ABOUT", 0.33)


def test_lrw_txt_round_trip(tmp_path):
    path = write_lrw_txt(tmp_path / "ABOUT_00001.txt", "ABOUT", 0.3312, conf=0.75)
    assert path.read_text() == "Text: ABOUT\nConf: 0.75\nDuration: 0.33 seconds\n"
    meta = read_lrw_txt(path)
    assert meta["text"] == "ABOUT"
    assert meta["duration"] == pytest.approx(0.33)
    assert meta["conf"] == 0.75 and meta["decode_errors"] is False


def test_lrw_txt_reader_tolerates_crlf_and_extra_lines(tmp_path):
    path = tmp_path / "BETTER_00002.txt"
    path.write_bytes(
        b"\xef\xbb\xbfText: BETTER\r\nConf: 1\r\nsome free text\r\n\r\n"
        b"Duration: 0.5 seconds\r\n"
    )
    meta = read_lrw_txt(path)
    assert (meta["text"], meta["duration"], meta["conf"]) == ("BETTER", 0.5, 1.0)


def test_lrw_txt_reader_flags_bad_bytes_and_missing_fields(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"Text: CAF\xc9\nDuration: 0.4 seconds\n")
    meta = read_lrw_txt(path)
    assert meta["decode_errors"] is True and meta["text"] == "CAF\ufffd"
    path.write_text("Text: ABOUT\n")
    with pytest.raises(FormatError, match="Duration"):
        read_lrw_txt(path)
    path.write_text("Duration: 0.3 seconds\n")
    with pytest.raises(FormatError, match="Text"):
        read_lrw_txt(path)
    path.write_text("Text: ABOUT\nDuration: soon\n")
    with pytest.raises(FormatError, match="duration"):
        read_lrw_txt(path)
    with pytest.raises(FormatError, match="positive"):
        write_lrw_txt(path, "ABOUT", -1)


def test_lrs_main_txt(tmp_path):
    path = tmp_path / "00001.txt"
    path.write_bytes(b"Text:  WHEN YOU'RE TALKING ABOUT IT\r\nConf:  4\r\n")
    meta = read_lrs_txt(path)
    assert meta["text"] == "WHEN YOU'RE TALKING ABOUT IT"
    assert meta["conf"] == 4.0 and meta["words"] == [] and meta["decode_errors"] is False


def test_lrs_pretrain_txt_with_word_table(tmp_path):
    path = tmp_path / "00002.txt"
    path.write_text(
        "Text:  AND WE NEED\nConf:  3\nRef:   abc123\n\nWORD START END ASDSCORE\n"
        "AND 0.04 0.21 3.2\nWE 0.22 0.35 4.1\nNEED 0.35 0.70 5.0\n"
    )
    meta = read_lrs_txt(path)
    assert meta["fields"]["ref"] == "abc123"
    assert meta["words"] == [
        Segment("AND", 0.04, 0.21), Segment("WE", 0.22, 0.35), Segment("NEED", 0.35, 0.70),
    ]
    assert meta["scores"] == [3.2, 4.1, 5.0]


def test_lrs_txt_round_trip_and_errors(tmp_path):
    words = [Segment("SAY", 0.1, 0.3), Segment("MORE", 0.3, 0.62)]
    path = write_lrs_txt(tmp_path / "c.txt", "SAY MORE", conf=2, words=words, scores=[7.5, 8.0])
    meta = read_lrs_txt(path)
    assert meta["text"] == "SAY MORE" and meta["conf"] == 2.0
    assert meta["words"] == words and meta["scores"] == [7.5, 8.0]
    assert read_lrs_txt(write_lrs_txt(tmp_path / "d.txt", "HELLO"))["words"] == []
    bad = tmp_path / "bad.txt"
    bad.write_text("Text:  HI\nConf:  4\n\nWORD START END ASDSCORE\nHI 0.1 0.2\n")
    with pytest.raises(FormatError, match=r"bad.txt:5"):
        read_lrs_txt(bad)
    bad.write_text("Conf:  4\n")
    with pytest.raises(FormatError, match="Text"):
        read_lrs_txt(bad)
    bad.write_text("Text:  HI\nnot a field\n")
    with pytest.raises(FormatError, match="Key: value"):
        read_lrs_txt(bad)
    bad.write_bytes(b"Text:  H\xe9LLO\nConf:  4\n")
    assert read_lrs_txt(bad)["decode_errors"] is True
    with pytest.raises(FormatError, match="scores"):
        write_lrs_txt(tmp_path / "e.txt", "SAY MORE", words=words, scores=[1.0])
