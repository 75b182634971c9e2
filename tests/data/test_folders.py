"""An image folder's files checked before any work (project/data/folders.py): every bad file one
line naming it, in memory and before a stream's conversion, never a crash (libpng ended the
process with SIGSEGV on two of these); skipped with a count where asked; the formats users have."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from project.run.cli import main
from tests.test_bad_inputs import QUICK, assert_one_line
from tests.test_bad_inputs import run_cli as run
from tests.test_own_problem import write_folder

pytestmark = pytest.mark.usefixtures("in_tmp_path")


# --- image folders ---------------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _one(root: Path) -> Path:
    return sorted((root / "train" / "digit_2").glob("*.png"))[0]


def _damaged_data(root: Path) -> None:
    data = bytearray(_one(root).read_bytes())
    data[45:200] = b"A" * 155  # the compressed rows overwritten; the file keeps its end
    (root / "train" / "digit_2" / "damaged.png").write_bytes(bytes(data))


def _bomb(root: Path) -> None:
    header = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 0, 0, 0, 0)
    (root / "train" / "digit_2" / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + _png_chunk(b"IEND", b""))


FOLDER_MISTAKES = {
    # each: what is done to a folder of 3 classes, and what the line says (libpng ended the process
    # with SIGSEGV on the damaged data and on the bomb)
    "a zero-byte file": (lambda root: (root / "train/digit_2/empty.png").write_bytes(b""), "empty.png, which does not decode"),
    "text named .png": (lambda root: (root / "train/digit_2/notes.png").write_text("hi " * 50), "notes.png, which does not decode"),
    "damaged compressed data": (_damaged_data, "damaged.png, which does not decode (OSError"),
    "a header of 60000x60000": (_bomb, "bomb.png, which does not decode (DecompressionBombError"),
    "a link to a missing file": (lambda root: os.symlink("/nonexistent.png", root / "train/digit_2/gone.png"),
                                 "gone.png, which is a link to a missing file"),
    "a JPEG cut short": (lambda root: Image.open(_one(root)).save(root / "train/digit_2/cut.jpg") or
                         (root / "train/digit_2/cut.jpg").write_bytes((root / "train/digit_2/cut.jpg").read_bytes()[:300]),
                         "cut.jpg, which is truncated (no end-of-image marker)"),
    "a JPEG cut, its end marker kept": (lambda root: Image.open(_one(root)).save(root / "train/digit_2/cut.jpg") or
                                        (root / "train/digit_2/cut.jpg").write_bytes(
                                            (root / "train/digit_2/cut.jpg").read_bytes()[:200] + b"\xff\xd9"),
                                        "cut.jpg, which does not decode"),
    "a PNG without its last chunk": (lambda root: _one(root).write_bytes(_one(root).read_bytes()[:-12]),
                                     "which is truncated (no IEND chunk at its end)"),
}


@pytest.mark.parametrize("fault", FOLDER_MISTAKES)
def test_a_bad_image_file_is_one_line_never_a_crash(tmp_path, capsys, fault):
    root = write_folder(tmp_path / "mine", per_class=4, classes=[1, 2, 3])
    damage, says = FOLDER_MISTAKES[fault]
    damage(root)
    for stream in ("false", "true"):  # in memory, and before a stream's conversion
        assert_one_line(*run(["fit", *QUICK, "--data.dataset=image_folder", "--data.data_dir=mine",
                              f"--data.stream={stream}"], capsys), "data.data_dir=mine holds train/digit_2/", says=says)
    assert not Path("logs").exists() and not Path("data").exists()


def test_bad_files_skipped_with_a_count_in_memory_and_streamed(tmp_path, capsys):
    root = write_folder(tmp_path / "mine", per_class=4, classes=[1, 2, 3])
    for fault in ("a zero-byte file", "damaged compressed data", "a header of 60000x60000"):
        FOLDER_MISTAKES[fault][0](root)
    for stream in ("false", "true", "true"):  # the third run reuses the chunks, and says it again
        main(["fit", *QUICK, "--data.dataset=image_folder", "--data.data_dir=mine", "--data.batch_size=4",
              "--data.skip_bad_files=true", f"--data.stream={stream}", "--test_after_fit=false"])
        notes = [line for line in capsys.readouterr().err.splitlines() if "skip_bad_files" in line]
        assert len(notes) == 1 and "3 of 15 files of mine left out" in notes[0], notes
        assert "train/digit_2/bomb.png (does not decode (DecompressionBombError" in notes[0]


def test_skipping_may_not_empty_a_class(tmp_path, capsys):
    root = write_folder(tmp_path / "mine", per_class=3, classes=[1, 2])
    for path in (root / "train" / "digit_2").iterdir():
        path.write_text("not an image")
    assert_one_line(*run(["fit", *QUICK, "--data.dataset=image_folder", "--data.data_dir=mine",
                          "--data.skip_bad_files=true"], capsys), "data.data_dir=mine",
                    says="has no decodable image left in train/digit_2/ once bad files are skipped")


def test_the_formats_a_user_has_are_read(tmp_path, capsys):
    """16-bit, palette, RGBA, CMYK, GIF, WEBP, BMP and TIFF files beside the PNGs; system files aside."""
    root = write_folder(tmp_path / "mine", per_class=4, classes=[1, 2])
    first, folder = Image.open(_one(root)), root / "train" / "digit_2"
    Image.fromarray((torch.rand(28, 28) * 65535).numpy().astype("uint16")).save(folder / "deep.png")
    first.convert("P").save(folder / "palette.png")
    first.convert("RGBA").save(folder / "rgba.png")
    first.convert("CMYK").save(folder / "cmyk.jpg")
    for suffix in ("gif", "webp", "bmp", "tiff"):
        first.save(folder / f"a.{suffix}")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    from project.data.datamodule import ImageDataModule

    dm = ImageDataModule(dataset="image_folder", data_dir="mine", val_fraction=0.2, test_fraction=0.2)
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 8 + 8  # 4 + 4 PNGs and the 8 others
    deep = dm.train_set.images[dm.train_set.labels == 1]
    assert deep.dtype == torch.uint8 and deep.float().std() > 0
